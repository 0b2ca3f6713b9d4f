import Foundation
import Synchronization
import Testing
@testable import PXGuardCore
@testable import PXGuardKube
@testable import PXGuardPlatform
@testable import PXGuardServer

/// Polls `condition` until it holds or `seconds` pass.
func eventually(_ seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(50_000)
    }
    return condition()
}

@Suite("Provisioner against an in-test Kubernetes API", .serialized)
struct ProvisionerTests {
    static let guardPolicies = GuardPolicies(config: .default)

    func make(_ api: FakeKubeAPI, config: Config = .default, elector: Bool = false, identity: String = "replica-a",
              resync: Double = 300) throws -> (Provisioner, LeaderElector?) {
        let client = try KubeClient(endpoint: KubeEndpoint(url: api.url, tokenFile: api.tokenFile, caFile: api.caFile), timeout: 5)
        var timing = LeaderElector.Timing()
        timing.leaseDuration = 2
        timing.retryPeriod = 0.3
        let leaseClient = try KubeClient(endpoint: KubeEndpoint(url: api.url, tokenFile: api.tokenFile, caFile: api.caFile), timeout: 5)
        let leader = elector ? LeaderElector(client: leaseClient, namespace: "pxguard-system", identity: identity, timing: timing, logger: .none) : nil
        var settings = Provisioner.Settings()
        settings.resyncSeconds = resync
        settings.backoffBase = 0.05
        settings.backoffCap = 0.5
        return (Provisioner(client: client, config: config, elector: leader, settings: settings, logger: .none), leader)
    }

    func canonical(_ api: FakeKubeAPI, _ namespace: String) -> Bool {
        GuardPolicies.names(in: namespace).allSatisfy { name in
            guard let p = api.policy(namespace, name) else { return false }
            return p["metadata"]?["labels"]?[GuardNames.managedByKey] == "pxguard"
                && Self.guardPolicies.isCanonical(spec: p["spec"] ?? .null, name: name, namespace: namespace)
        }
    }

    @Test("M1: a namespace that appears late gets both policies and its label")
    func lateNamespace() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        let (provisioner, _) = try make(api)
        spawnThread(name: "t-prov") { provisioner.run() }
        defer { provisioner.stop() }
        provisioner.enqueue("team-a")
        usleep(500_000)
        #expect(api.policy("team-a", GuardNames.blockPolicy) == nil)
        api.addNamespace("team-a")
        #expect(eventually { canonical(api, "team-a") })
        #expect(api.namespace("team-a")?["metadata"]?["labels"]?[GuardNames.guardedLabel] == "true")
        #expect(api.requests.contains { $0.hasPrefix("GET /api/v1/namespaces/team-a") })
    }

    @Test("409 AlreadyExists is 'check and repair': a drifted pre-existing policy is restored, other labels kept")
    func alreadyExists() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("team-b")
        api.put("networkpolicies", "team-b", GuardNames.allowAPIPolicy, networkPolicyObject(
            name: GuardNames.allowAPIPolicy, namespace: "team-b", labels: .obj(["team": "b"]),
            spec: .obj(["podSelector": .object([]), "policyTypes": ["Egress"], "egress": [.object([])]])))
        let (provisioner, _) = try make(api)
        try provisioner.ensure(namespace: "team-b")
        #expect(canonical(api, "team-b"))
        #expect(api.policy("team-b", GuardNames.allowAPIPolicy)?["metadata"]?["labels"]?["team"] == "b")
        #expect(provisioner.repaired.load(ordering: .relaxed) == 1)
        #expect(provisioner.created.load(ordering: .relaxed) == 1)
    }

    @Test("resync repairs policies deleted or tampered with behind its back; exempt namespaces are never written")
    func resyncRepairs() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        for ns in ["kube-system", "portworx", "team-c", "team-d"] { api.addNamespace(ns) }
        let (provisioner, _) = try make(api, resync: 0.5)
        spawnThread(name: "t-prov") { provisioner.run() }
        defer { provisioner.stop() }
        #expect(eventually { canonical(api, "team-c") && canonical(api, "team-d") })
        #expect(api.objects("networkpolicies", in: "kube-system") == [GuardNames.blockPolicy])
        #expect(api.objects("networkpolicies", in: "portworx").isEmpty)
        #expect(api.namespace("portworx")?["metadata"]?["labels"]?[GuardNames.guardedLabel] == nil)
        api.put("networkpolicies", "team-c", GuardNames.blockPolicy, nil)
        var tampered = api.policy("team-d", GuardNames.allowAPIPolicy)!
        tampered = tampered.setting("spec", .obj(["podSelector": .object([]), "policyTypes": ["Egress"], "egress": [.object([])]]))
        api.put("networkpolicies", "team-d", GuardNames.allowAPIPolicy, tampered)
        var unlabelled = api.policy("kube-system", GuardNames.blockPolicy)!
        unlabelled = unlabelled.setting("metadata", unlabelled["metadata"]!.setting("labels", .object([])))
        api.put("networkpolicies", "kube-system", GuardNames.blockPolicy, unlabelled)
        #expect(eventually { canonical(api, "team-c") && canonical(api, "team-d") })
        #expect(eventually { api.policy("kube-system", GuardNames.blockPolicy)?["metadata"]?["labels"]?[GuardNames.managedByKey] == "pxguard" })
        #expect(api.objects("networkpolicies", in: "portworx").isEmpty)
    }

    @Test("429 with Retry-After and 500 are retried with backoff; failures are counted")
    func transientErrors() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        let (provisioner, _) = try make(api)
        spawnThread(name: "t-prov") { provisioner.run() }
        defer { provisioner.stop() }
        #expect(eventually { provisioner.resyncs.load(ordering: .relaxed) >= 1 })
        api.addNamespace("team-e")
        api.inject([.init(status: 429, reason: "TooManyRequests", retryAfter: 1), .init(status: 500, reason: "InternalError", retryAfter: nil)])
        let start = Date()
        provisioner.enqueue("team-e")
        #expect(eventually { canonical(api, "team-e") })
        #expect(Date().timeIntervalSince(start) >= 0.9, "Retry-After: 1 was honoured")
        #expect(provisioner.failed.load(ordering: .relaxed) >= 2)
    }

    @Test("a token rotated mid-run is re-read from its file")
    func tokenRotation() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("team-f")
        let (provisioner, _) = try make(api)
        try provisioner.ensure(namespace: "team-f")
        api.rotateToken(to: "token-2")
        do {
            try provisioner.ensure(namespace: "team-f")
            Issue.record("old token accepted")
        } catch {
            #expect(error.code == 401)
        }
        try "token-2\n".write(toFile: api.tokenFile, atomically: true, encoding: .utf8)
        api.put("networkpolicies", "team-f", GuardNames.blockPolicy, nil)
        try provisioner.ensure(namespace: "team-f")
        #expect(canonical(api, "team-f"))
    }

    @Test("two replicas contend for the lease: one writes; the other takes over when it stops")
    func leaderElection() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("pxguard-system")
        let (a, electorA) = try make(api, elector: true, identity: "replica-a")
        let (b, electorB) = try make(api, elector: true, identity: "replica-b")
        for e in [electorA!, electorB!] { spawnThread(name: "t-lease") { e.run() } }
        for p in [a, b] { spawnThread(name: "t-prov") { p.run() } }
        defer { a.stop(); b.stop() }
        #expect(eventually { electorA!.isLeader != electorB!.isLeader })
        usleep(1_000_000)
        #expect(electorA!.isLeader != electorB!.isLeader, "exactly one leader")
        let (leader, follower, followerElector) = electorA!.isLeader ? (a, b, electorB!) : (b, a, electorA!)
        api.addNamespace("team-g")
        leader.enqueue("team-g")
        follower.enqueue("team-g")
        #expect(eventually { canonical(api, "team-g") })
        #expect(follower.created.load(ordering: .relaxed) == 0)
        leader.stop()
        #expect(eventually(8) { followerElector.isLeader })
        api.addNamespace("team-h")
        follower.enqueue("team-h")
        #expect(eventually { canonical(api, "team-h") })
        let lease = api.state.withLock { $0.objects["leases/pxguard-system/\(GuardNames.leaseName)"] }
        #expect(lease?["spec"]?["holderIdentity"]?.stringValue == followerElector.identity)
        #expect((lease?["spec"]?["leaseTransitions"]?.intValue ?? 0) >= 1)
    }

    @Test("an unreachable API is reported by the metric and never throws into callers")
    func unreachable() throws {
        let api = try FakeKubeAPI()
        let (provisioner, _) = try make(api)
        api.shutdown()
        #expect(provisioner.resync() == false)
        #expect(provisioner.metricsText.contains("pxguard_provisioner_api_reachable 0"))
        provisioner.enqueue("x")  // returns at once
        #expect(provisioner.queueDepth == 1)
    }
}

func networkPolicyObject(name: String, namespace: String, labels: JSON, spec: JSON) -> JSON {
    .obj(["apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
          "metadata": .obj(["name": .string(name), "namespace": .string(namespace), "labels": labels]), "spec": spec])
}
