import Foundation
import Synchronization
import Testing
@testable import PXGuardCore
@testable import PXGuardKube
@testable import PXGuardPlatform
@testable import PXGuardServer

/// The cluster-scoped guard against the in-test API over real HTTPS: discovery,
/// create, repair after a delete or an edit, and backend switches that never leave a
/// moment without a guard.
@Suite("Cluster-scoped guard against an in-test Kubernetes API", .serialized)
struct ClusterGuardTests {
    static func config(_ backend: GuardBackend) -> Config {
        var c = Config.default
        c.guardBackend = backend
        return c
    }

    static func client(_ api: FakeKubeAPI) throws -> KubeClient {
        try KubeClient(endpoint: KubeEndpoint(url: api.url, tokenFile: api.tokenFile, caFile: api.caFile), timeout: 5)
    }

    static func makeGuard(_ api: FakeKubeAPI, _ config: Config, view: ClusterView? = nil) throws -> ClusterGuard {
        var settings = ClusterGuard.Settings()
        settings.resyncSeconds = 30
        settings.informer.pollSeconds = 0.2
        settings.informer.backoffBase = 0.05
        settings.informer.backoffCap = 0.5
        return ClusterGuard(client: try client(api), config: config, elector: nil, settings: settings, logger: .none, view: view)
    }

    /// The stored object of a cluster-scoped kind.
    static func stored(_ api: FakeKubeAPI, _ resource: GuardBackend.Resource, _ name: String) -> JSON? {
        api.state.withLock { $0.objects["\(resource.plural)//\(name)"] }
    }

    static func allInPlace(_ api: FakeKubeAPI, _ config: Config) -> Bool {
        let objects = ClusterGuardPolicies(config: config)
        return objects.objects.allSatisfy { o in
            let kind = o["kind"]!.stringValue!, name = o["metadata"]!["name"]!.stringValue!
            let resource = objects.backend.resources.first { $0.kind == kind }!
            guard let s = stored(api, resource, name) else { return false }
            return objects.isCanonical(spec: s["spec"] ?? .null, kind: kind, name: name)
                && s["metadata"]?["labels"]?[GuardNames.managedByKey] == "pxguard"
                && (s["metadata"]?["ownerReferences"]?.arrayValue ?? []).isEmpty
        }
    }

    @Test("auto: discovery picks the first served backend; flannel alone is reported as not enforcing")
    func discovery() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.state.withLock { $0.servedGroupVersions = ["apps/v1", "cilium.io/v2", "projectcalico.org/v3"] }
        api.addNamespace("kube-system")
        let found = try ClusterDiscovery.resolve(try Self.client(api)).get()
        #expect(found.backend == .calico)
        #expect(found.cni.verdict == .enforcing)
        let bare = try FakeKubeAPI()
        defer { bare.shutdown() }
        bare.state.withLock { $0.servedGroupVersions = ["apps/v1", "networking.k8s.io/v1"] }
        bare.addNamespace("kube-flannel")
        bare.put("daemonsets", "kube-flannel", "kube-flannel-ds", .obj(["metadata": .obj(["name": "kube-flannel-ds"])]))
        let flannel = try ClusterDiscovery.resolve(try Self.client(bare)).get()
        #expect(flannel.backend == .networkpolicy)
        #expect(flannel.cni.verdict == .notEnforcing)
        #expect(flannel.cni.message.contains("flannel"))
        // The install bundle grants `get` on exactly the names discovery reads.
        #expect(Set(ClusterDiscovery.pluginDaemonSets.map(\.name)) == Set(InstallBundle.pluginDaemonSetNames))
    }

    @Test("a plugin check that may read nothing cannot tell; one that finds nothing it knows cannot either")
    func cannotTell() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.state.withLock { $0.servedGroupVersions = ["apps/v1"] }
        api.inject((0..<ClusterDiscovery.pluginDaemonSets.count).map { _ in .init(status: 403, reason: "Forbidden", retryAfter: nil, matching: "/daemonsets/") })
        #expect(try ClusterDiscovery.resolve(try Self.client(api)).get().cni.verdict == .unknown)
        #expect(try ClusterDiscovery.resolve(try Self.client(api)).get().cni.verdict == .unknown)
    }

    @Test("calico with nodeCIDRs: auto and no node address yet: nothing is written (empty nets would deny the ports everywhere), then the policies once nodes are known")
    func calicoPending() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        var config = Config.install
        config.guardBackend = .calico
        #expect(config.nodeAddressesPending)
        let keeper = try Self.makeGuard(api, config)
        #expect(!keeper.reconcile(), "pending is not done")
        #expect(!api.requests.contains { $0.hasPrefix("POST ") || $0.hasPrefix("PUT ") }, "\(api.requests)")
        #expect(!keeper.isInPlace)
        let known = config.withNodeBlocks([CIDR("10.0.3.0/24")!])
        keeper.reload(known)
        #expect(keeper.reconcile())
        #expect(Self.allInPlace(api, known))
        let block = ClusterGuardPolicies(config: known).objects.last!
        #expect(block["spec"]?["egress"]?.arrayValue?.first?["destination"]?["nets"] == ["10.0.3.0/24"])
    }

    @Test("each backend's objects are created, and recreated or repaired after a delete, an edit or an owner",
          arguments: GuardBackend.discoveryOrder)
    func createAndRepair(_ backend: GuardBackend) throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        let config = Self.config(backend)
        let keeper = try Self.makeGuard(api, config)
        spawnThread(name: "t-guard") { keeper.run() }
        defer { keeper.stop() }
        #expect(eventually { Self.allInPlace(api, config) })
        let objects = ClusterGuardPolicies(config: config).objects
        let last = objects.last!
        let resource = backend.resources.first { $0.kind == last["kind"]!.stringValue! }!
        let name = last["metadata"]!["name"]!.stringValue!
        // Deleted behind its back: the watch sees it, the object comes back.
        api.put(resource.plural, "", name, nil)
        #expect(eventually { Self.allInPlace(api, config) }, "not recreated after a delete")
        // Weakened (the egress list emptied) and handed to an owner: repaired, owner removed.
        let current = Self.stored(api, resource, name)!
        var metadata = current["metadata"]!.setting("ownerReferences", [.obj(["apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "1"])])
        metadata = metadata.setting("labels", .obj([GuardNames.managedByKey: "pxguard", "team": "platform"]))
        api.put(resource.plural, "", name, current.setting("metadata", metadata).setting("spec", .obj(["note": "weakened"])))
        #expect(eventually { Self.allInPlace(api, config) }, "not repaired after an edit")
        // Other labels survive the repair.
        #expect(Self.stored(api, resource, name)?["metadata"]?["labels"]?["team"] == "platform")
        #expect(keeper.created.load(ordering: .relaxed) >= objects.count + 1)
        // (Counted after the API answered, so after the object is stored: wait for it.)
        #expect(eventually { keeper.repaired.load(ordering: .relaxed) >= 1 })
    }

    /// Request-log positions: every write of the new guard comes before the first
    /// removal of the old one.
    static func position(_ log: [String], _ predicate: (String) -> Bool, last: Bool = false) -> Int? {
        last ? log.lastIndex(where: predicate) : log.firstIndex(where: predicate)
    }

    @Test("switching networkpolicy -> adminnetworkpolicy: the ANPs are in place before any guard NetworkPolicy is removed")
    func switchToClusterScoped() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        for ns in ["team-a", "team-b", "kube-system"] { api.addNamespace(ns) }
        let before = Self.config(.networkpolicy)
        let h = try Harness(api, config: before)
        let keeper = try Self.makeGuard(api, before, view: h.view)
        h.start()
        spawnThread(name: "t-guard") { keeper.run() }
        defer { h.stop(); keeper.stop() }
        #expect(eventually { canonical(api, "team-a") && canonical(api, "team-b") })
        api.clearLog()
        let after = Self.config(.adminnetworkpolicy)
        keeper.reload(after)
        h.provisioner.reload(after)
        #expect(eventually { Self.allInPlace(api, after) })
        #expect(eventually { api.objects("networkpolicies", in: "team-a").isEmpty && api.objects("networkpolicies", in: "team-b").isEmpty
            && api.objects("networkpolicies", in: "kube-system").isEmpty })
        let log = api.requests
        let lastANPWrite = try #require(Self.position(log, { $0.hasPrefix("POST /apis/policy.networking.k8s.io") }, last: true))
        let firstNPDelete = try #require(Self.position(log, { $0.hasPrefix("DELETE /apis/networking.k8s.io") }))
        #expect(lastANPWrite < firstNPDelete, "\(log)")
        // A namespace created now gets its labels and no NetworkPolicy: the ANP covers it already.
        api.addNamespace("team-c")
        #expect(eventually { label(api, "team-c", GuardNames.guardedLabel) == "true" })
        usleep(300_000)
        #expect(api.objects("networkpolicies", in: "team-c").isEmpty)
    }

    @Test("switching away from NetworkPolicy removes the guard policies by their configured names, found in the view: no list selected by a label tenants can set")
    func retireByView() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        for ns in ["team-a", "kube-system"] { api.addNamespace(ns) }
        var before = Self.config(.networkpolicy)
        before.guardPolicyNames.block = "guard-block"
        before.guardPolicyNames.allowAPI = "guard-api"
        // A tenant's own policy carrying the label (from before pxguard) is not the guard's to remove;
        // nor is a policy under a guard name in an exempt namespace.
        api.put("networkpolicies", "team-a", "mine", .obj(["metadata": .obj([
            "name": "mine", "namespace": "team-a", "labels": .obj([GuardNames.managedByKey: "pxguard"])]),
            "spec": .obj(["podSelector": .object([])])]))
        api.addNamespace("portworx")
        api.put("networkpolicies", "portworx", "guard-api", .obj(["metadata": .obj(["name": "guard-api", "namespace": "portworx"]),
                                                                  "spec": .obj(["podSelector": .object([])])]))
        before.exemptNamespaces.append("portworx")
        let h = try Harness(api, config: before)
        let keeper = try Self.makeGuard(api, before, view: h.view)
        h.start()
        spawnThread(name: "t-guard") { keeper.run() }
        defer { h.stop(); keeper.stop() }
        #expect(eventually { api.objects("networkpolicies", in: "team-a") == ["guard-api", "guard-block", "mine"] })
        api.clearLog()
        var after = before
        after.guardBackend = .adminnetworkpolicy
        keeper.reload(after)
        h.provisioner.reload(after)
        #expect(eventually { Self.allInPlace(api, after) })
        #expect(eventually { api.objects("networkpolicies", in: "team-a") == ["mine"]
            && api.objects("networkpolicies", in: "kube-system").isEmpty }, "\(api.requests)")
        #expect(!api.requests.contains { $0.hasPrefix("GET /apis/networking.k8s.io/v1/networkpolicies?labelSelector") })
        #expect(api.objects("networkpolicies", in: "portworx") == ["guard-api"], "not pxguard's: left alone")
    }

    @Test("provisioning.dryRun: the cluster-scoped guard writes nothing either, and says what it would do once")
    func dryRun() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        var config = Self.config(.cilium)
        config.provisioning.dryRun = true
        let logs = LogCapture()
        let keeper = ClusterGuard(client: try Self.client(api), config: config, elector: nil, settings: .init(), logger: logs.logger,
                                  view: nil)
        #expect(keeper.reconcile())
        #expect(keeper.reconcile())
        #expect(!api.requests.contains { !$0.hasPrefix("GET ") }, "\(api.requests)")
        #expect(logs.matching("dry run: would keep the cluster-wide guard objects").count == 1)
    }

    @Test("a guard-named policy pxguard does not manage is never removed; before the view has listed, nothing is retired")
    func retireOnlyOwn() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("team-a")
        // The site's own allow-api, without pxguard's label (never taken over silently, never deleted).
        api.put("networkpolicies", "team-a", GuardNames.allowAPIPolicy, .obj(["metadata": .obj([
            "name": .string(GuardNames.allowAPIPolicy), "namespace": "team-a"]), "spec": .obj(["podSelector": .object([])])]))
        let config = Self.config(.adminnetworkpolicy)
        let h = try Harness(api, config: config)
        let keeper = try Self.makeGuard(api, config, view: h.view)
        // The view has not listed: the ANPs are written, the retirement waits.
        #expect(!keeper.reconcile())
        #expect(keeper.state.withLock { $0.retire } == [.networkpolicy])
        h.start()
        defer { h.stop() }
        #expect(eventually { h.view.hasListed })
        #expect(keeper.reconcile())
        #expect(api.objects("networkpolicies", in: "team-a") == [GuardNames.allowAPIPolicy])
        #expect(!api.requests.contains { $0.hasPrefix("DELETE /apis/networking.k8s.io") })
    }

    @Test("switching cilium -> networkpolicy: the CCNPs stay until every guarded namespace holds both policies")
    func switchBackToNetworkPolicy() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        for ns in ["team-a", "team-b", "kube-system"] { api.addNamespace(ns) }
        let before = Self.config(.cilium)
        let h = try Harness(api, config: before)
        let keeper = try Self.makeGuard(api, before, view: h.view)
        h.start()
        spawnThread(name: "t-guard") { keeper.run() }
        defer { h.stop(); keeper.stop() }
        #expect(eventually { Self.allInPlace(api, before) })
        #expect(api.objects("networkpolicies", in: "team-a").isEmpty)
        api.clearLog()
        let after = Self.config(.networkpolicy)
        keeper.reload(after)
        h.provisioner.reload(after)
        #expect(eventually { canonical(api, "team-a") && canonical(api, "team-b") })
        let resource = GuardBackend.cilium.resources[0]
        #expect(eventually { Self.stored(api, resource, GuardNames.clusterBlock) == nil && Self.stored(api, resource, GuardNames.clusterBlockKubeSystem) == nil })
        let log = api.requests
        let lastNPCreate = try #require(Self.position(log, { $0.hasPrefix("POST /apis/networking.k8s.io") }, last: true))
        let firstCCNPDelete = try #require(Self.position(log, { $0.hasPrefix("DELETE /apis/cilium.io") }))
        #expect(lastNPCreate < firstCCNPDelete, "\(log)")
    }

    @Test("switching calico -> cilium: the CCNPs are in place before the Calico policies and Tier go (Tier last)")
    func switchBetweenClusterScoped() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        let before = Self.config(.calico)
        let keeper = try Self.makeGuard(api, before)
        spawnThread(name: "t-guard") { keeper.run() }
        defer { keeper.stop() }
        #expect(eventually { Self.allInPlace(api, before) })
        api.clearLog()
        let after = Self.config(.cilium)
        keeper.reload(after)
        #expect(eventually { Self.allInPlace(api, after) })
        #expect(eventually { api.state.withLock { s in !s.objects.keys.contains { $0.hasPrefix("globalnetworkpolicies/") || $0.hasPrefix("tiers/") } } })
        let log = api.requests
        let lastCCNP = try #require(Self.position(log, { $0.hasPrefix("POST /apis/cilium.io") }, last: true))
        let firstCalicoDelete = try #require(Self.position(log, { $0.hasPrefix("DELETE /apis/projectcalico.org") }))
        let tierDelete = try #require(Self.position(log, { $0.hasPrefix("DELETE /apis/projectcalico.org/v3/tiers") }))
        let lastPolicyDelete = try #require(Self.position(log, { $0.hasPrefix("DELETE /apis/projectcalico.org/v3/globalnetworkpolicies") }, last: true))
        #expect(lastCCNP < firstCalicoDelete)
        #expect(lastPolicyDelete < tierDelete)
    }
}
