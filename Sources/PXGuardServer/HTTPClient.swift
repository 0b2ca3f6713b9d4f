import COpenSSL
import PXGuardPlatform
#if canImport(Glibc)
import Glibc
#endif

/// A blocking TLS client connection with timeouts on every call: the Kubernetes
/// client and the tests use it. Not for the request path.
public final class TLSClientConnection {
    let fd: Int32
    let session: TLSSession
    public private(set) var isOpen = true

    /// Connects and completes the handshake within `timeout` seconds, verifying the
    /// server's certificate for `serverName` (a DNS name or IP address). `source`
    /// binds the local address first (port 0 picks one).
    public init(address: SocketAddress, context: TLSContext, serverName: String?, timeout: Double,
                source: SocketAddress? = nil) throws {
        fd = try Sys.socket(address.family, Int32(SOCK_STREAM.rawValue))
        do {
            if let source { try Sys.bind(fd, source) }
            try Sys.setTimeout(fd, SO_RCVTIMEO, seconds: timeout)
            try Sys.setTimeout(fd, SO_SNDTIMEO, seconds: timeout)
            try Sys.setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
            _ = try Sys.connect(fd, address)
            session = try TLSSession(context: context, fd: fd, serverName: serverName)
        } catch {
            Sys.close(fd)
            throw error
        }
        switch session.connect() {
        case .done: break
        case .failed(let reason):
            close()
            throw TLSError.handshake(reason)
        default:
            close()
            throw TLSError.handshake("handshake did not complete")
        }
    }

    var negotiatedProtocol: String? { session.alpn }
    var tlsVersion: String { session.protocolVersion }

    public func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let result = bytes.withUnsafeBufferPointer { session.write(from: $0.baseAddress! + offset, count: $0.count - offset) }
            switch result {
            case .done(let n): offset += n
            default: throw HTTPClientError("TLS write failed")
            }
        }
    }

    /// Reads up to `count` bytes; 0 means the peer closed.
    public func read(into buffer: UnsafeMutablePointer<UInt8>, count: Int) throws -> Int {
        switch session.read(into: buffer, count: count) {
        case .done(let n): return n
        case .closed: return 0
        case .wantRead, .wantWrite: throw HTTPClientError("TLS read timed out", isTimeout: true)
        case .failed(let reason): throw HTTPClientError("TLS read failed: \(reason)")
        }
    }

    public func close() {
        guard isOpen else { return }
        isOpen = false
        session.shutdown()
        session.free()
        Sys.close(fd)
    }

    deinit { close() }
}

extension TLSError {
    static func handshake(_ reason: String) -> TLSError {
        TLSError(description: "TLS handshake failed: \(reason)")
    }

    init(description: String) { self.description = description }
}

/// A client-side failure that is not a system call's: a TLS error, a timeout, a
/// response that breaks HTTP/1.1.
public struct HTTPClientError: Error, CustomStringConvertible, Sendable {
    public let description: String
    /// The socket's read timeout passed with nothing to read: the peer may still be
    /// alive (a quiet watch), so callers that poll treat this as "nothing yet".
    public let isTimeout: Bool
    init(_ description: String, isTimeout: Bool = false) {
        self.description = description
        self.isTimeout = isTimeout
    }
}

/// A parsed HTTP response.
public struct HTTPClientResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// What a response may cost the client: the API server's answers are trusted less
/// than our own memory (a proxy, a bug, an attacker on the path).
public struct HTTPClientLimits: Sendable {
    /// One status, header, chunk-size or trailer line.
    public var maxLineBytes = 16 << 10
    /// Header lines (and, separately, trailer lines) per response.
    var maxHeaders = 128
    /// The body, however it is framed.
    public var maxBodyBytes = 64 << 20
    public init() {}
}

/// Reads HTTP/1.1 responses from a byte source with every length checked: a
/// malformed, negative, overflowing or oversized length is an `HTTPClientError`,
/// never a trap. Separate from the connection so the fuzzer drives it directly.
struct HTTPResponseReader {
    let limits: HTTPClientLimits
    /// More bytes from the peer; nil once it closed.
    let source: () throws -> [UInt8]?
    var buffer: [UInt8] = []
    /// Bytes before this index are consumed; compacted lazily.
    var position = 0
    /// False once a response says `Connection: close` or is close-delimited.
    var reusable = true

    init(limits: HTTPClientLimits = HTTPClientLimits(), source: @escaping () throws -> [UInt8]?) {
        self.limits = limits
        self.source = source
    }

    var available: Int { buffer.count - position }

    mutating func fill() throws -> Bool {
        guard let more = try source() else { return false }
        if position > 0 && position >= buffer.count / 2 {
            buffer.removeSubrange(0..<position)
            position = 0
        }
        buffer += more
        return true
    }

    /// The next CRLF-terminated line (without it), or nil at a clean close.
    mutating func takeLine() throws -> String? {
        // Bytes already searched, counted from `position` (a fill may move the buffer).
        var searched = 0
        while true {
            while position + searched + 1 < buffer.count {
                let i = position + searched
                if buffer[i] == 0x0D && buffer[i + 1] == 0x0A {
                    let line = String(decoding: buffer[position..<i], as: UTF8.self)
                    position = i + 2
                    return line
                }
                searched += 1
            }
            if searched > limits.maxLineBytes {
                throw HTTPClientError("response line longer than \(limits.maxLineBytes) bytes")
            }
            if try !fill() {
                if available == 0 { return nil }
                throw HTTPClientError("connection closed mid-line")
            }
        }
    }

    mutating func take(_ count: Int) throws -> ArraySlice<UInt8> {
        precondition(count >= 0)
        while available < count {
            if try !fill() { throw HTTPClientError("connection closed mid-body") }
        }
        defer { position += count }
        return buffer[position..<position + count]
    }

    /// A decimal Content-Length: digits only, no sign, no overflow.
    static func contentLength(_ text: String) -> Int? {
        let digits = text.utf8
        guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int(text)
    }

    /// A chunk size: 1-15 hex digits (so no overflow), then optional extensions.
    static func chunkSize(_ line: String) -> Int? {
        let end = line.utf8.firstIndex { $0 == UInt8(ascii: ";") || $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") } ?? line.utf8.endIndex
        let digits = line.utf8[..<end]
        guard !digits.isEmpty, digits.count <= 15 else { return nil }
        var size = 0
        for c in digits {
            let value: Int
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = Int(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = Int(c - UInt8(ascii: "a")) + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value = Int(c - UInt8(ascii: "A")) + 10
            default: return nil
            }
            size = size << 4 | value
        }
        return size
    }

    /// Reads one response (skipping 1xx interim responses).
    mutating func readResponse(method: String) throws -> HTTPClientResponse {
        while true {
            guard let statusLine = try takeLine() else {
                throw HTTPClientError("connection closed before a response")
            }
            let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), parts[1].utf8.count == 3,
                let status = Int(parts[1]), (100...999).contains(status)
            else {
                throw HTTPClientError("malformed status line: \(statusLine.prefix(200))")
            }
            var headers: [(name: String, value: String)] = []
            while true {
                guard let line = try takeLine() else { throw HTTPClientError("connection closed in the headers") }
                if line.isEmpty { break }
                guard headers.count < limits.maxHeaders else {
                    throw HTTPClientError("more than \(limits.maxHeaders) header lines")
                }
                guard let colon = line.firstIndex(of: ":") else { continue }
                let value = line[line.index(after: colon)...].drop { $0 == " " || $0 == "\t" }
                headers.append((String(line[..<colon]), String(value)))
            }
            if (100..<200).contains(status) { continue }
            var response = HTTPClientResponse(status: status, headers: headers, body: [])
            if response.header("connection")?.lowercased() == "close" { reusable = false }
            if method == "HEAD" || status == 204 || status == 304 { return response }
            response.body = try readBody(response)
            return response
        }
    }

    mutating func readBody(_ response: HTTPClientResponse) throws -> [UInt8] {
        let lengths = response.headers.filter { $0.name.lowercased() == "content-length" }.map(\.value)
        if let encoding = response.header("transfer-encoding") {
            guard encoding.lowercased() == "chunked" else {
                throw HTTPClientError("unsupported Transfer-Encoding \(encoding.prefix(100))")
            }
            return try readChunked()
        }
        if let first = lengths.first {
            guard let length = Self.contentLength(first), lengths.allSatisfy({ $0 == first }) else {
                throw HTTPClientError("bad Content-Length \(lengths.joined(separator: ", ").prefix(100))")
            }
            guard length <= limits.maxBodyBytes else {
                throw HTTPClientError("response body of \(length) bytes is over the \(limits.maxBodyBytes)-byte limit")
            }
            return Array(try take(length))
        }
        // Close-delimited.
        reusable = false
        while try fill() {
            if available > limits.maxBodyBytes {
                throw HTTPClientError("response body is over the \(limits.maxBodyBytes)-byte limit")
            }
        }
        defer { position = buffer.count }
        return Array(buffer[position...])
    }

    mutating func readChunked() throws -> [UInt8] {
        var body: [UInt8] = []
        while true {
            guard let sizeLine = try takeLine() else { throw HTTPClientError("connection closed before a chunk") }
            guard let size = Self.chunkSize(sizeLine) else {
                throw HTTPClientError("bad chunk size line \"\(sizeLine.prefix(100))\"")
            }
            if size == 0 { break }
            guard size <= limits.maxBodyBytes - body.count else {
                throw HTTPClientError("chunked body is over the \(limits.maxBodyBytes)-byte limit")
            }
            body += try take(size)
            guard try take(2).elementsEqual([0x0D, 0x0A]) else { throw HTTPClientError("chunk not followed by CRLF") }
        }
        var trailers = 0
        while true {
            guard let trailer = try takeLine() else { throw HTTPClientError("connection closed in the trailers") }
            if trailer.isEmpty { return body }
            trailers += 1
            guard trailers <= limits.maxHeaders else { throw HTTPClientError("more than \(limits.maxHeaders) trailer lines") }
        }
    }
}

/// HTTP/1.1 over a `TLSClientConnection`, with keep-alive. Reads Content-Length,
/// chunked and close-delimited responses, within `HTTPClientLimits`.
public final class HTTPClientConnection {
    public let connection: TLSClientConnection
    var reader: HTTPResponseReader
    public var reusable: Bool { reader.reusable }

    public init(_ connection: TLSClientConnection, limits: HTTPClientLimits = HTTPClientLimits()) {
        self.connection = connection
        reader = HTTPResponseReader(limits: limits) {
            var chunk = [UInt8](repeating: 0, count: 16384)
            let n = try chunk.withUnsafeMutableBufferPointer { try connection.read(into: $0.baseAddress!, count: $0.count) }
            return n == 0 ? nil : Array(chunk[0..<n])
        }
    }

    /// Sends one request and reads its response.
    public func request(_ method: String, _ target: String, headers: [(String, String)] = [], body: [UInt8]? = nil)
        throws -> HTTPClientResponse
    {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: localhost\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if let body { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        try connection.write(Array(head.utf8) + (body ?? []))
        return try readResponse(method: method)
    }

    /// Sends raw bytes (for tests of malformed input).
    public func send(_ bytes: [UInt8]) throws { try connection.write(bytes) }

    /// Reads one response (skipping 1xx interim responses).
    func readResponse(method: String = "POST") throws -> HTTPClientResponse {
        try reader.readResponse(method: method)
    }

    public func close() { connection.close() }
}
