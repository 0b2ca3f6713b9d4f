import Foundation
import Testing
import PXGuardPlatform
@testable import PXGuardCore
@testable import PXGuardKube
@testable import PXGuardPlatform
@testable import PXGuardServer

/// Figures for the README, measured against the in-test API over real HTTPS. They
/// print; nothing here is a timed assertion. Run with
/// `PXGUARD_PROVISION_BENCH=1 swift test -c release --filter ProvisionerBench`.
@Suite("ProvisionerBench", .serialized, .enabled(if: ProcessInfo.processInfo.environment["PXGUARD_PROVISION_BENCH"] != nil))
struct ProvisionerBench {
    static let scale = Int(ProcessInfo.processInfo.environment["PXGUARD_PROVISION_BENCH_N"] ?? "") ?? 10_000

    func percentile(_ sorted: [Double], _ p: Double) -> Double {
        sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
    }

    @Test("burst of 200 namespaces: namespace created → both policies created (p50/p99)")
    func burst() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        let h = try Harness(api, workers: 4)
        h.start()
        defer { h.stop() }
        #expect(eventually { h.view.isSynced })
        let names = (0..<200).map { "burst-\($0)" }
        for name in names { api.addNamespace(name) }
        #expect(eventually(60) { names.allSatisfy { canonical(api, $0) } })
        var latencies: [Double] = []
        for name in names {
            let start = try #require(api.createdAt("namespaces", "", name))
            let block = try #require(api.createdAt("networkpolicies", name, GuardNames.blockPolicy))
            let allow = try #require(api.createdAt("networkpolicies", name, GuardNames.allowAPIPolicy))
            latencies.append(max(block, allow) - start)
        }
        latencies.sort()
        print(String(format: "BENCH burst200: p50 %.3f s, p99 %.3f s, max %.3f s", percentile(latencies, 0.5),
                     percentile(latencies, 0.99), latencies.last!))
    }

    @Test("provision N namespaces from scratch; then a steady-state resync sends nothing")
    func fromScratch() throws {
        let n = Self.scale
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.state.withLock { $0.bookmarkInterval = 5 }
        for i in 0..<n { api.addNamespace("ns-\(i)") }
        let h = try Harness(api, workers: 4)
        let started = Date()
        h.start()
        defer { h.stop() }
        #expect(eventually(600) { api.state.withLock { $0.objects.count } >= 2 * n })
        #expect(eventually(60) { h.view.counts.unguarded == 0 })
        let elapsed = Date().timeIntervalSince(started)
        let log = api.requests
        var byVerb: [String: Int] = [:]
        for line in log { byVerb[String(line.split(separator: " ")[0]) + (line.contains("watch=1") ? " watch" : ""), default: 0] += 1 }
        print(String(format: "BENCH scratch%d: %.2f s, %d requests %@", n, elapsed, log.count,
                     byVerb.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")))
        usleep(500_000)
        api.clearLog()
        let t0 = Date()
        let queued = h.provisioner.resync()
        let walk = Date().timeIntervalSince(t0)
        usleep(1_000_000)
        let after = api.requests.filter { !$0.contains("watch=1") }
        print(String(format: "BENCH resync%d: %d namespaces queued, %d requests, walk %.1f ms", n, queued, after.count, walk * 1000))
        #expect(queued == 0 && after.isEmpty)
    }

    /// Resident set size from /proc (the allocator keeps freed pages, so deltas of
    /// a growing structure are what it holds, to within a page or two).
    func residentBytes() -> Int {
        let text = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? "0 0"
        return (Int(text.split(separator: " ")[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    @Test("memory per namespace and per guard policy held in the view")
    func memory() {
        let n = Self.scale
        let policies = GuardPolicies(config: .default)
        let namespaces = (0..<n).map { i -> JSON in
            .obj(["apiVersion": "v1", "kind": "Namespace",
                  "metadata": .obj(["name": .string("namespace-\(i)"), "resourceVersion": .string(String(100_000 + i)),
                                    "labels": .obj(["kubernetes.io/metadata.name": .string("namespace-\(i)"), GuardNames.guardedLabel: "true",
                                                    ClusterView.podSecurityLabel: "baseline"]),
                                    "annotations": .obj([GuardNames.policiesAnnotation: .string(GuardNames.policiesAnnotationValue)])]),
                  "status": .obj(["phase": "Active"])])
        }
        let objects = (0..<n).flatMap { i in
            GuardPolicies.names(in: "namespace-\(i)").map { policies.policy(name: $0, namespace: "namespace-\(i)")! }
        }
        let view = ClusterView(config: .default, logger: .none)
        let projected = namespaces.map { try! NamespaceProjection(json: $0) }
        let policyProjections = objects.map { try! PolicyProjection(json: $0) }
        let m0 = residentBytes()
        for ns in projected { _ = view.applyNamespace(ns, deleted: false) }
        let m1 = residentBytes()
        for p in policyProjections { _ = view.applyPolicy(p, deleted: false) }
        let m2 = residentBytes()
        print(String(format: "BENCH memory%d: %.0f bytes per namespace, %.0f bytes per canonical guard policy beyond that (%d inline in the entry)", n,
                     Double(m1 - m0) / Double(n), Double(m2 - m1) / Double(objects.count), MemoryLayout<ClusterView.Policy?>.stride))
        #expect(view.counts.namespaces == n && view.counts.policies == 2 * n)
    }
}
