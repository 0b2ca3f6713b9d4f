import PXGuardBytes
#if canImport(Glibc)
import Glibc
#endif
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

@Suite("Transport under hostile load: bounded by construction")
struct HostileLoadTests {
    @Test("a ClientHello announcing more than the cap is refused at its header, before TLS state exists; serving goes on")
    func oversizedHello() throws {
        let server = try EchoServer()
        let attacker = try PlainSocket(port: server.port)
        // A 50-byte record whose handshake header announces a 128 KiB ClientHello.
        attacker.send(partialClientHello(announcing: 131_072) + [UInt8](repeating: 0, count: 40))
        #expect(attacker.waitForClose())
        #expect(server.server.statistics.handshakeFailures == 1)
        #expect(server.server.statistics.handshakesInProgress == 0)
        #expect(try server.client().request("GET", "/after").bodyText == "get /after 0")
    }

    @Test("a ClientHello that stops inside its first record holds no TLS state, and is cut at the handshake timeout")
    func partialHello() throws {
        let server = try EchoServer { $0.limits.handshakeTimeoutSeconds = 0.3 }
        let attacker = try PlainSocket(port: server.port)
        attacker.send(partialClientHello())
        #expect(eventually { server.server.statistics.openConnections == 1 })
        #expect(server.server.statistics.handshakesInProgress == 0)
        #expect(attacker.waitForClose())
        #expect(server.server.statistics.timeouts == 1)
    }

    @Test("a ClientHello whose first record is complete starts TLS; stalled there, it holds a handshake slot until its timeout")
    func stalledHandshake() throws {
        let server = try EchoServer { $0.limits.handshakeTimeoutSeconds = 0.3 }
        let attacker = try PlainSocket(port: server.port)
        attacker.send(fragmentedClientHello())
        #expect(eventually { server.server.statistics.handshakesInProgress == 1 })
        #expect(attacker.waitForClose())
        #expect(server.server.statistics.handshakesInProgress == 0)
        #expect(server.server.statistics.timeouts == 1)
    }

    @Test("a silent TCP connection holds no TLS state and no buffers")
    func silentConnection() throws {
        let server = try EchoServer()
        let silent = try PlainSocket(port: server.port)
        #expect(eventually { server.server.statistics.openConnections == 1 })
        #expect(server.server.statistics.handshakesInProgress == 0)
        #expect(server.server.statistics.bufferedBytes == 0)
        #expect(silent.isOpen)
    }

    @Test("an idle keep-alive connection gives its buffers back")
    func idleBuffers() throws {
        let server = try EchoServer()
        let client = try server.client()
        _ = try client.request("POST", "/x", body: Array(repeating: 1, count: 3000))
        #expect(eventually { server.server.statistics.bufferedBytes == 0 })
        #expect(try client.request("GET", "/again").bodyText == "get /again 0")
    }

    @Test("a large Content-Length body is buffered in exactly its size, not a doubled buffer, and given back after")
    func exactBodyBuffer() throws {
        let server = try EchoServer()
        let client = try server.client()
        let body = [UInt8](repeating: UInt8(ascii: "z"), count: 1 << 20)
        let head = Array("POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: \(body.count)\r\n\r\n".utf8)
        try client.send(head + body.dropLast())
        #expect(eventually { server.server.statistics.bufferedBytes >= body.count })
        let held = server.server.statistics.bufferedBytes
        #expect(held == head.count + body.count, "held \(held) bytes for a \(body.count)-byte body")
        try client.send([UInt8(ascii: "z")])
        #expect(try client.readResponse().bodyText == "post /big 1048576")
        #expect(eventually { server.server.statistics.bufferedBytes == 0 })
    }

    @Test("unfinished handshakes beyond the cap evict the oldest; a real client still completes")
    func handshakeCap() throws {
        let server = try EchoServer { $0.limits.maxHandshakesPerWorker = 2 }
        let first = try PlainSocket(port: server.port)
        first.send(fragmentedClientHello())
        #expect(eventually { server.server.statistics.handshakesInProgress == 1 })
        let second = try PlainSocket(port: server.port)
        second.send(fragmentedClientHello())
        #expect(eventually { server.server.statistics.handshakesInProgress == 2 })
        let third = try PlainSocket(port: server.port)
        third.send(fragmentedClientHello())
        #expect(first.waitForClose())
        #expect(second.isOpen)
        #expect(server.server.statistics.shedConnections == 1)
        #expect(try server.client().request("GET", "/real").bodyText == "get /real 0")
        #expect(server.server.statistics.handshakesInProgress <= 2)
    }

    @Test("the connection budget is global: when spent, the oldest idle connection is shed for a new one")
    func connectionBudget() throws {
        let server = try EchoServer { $0.limits.maxConnections = 3 }
        let oldest = try PlainSocket(port: server.port)
        #expect(eventually { server.server.statistics.openConnections == 1 })
        let client = try server.client()
        _ = try client.request("GET", "/keep")
        let newer = try PlainSocket(port: server.port)
        #expect(eventually { server.server.statistics.openConnections == 3 })
        let late = try server.client()
        #expect(try late.request("GET", "/late").bodyText == "get /late 0")
        #expect(oldest.waitForClose())
        #expect(newer.isOpen)
        #expect(server.server.statistics.shedConnections == 1)
        // The keep-alive connection went idle after `oldest`: it is next, not yet gone.
        #expect(try client.request("GET", "/still").bodyText == "get /still 0")
    }

    @Test("when the budget is spent and nothing is idle, the new connection is refused, not an old one")
    func budgetBusy() throws {
        let server = try EchoServer { $0.limits.maxConnections = 1 }
        let busy = try server.tls()
        try busy.write(Array("POST /slow HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc".utf8))
        let client = HTTPClientConnection(busy)
        #expect(eventually { server.server.statistics.openConnections == 1 })
        #expect(throws: (any Error).self) { _ = try server.tls() }
        #expect(server.server.statistics.rejectedConnections == 1)
        try client.send(Array("defghij".utf8))
        #expect(try client.readResponse().bodyText == "post /slow 10")
    }

    /// A request head announcing a 4 KiB body, and one byte of it: the attack's request.
    static let slowRequest = Array("POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\nb".utf8)

    @Test("a request whose bytes fall below server.minRequestBytesPerSecond is cut long before the header and body timeouts")
    func minimumRate() throws {
        let server = try EchoServer {
            $0.limits.minRequestBytesPerSecond = 1024
            $0.progressGrace = 0.2
            $0.limits.headerTimeoutSeconds = 60
            $0.limits.bodyTimeoutSeconds = 60
        }
        let slow = try server.tls()
        try slow.write(Self.slowRequest)
        #expect(slow.waitForClose(), "cut at about 0.26 s, not after 120 s")
        #expect(server.server.statistics.timeouts == 1)
        let client = try server.client()
        #expect(try client.request("POST", "/fast", body: [UInt8](repeating: 0x61, count: 4096)).bodyText == "post /fast 4096")
    }

    @Test("per-peer share: one address at server.maxConnectionsPerPeer makes room among its own connections; another address is untouched")
    func perPeerShare() throws {
        let server = try EchoServer { $0.limits.maxConnectionsPerPeer = 3 }
        let other = HTTPClientConnection(try server.tls(from: "127.0.0.2"))
        _ = try other.request("GET", "/other")
        let sockets = try (0..<3).map { _ in try PlainSocket(port: server.port) }
        #expect(eventually { server.server.statistics.openConnections == 4 })
        let fourth = try PlainSocket(port: server.port)
        #expect(sockets[0].waitForClose(), "its own oldest idle connection made room")
        #expect(sockets[1].isOpen && sockets[2].isOpen && fourth.isOpen)
        #expect(server.server.statistics.shedConnections == 1)
        #expect(try other.request("GET", "/still").bodyText == "get /still 0")
    }

    @Test("budget full of one address's slow requests: a new client from another address and an idle keep-alive client are both served; the attacker's slowest is shed, and its own new connection refused")
    func fairShedding() throws {
        let server = try EchoServer {
            $0.limits.maxConnections = 4
            $0.limits.minRequestBytesPerSecond = 0  // only shedding makes room here
            $0.progressGrace = 0.2
        }
        let keepAlive = HTTPClientConnection(try server.tls(from: "127.0.0.3"))
        #expect(try keepAlive.request("GET", "/first").bodyText == "get /first 0")
        var attackers: [TLSClientConnection] = []
        for _ in 0..<3 {
            let a = try server.tls()
            try a.write(Self.slowRequest)
            attackers.append(a)
        }
        #expect(eventually { server.server.statistics.openConnections == 4 })
        usleep(300_000)  // past the grace: the attacker's requests now count as slow
        let newcomer = HTTPClientConnection(try server.tls(from: "127.0.0.2"))
        #expect(try newcomer.request("GET", "/new").bodyText == "get /new 0")
        #expect(attackers[0].waitForClose(), "the attacker's oldest slow request made room")
        #expect(server.server.statistics.shedConnections == 1)
        // The attacker, still the heaviest, dials again with the budget full: it may only
        // replace an idle connection of its own, and has none, so it is refused; nobody is shed.
        #expect(throws: (any Error).self) {
            let again = try server.tls()
            try again.write(Self.slowRequest)
            _ = try HTTPClientConnection(again).readResponse()
        }
        #expect(server.server.statistics.rejectedConnections == 1)
        #expect(server.server.statistics.openConnections == 4, "the attacker's two remaining, the newcomer and the keep-alive client")
        #expect(try keepAlive.request("GET", "/second").bodyText == "get /second 0")
        #expect(try newcomer.request("GET", "/again").bodyText == "get /again 0")
        #expect(server.server.statistics.shedConnections == 1)
    }
}
