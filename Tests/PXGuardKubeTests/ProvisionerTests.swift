import Foundation
import Synchronization
import Testing
@testable import PXGuardCore
@testable import PXGuardKube
@testable import PXGuardPlatform
@testable import PXGuardServer

/// How much slower than a plain build the tests run: 4 under a sanitizer (TSan and
/// ASan slow everything down several times), else 1. Waits and time bounds scale by it;
/// a figure measured under a sanitizer is not the product's.
let slowdown: Double = ProcessInfo.processInfo.environment["PXGUARD_SANITIZER"] == nil ? 1 : 4

/// Polls `condition` until it holds or `seconds` (times `slowdown`) pass.
func eventually(_ seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds * slowdown)
    while Date() < deadline {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}

/// A provisioner (with its informers and, optionally, a lease) against a fake API.
struct Harness {
    let provisioner: Provisioner
    let elector: LeaderElector?
    let events: EventRecorder?
    var view: ClusterView { provisioner.view }

    init(_ api: FakeKubeAPI, config: Config = .default, elector: Bool = false, identity: String = "replica-a",
         resync: Double = 300, pageSize: Int = 500, watchTimeout: Int = 300, workers: Int = 2,
         objectBudget: Int = 1 << 20, logger: Logger = .none, events: Bool = false) throws {
        let client = try KubeClient(endpoint: KubeEndpoint(url: api.url, tokenFile: api.tokenFile, caFile: api.caFile), timeout: 5)
        var timing = LeaderElector.Timing()
        timing.leaseDuration = 2
        timing.retryPeriod = 0.3
        self.elector = elector ? LeaderElector(client: client, namespace: "pxguard-system", identity: identity, timing: timing, logger: .none) : nil
        var settings = Provisioner.Settings()
        settings.resyncSeconds = resync
        settings.backoffBase = 0.05
        settings.backoffCap = 0.5
        settings.workers = workers
        settings.informer.pageSize = pageSize
        settings.informer.objectBudget = objectBudget
        settings.informer.watchTimeoutSeconds = watchTimeout
        settings.informer.pollSeconds = 0.2
        settings.informer.backoffBase = 0.05
        settings.informer.backoffCap = 0.5
        settings.informer.staleAfterSeconds = 1
        self.events = events ? EventRecorder(client: client, instance: identity, logger: logger) : nil
        provisioner = Provisioner(client: client, view: ClusterView(config: config, logger: logger), elector: self.elector,
                                  settings: settings, logger: logger, events: self.events)
    }

    func start() {
        if let events { spawnThread(name: "t-events") { events.run() } }
        if let elector { spawnThread(name: "t-lease") { elector.run() } }
        let p = provisioner
        spawnThread(name: "t-prov") { p.run() }
    }

    func stop() {
        provisioner.stop()
        events?.stop()
    }
}

func canonical(_ api: FakeKubeAPI, _ namespace: String, _ config: Config = .default) -> Bool {
    let policies = GuardPolicies(config: config)
    return GuardPolicies.names(in: namespace).allSatisfy { name in
        guard let p = api.policy(namespace, name) else { return false }
        return p["metadata"]?["labels"]?[GuardNames.managedByKey] == "pxguard"
            && (p["metadata"]?["ownerReferences"]?.arrayValue ?? []).isEmpty
            && policies.isCanonical(spec: p["spec"] ?? .null, name: name, namespace: namespace)
    }
}

func label(_ api: FakeKubeAPI, _ namespace: String, _ key: String) -> String? {
    api.namespace(namespace)?["metadata"]?["labels"]?[key]?.stringValue
}

let loose: JSON = .obj(["podSelector": .object([]), "policyTypes": ["Egress"], "egress": [.object([])]])

@Suite("Provisioner against an in-test Kubernetes API", .serialized)
struct ProvisionerTests {
    @Test("a namespace created by any path (no /mutate, no resync) gets both policies, its labels and the Pod Security level")
    func watchedNamespace() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        let h = try Harness(api)
        h.start()
        defer { h.stop() }
        #expect(eventually { h.view.isSynced })
        api.addNamespace("team-a")
        #expect(eventually { canonical(api, "team-a") && label(api, "team-a", GuardNames.guardedLabel) == "true" })
        #expect(eventually { label(api, "team-a", ClusterView.podSecurityLabel) == "baseline" })
        #expect(api.namespace("team-a")?["metadata"]?["annotations"]?[GuardNames.policiesAnnotation]?.stringValue
                == GuardNames.policiesAnnotationValue)
        #expect(eventually { h.view.namespaceHasCanonicalPolicies("team-a") })
        #expect(h.provisioner.resyncs.load(ordering: .relaxed) <= 1, "the watch did it, not a periodic resync")
        // (Its Pods are read once, before its Pod Security level is raised.)
        #expect(!api.requests.contains { $0.hasPrefix("GET /api/v1/namespaces/team-a") && !$0.contains("/pods?") }, "no per-namespace GET")
    }

    @Test("a deleted, drifted or owned guard policy is repaired from the watch (owners dropped, other labels kept); exempt namespaces are never written")
    func repairs() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        for ns in ["kube-system", "portworx", "team-c", "team-d"] { api.addNamespace(ns) }
        let h = try Harness(api)
        h.start()
        defer { h.stop() }
        #expect(eventually { canonical(api, "team-c") && canonical(api, "team-d") })
        #expect(eventually { api.objects("networkpolicies", in: "kube-system") == [GuardNames.blockPolicy] })
        #expect(api.objects("networkpolicies", in: "portworx").isEmpty)
        #expect(label(api, "portworx", GuardNames.guardedLabel) == nil)
        #expect(label(api, "kube-system", ClusterView.podSecurityLabel) == nil)

        api.put("networkpolicies", "team-c", GuardNames.blockPolicy, nil)
        var tampered = api.policy("team-d", GuardNames.allowAPIPolicy)!
        tampered = tampered.setting("spec", loose)
        tampered = tampered.setting("metadata", tampered["metadata"]!.setting("labels", .obj([GuardNames.managedByKey: "pxguard", "team": "d"])))
        api.put("networkpolicies", "team-d", GuardNames.allowAPIPolicy, tampered)
        var owned = api.policy("team-d", GuardNames.blockPolicy)!
        owned = owned.setting("metadata", owned["metadata"]!.setting("ownerReferences", [.obj([
            "apiVersion": "v1", "kind": "ConfigMap", "name": "decoy", "uid": "1234"])]))
        api.put("networkpolicies", "team-d", GuardNames.blockPolicy, owned)
        #expect(eventually { canonical(api, "team-c") && canonical(api, "team-d") })
        #expect(api.policy("team-d", GuardNames.allowAPIPolicy)?["metadata"]?["labels"]?["team"] == "d")
        #expect(eventually { h.provisioner.repaired.load(ordering: .relaxed) >= 2 })  // counted once the write's answer is in, after the object changed
        #expect(!api.requests.contains { $0.contains("GET /apis/networking.k8s.io/v1/namespaces/") }, "repairs need no GET")
        #expect(api.objects("networkpolicies", in: "portworx").isEmpty)
    }

    @Test("409 AlreadyExists is 'check and repair': an unlabelled drifted policy (invisible to the watch) is restored, other labels kept")
    func alreadyExists() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("team-b")
        api.put("networkpolicies", "team-b", GuardNames.allowAPIPolicy, networkPolicyObject(
            name: GuardNames.allowAPIPolicy, namespace: "team-b", labels: .obj(["team": "b"]), spec: loose))
        let h = try Harness(api)
        h.start()
        defer { h.stop() }
        #expect(eventually { canonical(api, "team-b") })
        #expect(api.policy("team-b", GuardNames.allowAPIPolicy)?["metadata"]?["labels"]?["team"] == "b")
        #expect(eventually { h.provisioner.repaired.load(ordering: .relaxed) == 1 })  // counted once the write's answer is in, after the object changed
        #expect(eventually { h.provisioner.created.load(ordering: .relaxed) == 1 })  // counted once the write's answer is in, after the object changed
    }

    @Test("Pod Security: a missing or lower level is raised to podSecurity; a stricter one is kept; none leaves the label alone")
    func podSecurity() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("low", labels: .obj([ClusterView.podSecurityLabel: "privileged"]))
        api.addNamespace("strict", labels: .obj([ClusterView.podSecurityLabel: "restricted"]))
        api.addNamespace("bare")
        let h = try Harness(api)
        h.start()
        defer { h.stop() }
        #expect(eventually { label(api, "low", ClusterView.podSecurityLabel) == "baseline" && label(api, "bare", ClusterView.podSecurityLabel) == "baseline" })
        #expect(eventually { canonical(api, "strict") && label(api, "strict", GuardNames.guardedLabel) == "true" })
        #expect(label(api, "strict", ClusterView.podSecurityLabel) == "restricted")
        // Lowered behind its back (by an exempt admin): raised again.
        api.put("ignored", "x", "x", nil)
        api.state.withLock { s in
            let ns = s.namespaces["low"]!
            s.namespaces["low"] = FakeKubeAPI.mergePatch(ns, .obj(["metadata": .obj(["labels": .obj([ClusterView.podSecurityLabel: "privileged"])])]))
            s.resourceVersion += 1
            FakeKubeAPI.record(&s, "MODIFIED", "namespaces", s.namespaces["low"]!.setting("metadata", s.namespaces["low"]!["metadata"]!.setting("resourceVersion", .string(String(s.resourceVersion)))))
        }
        api.wakeWatchers()
        #expect(eventually { label(api, "low", ClusterView.podSecurityLabel) == "baseline" })

        let api2 = try FakeKubeAPI()
        defer { api2.shutdown() }
        api2.addNamespace("team", labels: .obj([ClusterView.podSecurityLabel: "privileged"]))
        var config = Config.default
        config.podSecurity = .none
        let h2 = try Harness(api2, config: config)
        h2.start()
        defer { h2.stop() }
        #expect(eventually { canonical(api2, "team") && label(api2, "team", GuardNames.guardedLabel) == "true" })
        #expect(label(api2, "team", ClusterView.podSecurityLabel) == "privileged")
    }

    @Test("informers list in pages (limit/continue) and watch from the list's resourceVersion with bookmarks and timeoutSeconds")
    func pagingAndWatch() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        for i in 0..<7 { api.addNamespace("team-\(i)") }
        // Bookmarks well inside each 1 s watch, so every watch has time to carry one.
        api.state.withLock { $0.bookmarkInterval = 0.3 }
        let h = try Harness(api, pageSize: 3, watchTimeout: 1)
        h.start()
        defer { h.stop() }
        #expect(eventually { (0..<7).allSatisfy { canonical(api, "team-\($0)") } })
        let log = api.requests
        #expect(log.contains { $0.hasPrefix("GET /api/v1/namespaces?limit=3") })
        #expect(log.contains { $0.hasPrefix("GET /api/v1/namespaces?limit=3&continue=") })
        // Every NetworkPolicy, never selected by a label a tenant can set.
        #expect(log.contains { $0.hasPrefix("GET /apis/networking.k8s.io/v1/networkpolicies?limit=3") })
        #expect(!log.contains { $0.contains("labelSelector") })
        // (Each informer opens its watch after its list, beside the workers' writes.)
        #expect(eventually { api.requests.contains { $0.contains("watch=1&resourceVersion=") && $0.contains("allowWatchBookmarks=true&timeoutSeconds=1") } })
        // Watches end after timeoutSeconds and resume without a fresh list; bookmarks arrive.
        let lists = h.provisioner.informers.map { $0.counters.lists.load(ordering: .relaxed) }
        #expect(eventually(6) { h.provisioner.informers.allSatisfy { $0.counters.watches.load(ordering: .relaxed) >= 3 } })
        #expect(h.provisioner.informers.map { $0.counters.lists.load(ordering: .relaxed) } == lists)
        #expect(eventually { h.provisioner.informers.allSatisfy { $0.counters.bookmarks.load(ordering: .relaxed) > 0 } })
        api.addNamespace("team-late")
        #expect(eventually { canonical(api, "team-late") })
    }

    @Test("a quiet watch stays open: read bounds passing with nothing to read are not failures")
    func quietWatch() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.state.withLock { $0.bookmarkInterval = 100 }
        let h = try Harness(api)
        h.start()
        defer { h.stop() }
        #expect(eventually { h.view.isSynced })
        usleep(1_500_000)  // several 0.2 s read bounds
        #expect(h.provisioner.informers.allSatisfy { $0.counters.restarts.load(ordering: .relaxed) == 0 && $0.counters.watches.load(ordering: .relaxed) == 1 })
    }

    @Test("watches that a proxy ends at once are paced with backoff, not re-opened in a spin")
    func shortWatches() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.state.withLock { s in
            s.watchLifetime = 0
            s.bookmarkInterval = 100
        }
        let h = try Harness(api)
        h.start()
        defer { h.stop() }
        #expect(eventually { h.view.isSynced })
        let before = api.requests.filter { $0.contains("watch=1") }.count
        usleep(1_000_000)
        let after = api.requests.filter { $0.contains("watch=1") }.count
        #expect(after - before < 60, "\(after - before) watches in one second")
        api.state.withLock { $0.watchLifetime = nil }
        api.addNamespace("team-1")
        #expect(eventually { canonical(api, "team-1") })
    }

    @Test("a watch dropped mid-stream resumes from the last resourceVersion, without a relist, and misses nothing")
    func droppedWatch() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        let h = try Harness(api)
        h.start()
        defer { h.stop() }
        #expect(eventually { h.view.isSynced })
        api.addNamespace("team-1")
        #expect(eventually { canonical(api, "team-1") })
        api.dropWatches()
        api.addNamespace("team-2")  // while the watch is down
        #expect(eventually { canonical(api, "team-2") })
        #expect(h.provisioner.informers.allSatisfy { $0.counters.relists.load(ordering: .relaxed) == 0 })
        #expect(h.provisioner.informers.allSatisfy { $0.counters.lists.load(ordering: .relaxed) == 1 })
        #expect(h.provisioner.informers.contains { $0.counters.restarts.load(ordering: .relaxed) >= 1 })
    }

    @Test("410 Gone after compaction (as an ERROR event or an HTTP status) makes a fresh list", arguments: [false, true])
    func goneRelists(asStatus: Bool) throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.state.withLock { $0.goneAsHTTPStatus = asStatus }
        let h = try Harness(api)
        h.start()
        defer { h.stop() }
        #expect(eventually { h.view.isSynced })
        // The watch goes down, the history is compacted, and meanwhile a namespace
        // appears and a policy vanishes: only a fresh list can tell.
        api.addNamespace("team-1")
        #expect(eventually { canonical(api, "team-1") })
        // The watches stay down (faults enough for any backoff) until the history is
        // compacted, so no informer resumes from its old resourceVersion in between.
        api.inject(Array(repeating: .init(status: 500, reason: "InternalError", retryAfter: nil, matching: "watch=1"), count: 1000))
        api.dropWatches()
        api.addNamespace("team-2")
        api.put("networkpolicies", "team-1", GuardNames.allowAPIPolicy, nil)
        api.compact()
        api.state.withLock { $0.faults.removeAll() }
        #expect(eventually { canonical(api, "team-2") && canonical(api, "team-1") })
        #expect(h.provisioner.informers.allSatisfy { $0.counters.relists.load(ordering: .relaxed) >= 1 })
        #expect(h.provisioner.metricsText.contains("pxguard_watch_relists_total{resource=\"namespaces\"} "))
    }

    @Test("429 with Retry-After and 500 are retried with backoff; failures are counted")
    func transientErrors() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        let h = try Harness(api)
        h.start()
        defer { h.stop() }
        #expect(eventually { h.view.isSynced })
        api.inject([.init(status: 429, reason: "TooManyRequests", retryAfter: 1, matching: "/namespaces/team-e"),
                    .init(status: 500, reason: "InternalError", retryAfter: nil, matching: "/namespaces/team-e")])
        let start = Date()
        api.addNamespace("team-e")
        #expect(eventually { canonical(api, "team-e") })
        #expect(Date().timeIntervalSince(start) >= 0.9, "Retry-After: 1 was honoured")
        #expect(h.provisioner.failed.load(ordering: .relaxed) >= 2)
    }

    @Test("slow answers and a token rotated mid-run: the token is re-read from its file")
    func tokenRotationAndSlowness() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.state.withLock { $0.delay = 0.05 }
        let h = try Harness(api)
        h.start()
        defer { h.stop() }
        #expect(eventually { h.view.isSynced })
        api.rotateToken(to: "token-2")
        api.dropWatches()
        api.addNamespace("team-f")
        usleep(300_000)
        #expect(api.policy("team-f", GuardNames.blockPolicy) == nil)
        try "token-2\n".write(toFile: api.tokenFile, atomically: true, encoding: .utf8)
        #expect(eventually { canonical(api, "team-f") })
    }

    @Test("the periodic resync is served from the view: in steady state it sends no request")
    func resyncFromView() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        for i in 0..<40 { api.addNamespace("team-\(i)") }
        let h = try Harness(api, resync: 0.3)
        h.start()
        defer { h.stop() }
        #expect(eventually { (0..<40).allSatisfy { canonical(api, "team-\($0)") } })
        usleep(500_000)
        api.clearLog()
        let before = h.provisioner.resyncs.load(ordering: .relaxed)
        #expect(eventually { h.provisioner.resyncs.load(ordering: .relaxed) >= before + 3 })
        #expect(api.requests.filter { !$0.contains("watch=1") && !$0.contains("/leases") }.isEmpty)
        // One drifted policy found by the watch costs one request.
        api.put("networkpolicies", "team-7", GuardNames.allowAPIPolicy,
                api.policy("team-7", GuardNames.allowAPIPolicy)!.setting("spec", loose))
        #expect(eventually { canonical(api, "team-7") })
        #expect(api.requests.filter { !$0.contains("watch=1") } == ["PATCH /apis/networking.k8s.io/v1/namespaces/team-7/networkpolicies/allow-api"])
    }

    @Test("a configuration reload rewrites every guard policy to the new canonical spec")
    func reloadRewrites() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        for ns in ["kube-system", "team-1", "team-2", "team-3"] { api.addNamespace(ns) }
        let h = try Harness(api)
        h.start()
        defer { h.stop() }
        #expect(eventually { ["team-1", "team-2", "team-3"].allSatisfy { canonical(api, $0) } })
        var config = Config.default
        config.nodeCIDRs = [CIDR("10.20.0.0/16")!, CIDR("fd00:20::/64")!]
        h.provisioner.reload(config)
        #expect(eventually { ["team-1", "team-2", "team-3"].allSatisfy { canonical(api, $0, config) } })
        #expect(eventually { GuardPolicies(config: config).isCanonical(
            spec: api.policy("kube-system", GuardNames.blockPolicy)?["spec"] ?? .null, name: GuardNames.blockPolicy, namespace: "kube-system") })
        #expect(eventually { ["team-1", "team-2", "team-3"].allSatisfy(h.view.namespaceHasCanonicalPolicies) })
        // Switching the policy style is a reload like any other.
        config.policyStyle = .seed
        h.provisioner.reload(config)
        #expect(eventually { ["team-1", "team-2", "team-3"].allSatisfy { canonical(api, $0, config) } })
        #expect(eventually { GuardPolicies(config: config).isCanonical(
            spec: api.policy("kube-system", GuardNames.blockPolicy)?["spec"] ?? .null, name: GuardNames.blockPolicy, namespace: "kube-system") })
    }

    @Test("two replicas: both views sync (R6 needs them), only the lease holder writes; the other takes over when it stops")
    func leaderElection() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("pxguard-system")
        let a = try Harness(api, elector: true, identity: "replica-a")
        let b = try Harness(api, elector: true, identity: "replica-b")
        a.start()
        b.start()
        defer { a.stop(); b.stop() }
        #expect(eventually { a.elector!.isLeader != b.elector!.isLeader })
        #expect(eventually { a.view.isSynced && b.view.isSynced })
        let (leader, follower) = a.elector!.isLeader ? (a, b) : (b, a)
        api.addNamespace("team-g")
        #expect(eventually { canonical(api, "team-g") })
        #expect(eventually { follower.view.namespaceHasCanonicalPolicies("team-g") })
        #expect(follower.provisioner.requests.load(ordering: .relaxed) == 0)
        #expect(follower.provisioner.queueDepth == 0, "a follower queues nothing")
        leader.stop()
        #expect(eventually(8) { follower.elector!.isLeader })
        api.addNamespace("team-h")
        #expect(eventually { canonical(api, "team-h") })
        let lease = api.state.withLock { $0.objects["leases/pxguard-system/\(GuardNames.leaseName)"] }
        #expect(lease?["spec"]?["holderIdentity"]?.stringValue == follower.elector!.identity)
        #expect((lease?["spec"]?["leaseTransitions"]?.intValue ?? 0) >= 1)
    }

    @Test("an unreachable API: the metric says so, the view is not in sync (R6 does not apply), nothing throws")
    func unreachable() throws {
        let api = try FakeKubeAPI()
        let url = api.url
        api.shutdown()
        let client = try KubeClient(endpoint: KubeEndpoint(url: url, tokenFile: api.tokenFile, caFile: nil), timeout: 1)
        var settings = Provisioner.Settings()
        settings.informer.backoffBase = 0.05
        let p = Provisioner(client: client, view: ClusterView(config: .default, logger: .none), elector: nil, settings: settings, logger: .none)
        spawnThread(name: "t-prov") { p.run() }
        defer { p.stop() }
        #expect(eventually { p.metricsText.contains("pxguard_provisioner_api_reachable 0") })
        #expect(!p.view.isSynced)
        p.enqueue("x")  // returns at once
    }

    @Test("a restart over a guarded cluster writes nothing: workers wait until both lists are in, even when the policy list fails first")
    func restartWritesNothing() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        let policies = GuardPolicies(config: .default)
        for i in 0..<20 {
            let ns = "team-\(i)"
            api.addNamespace(ns, labels: .obj([GuardNames.guardedLabel: "true", ClusterView.podSecurityLabel: "baseline"]))
            api.state.withLock { s in
                s.namespaces[ns] = FakeKubeAPI.mergePatch(s.namespaces[ns]!, .obj(["metadata": .obj(["annotations": .obj([
                    GuardNames.policiesAnnotation: .string(GuardNames.policiesAnnotationValue)])])]))
            }
            for name in GuardPolicies.names(in: ns) { api.put("networkpolicies", ns, name, policies.policy(name: name, namespace: ns)) }
        }
        api.inject([.init(status: 500, reason: "InternalError", retryAfter: nil, matching: "/v1/networkpolicies?")])
        api.clearLog()
        let h = try Harness(api)
        h.start()
        defer { h.stop() }
        #expect(eventually { h.view.isSynced })
        usleep(300_000)
        #expect(api.requests.filter { !$0.hasPrefix("GET ") }.isEmpty)
        #expect(h.provisioner.requests.load(ordering: .relaxed) == 0)
    }

    @Test("R6 through the watched view: a Pod in a new namespace is denied until its policies are in place, then admitted")
    func r6LiftsWhenGuarded() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        let h = try Harness(api)
        let policy = AdmissionPolicy(config: .default, view: h.view)
        func podCreate(_ namespace: String) throws -> Verdict {
            let review: JSON = .obj(["apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": .obj([
                "uid": "u-1", "kind": .obj(["group": "", "version": "v1", "kind": "Pod"]),
                "resource": .obj(["group": "", "version": "v1", "resource": "pods"]),
                "name": "p", "namespace": .string(namespace), "operation": "CREATE",
                "userInfo": .obj(["username": "alice"]),
                "object": .obj(["spec": .obj(["containers": [.obj(["name": "c", "image": "busybox"])]])]),
            ])])
            let bytes = Array(review.serialized.utf8)
            return try bytes.withUnsafeBytes { raw in try AdmissionRequest.withDecoded(raw) { policy.validate($0) } }
        }
        #expect(try podCreate("team-r6").allowed, "before the first sync R6 does not apply")
        // Writes fail for a while, so the window is visible.
        api.inject((0..<6).map { _ in .init(status: 500, reason: "InternalError", retryAfter: nil, matching: "/namespaces/team-r6") })
        h.start()
        defer { h.stop() }
        #expect(eventually { h.view.isSynced })
        api.addNamespace("team-r6")
        #expect(eventually { h.view.counts.namespaces == 1 })
        let denied = try podCreate("team-r6")
        #expect(!denied.allowed && denied.rule == .unguardedNamespace)
        #expect(denied.message?.contains("being guarded") == true)
        #expect(eventually { (try? podCreate("team-r6").allowed) == true })
        #expect(canonical(api, "team-r6"))
        #expect(h.provisioner.metricsText.contains("pxguard_unguarded_namespaces 0"))
        // (Observed after the view marks the namespace guarded, outside its lock.)
        #expect(eventually { h.provisioner.metricsText.contains("pxguard_namespace_guarded_seconds_count 1") })
    }

    @Test("a watch that cannot be resumed for staleAfterSeconds puts the view out of sync (R6 stops applying) until it is back")
    func staleView() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        let h = try Harness(api)
        h.start()
        defer { h.stop() }
        #expect(eventually { h.view.isSynced })
        api.inject((0..<1000).map { _ in .init(status: 503, reason: "ServiceUnavailable", retryAfter: nil, matching: "/v1/networkpolicies?") })
        api.dropWatches()
        #expect(eventually { !h.view.isSynced })
        #expect(h.provisioner.metricsText.contains("pxguard_view_synced 0"))
        api.state.withLock { $0.faults.removeAll() }
        #expect(eventually { h.view.isSynced })
    }

    @Test("a name that is not a DNS-1123 label never reaches a request path")
    func invalidNames() throws {
        for bad in ["", "A", "a/b", "..", "a?b", "a%2Fb", "-a", "a-", String(repeating: "a", count: 64), "a.b", "é"] {
            #expect(throws: KubeError.self) { try KubePath.namespace(bad) }
        }
        #expect(try KubePath.networkPolicy("allow-api", in: "team-1") == "/apis/networking.k8s.io/v1/namespaces/team-1/networkpolicies/allow-api")
        #expect(KubePath.query("/x", [("labelSelector", "a/b=c d"), ("continue", nil)]) == "/x?labelSelector=a%2Fb%3Dc%20d")
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("Bad_Name")  // an API that lets anything through
        let h = try Harness(api)
        h.start()
        defer { h.stop() }
        api.addNamespace("team-ok")
        #expect(eventually { canonical(api, "team-ok") })
        #expect(!api.requests.contains { $0.contains("Bad_Name") || $0.contains("Bad%5FName") })
        #expect(eventually { h.provisioner.failed.load(ordering: .relaxed) >= 1 })  // counted once the write's answer is in, after the object changed
    }
}

func networkPolicyObject(name: String, namespace: String, labels: JSON, spec: JSON) -> JSON {
    .obj(["apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
          "metadata": .obj(["name": .string(name), "namespace": .string(namespace), "labels": labels]), "spec": spec])
}
