import Foundation
import Synchronization
import Testing
@testable import PXGuardCore
@testable import PXGuardPlatform
@testable import PXGuardServer
@testable import PXGuardService

@Suite("HTTPS server, integration", .serialized)
struct ServerIntegrationTests {
    @Test("a valid review gets the decision, the request's uid and apiVersion, over TLS 1.2+ with ALPN http/1.1")
    func validReview() throws {
        let server = try TestServer()
        let tls = try server.tls()
        #expect(tls.negotiatedProtocol == "http/1.1")
        #expect(["TLSv1.2", "TLSv1.3"].contains(tls.tlsVersion))
        let client = HTTPClientConnection(tls)
        let response = try client.request("POST", "/validate?timeout=10s", headers: jsonHeaders, body: fixtureBytes("pod-hostnetwork-e2"))
        #expect(response.status == 200)
        let review = try JSON(parsing: response.body)
        #expect(review["apiVersion"] == "admission.k8s.io/v1")
        #expect(review["response"]?["uid"] == "5a3c1e9e-2b44-4f0e-9c1d-7d1f3b6a2e01")
        #expect(review["response"]?["allowed"] == false)
        let beta = try client.request("POST", "/validate", headers: jsonHeaders, body: fixtureBytes("pod-v1beta1-e10"))
        #expect(try JSON(parsing: beta.body)["apiVersion"] == "admission.k8s.io/v1beta1")
        let mutate = try client.request("POST", "/mutate/", headers: [("Content-Type", "application/json; charset=utf-8")],
                                        body: fixtureBytes("namespace-create-e8"))
        #expect(try JSON(parsing: mutate.body)["response"]?["patchType"] == "JSONPatch")
    }

    @Test("every error status has a JSON body with a one-line message, and the connection keeps serving")
    func errorStatuses() throws {
        let server = try TestServer()
        let client = try server.client()
        let cases: [(String, String, [(String, String)], [UInt8]?, Int)] = [
            ("GET", "/validate", [], nil, 405),
            ("POST", "/validate", [("Content-Type", "text/plain")], Array("{}".utf8), 415),
            ("POST", "/validate", [], Array("{}".utf8), 415),
            ("POST", "/validate", jsonHeaders, Array("{\"apiVersion\":".utf8), 400),
            ("POST", "/validate", jsonHeaders, Array(#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.utf8), 400),
            ("GET", "/nowhere", [], nil, 404),
            ("POST", "/healthz", [], nil, 405),
        ]
        for (method, path, headers, body, status) in cases {
            let response = try client.request(method, path, headers: headers, body: body)
            #expect(response.status == status, "\(method) \(path)")
            let error = try JSON(parsing: response.body)
            #expect(error["code"] == .int(status))
            #expect(error["message"]?.stringValue?.contains("\n") == false)
        }
        #expect(try client.request("GET", "/healthz").bodyText == "ok")
    }

    @Test("parser limits: 413 body, 431 headers, 414 request line, 505 version, 501 coding, 400 CL+TE; then close")
    func parserLimits() throws {
        let server = try TestServer()
        let raw: [(String, Int)] = [
            ("POST /validate HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: \(9 << 20)\r\n\r\n{", 413),
            ("POST /validate HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 20_000))\r\n\r\n", 431),
            ("GET /\(String(repeating: "a", count: 9000)) HTTP/1.1\r\nHost: x\r\n\r\n", 414),
            ("GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505),
            ("POST /validate HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nContent-Type: application/json\r\n\r\n", 501),
            ("POST /validate HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
            ("POST /validate HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
            ("POST /validate HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n", 400),
            ("GET /healthz HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
        ]
        for (bytes, status) in raw {
            let client = try server.client()
            try client.send(Array(bytes.utf8))
            let response = try client.readResponse()
            #expect(response.status == status, "\(bytes.prefix(60))")
            #expect(response.header("Connection") == "close")
        }
    }

    @Test("keep-alive reuses one connection; Connection: close is honoured")
    func keepAlive() throws {
        let server = try TestServer()
        let client = try server.client()
        for _ in 0..<5 {
            let r = try client.request("POST", "/validate", headers: jsonHeaders, body: fixtureBytes("pod-create-e1"))
            #expect(r.status == 200)
            #expect(r.header("Connection") == nil)
        }
        #expect(server.service.server.statistics.acceptedConnections == 1)
        let last = try client.request("GET", "/healthz", headers: [("Connection", "close")])
        #expect(last.header("Connection") == "close")
        #expect(throws: (any Error).self) { _ = try client.request("GET", "/healthz") }
    }

    @Test("pipelined requests are answered in order")
    func pipelining() throws {
        let server = try TestServer()
        let client = try server.client()
        let body = try fixtureBytes("pod-hostnetwork-e2")
        var bytes: [UInt8] = []
        for path in ["/validate", "/healthz", "/validate"] {
            if path == "/healthz" {
                bytes += Array("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
            } else {
                bytes += Array("POST \(path) HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
            }
        }
        try client.send(bytes)
        let first = try client.readResponse()
        let second = try client.readResponse()
        let third = try client.readResponse()
        #expect(first.status == 200 && third.status == 200)
        #expect(second.bodyText == "ok")
        #expect(try JSON(parsing: third.body)["response"]?["allowed"] == false)
    }

    @Test("a chunked request body is decoded")
    func chunked() throws {
        let server = try TestServer()
        let client = try server.client()
        let body = try fixtureBytes("pod-hostnetwork-e2")
        var bytes = Array("POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
        var offset = 0
        while offset < body.count {
            let n = min(700, body.count - offset)
            bytes += Array("\(String(n, radix: 16));ext=1\r\n".utf8) + body[offset..<offset + n] + Array("\r\n".utf8)
            offset += n
        }
        bytes += Array("0\r\nX-Trailer: t\r\n\r\n".utf8)
        try client.send(bytes)
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(try JSON(parsing: response.body)["response"]?["allowed"] == false)
    }

    @Test("plaintext HTTP and random bytes on the TLS port fail the handshake; the server keeps serving")
    func noise() throws {
        let server = try TestServer()
        let plain = try RawSocket(port: server.port)
        plain.send(Array("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(plain.readUntilClosed().closed)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<5 {
            let noise = try RawSocket(port: server.port)
            noise.send((0..<2048).map { _ in UInt8.random(in: 0...255, using: &generator) })
            #expect(noise.readUntilClosed().closed)
        }
        // Noise that happens to look like the start of a record (an SSLv2-style header,
        // say) waits for the rest and is cut by the handshake timeout instead.
        let statistics = server.service.server.statistics
        #expect(statistics.handshakeFailures + statistics.timeouts >= 6)
        #expect(try server.client().request("GET", "/healthz").bodyText == "ok")
    }

    @Test("a peer that stalls mid-handshake is cut after the handshake timeout")
    func stallHandshake() throws {
        let server = try TestServer()
        let socket = try RawSocket(port: server.port, timeout: 10)
        socket.send([0x16, 0x03, 0x01, 0x02, 0x00])  // the start of a ClientHello, then silence
        let seconds = elapsed { #expect(socket.readUntilClosed().closed) }
        #expect(seconds >= 0.8 && seconds < 4, "cut after \(seconds)s")
        #expect(try server.client().request("GET", "/healthz").status == 200)
    }

    @Test("a peer that trickles headers is cut after the header timeout, not kept alive by each byte")
    func trickleHeaders() throws {
        let server = try TestServer()
        let client = try server.client()
        try client.send(Array("POST /validate HTTP/1.1\r\n".utf8))
        let start = Date()
        var cut = false
        while Date().timeIntervalSince(start) < 6 {
            do {
                try client.send(Array("X".utf8))
            } catch {
                cut = true
                break
            }
            usleep(200_000)
        }
        #expect(cut)
        #expect(Date().timeIntervalSince(start) < 4)
        #expect(server.service.server.statistics.timeouts >= 1)
    }

    @Test("certificate swap: new connections see the new certificate, existing ones finish")
    func certificateSwap() throws {
        let server = try TestServer()
        let existing = try server.client()
        let oldCA = server.dir + "/old-ca.crt"
        try FileManager.default.copyItem(atPath: server.caFile, toPath: oldCA)
        // A new CA and serving pair, each file replaced atomically (rename), key first.
        try FileManager.default.removeItem(atPath: server.dir + "/certs/ca.key")
        try FileManager.default.removeItem(atPath: server.dir + "/certs/ca.crt")
        try CertificateFactory.write(to: server.dir + "/certs", service: "pxguard", namespace: "pxguard-system")
        let deadline = Date().addingTimeInterval(5)
        var swapped = false
        while Date() < deadline && !swapped {
            usleep(100_000)
            swapped = (try? server.tls(ca: server.caFile)) != nil
        }
        #expect(swapped)
        #expect(throws: (any Error).self) { _ = try server.tls(ca: oldCA) }
        #expect(try existing.request("GET", "/healthz").bodyText == "ok")
        #expect(server.logs.eventuallyContains("certificates reloaded"))
    }

    @Test("/readyz reports ready, /metrics exposes decisions, latency, handshakes and connections")
    func probesAndMetrics() throws {
        let server = try TestServer()
        let client = try server.client()
        #expect(try client.request("GET", "/readyz").bodyText == "ok")
        _ = try client.request("POST", "/validate", headers: jsonHeaders, body: fixtureBytes("pod-hostnetwork-e2"))
        let text = try client.request("GET", "/metrics").bodyText
        #expect(text.contains(#"pxguard_admission_decisions_total{endpoint="validate",rule="hostNetwork",decision="deny"} 1"#))
        #expect(text.contains("pxguard_admission_duration_seconds_count 1"))
        #expect(text.contains("pxguard_tls_handshake_failures_total"))
        #expect(text.contains("pxguard_open_connections 1"))
        #expect(text.contains("pxguard_certificate_expiry_timestamp_seconds"))
    }
}

@Suite("Process: signals and command line", .serialized)
struct ProcessTests {
    func startServer(dir: String, extra: [String] = []) throws -> (Process, Int) {
        let (process, first) = try launch(try pxguardBinary(),
                                          ["serve", "--dev-certs", "--listen", "127.0.0.1:0", "--cert-dir", dir + "/certs", "--shutdown-delay", "0", "--shutdown-grace", "5"] + extra)
        #expect(first["msg"] == "listening")
        return (process, try #require(first["port"]?.intValue))
    }

    @Test("SIGTERM: in-flight requests are answered with Connection: close, idle ones closed, exit 0")
    func sigterm() throws {
        let dir = try temporaryDirectory()
        let (process, port) = try startServer(dir: dir)
        let context = try TLSContext.client(caFile: dir + "/certs/ca.crt")
        let address = try SocketAddress(parsing: "127.0.0.1:\(port)")
        let body = try fixtureBytes("pod-hostnetwork-e2")
        let head = Array("POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n".utf8)
        var inFlight: [HTTPClientConnection] = []
        for _ in 0..<4 {
            let c = HTTPClientConnection(try TLSClientConnection(address: address, context: context, serverName: "127.0.0.1", timeout: 5))
            try c.send(head + body[0..<1000])
            inFlight.append(c)
        }
        let idle = HTTPClientConnection(try TLSClientConnection(address: address, context: context, serverName: "127.0.0.1", timeout: 5))
        #expect(try idle.request("GET", "/healthz").status == 200)
        // The four partial requests are read (each holds an 8 KiB input buffer, and the
        // /metrics request its own) before the signal; otherwise they would count as idle.
        let read = (0..<500).contains { _ in
            let text = (try? idle.request("GET", "/metrics").bodyText) ?? ""
            let line = text.split(separator: "\n").first { $0.hasPrefix("pxguard_request_buffer_bytes ") }
            if let value = line.flatMap({ Int($0.split(separator: " ")[1]) }), value >= 5 * 8192 { return true }
            usleep(20_000)
            return false
        }
        #expect(read)
        process.interrupt()  // SIGINT behaves like SIGTERM; send the real one too.
        kill(process.processIdentifier, SIGTERM)
        // The idle connection is closed by the server once the signal is handled: wait for its
        // end of stream without sending anything (a request would be answered with
        // Connection: close and prove nothing). Bounded, not a sleep.
        var waiting = pollfd(fd: idle.connection.fd, events: Int16(POLLIN), revents: 0)
        var scratch = [UInt8](repeating: 0, count: 4096)
        var closed = false
        let deadline = Date().addingTimeInterval(10)
        while !closed && Date() < deadline {
            guard poll(&waiting, 1, 100) > 0 else { continue }
            // Raw bytes under TLS: a close_notify, then the end of the stream (or a reset).
            let n = recv(idle.connection.fd, &scratch, scratch.count, 0)
            closed = n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)
        }
        #expect(closed, "the idle keep-alive connection was not closed on SIGTERM")
        for c in inFlight {
            try c.send(Array(body[1000...]))
            let response = try c.readResponse()
            #expect(response.status == 200)
            #expect(response.header("Connection") == "close")
        }
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
    }

    @Test("SIGHUP reloads the configuration; a broken file is refused and the previous configuration stays")
    func sighup() throws {
        let dir = try temporaryDirectory()
        let config = dir + "/config.yaml"
        try "mode: enforce\nprovisioning: {enabled: false}\n".write(toFile: config, atomically: true, encoding: .utf8)
        let (process, port) = try startServer(dir: dir, extra: ["--config", config])
        defer { process.terminate(); process.waitUntilExit() }
        let context = try TLSContext.client(caFile: dir + "/certs/ca.crt")
        let client = HTTPClientConnection(try TLSClientConnection(address: SocketAddress(parsing: "127.0.0.1:\(port)"),
                                                                  context: context, serverName: "127.0.0.1", timeout: 5))
        func decision() throws -> JSON {
            let answer = try client.request("POST", "/validate", headers: jsonHeaders, body: fixtureBytes("pod-hostnetwork-e2"))
            return try #require(try JSON(parsing: answer.body)["response"])
        }
        #expect(try decision()["allowed"] == false)

        try "mode: warn\nprovisioning: {enabled: false}\n".write(toFile: config, atomically: true, encoding: .utf8)
        kill(process.processIdentifier, SIGHUP)
        var reloaded = false
        for _ in 0..<50 where !reloaded {
            usleep(50_000)
            reloaded = try decision()["allowed"] == true
        }
        #expect(reloaded)
        #expect(try decision()["warnings"]?.arrayValue?.isEmpty == false)

        try "mode: sometimes\n".write(toFile: config, atomically: true, encoding: .utf8)
        kill(process.processIdentifier, SIGHUP)
        var refused = false
        for _ in 0..<50 where !refused {
            usleep(50_000)
            refused = try client.request("GET", "/metrics").bodyText.contains("\npxguard_reload_failures_total 1\n")
        }
        #expect(refused)
        #expect(try decision()["allowed"] == true, "the previous (warn) configuration stays in force")
        #expect(try client.request("GET", "/readyz").status == 200)
    }

    @Test("SIGTERM is acted on while a SIGHUP reload is stuck reading the configuration (a FIFO nobody writes)")
    func sigtermDuringReload() throws {
        let dir = try temporaryDirectory()
        let config = dir + "/config.yaml"
        try "mode: enforce\nprovisioning: {enabled: false}\n".write(toFile: config, atomically: true, encoding: .utf8)
        let (process, port) = try startServer(dir: dir, extra: ["--config", config])
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
        unlink(config)
        #expect(mkfifo(config, 0o600) == 0)
        kill(process.processIdentifier, SIGHUP)
        usleep(300_000)  // the reload is now blocked in open(2) on the FIFO
        let context = try TLSContext.client(caFile: dir + "/certs/ca.crt")
        let client = HTTPClientConnection(try TLSClientConnection(address: SocketAddress(parsing: "127.0.0.1:\(port)"),
                                                                  context: context, serverName: "127.0.0.1", timeout: 5))
        #expect(try client.request("GET", "/healthz").status == 200, "serving goes on during the reload")
        kill(process.processIdentifier, SIGTERM)
        // Bounded wait: a server whose signal thread is stuck in the reload never exits.
        for _ in 0..<100 where process.isRunning { usleep(100_000) }
        #expect(!process.isRunning, "still running 10 s after SIGTERM")
        if !process.isRunning { #expect(process.terminationStatus == 0) }
    }

    @Test("a config file that changes (a mounted ConfigMap swaps its ..data symlink) is reloaded without a signal")
    func configFileSwap() throws {
        let dir = try temporaryDirectory()
        for (version, mode) in [("..v1", "enforce"), ("..v2", "warn")] {
            try FileManager.default.createDirectory(atPath: dir + "/" + version, withIntermediateDirectories: true)
            try "mode: \(mode)\nprovisioning: {enabled: false}\n".write(toFile: dir + "/\(version)/config.yaml", atomically: true, encoding: .utf8)
        }
        #expect(symlink("..v1", dir + "/..data") == 0)
        #expect(symlink("..data/config.yaml", dir + "/config.yaml") == 0)
        let server = try TestServer { $0.configPath = dir + "/config.yaml" }
        let client = try server.client()
        func decision() throws -> JSON {
            let answer = try client.request("POST", "/validate", headers: jsonHeaders, body: fixtureBytes("pod-hostnetwork-e2"))
            return try #require(try JSON(parsing: answer.body)["response"])
        }
        #expect(try decision()["allowed"] == false)
        #expect(symlink("..v2", dir + "/..data_tmp") == 0)
        #expect(rename(dir + "/..data_tmp", dir + "/..data") == 0)
        var reloaded = false
        for _ in 0..<100 where !reloaded {
            usleep(50_000)
            reloaded = try decision()["allowed"] == true
        }
        #expect(reloaded)
        #expect(server.logs.eventuallyContains("configuration reloaded"))
    }

    @Test("an affinity mask of one CPU gives one event loop (the same path a cgroup quota takes)",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/taskset")))
    func affinity() throws {
        let dir = try temporaryDirectory()
        let (process, first) = try launch("/usr/bin/taskset", ["-c", "0", try pxguardBinary(), "serve", "--dev-certs", "--shutdown-delay", "0",
                                                               "--listen", "127.0.0.1:0", "--cert-dir", dir + "/certs"])
        defer { process.terminate(); process.waitUntilExit() }
        #expect(first["workers"]?.intValue == 1)
    }

    @Test("bad flags and bad config exit 2 with a one-line message")
    func badInput() throws {
        let dir = try temporaryDirectory()
        try "nodeCIDRs: [\"70.0.0/16\"]\n".write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        for args in [["serve", "--bogus"], ["serve", "--config", dir + "/bad.yaml"], ["render", "nothing"],
                     ["render", "--nodes", "1.2.3", "iptables"], ["check", "-f", dir + "/missing.yaml"], ["frobnicate"], [],
                     ["check"], ["certs", "--days", "soon"], ["review", "--mutate=yes"], ["serve", "--shutdown-grace", "-1"]] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try pxguardBinary())
            process.arguments = args
            let stderr = Pipe()
            process.standardError = stderr
            process.standardOutput = Pipe()
            try process.run()
            process.waitUntilExit()
            let text = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(process.terminationStatus == 2, "\(args)")
            #expect(text.split(separator: "\n").count == 1, "\(args): \(text)")
        }
    }
}

@Suite("Client certificates (--client-ca)", .serialized)
struct ClientCertificateTests {
    func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl"] + arguments
        process.standardOutput = Pipe()
        process.standardError = Pipe()
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "openssl \(arguments)")
    }

    @Test("--client-ca: no client certificate, or one from another CA, is refused; the API server's is served")
    func clientCA() throws {
        let dir = try temporaryDirectory()
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        try openssl(["req", "-x509"] + ec + ["-keyout", dir + "/client-ca.key", "-out", dir + "/client-ca.crt",
                                            "-days", "2", "-subj", "/CN=apiserver-client-ca"])
        try openssl(["req"] + ec + ["-keyout", dir + "/client.key", "-out", dir + "/client.csr", "-subj", "/CN=kube-apiserver"])
        try "extendedKeyUsage=clientAuth\n".write(toFile: dir + "/ext.cnf", atomically: true, encoding: .utf8)
        try openssl(["x509", "-req", "-in", dir + "/client.csr", "-CA", dir + "/client-ca.crt", "-CAkey", dir + "/client-ca.key",
                     "-CAcreateserial", "-out", dir + "/client.crt", "-days", "2", "-extfile", dir + "/ext.cnf"])
        let server = try TestServer { $0.clientCA = dir + "/client-ca.crt" }
        let address = try SocketAddress(parsing: "127.0.0.1:\(server.port)")
        func connect(certificate: String?, key: String?) throws -> HTTPClientConnection {
            let context = try TLSContext.client(caFile: server.caFile, certificateFile: certificate, keyFile: key)
            return HTTPClientConnection(try TLSClientConnection(address: address, context: context, serverName: "127.0.0.1", timeout: 5))
        }
        #expect(throws: (any Error).self) { try connect(certificate: nil, key: nil).request("GET", "/healthz") }
        // The server's own serving pair: a real certificate, but not from the client CA.
        #expect(throws: (any Error).self) {
            try connect(certificate: server.dir + "/certs/tls.crt", key: server.dir + "/certs/tls.key").request("GET", "/healthz")
        }
        #expect(try connect(certificate: dir + "/client.crt", key: dir + "/client.key").request("GET", "/healthz").bodyText == "ok")
        // Both refusals happened in the TLS handshake, before any HTTP.
        let metrics = try connect(certificate: dir + "/client.crt", key: dir + "/client.key").request("GET", "/metrics").bodyText
        #expect(metrics.contains("\npxguard_tls_handshake_failures_total 2\n"))
    }
}

@Suite("Degradation and connection recycling", .serialized)
struct DegradationTests {
    @Test("a serving certificate that is expired or not yet valid (by OpenSSL's date check) makes the server not ready",
          arguments: [(-1, -300, "has expired"), (365, 3600, "not valid yet")])
    func invalidCertificateNotReady(_ days: Int, _ validFrom: Int, _ reason: String) throws {
        let certs = try temporaryDirectory()
        try CertificateFactory.write(to: certs, service: "pxguard", namespace: "pxguard-system", days: days, validFrom: validFrom)
        let server = try TestServer { $0.certDir = certs }
        // Handshakes with such a certificate fail verification, so ask the service itself.
        #expect(server.service.readiness.notReadyReason?.contains(reason) == true, "\(server.service.readiness.notReadyReason ?? "ready")")
    }

    @Test("a certificate reload never installs an expired or not-yet-valid pair: the previous one keeps serving, the refusal is logged and counted",
          arguments: [(-1, -300, "has expired"), (365, 3600, "is not valid yet")])
    func reloadRefusesInvalidPair(_ days: Int, _ validFrom: Int, _ reason: String) throws {
        let server = try TestServer()
        #expect(try server.client().request("GET", "/readyz").status == 200)
        // Same CA, new serving pair outside its validity period.
        try CertificateFactory.write(to: server.dir + "/certs", service: "pxguard", namespace: "pxguard-system",
                                     days: days, validFrom: validFrom)
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline && !server.logs.contains("certificate reload refused") { usleep(50_000) }
        #expect(server.logs.contains("certificate reload refused: the new certificate \(reason); keeping the previous pair"))
        usleep(500_000)  // more polls: still refused, logged and counted once
        let client = try server.client()  // a new handshake verifies the pair in use
        #expect(try client.request("GET", "/readyz").status == 200)
        let metrics = try client.request("GET", "/metrics").bodyText
        #expect(metrics.contains("\npxguard_reload_failures_total 1\n"))
        #expect(!server.logs.contains("certificates reloaded"))
    }

    @Test("a serving certificate with under 30 days left is a warning in the log and its expiry a metric; still ready")
    func expiringCertificate() throws {
        let certs = try temporaryDirectory()
        let written = try CertificateFactory.write(to: certs, service: "pxguard", namespace: "pxguard-system", days: 10)
        let server = try TestServer { $0.certDir = certs }
        #expect(server.logs.contains("serving certificate expires within 30 days"))
        let client = try server.client(ca: certs + "/ca.crt")
        #expect(try client.request("GET", "/readyz").status == 200)
        let metrics = try client.request("GET", "/metrics").bodyText
        #expect(metrics.contains("pxguard_certificate_expiry_timestamp_seconds \(try #require(written.notAfter))"))
    }

    @Test("an unreachable Kubernetes API: admission answers, /readyz stays ready, the metric says why")
    func unreachableAPI() throws {
        let server = try TestServer(config: "provisioning: {enabled: true, resyncSeconds: 5}\n") { options in
            options.kubeAPI = "https://127.0.0.1:1"
        }
        let client = try server.client()
        let review = try client.request("POST", "/validate", headers: jsonHeaders, body: fixtureBytes("pod-hostnetwork-e2"))
        #expect(review.status == 200)
        #expect(try client.request("GET", "/readyz").status == 200)
        let deadline = Date().addingTimeInterval(5)
        var reported = false
        while Date() < deadline && !reported {
            reported = try client.request("GET", "/metrics").bodyText.contains("\npxguard_provisioner_api_reachable 0\n")
            if !reported { usleep(100_000) }
        }
        #expect(reported)
        #expect(server.logs.eventuallyContains("Kubernetes API unreachable"))
    }

    @Test("server.maxRequestsPerConnection closes a connection after N answers so clients re-dial")
    func maxRequests() throws {
        let server = try TestServer(server: ["maxRequestsPerConnection": "3"])
        let client = try server.client()
        #expect(try client.request("GET", "/healthz").header("Connection") == nil)
        #expect(try client.request("GET", "/healthz").header("Connection") == nil)
        #expect(try client.request("GET", "/healthz").header("Connection") == "close")
        #expect(try server.client().request("GET", "/healthz").status == 200)
    }
}

@Suite("Descriptor exhaustion", .serialized)
struct DescriptorExhaustionTests {
    /// CPU seconds the process has used (utime + stime from /proc), read only once its
    /// command line shows it is pxguard (the shell that launched it `exec`s the binary).
    func cpuSeconds(_ pid: Int32) throws -> Double {
        let argv0 = try String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8).split(separator: "\0").first ?? ""
        try #require(argv0.hasSuffix("/pxguard"), "pid \(pid) runs \(argv0), not pxguard")
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        let fields = stat.split(separator: ")").last!.split(separator: " ")
        return (Double(fields[11])! + Double(fields[12])!) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    @Test("out of descriptors: accept pauses instead of spinning, and serving resumes when they free up")
    func emfile() throws {
        let dir = try temporaryDirectory()
        let (process, first) = try launch("/bin/sh", ["-c", "ulimit -n 48; exec \(try pxguardBinary()) serve --dev-certs --shutdown-delay 0 --listen 127.0.0.1:0 --cert-dir \(dir)/certs"])
        defer { process.terminate(); process.waitUntilExit() }
        let port = try #require(first["port"]?.intValue)
        var sockets: [RawSocket] = []
        for _ in 0..<80 { sockets.append(try RawSocket(port: port)) }
        usleep(300_000)
        let before = try cpuSeconds(process.processIdentifier)
        usleep(1_000_000)
        let used = try cpuSeconds(process.processIdentifier) - before
        #expect(used < 0.5, "the loop spun: \(used) s of CPU in 1 s")
        sockets.removeAll()
        usleep(500_000)
        let context = try TLSContext.client(caFile: dir + "/certs/ca.crt")
        let client = HTTPClientConnection(try TLSClientConnection(address: SocketAddress(parsing: "127.0.0.1:\(port)"),
                                                                  context: context, serverName: "127.0.0.1", timeout: 15))
        #expect(try client.request("GET", "/healthz").bodyText == "ok")
    }
}

@Suite("Request buffer budget", .serialized)
struct BufferBudgetTests {
    @Test("large bodies beyond the per-loop buffer budget get 503 with Retry-After; the others finish")
    func budget() throws {
        // One loop, 1,400,000 bytes of request buffers. Each upload's buffer is sized to its
        // request (700,088 bytes) once the head is in; the second does not fit beside the first.
        let server = try TestServer(server: ["workers": "1", "maxBufferedBytesPerWorker": "1400000", "maxBodyBytes": "700000",
                                             "headerTimeoutSeconds": "10", "bodyTimeoutSeconds": "10"])
        let head = Array("POST /validate HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 700000\r\n\r\n".utf8)
        let first = try server.client()
        try first.send(head + [UInt8](repeating: 0x20, count: 600_000))
        usleep(200_000)
        let second = try server.client()
        try second.send(head + [UInt8](repeating: 0x20, count: 600_000))
        let refused = try second.readResponse()
        #expect(refused.status == 503)
        #expect(refused.header("Retry-After") == "1")
        #expect(refused.header("Connection") == "close")
        // The first upload completes normally (a body of spaces is not a review: 400).
        try first.send([UInt8](repeating: 0x20, count: 100_000))
        #expect(try first.readResponse().status == 400)
        #expect(server.logs.contains("request buffers full"))
        // Memory went back: a third large upload fits again.
        let third = try server.client()
        try third.send(head + [UInt8](repeating: 0x20, count: 700_000))
        #expect(try third.readResponse().status == 400)
        // Once they are gone, the books balance: one open connection, one initial 8 KiB buffer.
        first.close()
        second.close()
        third.close()
        usleep(300_000)
        #expect(try server.client().request("GET", "/metrics").bodyText.contains("\npxguard_request_buffer_bytes 8192\n"))
    }
}

@Suite("Connection limits from the config file", .serialized)
struct ConnectionLimitTests {
    @Test("server.maxConnections reaches the transport: silent connections beyond it are shed oldest first, reviews still answered, and /metrics counts them")
    func connectionBudget() throws {
        let server = try TestServer(server: ["workers": "1", "maxConnections": "4"])
        // Four silent TCP connections (no ClientHello) fill the budget.
        let silent = try (0..<4).map { _ in try RawSocket(port: server.port, timeout: 3) }
        usleep(200_000)
        // A real client still gets in: the oldest silent one makes room.
        let client = try server.client()
        #expect(try client.request("GET", "/healthz").status == 200)
        #expect(silent[0].readUntilClosed().closed, "the oldest idle connection was shed")
        let metrics = try client.request("GET", "/metrics").bodyText
        let shed = metrics.split(separator: "\n").first { $0.hasPrefix("pxguard_connections_shed_total ") }
        #expect((shed.flatMap { Int($0.split(separator: " ")[1]) } ?? 0) >= 1)
        #expect(metrics.contains("\npxguard_tls_handshakes_in_progress "))
    }
}
