import Foundation
import Synchronization
import Testing
@testable import PXGuardCore
@testable import PXGuardPlatform
@testable import PXGuardServer
@testable import PXGuardService

@Suite("Logs under load: never blocking a loop, bounded per rule, levels, quiet reloads", .serialized)
struct LoggingTests {
    @Test("a stalled stderr reader (a pipe nobody reads): /healthz and reviews are still answered, dropped lines counted in /metrics")
    func stalledReader() throws {
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        // Every denial logged (no rate limit), so the 64 KiB pipe fills after a few hundred.
        let server = try TestServer(config: "logFindingsPerSecond: 1000000\n",
                                    logger: Logger(queue: LogQueue(fd: fds[1], capacity: 256)))
        let clients = [try server.client(), try server.client()]
        for i in 0..<1_500 {
            let answer = try clients[i % 2].request("POST", "/validate", headers: jsonHeaders, body: fixtureBytes("pod-hostnetwork-e2"))
            #expect(answer.status == 200)
            if answer.status != 200 { break }
        }
        // A new connection, on whichever loop: both are still serving.
        for _ in 0..<4 { #expect(try server.client().request("GET", "/healthz").bodyText == "ok") }
        let metrics = try clients[0].request("GET", "/metrics").bodyText
        let dropped = metrics.split(separator: "\n").first { $0.hasPrefix("pxguard_log_lines_dropped_total ") }
        let count = try #require(dropped.flatMap { Int($0.split(separator: " ")[1]) })
        #expect(count > 500, "lines past the pipe and the queue are dropped, not waited for")
    }

    @Test("denials are logged at most logFindingsPerSecond per rule; the next line says how many were left out")
    func findingRate() throws {
        let server = try TestServer(config: "logFindingsPerSecond: 3\n")
        let client = try server.client()
        for _ in 0..<40 {
            _ = try client.request("POST", "/validate", headers: jsonHeaders, body: fixtureBytes("pod-hostnetwork-e2"))
        }
        let findings = server.logs.lines.withLock { $0.filter { $0.contains("admission finding") } }
        // 40 requests take well under the seconds it would need to log them all; a second
        // boundary crossed mid-run allows 3 more per second.
        #expect(findings.count >= 3 && findings.count < 40)
        let metrics = try client.request("GET", "/metrics").bodyText
        #expect(metrics.contains("pxguard_log_findings_suppressed_total \(40 - findings.count)\n"))
        #expect(metrics.contains("pxguard_admission_decisions_total{endpoint=\"validate\",rule=\"hostNetwork\",decision=\"deny\"} 40\n"),
                "every denial is still counted")
    }

    @Test("logLevel: warn hides info lines; --log-level overrides the config")
    func levels() throws {
        let quiet = try TestServer(config: "logLevel: warn\n")
        #expect(!quiet.logs.contains("listening"))
        let loud = try TestServer(config: "logLevel: warn\n") { $0.logLevel = .debug }
        #expect(loud.logs.contains("listening"))
        #expect(throws: (any Error).self) {
            _ = try TestServer(config: "logLevel: verbose\n")
        }
    }

    @Test("a reload that changes nothing writes no line and counts nothing; a real change does both")
    func quietReload() throws {
        let server = try TestServer(config: "mode: enforce\n")
        let path = server.dir + "/config.yaml"
        for _ in 0..<3 {
            server.service.reloadConfig()
            if server.service.fingerprint() != server.service.certFingerprint.withLock({ $0 }) { server.service.reloadCertificates() }
        }
        #expect(!server.logs.contains("configuration reloaded"))
        #expect(!server.logs.contains("certificates reloaded"))
        #expect(server.service.metrics.reloads.load(ordering: .relaxed) == 0)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        try text.replacingOccurrences(of: "mode: enforce", with: "mode: warn").write(toFile: path, atomically: true, encoding: .utf8)
        server.service.reloadConfig()
        #expect(server.logs.contains("configuration reloaded"))
        #expect(server.service.metrics.reloads.load(ordering: .relaxed) == 1)
    }
}
