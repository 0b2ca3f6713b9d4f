import PXGuardBytes
import Foundation
import Testing
import COpenSSL
@testable import PXGuardServer
import PXGuardPlatform

/// A handler that knows nothing of Kubernetes: it answers every request with its
/// method, path and body length, so the transport is tested on its own.
struct EchoHandler: HTTPHandler {
    func handle(_ request: HTTPRequest, _ response: inout HTTPResponse) {
        response.contentType = "text/plain"
        let text = "\(request.method) \(request.path) \(request.body.count)"
        response.body.append(contentsOf: text.utf8)
    }
}

/// The transport alone on 127.0.0.1:0 with fresh certificates and real TLS.
final class EchoServer: @unchecked Sendable {
    let dir: String
    let server: HTTPServer
    var port: Int { server.port }
    var caFile: String { dir + "/ca.crt" }

    init(workers: Int = 1, _ configure: (inout ServerConfiguration) -> Void = { _ in }) throws {
        dir = NSTemporaryDirectory() + "pxguard-server-test-" + UUID().uuidString
        try CertificateFactory.write(to: dir, service: "echo", namespace: "default")
        var configuration = ServerConfiguration(address: try SocketAddress(parsing: "127.0.0.1:0"))
        configuration.limits.workers = workers
        configure(&configuration)
        let tls = TLSContextBox(try TLSContext.server(certificateFile: dir + "/tls.crt", keyFile: dir + "/tls.key"))
        server = try HTTPServer(configuration: configuration, tls: tls, handler: EchoHandler(), logger: .none)
        server.start()
    }

    deinit {
        server.shutdown(grace: 1)
        server.wait()
        try? FileManager.default.removeItem(atPath: dir)
    }

    func tls() throws -> TLSClientConnection {
        try TLSClientConnection(address: SocketAddress(parsing: "127.0.0.1:\(port)"),
                                context: TLSContext.client(caFile: caFile), serverName: "127.0.0.1", timeout: 5)
    }

    func client() throws -> HTTPClientConnection { HTTPClientConnection(try tls()) }

    /// A TLS connection from another loopback address (127.0.0.2 and up): another peer.
    func tls(from source: String) throws -> TLSClientConnection {
        try TLSClientConnection(address: SocketAddress(parsing: "127.0.0.1:\(port)"),
                                context: TLSContext.client(caFile: caFile), serverName: "127.0.0.1", timeout: 5,
                                source: SocketAddress(parsing: source + ":0"))
    }
}

extension TLSClientConnection {
    /// Reads until the server closes or the receive timeout passes; true when it closed.
    func waitForClose() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            do {
                if try buffer.withUnsafeMutableBufferPointer({ try read(into: $0.baseAddress!, count: $0.count) }) == 0 { return true }
            } catch let error as HTTPClientError {
                return !error.isTimeout
            } catch {
                return true
            }
        }
    }
}

extension TLSClientConnection {
    /// Writes each piece as its own TLS record, all held back by `TCP_CORK` and then
    /// released together, so the server receives many records in one segment.
    func writeRecordsInOneSegment(_ pieces: [[UInt8]]) throws {
        var on: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_CORK, &on, socklen_t(MemoryLayout<Int32>.size))
        for piece in pieces { try write(piece) }
        var off: Int32 = 0
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_CORK, &off, socklen_t(MemoryLayout<Int32>.size))
    }
}

/// Reads HTTP responses off a raw TLS connection until `count` have arrived or it fails.
func readResponses(_ client: HTTPClientConnection, count: Int) -> [HTTPClientResponse] {
    var out: [HTTPClientResponse] = []
    while out.count < count, let response = try? client.readResponse(method: "GET") { out.append(response) }
    return out
}

/// A plain TCP socket for bytes that are not (valid) TLS.
final class PlainSocket {
    let fd: Int32

    enum RawClientError: Error { case connect(errno: Int32) }

    init(port: Int, timeout: Double = 5) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = UInt16(port).bigEndian
        sa.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard r == 0 else { throw RawClientError.connect(errno: errno) }
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) { _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }

    /// True while the server has not closed its side (nothing to read, no EOF).
    var isOpen: Bool {
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
    }

    /// Reads until the peer closes or the receive timeout passes; true when it closed.
    func waitForClose() -> Bool {
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { continue }
            return n == 0 || errno == ECONNRESET
        }
    }
}

/// Waits (bounded, 5 s) until `condition` holds; for state the server reaches
/// asynchronously. Not a timing assertion: the answer is only whether it got there.
func eventually(_ condition: () -> Bool) -> Bool {
    for _ in 0..<2500 {
        if condition() { return true }
        usleep(2000)
    }
    return condition()
}

/// A complete first TLS record (100 bytes) that carries only the start of a
/// 508-byte ClientHello: OpenSSL takes it and waits for the rest, so the
/// connection holds TLS state in an unfinished handshake.
func fragmentedClientHello() -> [UInt8] {
    [0x16, 0x03, 0x01, 0x00, 0x64, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03] + [UInt8](repeating: 0x2a, count: 94)
}

/// The first 11 bytes of a ClientHello that announces `length` bytes and then stops.
func partialClientHello(announcing length: Int = 0x1fc) -> [UInt8] {
    [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, UInt8(length >> 16), UInt8((length >> 8) & 0xff), UInt8(length & 0xff), 0x03, 0x03]
}
