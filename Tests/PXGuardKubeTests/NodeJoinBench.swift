import Foundation
import Testing
@testable import PXGuardCore
@testable import PXGuardKube
@testable import PXGuardPlatform
@testable import PXGuardServer
@testable import PXGuardService

/// A node joining a cluster of N guarded namespaces under `nodeCIDRs: auto`, through
/// the real service against the in-test API. Prints figures; asserts only outcomes.
/// `PXGUARD_PROVISION_BENCH=1 [PXGUARD_PROVISION_BENCH_N=10000] [PXGUARD_BENCH_RATE=1000]
///  swift test -c release --filter NodeJoinBench`
@Suite("NodeJoinBench", .serialized, .enabled(if: ProcessInfo.processInfo.environment["PXGUARD_PROVISION_BENCH"] != nil))
struct NodeJoinBench {
    @Test("node join with N namespaces: same block (nothing written), new block (rules at once, paced rewrite, R6 never denies)")
    func nodeJoin() throws {
        let n = Int(ProcessInfo.processInfo.environment["PXGUARD_PROVISION_BENCH_N"] ?? "") ?? 10_000
        let rate = Int(ProcessInfo.processInfo.environment["PXGUARD_BENCH_RATE"] ?? "") ?? 1000
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.state.withLock { $0.bookmarkInterval = 5 }
        let before = Config.install.withNodeBlocks([CIDR("10.1.0.0/24")!])
        let policies = GuardPolicies(config: before)
        for ns in ["pxguard-system", "kube-system"] { api.addNamespace(ns) }
        api.put("networkpolicies", "kube-system", GuardNames.blockPolicy, policies.policy(name: GuardNames.blockPolicy, namespace: "kube-system"))
        for i in 0..<n {
            let name = "ns-\(i)"
            api.addNamespace(name, labels: .obj([GuardNames.guardedLabel: "true", ClusterView.podSecurityLabel: "baseline"]))
            api.state.withLock { s in
                s.namespaces[name] = s.namespaces[name]!.setting("metadata", s.namespaces[name]!["metadata"]!.setting("annotations",
                    .obj([GuardNames.policiesAnnotation: .string(GuardNames.policiesAnnotationValue)])))
            }
            for policy in policies.names(for: name) { api.put("networkpolicies", name, policy, policies.policy(name: policy, namespace: name)) }
        }
        api.addNode("n1", addresses: ["10.1.0.5"])
        let dir = NSTemporaryDirectory() + "pxguard-nodejoin-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = try NodeAutoTests().start(api, config: "nodeCIDRs: [auto]\nprovisioning: {writesPerSecond: \(rate)}\n", dir)
        defer { run.service.stop() }
        let t0 = Date()
        #expect(eventually(300) { run.service.provisioner.provisioner?.view.isSynced == true
            && run.service.provisioner.provisioner?.view.counts.unguarded == 0 && run.service.provisioner.nodes?.current != nil })
        print(String(format: "BENCH nodejoin%d: start over a guarded cluster in sync after %.2f s", n, Date().timeIntervalSince(t0)))
        usleep(1_000_000)

        // Same block: nothing to write.
        api.clearLog()
        api.addNode("n2", addresses: ["10.1.0.77"])
        usleep(3_000_000)
        let sameBlockWrites = api.requests.filter { !$0.hasPrefix("GET") && !$0.contains("/leases/") && !$0.contains("/events") }
        print("BENCH nodejoin\(n): node in a known block -> \(sameBlockWrites.count) writes in 3 s")
        #expect(sameBlockWrites.isEmpty)

        // New block: rules judge with it at once; policies rewritten at the paced rate.
        api.clearLog()
        let after = Config.install.withNodeBlocks([CIDR("10.1.0.0/24")!, CIDR("10.2.0.0/24")!])
        let t1 = Date()
        api.addNode("n3", addresses: ["10.2.0.4"])
        #expect(eventually(30) { (try? run.validate(NodeAutoTests.policyCreate("ns-1", cidr: "10.2.0.9/32")).allowed) == false })
        let rulesAt = Date().timeIntervalSince(t1)
        var podChecks = 0, podDenied = 0
        let total = 2 * n + 1
        let view = try #require(run.service.provisioner.provisioner?.view)
        while (api.requests.filter { $0.hasPrefix("PATCH /apis/networking.k8s.io") }.count < total) && Date().timeIntervalSince(t1) < 3600 {
            let ns = "ns-\(Int.random(in: 0..<n))"
            let answer = try run.client.request("POST", "/validate", headers: [("Content-Type", "application/json")],
                                                body: ServiceEndToEndTests.podCreate(ns))
            podChecks += 1
            if (try JSON(parsing: answer.body))["response"]?["allowed"] != true { podDenied += 1 }
            usleep(20_000)
        }
        let rewriteAt = Date().timeIntervalSince(t1)
        #expect(eventually(60) { view.counts.rewritesPending == 0 })
        let patches = api.requests.filter { $0.hasPrefix("PATCH /apis/networking.k8s.io") }.count
        print(String(format: "BENCH nodejoin%d: node in a new block -> rules judge with it after %.3f s; %d policies rewritten in %.1f s at writesPerSecond %d (%.0f/s); pod CREATEs checked during the rewrite: %d, denied: %d",
                     n, rulesAt, patches, rewriteAt, rate, Double(patches) / rewriteAt, podChecks, podDenied))
        #expect(podDenied == 0)
        #expect(["ns-0", "ns-\(n - 1)"].allSatisfy { canonical(api, $0, after) })
    }
}
