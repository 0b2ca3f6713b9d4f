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
    /// server's certificate for `serverName` (a DNS name or IP address).
    public init(address: SocketAddress, context: TLSContext, serverName: String?, timeout: Double) throws {
        fd = try Sys.socket(address.family, Int32(SOCK_STREAM.rawValue))
        do {
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

    public var negotiatedProtocol: String? { session.alpn }
    public var tlsVersion: String { session.protocolVersion }

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
        case .wantRead, .wantWrite: throw HTTPClientError("TLS read timed out")
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
    init(_ description: String) { self.description = description }
}

/// A parsed HTTP response.
public struct HTTPClientResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// HTTP/1.1 over a `TLSClientConnection`, with keep-alive. Reads Content-Length,
/// chunked and close-delimited responses.
public final class HTTPClientConnection {
    public let connection: TLSClientConnection
    var buffer: [UInt8] = []
    public private(set) var reusable = true

    public init(_ connection: TLSClientConnection) { self.connection = connection }

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

    func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 16384)
        let n = try chunk.withUnsafeMutableBufferPointer { try connection.read(into: $0.baseAddress!, count: $0.count) }
        if n == 0 { return false }
        buffer.append(contentsOf: chunk[0..<n])
        return true
    }

    func takeLine() throws -> String? {
        while true {
            if let i = buffer.indices.dropLast().first(where: { buffer[$0] == 0x0D && buffer[$0 + 1] == 0x0A }) {
                let line = String(decoding: buffer[0..<i], as: UTF8.self)
                buffer.removeFirst(i + 2)
                return line
            }
            if try !fill() { return nil }
        }
    }

    func take(_ count: Int) throws -> [UInt8] {
        while buffer.count < count {
            if try !fill() { throw HTTPClientError("connection closed mid-body") }
        }
        let out = Array(buffer[0..<count])
        buffer.removeFirst(count)
        return out
    }

    /// Reads one response (skipping 1xx interim responses).
    public func readResponse(method: String = "POST") throws -> HTTPClientResponse {
        while true {
            guard let statusLine = try takeLine() else {
                throw HTTPClientError("connection closed before a response")
            }
            let parts = statusLine.split(separator: " ", maxSplits: 2)
            guard parts.count >= 2, let status = Int(parts[1]) else {
                throw HTTPClientError("malformed status line: \(statusLine)")
            }
            var headers: [(String, String)] = []
            while let line = try takeLine(), !line.isEmpty {
                guard let colon = line.firstIndex(of: ":") else { continue }
                let value = line[line.index(after: colon)...].drop { $0 == " " }
                headers.append((String(line[..<colon]), String(value)))
            }
            if (100..<200).contains(status) { continue }
            var response = HTTPClientResponse(status: status, headers: headers, body: [])
            if response.header("connection")?.lowercased() == "close" { reusable = false }
            if method == "HEAD" || status == 204 || status == 304 { return response }
            if response.header("transfer-encoding")?.lowercased() == "chunked" {
                while true {
                    guard let sizeLine = try takeLine(),
                        let size = Int(sizeLine.split(separator: ";")[0], radix: 16)
                    else { throw HTTPClientError("bad chunk") }
                    if size == 0 {
                        while let trailer = try takeLine(), !trailer.isEmpty {}
                        break
                    }
                    response.body += try take(size)
                    _ = try take(2)
                }
            } else if let length = response.header("content-length").flatMap({ Int($0) }) {
                response.body = try take(length)
            } else {
                while try fill() {}
                response.body = buffer
                buffer.removeAll()
                reusable = false
            }
            return response
        }
    }

    public func close() { connection.close() }
}
