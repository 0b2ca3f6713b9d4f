import Foundation
import Synchronization
import Testing
@testable import PXGuardCore
@testable import PXGuardKube
@testable import PXGuardPlatform
@testable import PXGuardServer
@testable import PXGuardService

/// The alerts and the dashboard of `deploy/components/monitoring` are written against
/// series the server really exports: every `pxguard_*` name they use appears in a scrape
/// of the real service (provisioning, self-managed certificates and managed
/// registrations on, against the in-test API). promtool tests the rules themselves
/// (scripts/check-monitoring.sh).
@Suite("Monitoring component against a real scrape", .serialized)
struct MonitoringRulesTests {
    static let component = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("deploy/components/monitoring").path

    /// Series another branch adds; listed here until that branch is merged, then this
    /// list must be emptied. (Empty: the audit's gauges are exported.)
    static let awaitingMerge: Set<String> = []

    static func names(in file: String) throws -> Set<String> {
        let text = try String(contentsOfFile: component + "/" + file, encoding: .utf8)
        let regex = try NSRegularExpression(pattern: "pxguard_[a-z_]+")
        let range = NSRange(text.startIndex..., in: text)
        return Set(regex.matches(in: text, range: range).compactMap { Range($0.range, in: text).map { String(text[$0]) } })
    }

    @Test("every pxguard series the PrometheusRule and the dashboard name is in the server's /metrics (plain-HTTP listener)")
    func namesAreExported() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        for ns in ["pxguard-system", "kube-system"] { api.addNamespace(ns) }
        let dir = NSTemporaryDirectory() + "pxguard-monitoring-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "server: {metricsListen: \"127.0.0.1:0\"}\n".write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        var options = ServeOptions()
        options.configPath = dir + "/config.yaml"
        options.certDir = dir + "/certs"
        options.devCerts = true
        options.listen = "127.0.0.1:0"
        options.kubeAPI = api.url
        options.kubeTokenFile = api.tokenFile
        options.kubeCA = api.caFile
        options.shutdownGrace = 1
        let service = try Service(options: options, logger: .none)
        service.start()
        defer { service.stop() }
        let port = try #require(service.metricsListener?.port)
        #expect(eventually { service.provisioner.upkeep?.certificates?.servingRotations.load(ordering: .relaxed) ?? 0 > 0 })
        // A probe over TLS, as the kubelet's (request counters appear once counted).
        let probe = HTTPClientConnection(try TLSClientConnection(address: SocketAddress(parsing: "127.0.0.1:\(service.server.port)"),
            context: TLSContext.client(caFile: dir + "/certs/ca.crt"), serverName: "127.0.0.1", timeout: 5))
        #expect(try probe.request("GET", "/healthz").status == 200)
        probe.close()
        var exported = Set<String>()
        for line in Self.scrape(port).split(separator: "\n") where line.hasPrefix("pxguard_") {
            let name = line.prefix { $0 != "{" && $0 != " " }
            exported.insert(String(name))
            for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) { exported.insert(String(name.dropLast(suffix.count))) }
        }
        let used = try Self.names(in: "prometheusrule.yaml").union(Self.names(in: "dashboard.json"))
        #expect(used.count > 15)
        let missing = used.subtracting(exported).subtracting(Self.awaitingMerge)
        #expect(missing.isEmpty, "named in the monitoring component but not exported: \(missing.sorted())")
    }

    static func scrape(_ port: Int) -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = UInt16(port).bigEndian
        sa.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard connected == 0 else { return "" }
        let request = Array("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }
}
