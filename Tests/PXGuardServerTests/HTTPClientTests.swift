import PXGuardBytes
import Foundation
import Testing
@testable import PXGuardPlatform
@testable import PXGuardServer

/// Reads `bytes` as one peer's responses, delivered `slice` bytes at a time.
func readResponses(_ bytes: [UInt8], slice: Int = 7, limits: HTTPClientLimits = HTTPClientLimits(),
                   method: String = "GET") throws -> [HTTPClientResponse] {
    var offset = 0
    var reader = HTTPResponseReader(limits: limits) {
        guard offset < bytes.count else { return nil }
        defer { offset = min(bytes.count, offset + slice) }
        return Array(bytes[offset..<min(bytes.count, offset + slice)])
    }
    var responses: [HTTPClientResponse] = []
    while offset < bytes.count || reader.available > 0 {
        responses.append(try reader.readResponse(method: method))
    }
    return responses
}

@Suite("Kubernetes API client: responses are read with every length checked")
struct HTTPClientReaderTests {
    @Test("well-formed responses: Content-Length, chunked with extensions and trailers, 1xx skipped, pipelined")
    func wellFormed() throws {
        let text = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
            + "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n"
            + "HTTP/1.1 409 Conflict\r\nConnection: close\r\n\r\n{}"
        for slice in [1, 2, 7, 1000] {
            let responses = try readResponses(Array(text.utf8), slice: slice)
            #expect(responses.map(\.status) == [200, 201, 409])
            #expect(responses.map(\.bodyText) == ["hello", "abc0123456789", "{}"])
        }
    }

    @Test("malformed lengths are errors, not traps", arguments: [
        "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7fffffffffffffff\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffff\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 -20 OK\r\n\r\n",
        "\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    ])
    func malformed(_ text: String) {
        #expect(throws: HTTPClientError.self) { _ = try readResponses(Array(text.utf8)) }
    }

    @Test("endless header lines, trailers or a line without CRLF stop at the limits")
    func unbounded() {
        let headers = "HTTP/1.1 200 OK\r\n" + String(repeating: "X-A: b\r\n", count: 1000) + "\r\n"
        #expect(throws: HTTPClientError.self) { _ = try readResponses(Array(headers.utf8), slice: 4096) }
        let trailers = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + String(repeating: "T: x\r\n", count: 1000) + "\r\n"
        #expect(throws: HTTPClientError.self) { _ = try readResponses(Array(trailers.utf8), slice: 4096) }
        let longLine = "HTTP/1.1 200 OK\r\nX: " + String(repeating: "a", count: 100_000)
        #expect(throws: HTTPClientError.self) { _ = try readResponses(Array(longLine.utf8), slice: 4096) }
        var small = HTTPClientLimits()
        small.maxBodyBytes = 100
        let closeDelimited = "HTTP/1.1 200 OK\r\n\r\n" + String(repeating: "z", count: 1000)
        #expect(throws: HTTPClientError.self) { _ = try readResponses(Array(closeDelimited.utf8), limits: small) }
    }

    @Test("the fuzz hook reads the seed shapes without trapping")
    func fuzzHook() {
        let bytes = Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n".utf8)
        #expect(bytes.withUnsafeBytes { FuzzHooks.httpClientResponse($0) } == 1)
    }
}

/// A handler that knows nothing of Kubernetes: it frames each answer as the path
/// says, so the client meets malformed responses over real TLS from pxguard's server.
struct BrokenFramingHandler: HTTPHandler {
    func handle(_ request: HTTPRequest, _ response: inout HTTPResponse) {
        response.contentType = "text/plain"
        // The server's own Content-Length comes first; Transfer-Encoding wins over it.
        response.extraHeaders = "Transfer-Encoding: chunked\r\n"
        switch request.path {
        case "/empty-size": response.body = Array("\r\n\r\n".utf8)
        case "/negative": response.body = Array("-5\r\nhello\r\n0\r\n\r\n".utf8)
        case "/huge": response.body = Array("7fffffffffffffff\r\nabc".utf8)
        default: response.body = Array("2\r\nok\r\n0\r\n\r\n".utf8)
        }
    }
}

@Suite("Kubernetes API client over real TLS", .serialized)
struct HTTPClientTLSTests {
    @Test("an API server that sends an empty chunk-size line, a negative or a huge chunk: an error, and the process lives")
    func brokenServer() throws {
        let dir = NSTemporaryDirectory() + "pxguard-client-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try CertificateFactory.write(to: dir, service: "api", namespace: "test")
        var configuration = ServerConfiguration(address: try SocketAddress(parsing: "127.0.0.1:0"))
        configuration.limits.workers = 1
        let tls = TLSContextBox(try TLSContext.server(certificateFile: dir + "/tls.crt", keyFile: dir + "/tls.key"))
        let server = try HTTPServer(configuration: configuration, tls: tls, handler: BrokenFramingHandler(), logger: .none)
        server.start()
        defer {
            server.shutdown(grace: 1)
            server.wait()
        }
        let context = try TLSContext.client(caFile: dir + "/ca.crt")
        func client() throws -> HTTPClientConnection {
            HTTPClientConnection(try TLSClientConnection(address: SocketAddress(parsing: "127.0.0.1:\(server.port)"),
                                                         context: context, serverName: "127.0.0.1", timeout: 5))
        }
        #expect(try client().request("GET", "/fine").bodyText == "ok")
        for path in ["/empty-size", "/negative", "/huge"] {
            #expect(throws: HTTPClientError.self, "\(path)") { _ = try client().request("GET", path) }
        }
    }
}
