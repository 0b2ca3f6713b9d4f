import Foundation
import Synchronization
import Testing
@testable import PXGuardCore
@testable import PXGuardKube
@testable import PXGuardPlatform
@testable import PXGuardServer

/// Log lines captured from a `Logger`.
final class LogCapture: Sendable {
    let lines = Locked<[String]>([])
    var logger: Logger { Logger { [lines] line in lines.withLock { $0.append(line) } } }
    func contains(_ text: String) -> Bool { lines.withLock { $0.contains { $0.contains(text) } } }
    func matching(_ text: String) -> [String] { lines.withLock { $0.filter { $0.contains(text) } } }
}

func events(_ api: FakeKubeAPI, reason: String) -> [JSON] {
    api.events().filter { $0["reason"]?.stringValue == reason }
}

@Suite("Safe on day one: takeovers, Pod Security, config changes, dry run, Events", .serialized)
struct DayOneTests {
    @Test("a site's own NetworkPolicy under a guard name is replaced only with a Warning Event and a warn log line naming what was replaced")
    func takeoverIsLoud() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("team-t")
        let theirs: JSON = .obj(["podSelector": .obj(["matchLabels": .obj(["app": "web"])]), "policyTypes": ["Ingress"]])
        api.put("networkpolicies", "team-t", GuardNames.allowAPIPolicy, networkPolicyObject(
            name: GuardNames.allowAPIPolicy, namespace: "team-t", labels: .obj(["owner": "site"]), spec: theirs))
        let logs = LogCapture()
        let h = try Harness(api, logger: logs.logger, events: true)
        h.start()
        defer { h.stop() }
        #expect(eventually { canonical(api, "team-t") })
        #expect(eventually { !events(api, reason: "GuardPolicyTakeover").isEmpty })
        let event = try #require(events(api, reason: "GuardPolicyTakeover").first)
        #expect(event["type"]?.stringValue == "Warning")
        #expect(event["involvedObject"]?["kind"]?.stringValue == "NetworkPolicy")
        #expect(event["involvedObject"]?["name"]?.stringValue == GuardNames.allowAPIPolicy)
        #expect(event["metadata"]?["namespace"]?.stringValue == "team-t")
        #expect(event["message"]?.stringValue?.contains("\"app\":\"web\"") == true, "the message names what was replaced")
        #expect(event["message"]?.stringValue?.contains("guardPolicyNames") == true, "and says how to avoid it")
        let warn = logs.matching("did not manage")
        #expect(warn.count == 1)
        #expect(warn.first?.contains("\"level\":\"warn\"") == true)
        #expect(warn.first?.contains("team-t") == true && warn.first?.contains("Ingress") == true)
        #expect(h.provisioner.takenOver.load(ordering: .relaxed) == 1)
        // The block policy was created, with a Normal Event.
        #expect(eventually { events(api, reason: "GuardPolicyCreated").contains {
            $0["involvedObject"]?["name"]?.stringValue == GuardNames.blockPolicy && $0["type"]?.stringValue == "Normal" } })
    }

    @Test("guardPolicyNames: the policies are created under the configured names and the pxguard.io/policies annotation follows them")
    func configurableNames() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("kube-system")
        api.addNamespace("team-n")
        // The site's own allow-api stays untouched: pxguard uses other names.
        let theirs = networkPolicyObject(name: "allow-api", namespace: "team-n", labels: .object([]), spec: loose)
        api.put("networkpolicies", "team-n", "allow-api", theirs)
        var config = Config.default
        config.guardPolicyNames.block = "pxguard-block"
        config.guardPolicyNames.allowAPI = "pxguard-allow-api"
        let h = try Harness(api, config: config)
        h.start()
        defer { h.stop() }
        let policies = GuardPolicies(config: config)
        #expect(eventually {
            ["pxguard-block", "pxguard-allow-api"].allSatisfy { name in
                api.policy("team-n", name).map { policies.isCanonical(spec: $0["spec"] ?? .null, name: name, namespace: "team-n") } ?? false
            }
        })
        #expect(eventually { api.objects("networkpolicies", in: "kube-system") == ["pxguard-block"] })
        #expect(eventually { api.namespace("team-n")?["metadata"]?["annotations"]?[GuardNames.policiesAnnotation]?.stringValue
                == "pxguard-block,pxguard-allow-api" })
        #expect(api.policy("team-n", "allow-api") == theirs || api.policy("team-n", "allow-api")?["spec"] == loose)
        #expect(eventually { h.view.namespaceHasCanonicalPolicies("team-n") })
    }

    @Test("raising Pod Security records the previous level in pxguard.io/previous-enforce (empty when none) and emits an Event; a second raise keeps the first record")
    func previousEnforce() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("calico-like", labels: .obj([ClusterView.podSecurityLabel: "privileged"]))
        api.addNamespace("bare")
        api.addNamespace("strict", labels: .obj([ClusterView.podSecurityLabel: "restricted"]))
        let h = try Harness(api, events: true)
        h.start()
        defer { h.stop() }
        func annotation(_ ns: String) -> String? {
            api.namespace(ns)?["metadata"]?["annotations"]?[GuardNames.previousEnforceAnnotation]?.stringValue
        }
        #expect(eventually { label(api, "calico-like", ClusterView.podSecurityLabel) == "baseline" })
        #expect(annotation("calico-like") == "privileged")
        #expect(eventually { annotation("bare") == "" })
        #expect(eventually { canonical(api, "strict") })
        #expect(annotation("strict") == nil, "nothing raised, nothing recorded")
        #expect(eventually { events(api, reason: "PodSecurityRaised").count == 2 })
        let event = try #require(events(api, reason: "PodSecurityRaised").first { $0["involvedObject"]?["name"]?.stringValue == "calico-like" })
        #expect(event["involvedObject"]?["kind"]?.stringValue == "Namespace")
        #expect(event["message"]?.stringValue?.contains("from privileged to baseline") == true)

        // podSecurity raised again by a reload: the record of the level before pxguard stays.
        var config = Config.default
        config.podSecurity = .restricted
        h.provisioner.reload(config)
        #expect(eventually { label(api, "calico-like", ClusterView.podSecurityLabel) == "restricted" })
        #expect(annotation("calico-like") == "privileged")
    }

    @Test("a configuration change never denies a pod: policies canonical for the previous config count as in place while paced rewrites proceed, and are counted")
    func configChangeNoBrownout() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        let names = (0..<12).map { "team-\($0)" }
        for ns in names { api.addNamespace(ns) }
        var config = Config.default
        config.provisioning.writesPerSecond = 4
        let h = try Harness(api, config: config)
        h.start()
        defer { h.stop() }
        #expect(eventually { names.allSatisfy { canonical(api, $0) } && names.allSatisfy(h.view.namespaceHasCanonicalPolicies) })

        var next = config
        next.nodeCIDRs = [CIDR("70.0.0.0/16")!, CIDR("10.99.0.0/24")!]
        h.provisioner.reload(next)
        // 24 rewrites at 4 per second: several seconds in which the old form is what the cluster holds.
        var checks = 0
        var alwaysInPlace = true
        while !names.allSatisfy({ canonical(api, $0, next) }) && checks < 2_000 {
            alwaysInPlace = alwaysInPlace && names.allSatisfy(h.view.namespaceHasCanonicalPolicies)
            checks += 1
            usleep(5_000)
        }
        #expect(alwaysInPlace, "R6 never saw a namespace out of place during the rewrite")
        #expect(checks > 10, "the rewrite took a while (paced), so the check above saw it in progress")
        #expect(eventually { names.allSatisfy { canonical(api, $0, next) } })
        #expect(eventually { h.provisioner.rewritten.load(ordering: .relaxed) == 24 })
        #expect(h.provisioner.pacer.paced.load(ordering: .relaxed) > 0)
        #expect(h.provisioner.repaired.load(ordering: .relaxed) == 0, "a rewrite is not a repair")
        #expect(h.provisioner.metricsText.contains("pxguard_provisioner_actions_total{action=\"rewritten\"} 24"))
        #expect(eventually { h.view.counts.rewritesPending == 0 })
        // Once nothing holds the old form, it stops counting: a policy put back in it is not in place.
        h.provisioner.resync()
        #expect(h.view.state.withLock { $0.previous } == nil)
    }

    @Test("a new namespace does not wait behind a paced rewrite: the rewrite lane is its own, the workers stay free")
    func newNamespaceDuringRewrite() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        let names = (0..<10).map { "old-\($0)" }
        for ns in names { api.addNamespace(ns) }
        var config = Config.default
        config.provisioning.writesPerSecond = 1
        let h = try Harness(api, config: config)
        h.start()
        defer { h.stop() }
        #expect(eventually { names.allSatisfy { canonical(api, $0) } })
        var next = config
        next.nodeCIDRs = [CIDR("10.77.0.0/16")!]
        h.provisioner.reload(next)
        // 20 rewrites at 1 per second: about 20 s of rewriting.
        #expect(eventually { h.provisioner.rewritten.load(ordering: .relaxed) >= 1 })
        api.addNamespace("fresh")
        #expect(eventually(5) { canonical(api, "fresh", next) }, "created at once, in the new form")
        #expect(h.view.counts.rewritesPending > 5, "while most of the rewrite is still ahead")
        #expect(h.provisioner.metricsText.contains("pxguard_provisioner_rewrite_queue_depth"))
    }

    /// A view that has seen `namespaces`, and the canonical pair (of `config`) in `guarded`.
    func makeView(_ namespaces: [String], guarded: [String]) throws -> ClusterView {
        let view = ClusterView(config: .default, logger: .none)
        for name in namespaces {
            _ = view.applyNamespace(try NamespaceProjection(json: .obj(["metadata": .obj(["name": .string(name)])])), deleted: false)
        }
        for name in guarded { try applyPair(GuardPolicies(config: .default), in: name, to: view) }
        return view
    }

    func applyPair(_ policies: GuardPolicies, in namespace: String, to view: ClusterView, deleted: Bool = false) throws {
        for policy in policies.names(for: namespace).compactMap({ policies.policy(name: $0, namespace: namespace) }) {
            _ = view.applyPolicy(try PolicyProjection(json: policy), deleted: deleted)
        }
    }

    @Test("R6 rule through the view: a namespace whose policies are in the previous form is in place; one without policies is not")
    func previousFormInView() throws {
        let view = try makeView(["a", "b"], guarded: ["a"])
        #expect(view.namespaceHasCanonicalPolicies("a"))
        var next = Config.default
        next.nodeCIDRs = [CIDR("10.0.0.0/8")!]
        let work = view.reload(next)
        #expect(Set(work) == ["a", "b"])
        #expect(view.namespaceHasCanonicalPolicies("a"), "previous form: in place")
        #expect(!view.namespaceHasCanonicalPolicies("b"))
        #expect(view.plan(for: "a").rewrite.count == 2 && view.plan(for: "a").repair.isEmpty)
        // A spec that was canonical for neither config is drift, not in place.
        _ = view.applyPolicy(try PolicyProjection(json: networkPolicyObject(name: GuardNames.blockPolicy, namespace: "a",
                                                                            labels: .obj([GuardNames.managedByKey: "pxguard"]), spec: loose)),
                             deleted: false)
        #expect(!view.namespaceHasCanonicalPolicies("a"))
        #expect(view.plan(for: "a").repair == [GuardNames.blockPolicy])
    }

    @Test("guardPolicyNames changed by reload: a namespace in place under the old names stays in place for R6 until its new pair is")
    func renameInView() throws {
        let view = try makeView(["a", "b", "c"], guarded: ["a", "b"])
        var renamed = Config.default
        renamed.guardPolicyNames.block = "guard-block"
        renamed.guardPolicyNames.allowAPI = "guard-api"
        _ = view.reload(renamed)
        #expect(view.namespaceHasCanonicalPolicies("a") && view.namespaceHasCanonicalPolicies("b"),
                "guarded by the old pair while the new one is written")
        #expect(!view.namespaceHasCanonicalPolicies("c"), "never guarded: R6 still holds its pods")
        // The old pair is no guard policy any more (R2 lets it go): once one of it is deleted, it counts no more.
        _ = view.applyPolicy(try PolicyProjection(json: GuardPolicies(config: .default).policy(name: GuardNames.allowAPIPolicy,
                                                                                               namespace: "b")!), deleted: true)
        #expect(!view.namespaceHasCanonicalPolicies("b"), "its old pair is broken")
        // The new pair lands: in place by it, and nothing is kept for it any more.
        try applyPair(GuardPolicies(config: renamed), in: "a", to: view)
        #expect(view.namespaceHasCanonicalPolicies("a"))
        #expect(view.state.withLock { $0.inPlaceUnderOldNames.isEmpty })
    }

    @Test("provisioning.dryRun reports every write it would make (a takeover included) and writes nothing")
    func dryRun() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("kube-system")
        api.addNamespace("team-d", labels: .obj([ClusterView.podSecurityLabel: "privileged"]))
        api.put("networkpolicies", "team-d", GuardNames.allowAPIPolicy, networkPolicyObject(
            name: GuardNames.allowAPIPolicy, namespace: "team-d", labels: .object([]), spec: loose))
        var config = Config.default
        config.provisioning.dryRun = true
        let logs = LogCapture()
        let h = try Harness(api, config: config, logger: logs.logger)
        h.start()
        defer { h.stop() }
        #expect(eventually { h.provisioner.previewed.load(ordering: .relaxed) >= 4 })
        #expect(eventually { logs.contains("dry run: would replace a NetworkPolicy that pxguard does not manage") })
        #expect(logs.contains("dry run: would create guard policy"))
        #expect(logs.contains("dry run: would patch namespace") && logs.contains("previous-enforce"))
        usleep(300_000)
        let writes = api.requests.filter { !$0.hasPrefix("GET ") }
        #expect(writes.isEmpty, "\(writes)")
        #expect(api.objects("networkpolicies", in: "kube-system").isEmpty)
        #expect(label(api, "team-d", ClusterView.podSecurityLabel) == "privileged")
    }
}

@Suite("EventRecorder: client-go's correlation against the in-test API", .serialized)
struct EventRecorderTests {
    func recorder(_ api: FakeKubeAPI, _ settings: EventRecorder.Settings = .init(), clock: Locked<Double>? = nil) throws -> EventRecorder {
        let client = try KubeClient(endpoint: KubeEndpoint(url: api.url, tokenFile: api.tokenFile, caFile: api.caFile), timeout: 5)
        if let clock { return EventRecorder(client: client, instance: "pod-a", settings: settings, logger: .none, now: { clock.withLock { $0 } }) }
        return EventRecorder(client: client, instance: "pod-a", settings: settings, logger: .none)
    }

    @Test("the same event again is one Event whose count rises (dedup), in default for a cluster-scoped object")
    func dedup() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        let r = try recorder(api)
        spawnThread(name: "t-events") { r.run() }
        defer { r.stop() }
        for _ in 0..<3 { r.record(.namespace("team-a"), .normal, reason: "GuardLabelled", message: "pxguard set pxguard.io/guarded=true") }
        // The counters move after the API answered: wait for them, not for the stored count.
        #expect(eventually { r.aggregated.load(ordering: .relaxed) == 2 })
        #expect(api.events().count == 1 && api.events().first?["count"]?.intValue == 3)
        let e = api.events()[0]
        #expect(e["metadata"]?["namespace"]?.stringValue == "default")
        #expect(e["source"]?["component"]?.stringValue == "pxguard")
        #expect(e["involvedObject"]?["kind"]?.stringValue == "Namespace")
        #expect(r.created.load(ordering: .relaxed) == 1 && r.aggregated.load(ordering: .relaxed) == 2)
    }

    @Test("more than aggregateAfter distinct messages for one object and reason are combined into one Event")
    func aggregation() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        var settings = EventRecorder.Settings()
        settings.aggregateAfter = 3
        let r = try recorder(api, settings)
        spawnThread(name: "t-events") { r.run() }
        defer { r.stop() }
        let object = EventRecorder.ObjectReference.networkPolicy("x", in: "team-a")
        api.addNamespace("team-a")
        for i in 0..<10 { r.record(object, .warning, reason: "Finding", message: "finding \(i)") }
        #expect(eventually { r.created.load(ordering: .relaxed) + r.aggregated.load(ordering: .relaxed) == 10 })
        let all = api.events()
        #expect(all.count == 4, "three distinct, then one combined")
        let combined = try #require(all.first { $0["message"]?.stringValue?.hasPrefix("(combined from similar events): ") == true })
        #expect(combined["count"]?.intValue == 7)
        #expect(combined["message"]?.stringValue?.hasSuffix("finding 3") == true, "the first combined message stays; count and lastTimestamp move (as client-go patches)")
    }

    @Test("the spam filter: a burst per object, then one per refill interval; what it refuses is counted, other objects unaffected")
    func spamFilter() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        var settings = EventRecorder.Settings()
        settings.burst = 5
        settings.refillSeconds = 60
        let clock = Locked<Double>(1000)
        let r = try recorder(api, settings, clock: clock)
        let noisy = EventRecorder.ObjectReference.namespace("noisy")
        let accepted = (0..<20).filter { r.record(noisy, .warning, reason: "R\($0)", message: "m") }.count
        #expect(accepted == 5)
        #expect(r.dropped.load(ordering: .relaxed) == 15)
        #expect(r.record(.namespace("quiet"), .normal, reason: "R", message: "m"))
        clock.withLock { $0 += 60 }
        #expect(r.record(noisy, .warning, reason: "later", message: "m"), "one token back after refillSeconds")
        #expect(!r.record(noisy, .warning, reason: "later2", message: "m"))
        #expect(r.queueDepth == 7)
    }

    @Test("an object's uid is on its Event and sets a recreated object apart")
    func uid() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("team-a")
        var settings = EventRecorder.Settings()
        settings.burst = 1
        let r = try recorder(api, settings)
        spawnThread(name: "t-events") { r.run() }
        defer { r.stop() }
        let pod = EventRecorder.ObjectReference(apiVersion: "v1", kind: "Pod", namespace: "team-a", name: "hostpod", uid: "u-1")
        #expect(r.record(pod, .warning, reason: "PortworxAPIExposed", message: "m"))
        #expect(!r.record(pod, .warning, reason: "PortworxAPIExposed", message: "m2"), "its one token is spent")
        var recreated = pod
        recreated.uid = "u-2"
        #expect(r.record(recreated, .warning, reason: "PortworxAPIExposed", message: "m"), "a recreated object is another object")
        #expect(eventually { r.created.load(ordering: .relaxed) == 2 })
        let uids = Set(api.events().compactMap { $0["involvedObject"]?["uid"]?.stringValue })
        #expect(uids == ["u-1", "u-2"])
    }

    @Test("the audit's Events over all objects are capped by its own bucket; the provisioner's Events are not")
    func auditBucket() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("team-a")
        let r = try recorder(api)
        let client = try KubeClient(endpoint: KubeEndpoint(url: api.url, tokenFile: api.tokenFile, caFile: api.caFile), timeout: 5)
        let writer = AuditWriter(client: client, audit: ClusterAudit(client: client, config: .default, logger: .none), elector: nil,
                                 logger: .none, events: r, eventBudget: (burst: 5, perSecond: 0.001))
        for i in 0..<20 {
            writer.warn(AuditObject(kind: .service, namespace: "team-a", name: "s\(i)"), reason: "PortworxAPIExposed", message: "x")
        }
        #expect(writer.events.load(ordering: .relaxed) == 5 && writer.eventsDropped.load(ordering: .relaxed) == 15)
        // The provisioner's Events go through the same recorder, untouched by the audit's bucket.
        let taken = (0..<20).filter { r.record(.namespace("ns-\($0)"), .normal, reason: "GuardLabelled", message: "m") }
        #expect(taken.count == 20)
        #expect(r.queueDepth == 25)
        #expect(writer.metricsText.contains("pxguard_audit_events_dropped_total 15\n"))
    }
}

@Suite("Pod Security is never raised over running Pods it would reject", .serialized)
struct PodSecurityHoldBackTests {
    static func pod(_ namespace: String, _ name: String, hostNetwork: Bool, phase: String = "Running") -> JSON {
        .obj(["apiVersion": "v1", "kind": "Pod", "metadata": .obj(["name": .string(name), "namespace": .string(namespace)]),
              "spec": .obj(["hostNetwork": .bool(hostNetwork), "containers": [.obj(["name": "c", "image": "calico/node"])]]),
              "status": .obj(["phase": .string(phase)])])
    }

    @Test("calico-like namespace: the level stays, a warn line and a Warning Event name the Pods; the guard labels and policies still go in; once the Pods are gone, the next resync raises it")
    func heldBack() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("calico-system", labels: .obj([ClusterView.podSecurityLabel: "privileged"]))
        api.addNamespace("apps")
        api.put("pods", "calico-system", "calico-node-1", Self.pod("calico-system", "calico-node-1", hostNetwork: true))
        api.put("pods", "calico-system", "done-job", Self.pod("calico-system", "done-job", hostNetwork: false, phase: "Succeeded"))
        api.put("pods", "apps", "web", Self.pod("apps", "web", hostNetwork: false))
        api.put("pods", "apps", "old", Self.pod("apps", "old", hostNetwork: true, phase: "Failed"))
        let logs = LogCapture()
        let h = try Harness(api, resync: 1, logger: logs.logger, events: true)
        h.start()
        defer { h.stop() }
        #expect(eventually { canonical(api, "calico-system") && label(api, "calico-system", GuardNames.guardedLabel) == "true" })
        #expect(eventually { label(api, "apps", ClusterView.podSecurityLabel) == "baseline" }, "finished and compliant Pods do not hold it back")
        #expect(label(api, "calico-system", ClusterView.podSecurityLabel) == "privileged")
        #expect(eventually { !events(api, reason: "PodSecurityNotRaised").isEmpty })
        let event = try #require(events(api, reason: "PodSecurityNotRaised").first)
        #expect(event["type"]?.stringValue == "Warning")
        #expect(event["message"]?.stringValue?.contains("calico-node-1 (hostNetwork=true)") == true)
        #expect(event["message"]?.stringValue?.contains("done-job") == false)
        #expect(logs.matching("Pod Security level not raised").first?.contains("calico-node-1") == true)
        #expect(h.provisioner.heldBack.load(ordering: .relaxed) >= 1)
        // The Pod goes away: the level is raised at a later resync.
        api.put("pods", "calico-system", "calico-node-1", nil)
        #expect(eventually(15) { label(api, "calico-system", ClusterView.podSecurityLabel) == "baseline" })
        #expect(api.namespace("calico-system")?["metadata"]?["annotations"]?[GuardNames.previousEnforceAnnotation]?.stringValue == "privileged")
    }
}
