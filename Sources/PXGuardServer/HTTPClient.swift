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
            ERR_clear_error()  // see TLSSession.init
            let result = bytes.withUnsafeBufferPointer { session.write(from: $0.baseAddress! + offset, count: $0.count - offset) }
            switch result {
            case .done(let n): offset += n
            default: throw HTTPClientError("TLS write failed")
            }
        }
    }

    /// Reads up to `count` bytes; 0 means the peer closed.
    public func read(into buffer: UnsafeMutablePointer<UInt8>, count: Int) throws -> Int {
        ERR_clear_error()  // see TLSSession.init
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
/// never a trap. The one response reader of the API client: whole answers
/// (`readResponse`, body within `maxBodyBytes`) and streamed ones (`readHead`,
/// then `nextBodyPiece` until nil: lists and watches, whose bodies have no
/// size limit because nothing holds them whole). Incremental: every byte is
/// looked at once, lines are bounded, a body piece is handed out as it arrives
/// whatever length its chunk announced. Separate from the connection so the
/// fuzzer drives it directly.
struct HTTPResponseReader {
    /// Where the reader is in the current response's body.
    enum Body: Equatable {
        /// Between responses (or before the first).
        case none
        /// `remaining` bytes of a Content-Length body.
        case length(remaining: Int)
        /// Inside a chunk with `remaining` data bytes, then its CRLF.
        case chunk(remaining: Int)
        /// Expecting a chunk-size line.
        case chunkSize
        /// Until the peer closes.
        case untilClose
    }

    let limits: HTTPClientLimits
    /// More bytes from the peer; nil once it closed.
    let source: () throws -> [UInt8]?
    var buffer: [UInt8] = []
    /// Bytes before this index are consumed; compacted lazily.
    var position = 0
    /// Bytes after `position` already searched for the current line's CRLF, so
    /// a line arriving in many pieces is scanned once.
    var lineScanned = 0
    /// False once a response says `Connection: close` or is close-delimited.
    var reusable = true
    var body = Body.none

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
        lineScanned = 0
        while true {
            while position + lineScanned + 1 < buffer.count {
                let i = position + lineScanned
                if buffer[i] == 0x0D && buffer[i + 1] == 0x0A {
                    let line = String(decoding: buffer[position..<i], as: UTF8.self)
                    position = i + 2
                    lineScanned = 0
                    return line
                }
                lineScanned += 1
            }
            if lineScanned > limits.maxLineBytes {
                throw HTTPClientError("response line longer than \(limits.maxLineBytes) bytes")
            }
            if try !fill() {
                if available == 0 { return nil }
                throw HTTPClientError("connection closed mid-line")
            }
        }
    }

    mutating func take(_ count: Int) throws -> ArraySlice<UInt8> {
        guard count >= 0 else { throw HTTPClientError("negative length \(count)") }
        while available < count {
            if try !fill() { throw HTTPClientError("connection closed mid-body") }
        }
        defer { position += count }
        return buffer[position..<position + count]
    }

    /// Up to `limit` buffered bytes (reading once when none are), or nil at a close.
    mutating func takeSome(_ limit: Int) throws -> ArraySlice<UInt8>? {
        if available == 0 {
            position = buffer.count
            guard try fill() else { return nil }
        }
        let n = min(limit, available)
        defer { position += n }
        return buffer[position..<position + n]
    }

    /// A decimal Content-Length: digits only, no sign, no overflow.
    static func contentLength(_ text: String) -> Int? {
        let digits = text.utf8
        guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int(text)
    }

    /// A chunk size: 1-15 hex digits (so no overflow, never negative), then
    /// optional extensions.
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

    /// Reads one response (skipping 1xx interim responses) with its whole body,
    /// which must fit in `maxBodyBytes`.
    mutating func readResponse(method: String) throws -> HTTPClientResponse {
        var response = try readHead(method: method)
        var body: [UInt8] = []
        while let piece = try nextBodyPiece() {
            guard piece.count <= limits.maxBodyBytes - body.count else {
                throw HTTPClientError("response body is over the \(limits.maxBodyBytes)-byte limit")
            }
            body += piece
        }
        response.body = body
        return response
    }

    /// Reads a response's status line and headers (skipping 1xx interim
    /// responses); its body follows through `nextBodyPiece`. A Content-Length
    /// over `maxBodyBytes` is refused here only when `boundedBody` is set.
    mutating func readHead(method: String, boundedBody: Bool = true) throws -> HTTPClientResponse {
        guard body == .none else { throw HTTPClientError("the previous response's body was not read to its end") }
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
            let response = HTTPClientResponse(status: status, headers: headers, body: [])
            if response.header("connection")?.lowercased() == "close" { reusable = false }
            if method == "HEAD" || status == 204 || status == 304 { return response }
            body = try framing(response, bounded: boundedBody)
            return response
        }
    }

    /// How the body after `response`'s head is delimited.
    mutating func framing(_ response: HTTPClientResponse, bounded: Bool) throws -> Body {
        let lengths = response.headers.filter { $0.name.lowercased() == "content-length" }.map(\.value)
        if let encoding = response.header("transfer-encoding") {
            guard encoding.lowercased() == "chunked" else {
                throw HTTPClientError("unsupported Transfer-Encoding \(encoding.prefix(100))")
            }
            return .chunkSize
        }
        if let first = lengths.first {
            guard let length = Self.contentLength(first), lengths.allSatisfy({ $0 == first }) else {
                throw HTTPClientError("bad Content-Length \(lengths.joined(separator: ", ").prefix(100))")
            }
            guard !bounded || length <= limits.maxBodyBytes else {
                throw HTTPClientError("response body of \(length) bytes is over the \(limits.maxBodyBytes)-byte limit")
            }
            return length == 0 ? .none : .length(remaining: length)
        }
        reusable = false
        return .untilClose
    }

    /// The next piece of the current body (at most `maxPiece` bytes, as they
    /// arrive), or nil at its end. A chunk announcing any size costs no memory
    /// up front: its bytes are handed out as they come.
    mutating func nextBodyPiece(maxPiece: Int = 64 << 10) throws -> ArraySlice<UInt8>? {
        while true {
            switch body {
            case .none:
                return nil
            case .length(let remaining):
                guard let piece = try takeSome(min(remaining, maxPiece)) else {
                    throw HTTPClientError("connection closed mid-body")
                }
                body = remaining == piece.count ? .none : .length(remaining: remaining - piece.count)
                return piece
            case .untilClose:
                guard let piece = try takeSome(maxPiece) else {
                    body = .none
                    return nil
                }
                return piece
            case .chunkSize:
                guard let sizeLine = try takeLine() else { throw HTTPClientError("connection closed before a chunk") }
                guard let size = Self.chunkSize(sizeLine) else {
                    throw HTTPClientError("bad chunk size line \"\(sizeLine.prefix(100))\"")
                }
                if size == 0 {
                    try skipTrailers()
                    body = .none
                    return nil
                }
                body = .chunk(remaining: size)
            case .chunk(let remaining):
                if remaining == 0 {
                    guard try take(2).elementsEqual([0x0D, 0x0A]) else { throw HTTPClientError("chunk not followed by CRLF") }
                    body = .chunkSize
                    continue
                }
                guard let piece = try takeSome(min(remaining, maxPiece)) else {
                    throw HTTPClientError("connection closed mid-chunk")
                }
                body = .chunk(remaining: remaining - piece.count)
                return piece
            }
        }
    }

    mutating func skipTrailers() throws {
        var trailers = 0
        while true {
            guard let trailer = try takeLine() else { throw HTTPClientError("connection closed in the trailers") }
            if trailer.isEmpty { return }
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

    /// - Parameter whileWaiting: called each time a read's timeout passes with
    ///   nothing to read; nil makes that an error. A watch passes one that checks
    ///   for stop and idleness (and throws to end the wait).
    public init(_ connection: TLSClientConnection, limits: HTTPClientLimits = HTTPClientLimits(),
                whileWaiting: (() throws -> Void)? = nil) {
        self.connection = connection
        reader = HTTPResponseReader(limits: limits) {
            var chunk = [UInt8](repeating: 0, count: 16384)
            while true {
                do {
                    let n = try chunk.withUnsafeMutableBufferPointer { try connection.read(into: $0.baseAddress!, count: $0.count) }
                    return n == 0 ? nil : Array(chunk[0..<n])
                } catch let error as HTTPClientError where error.isTimeout {
                    guard let whileWaiting else { throw error }
                    try whileWaiting()
                }
            }
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

    /// Sends one request and reads only its head: the body follows through
    /// `nextBodyPiece` (a list or a watch, streamed without a size limit).
    public func open(_ method: String, _ target: String, headers: [(String, String)] = []) throws -> HTTPClientResponse {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: localhost\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "\r\n"
        try connection.write(Array(head.utf8))
        return try reader.readHead(method: method, boundedBody: false)
    }

    /// The next piece of the body of the response `open` read, or nil at its end.
    public func nextBodyPiece() throws -> ArraySlice<UInt8>? { try reader.nextBodyPiece() }

    /// The rest of the current body, read whole within `maxBodyBytes` (an error
    /// `Status` after `open`).
    public func readRestOfBody() throws -> [UInt8] {
        var body: [UInt8] = []
        while let piece = try reader.nextBodyPiece() {
            guard piece.count <= reader.limits.maxBodyBytes - body.count else {
                throw HTTPClientError("response body is over the \(reader.limits.maxBodyBytes)-byte limit")
            }
            body += piece
        }
        return body
    }

    public func close() { connection.close() }
}
