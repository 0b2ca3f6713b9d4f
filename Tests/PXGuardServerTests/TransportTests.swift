import Testing
@testable import PXGuardServer

@Suite("Transport over real TLS with a handler that knows nothing of Kubernetes")
struct TransportTests {
    @Test("a trivial handler is served over TLS: method, path and body reach it, keep-alive reuses the connection")
    func trivialHandler() throws {
        let server = try EchoServer()
        let client = try server.client()
        let first = try client.request("GET", "/hello?x=1")
        #expect(first.status == 200)
        #expect(first.bodyText == "get /hello 0")
        #expect(first.header("Content-Type") == "text/plain")
        let second = try client.request("POST", "/things", body: Array(repeating: 0x41, count: 1234))
        #expect(second.bodyText == "post /things 1234")
        #expect(server.server.statistics.acceptedConnections == 1)
    }

    @Test("a request split into 40 TLS records that arrive in one segment is answered")
    func splitRecords() throws {
        let server = try EchoServer()
        let client = try server.client()
        let body = [UInt8](repeating: UInt8(ascii: "x"), count: 4000)
        let request = Array("POST /validate HTTP/1.1\r\nHost: a\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
        let step = (request.count + 39) / 40
        let pieces = stride(from: 0, to: request.count, by: step).map { Array(request[$0..<min($0 + step, request.count)]) }
        #expect(pieces.count == 40)
        try client.connection.writeRecordsInOneSegment(pieces)
        let answers = readResponses(client, count: 1)
        #expect(answers.map(\.bodyText) == ["post /validate 4000"])
    }

    @Test("30 pipelined GETs, each its own TLS record, in one segment are all answered in order")
    func pipelinedRecords() throws {
        let server = try EchoServer()
        let client = try server.client()
        let pieces = (0..<30).map { Array("GET /r\($0) HTTP/1.1\r\nHost: a\r\n\r\n".utf8) }
        try client.connection.writeRecordsInOneSegment(pieces)
        let answers = readResponses(client, count: 30)
        #expect(answers.map(\.bodyText) == (0..<30).map { "get /r\($0) 0" })
    }
}
