import Foundation
import Testing
@testable import PXGuardCore
@testable import PXGuardKube
@testable import PXGuardPlatform
@testable import PXGuardServer
@testable import PXGuardService

/// `nodeCIDRs: auto` through the real service (TLS listener, admission, provisioner,
/// Node watch) against the in-test Kubernetes API.
@Suite("nodeCIDRs: auto against the in-test Kubernetes API", .serialized)
struct NodeAutoTests {
    static func policyCreate(_ namespace: String, cidr: String) -> [UInt8] {
        let review: JSON = .obj(["apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": .obj([
            "uid": "auto-1", "kind": .obj(["group": "networking.k8s.io", "version": "v1", "kind": "NetworkPolicy"]),
            "resource": .obj(["group": "networking.k8s.io", "version": "v1", "resource": "networkpolicies"]),
            "name": "open", "namespace": .string(namespace), "operation": "CREATE", "userInfo": .obj(["username": "alice"]),
            "object": .obj(["metadata": .obj(["name": "open", "namespace": .string(namespace)]), "spec": .obj([
                "podSelector": .object([]), "policyTypes": ["Egress"],
                "egress": [.obj(["to": [.obj(["ipBlock": .obj(["cidr": .string(cidr)])])],
                                 "ports": [.obj(["protocol": "TCP", "port": 9001])]])],
            ])]),
        ])])
        return Array(review.serialized.utf8)
    }

    struct Running {
        let service: Service
        let client: HTTPClientConnection
        func validate(_ body: [UInt8]) throws -> (allowed: Bool, message: String) {
            let answer = try client.request("POST", "/validate", headers: [("Content-Type", "application/json")], body: body)
            let response = try JSON(parsing: answer.body)["response"]
            return (response?["allowed"] == true, response?["status"]?["message"]?.stringValue ?? "")
        }
    }

    func start(_ api: FakeKubeAPI, config: String, _ dir: String) throws -> Running {
        let (service, client) = try startService(api, config: config, dir: dir)
        return Running(service: service, client: client)
    }

    func expected(_ blocks: [String]) -> Config {
        var c = Config.install
        c = c.withNodeBlocks(blocks.map { CIDR($0)! })
        return c
    }

    @Test("the blocks around the Nodes' addresses guard the cluster; a node in a known block changes nothing, one in a new block is guarded")
    func nodesJoin() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        for ns in ["pxguard-system", "kube-system", "team-a", "team-b"] { api.addNamespace(ns) }
        api.addNode("n1", addresses: ["10.1.0.5"])
        api.addNode("n2", addresses: ["10.1.0.6", "fd00:1::6"])
        let dir = NSTemporaryDirectory() + "pxguard-auto-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = try start(api, config: "nodeCIDRs: [auto]\n", dir)
        defer { run.service.stop() }
        let first = expected(["10.1.0.0/24", "fd00:1::/64"])
        #expect(eventually { ["team-a", "team-b"].allSatisfy { canonical(api, $0, first) } })
        #expect(try !run.validate(Self.policyCreate("team-a", cidr: "10.1.0.7/32")).allowed, "R4 judges with the node block")
        #expect(try run.validate(Self.policyCreate("team-a", cidr: "10.2.0.7/32")).allowed)

        // A node inside a block already guarded: no write at all (kube-system's block policy,
        // written by another worker, is in before the log is cleared).
        #expect(eventually { api.objects("networkpolicies", in: "kube-system") == [GuardNames.blockPolicy] })
        api.clearLog()
        api.addNode("n3", addresses: ["10.1.0.77"])
        usleep(500_000)
        // (Events for the first writes may still be on their way, and the Lease holder's upkeep of
        // certificates and registrations runs on its own clock; neither is a write to the guard.)
        let writes = api.requests.filter {
            !$0.hasPrefix("GET") && !$0.contains("/events") && !$0.contains("/leases/") && !$0.contains("/secrets")
                && !$0.contains("webhookconfigurations")
        }
        #expect(writes.isEmpty, "\(writes)")

        // A node in a new block: rules judge with it and the policies are rewritten.
        api.addNode("n4", addresses: ["10.2.0.4"])
        let second = expected(["10.1.0.0/24", "10.2.0.0/24", "fd00:1::/64"])
        #expect(eventually { (try? run.validate(Self.policyCreate("team-a", cidr: "10.2.0.7/32")).allowed) == false })
        #expect(eventually { ["team-a", "team-b"].allSatisfy { canonical(api, $0, second) } })
        #expect(eventually { GuardPolicies(config: second).isCanonical(
            spec: api.policy("kube-system", GuardNames.blockPolicy)?["spec"] ?? .null, name: GuardNames.blockPolicy, namespace: "kube-system") })
    }

    @Test("before the first Node list: the blocks in existing guard policies judge; with none, a retry denial (never a bypass window)")
    func beforeFirstList() throws {
        // Guard policies from an earlier run, written for 10.5.0.0/24; the Node list fails for a while.
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        for ns in ["pxguard-system", "kube-system", "team-a"] { api.addNamespace(ns) }
        let earlier = expected(["10.5.0.0/24"])
        let policies = GuardPolicies(config: earlier)
        for name in policies.names(for: "team-a") { api.put("networkpolicies", "team-a", name, policies.policy(name: name, namespace: "team-a")) }
        // The Node list fails until the check below is done (faults removed then), however slow the machine.
        api.inject((0..<1000).map { _ in .init(status: 503, reason: "ServiceUnavailable", retryAfter: nil, matching: "/api/v1/nodes") })
        api.addNode("n1", addresses: ["10.6.0.1"])
        let dir = NSTemporaryDirectory() + "pxguard-auto-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = try start(api, config: "nodeCIDRs: [auto]\n", dir)
        defer { run.service.stop() }
        // (For the first moments, before even the policy list is in, the answer is the retry denial.)
        #expect(eventually {
            guard let answer = try? run.validate(Self.policyCreate("team-a", cidr: "10.5.0.9/32")) else { return false }
            return !answer.allowed && answer.message.contains("bypassPolicies") && !answer.message.contains("not known yet")
        }, "judged with the policies' blocks before any Node is listed")
        api.state.withLock { $0.faults.removeAll() }
        // Then the Nodes arrive: their block replaces the one taken from the policies.
        #expect(eventually(30) { canonical(api, "team-a", expected(["10.6.0.0/24"])) })

        // No policy and no Node list: a retry denial.
        let api2 = try FakeKubeAPI()
        defer { api2.shutdown() }
        for ns in ["pxguard-system", "team-b"] { api2.addNamespace(ns) }
        api2.inject((0..<1000).map { _ in .init(status: 503, reason: "ServiceUnavailable", retryAfter: nil, matching: "/api/v1/nodes") })
        let dir2 = NSTemporaryDirectory() + "pxguard-auto-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir2) }
        let run2 = try start(api2, config: "nodeCIDRs: [auto]\n", dir2)
        defer { run2.service.stop() }
        let pending = try run2.validate(Self.policyCreate("team-b", cidr: "10.200.0.0/16"))
        #expect(!pending.allowed && pending.message.contains("not known yet") && pending.message.contains("Retry"))
        usleep(300_000)
        #expect(api2.objects("networkpolicies", in: "team-b").isEmpty, "no guard policy without node subnets")
    }
}
