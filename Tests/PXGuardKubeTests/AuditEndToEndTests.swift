import Foundation
import Synchronization
import Testing
@testable import PXGuardCore
@testable import PXGuardKube
@testable import PXGuardPlatform
@testable import PXGuardServer
@testable import PXGuardService

/// Objects as the API returns them, for the audit's tests.
enum AuditFixtures {
    static func pod(_ namespace: String, _ name: String, hostNetwork: Bool, phase: String = "Running") -> JSON {
        .obj([
            "apiVersion": "v1", "kind": "Pod",
            "metadata": .obj(["name": .string(name), "namespace": .string(namespace), "uid": .string("u-" + name),
                              "annotations": .obj(["big": .string(String(repeating: "x", count: 4096))])]),
            "spec": .obj(["hostNetwork": .bool(hostNetwork), "containers": [.obj(["name": "c", "image": "busybox"])]]),
            "status": .obj(["phase": .string(phase)]),
        ])
    }

    static func service(_ namespace: String, _ name: String, externalIPs: [String]) -> JSON {
        .obj([
            "apiVersion": "v1", "kind": "Service",
            "metadata": .obj(["name": .string(name), "namespace": .string(namespace), "uid": .string("u-" + name)]),
            "spec": .obj(["type": "ClusterIP", "clusterIP": "10.96.0.9",
                          "ports": [.obj(["protocol": "TCP", "port": 443, "targetPort": 8443])],
                          "externalIPs": .array(externalIPs.map { .string($0) })]),
        ])
    }

    static let openToNodes: JSON = .obj([
        "podSelector": .object([]), "policyTypes": ["Egress"],
        "egress": [.obj(["to": [.obj(["ipBlock": .obj(["cidr": "70.0.0.0/16"])])], "ports": [.obj(["protocol": "TCP", "port": 9001])]])],
    ])

    static func policy(_ namespace: String, _ name: String, spec: JSON = openToNodes) -> JSON {
        .obj(["apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": .obj(["name": .string(name), "namespace": .string(namespace), "uid": .string("u-" + name)]),
              "spec": spec])
    }

    static func endpoints(_ namespace: String, _ name: String) -> JSON {
        .obj(["apiVersion": "v1", "kind": "Endpoints",
              "metadata": .obj(["name": .string(name), "namespace": .string(namespace), "uid": .string("u-ep-" + name)]),
              "subsets": [.obj(["addresses": [.obj(["ip": "70.0.1.5"])], "ports": [.obj(["port": 9001, "protocol": "TCP"])]])]])
    }

    static func slice(_ namespace: String, _ name: String) -> JSON {
        .obj(["apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": .obj(["name": .string(name), "namespace": .string(namespace), "uid": .string("u-es-" + name)]),
              "addressType": "IPv4", "endpoints": [.obj(["addresses": ["70.0.1.5"]])],
              "ports": [.obj(["port": 9001, "protocol": "TCP"])]])
    }

    /// Every kind of pre-existing hole in `namespace`, plus a pod-network Pod.
    static func holes(_ api: FakeKubeAPI, in namespace: String) {
        api.put("pods", namespace, "hostpod", pod(namespace, "hostpod", hostNetwork: true))
        api.put("pods", namespace, "plainpod", pod(namespace, "plainpod", hostNetwork: false))
        api.put("networkpolicies", namespace, "open", policy(namespace, "open"))
        api.put("services", namespace, "nodeip", service(namespace, "nodeip", externalIPs: ["70.0.3.4"]))
        api.put("endpoints", namespace, "handmade", endpoints(namespace, "handmade"))
        api.put("endpointslices", namespace, "handmade", slice(namespace, "handmade"))
    }
}

@Suite("Audit: judging a captured object as it streams past")
struct AuditStreamJudgeTests {
    /// Captures `object` the way an audit informer does, then judges the capture.
    static func streamed(_ object: JSON, _ kind: AuditKind, budget: Int = 1 << 20, judge: AuditJudge) throws -> AuditRecord {
        var bytes: [UInt8]? = Array(object.serialized.utf8)
        var reader = JSONStreamReader {
            defer { bytes = nil }
            return bytes.map { $0[...] }
        }
        let paths = Informer<AuditItem>.itemPaths(ClusterAudit.fields(kind))
        let capture = try reader.next(paths, budget: budget)
        let kube = Informer<AuditItem>.object(capture)
        return ClusterAudit.record(kind, kube, offset: 0, judge: judge, budget: budget)
    }

    static func whole(_ object: JSON, _ kind: AuditKind, judge: AuditJudge) throws -> AuditRecord {
        try JSONDocument.parse(Array(object.serialized.utf8)) { judge.judge($0, as: kind) }
    }

    @Test("the record from the few captured fields equals the record from the whole object, for every kind")
    func capturedEqualsWhole() throws {
        let judge = AuditJudge(config: .default)
        let cases: [(JSON, AuditKind, [AuditCheck])] = [
            (AuditFixtures.pod("team-a", "h", hostNetwork: true), .pod, [.hostNetwork]),
            (AuditFixtures.pod("team-a", "h", hostNetwork: true, phase: "Succeeded"), .pod, []),
            (AuditFixtures.pod("team-a", "p", hostNetwork: false), .pod, []),
            (AuditFixtures.service("team-a", "s", externalIPs: ["70.0.3.4"]), .service, [.externalIPs]),
            (AuditFixtures.service("team-a", "s", externalIPs: ["192.0.2.1"]), .service, []),
            (AuditFixtures.policy("team-a", "open"), .networkPolicy, [.bypassPolicies, .guardWidens]),
            (AuditFixtures.endpoints("team-a", "e"), .endpoints, [.endpoints]),
            (AuditFixtures.slice("team-a", "e"), .endpointSlice, [.endpoints]),
        ]
        for (object, kind, checks) in cases {
            let fromStream = try Self.streamed(object, kind, judge: judge)
            let fromWhole = try Self.whole(object, kind, judge: judge)
            #expect(fromStream == fromWhole, "\(kind) \(object)")
            #expect(fromStream.findings.map(\.check) == checks)
            #expect(!fromStream.uid.isEmpty)
        }
        // The provisioner's shared NetworkPolicy capture (PolicyProjection's fields, then the uid).
        var bytes: [UInt8]? = Array(AuditFixtures.policy("team-a", "open").serialized.utf8)
        var reader = JSONStreamReader {
            defer { bytes = nil }
            return bytes.map { $0[...] }
        }
        let capture = try reader.next(Informer<PolicyProjection>.itemPaths(PolicyProjection.fields + ClusterAudit.policyExtraFields),
                                      budget: 1 << 20)
        let shared = ClusterAudit.record(.networkPolicy, Informer<PolicyProjection>.object(capture),
                                         offset: PolicyProjection.fields.count, judge: judge, budget: 1 << 20)
        #expect(shared == (try Self.whole(AuditFixtures.policy("team-a", "open"), .networkPolicy, judge: judge)))
        // A guard policy with an owner is not in place, whichever capture judged it.
        var owned = GuardPolicies(config: .default).policy(name: GuardNames.blockPolicy, namespace: "team-a")!
        owned = owned.setting("metadata", owned["metadata"]!.setting("uid", "u-owned").setting("ownerReferences", [.obj([
            "apiVersion": "v1", "kind": "ConfigMap", "name": "mine", "uid": "0d0d0d0d-0000-4000-8000-000000000001"])]))
        let ownedStreamed = try Self.streamed(owned, .networkPolicy, judge: judge)
        #expect(ownedStreamed.guardPolicy == .drifted)
        #expect(ownedStreamed == (try Self.whole(owned, .networkPolicy, judge: judge)))
        var ownedBytes: [UInt8]? = Array(owned.serialized.utf8)
        var ownedReader = JSONStreamReader {
            defer { ownedBytes = nil }
            return ownedBytes.map { $0[...] }
        }
        let ownedCapture = try ownedReader.next(Informer<PolicyProjection>.itemPaths(PolicyProjection.fields + ClusterAudit.policyExtraFields),
                                                budget: 1 << 20)
        #expect(ClusterAudit.record(.networkPolicy, Informer<PolicyProjection>.object(ownedCapture),
                                    offset: PolicyProjection.fields.count, judge: judge, budget: 1 << 20).guardPolicy == .drifted)
    }

    @Test("the default budget judges a policy as large as the API server stores (1.5 MiB spec)")
    func largestStoredPolicy() throws {
        // A tenant policy of 1.5 MiB: many harmless ingress rules, then a bypass.
        let filler: [JSON] = (0..<17_000).map { i in
            let peer: JSON = .obj(["ipBlock": .obj(["cidr": .string("192.0.\(i % 250).0/24")])])
            return .obj(["from": [peer], "ports": [.obj(["protocol": "TCP", "port": .int(1000 + i % 50_000)])]])
        }
        let spec = AuditFixtures.openToNodes.setting("ingress", .array(filler))
            .setting("policyTypes", ["Ingress", "Egress"])
        let object = AuditFixtures.policy("team-a", "large", spec: spec)
        #expect(object.serialized.utf8.count > 1_500_000, "\(object.serialized.utf8.count)")
        let record = try Self.streamed(object, .networkPolicy, budget: InformerSettings().objectBudget, judge: AuditJudge(config: .default))
        let checks = record.findings.map(\.check)
        #expect(checks.contains(.bypassPolicies) && !checks.contains(.unjudged), "\(checks)")
    }

    @Test("an object whose judged fields are over the per-object budget is an unjudged finding, never skipped")
    func overBudget() throws {
        var spec = AuditFixtures.openToNodes
        spec = spec.setting("podSelector", .obj(["matchLabels": .obj(["k": .string(String(repeating: "v", count: 5000))])]))
        let record = try Self.streamed(AuditFixtures.policy("team-a", "huge", spec: spec), .networkPolicy, budget: 1024,
                                       judge: AuditJudge(config: .default))
        #expect(record.findings.map(\.check) == [.unjudged])
        #expect(record.name == "huge" && record.namespace == "team-a")
    }
}

/// The real service (TLS listener, provisioner, audit) against the in-test API.
@Suite("Audit against the in-test Kubernetes API", .serialized)
struct AuditEndToEndTests {
    struct Running {
        let service: Service
        let client: HTTPClientConnection
        let dir: String
        func metrics() throws -> String { try client.request("GET", "/metrics").bodyText }
        func stop() {
            service.stop()
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    static func start(_ api: FakeKubeAPI, config: String) throws -> Running {
        let dir = NSTemporaryDirectory() + "pxguard-audit-e2e-" + UUID().uuidString
        let (service, client) = try startService(api, config: config, dir: dir)
        return Running(service: service, client: client, dir: dir)
    }

    /// The audit's Events in `namespace` (the provisioner's own, for what it writes, left out).
    static func events(_ api: FakeKubeAPI, _ namespace: String) -> [JSON] {
        api.objects("events", in: namespace).compactMap { api.object("events", namespace, $0) }.filter {
            !provisionerReasons.contains($0["reason"]?.stringValue ?? "")
        }
    }

    static let provisionerReasons: Set<String> = ["PodSecurityRaised", "GuardLabelled", "GuardPolicyCreated", "GuardPolicyRewritten",
                                                  "GuardPolicyRepaired", "PodSecurityNotRaised", "GuardPolicyTakeover"]

    static func findings(_ report: JSON?) -> Set<String> {
        Set((report?["results"]?.arrayValue ?? []).compactMap { r in
            guard r["result"]?.stringValue != "warn" else { return nil }
            return "\(r["rule"]?.stringValue ?? "")/\(r["resources"]?.arrayValue?.first?["name"]?.stringValue ?? "")"
        })
    }

    @Test("pre-existing holes of every kind are found; the exempt namespace holding all of them is not; no report CRD: metrics and Events only; repair off changes nothing")
    func holesWithoutReportCRD() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        for ns in ["pxguard-system", "kube-system", "team-a", "portworx"] { api.addNamespace(ns) }
        AuditFixtures.holes(api, in: "team-a")
        AuditFixtures.holes(api, in: "portworx")
        let before = api.policy("team-a", "open")
        let run = try Self.start(api, config: "provisioning: {enabled: true, resyncSeconds: 300}\n")
        defer { run.stop() }

        // Exposed by the three holes (guard policies and labels are provisioned meanwhile).
        #expect(eventually(15) {
            (try? run.metrics()).map {
                $0.contains("pxguard_audit_exposed_namespaces 1\n") && $0.contains("pxguard_audit_synced 1\n")
                    && $0.contains("pxguard_audit_findings{rule=\"hostNetwork\"} 1\n")
                    && $0.contains("pxguard_audit_findings{rule=\"bypassPolicies\"} 1\n")
                    && $0.contains("pxguard_audit_findings{rule=\"externalIPs\"} 1\n")
                    && $0.contains("pxguard_audit_findings{rule=\"guardPolicies\"} 0\n")
                    // The host-network Pod runs: the provisioner holds back the Pod Security raise
                    // (it would reject the Pod), so the level stays below podSecurity.
                    && $0.contains("pxguard_audit_findings{rule=\"optOut\"} 1\n")
            } ?? false
        })
        let metrics = try run.metrics()
        #expect(!metrics.contains("namespace=\""), "no per-namespace label")
        #expect(metrics.contains("pxguard_audit_report_crd{apiVersion=\"wgpolicyk8s.io/v1alpha2\"} 0"))
        // One Warning Event per finding, on the offending object, in team-a only.
        // (Endpoints and EndpointSlice are both "handmade": kinds and names together, or the
        // wait ends at four Events of five.)
        #expect(eventually {
            Self.events(api, "team-a").compactMap { e in e["involvedObject"].map { "\($0["kind"]?.stringValue ?? "")/\($0["name"]?.stringValue ?? "")" } }.sorted()
                == ["EndpointSlice/handmade", "Endpoints/handmade", "NetworkPolicy/open", "Pod/hostpod", "Service/nodeip"]
        })
        let events = Self.events(api, "team-a")
        #expect(events.allSatisfy { $0["type"] == "Warning" && $0["reason"] == "PortworxAPIExposed" })
        #expect(events.first { $0["involvedObject"]?["name"] == "hostpod" }?["involvedObject"]?["uid"] == "u-hostpod")
        #expect(Self.events(api, "portworx").isEmpty)
        // No report written anywhere; repair off: the bypass policy is as it was.
        #expect(!api.requests.contains { $0.hasPrefix("POST") && $0.contains("policyreports") })
        #expect(api.policy("team-a", "open")?["spec"] == before?["spec"])
        // Pods without host network are never listed or watched.
        let podRequests = api.requests.filter { $0.contains("/api/v1/pods") }
        #expect(!podRequests.isEmpty && podRequests.allSatisfy { $0.contains("fieldSelector=spec.hostNetwork%3Dtrue") })
        // Kept per object: records with findings (R8's Endpoints and EndpointSlice on node
        // addresses among them) and guard policies only (the pod-network Pod was judged and dropped).
        let kept = try #require(run.service.provisioner.audit).state.withLock { s in
            s.spaces["team-a"].map { Set($0.records.keys.map { "\($0.kind.rawValue)/\($0.name)" }) } ?? []
        }
        #expect(kept == ["Pod/hostpod", "NetworkPolicy/open", "Service/nodeip", "Endpoints/handmade", "EndpointSlice/handmade",
                         "NetworkPolicy/" + GuardNames.blockPolicy,
                         "NetworkPolicy/" + GuardNames.allowAPIPolicy])
        #expect(try #require(run.service.provisioner.audit).judged.load(ordering: .relaxed) >= 12)
        // Steady state: no Event is repeated.
        let count = Self.events(api, "team-a").count
        usleep(500_000)
        #expect(Self.events(api, "team-a").count == count)
        // The Namespace is deleted, its objects not yet (the namespace controller removes them
        // afterwards): no verdict is left for it (not "exposed, Namespace not seen").
        let guarded = try #require(Self.gauge(try run.metrics(), "pxguard_audit_guarded_namespaces"))
        api.mutate { s in
            let object = FakeKubeAPI.stamp(s.namespaces["team-a"]!, &s)
            s.namespaces["team-a"] = nil
            FakeKubeAPI.record(&s, "DELETED", "namespaces", object)
        }
        #expect(eventually {
            (try? run.metrics()).map {
                Self.gauge($0, "pxguard_audit_exposed_namespaces") == 0 && Self.gauge($0, "pxguard_audit_guarded_namespaces") == guarded - 1
                    && $0.contains("pxguard_audit_findings{rule=\"unjudged\"} 0\n")
            } ?? false
        })
    }

    static func gauge(_ text: String, _ name: String) -> Int? {
        text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Int($0.split(separator: " ")[1]) }
    }

    @Test("with the PolicyReport CRD: a report per exposed namespace, a hole appearing is reported within 5 s and the report goes once it disappears; repair on rewrites the bypass policy")
    func reportsAndRepair() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.serveAPI("wgpolicyk8s.io/v1alpha2", resources: ["policyreports", "clusterpolicyreports"])
        api.serveAPI("openreports.io/v1alpha1", resources: ["reports", "clusterreports"])
        for ns in ["pxguard-system", "kube-system", "team-a", "team-b", "portworx"] { api.addNamespace(ns) }
        AuditFixtures.holes(api, in: "portworx")
        api.put("services", "team-a", "nodeip", AuditFixtures.service("team-a", "nodeip", externalIPs: ["70.0.3.4"]))
        api.put("networkpolicies", "team-a", "open", AuditFixtures.policy("team-a", "open"))
        let run = try Self.start(api, config: "provisioning: {enabled: true, resyncSeconds: 300}\naudit: {repairBypassPolicies: true}\n")
        defer { run.stop() }
        func report(_ ns: String) -> JSON? { api.object("policyreports", ns, AuditVerdict.reportName) }

        // Repair: the bypass policy is rewritten (R4's repair), with an Event; the report
        // then holds only the Service.
        #expect(eventually(15) { Self.findings(report("team-a")) == ["externalIPs/nodeip"] })
        let repaired = try #require(api.policy("team-a", "open"))
        let judge = AuditJudge(config: .default)
        let record = try JSONDocument.parse(Array(repaired.serialized.utf8)) { judge.judge($0, as: .networkPolicy) }
        #expect(!record.findings.contains { $0.check == .bypassPolicies })
        // (The Event goes through the recorder's queue: it may land after the report.)
        #expect(eventually { Self.events(api, "team-a").contains { $0["reason"] == "PortworxAPIBypassRepaired" && $0["involvedObject"]?["name"] == "open" } })
        #expect(report("team-a")?["kind"] == "PolicyReport")
        #expect(report("team-a")?["metadata"]?["labels"]?[GuardNames.managedByKey] == "pxguard")
        #expect(api.objects("reports", in: "team-a").isEmpty, "PolicyReport wins; never both")
        // team-b is exposed only until the provisioner has put its policies and labels in place.
        #expect(eventually { report("team-b") == nil } && report("portworx") == nil)
        #expect(api.objects("policyreports", in: "portworx").isEmpty)

        // A hole appears behind admission's back: reported within 5 s (the first write
        // of its report fails with a 500 and is retried).
        api.inject([.init(status: 500, reason: "InternalError", retryAfter: nil, matching: "/namespaces/team-b/policyreports")])
        api.put("pods", "team-b", "hostpod", AuditFixtures.pod("team-b", "hostpod", hostNetwork: true))
        let appeared = Date()
        #expect(eventually(5) { Self.findings(report("team-b")) == ["hostNetwork/hostpod"] })
        #expect(Date().timeIntervalSince(appeared) <= 5)
        #expect(api.requests.filter { $0.contains("/namespaces/team-b/policyreports") }.count >= 2)
        // It disappears (the pod finishes): the report is removed.
        api.put("pods", "team-b", "hostpod", AuditFixtures.pod("team-b", "hostpod", hostNetwork: true, phase: "Succeeded"))
        #expect(eventually(5) { report("team-b") == nil })
        // The Service hole goes too: team-a's report is removed.
        api.put("services", "team-a", "nodeip", nil)
        #expect(eventually(5) { report("team-a") == nil })
        #expect(eventually { (try? run.metrics())?.contains("pxguard_audit_exposed_namespaces 0\n") == true })
    }

    @Test("only openreports.io served: a Report; a config reload judges every object again (new node subnets close the Service's hole)")
    func openReportsAndReload() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.serveAPI("openreports.io/v1alpha1", resources: ["reports"])
        for ns in ["pxguard-system", "kube-system", "team-a"] { api.addNamespace(ns) }
        api.put("services", "team-a", "nodeip", AuditFixtures.service("team-a", "nodeip", externalIPs: ["70.0.3.4"]))
        let run = try Self.start(api, config: "provisioning: {enabled: true, resyncSeconds: 300}\n")
        defer { run.stop() }
        func report() -> JSON? { api.object("reports", "team-a", AuditVerdict.reportName) }
        #expect(eventually(15) { Self.findings(report()) == ["externalIPs/nodeip"] })
        #expect(report()?["kind"] == "Report" && report()?["apiVersion"] == "openreports.io/v1alpha1")
        #expect(api.objects("policyreports", in: "team-a").isEmpty)
        // 70.0.3.4 is no node address once the nodes are 10.9.0.0/16: the reload relists and the report goes.
        try "nodeCIDRs: [\"10.9.0.0/16\"]\nprovisioning: {enabled: true, resyncSeconds: 300}\n"
            .write(toFile: run.dir + "/config.yaml", atomically: true, encoding: .utf8)
        #expect(eventually(15) { report() == nil })
        #expect(eventually { (try? run.metrics())?.contains("pxguard_audit_exposed_namespaces 0\n") == true })
    }

    @Test("audit.enabled false: no audit informers, no audit metrics")
    func auditOff() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        for ns in ["pxguard-system", "kube-system", "team-a"] { api.addNamespace(ns) }
        AuditFixtures.holes(api, in: "team-a")
        let run = try Self.start(api, config: "provisioning: {enabled: true, resyncSeconds: 300}\naudit: {enabled: false}\n")
        defer { run.stop() }
        #expect(eventually { canonical(api, "team-a") })
        #expect(!(try run.metrics()).contains("pxguard_audit_"))
        #expect(!api.requests.contains { $0.contains("/api/v1/pods") || $0.contains("/api/v1/services") })
        #expect(Self.events(api, "team-a").isEmpty, "no audit Event (the provisioner's own Events are not the audit's)")
    }
}

@Suite("Audit writer: a report CRD installed after start", .serialized)
struct AuditWriterDiscoveryTests {
    @Test("no CRD at start: no report; once the CRD is served, the exposed namespace gets its report at the next lookup, without any change to it")
    func crdInstalledLater() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        for ns in ["pxguard-system", "kube-system", "team-a"] { api.addNamespace(ns) }
        api.put("services", "team-a", "nodeip", AuditFixtures.service("team-a", "nodeip", externalIPs: ["70.0.3.4"]))
        let client = try KubeClient(endpoint: KubeEndpoint(url: api.url, tokenFile: api.tokenFile, caFile: api.caFile), timeout: 5)
        let audit = ClusterAudit(client: client, config: .default, logger: .none)
        let provisioner = Provisioner(client: client, view: ClusterView(config: .default, logger: .none), elector: nil,
                                      settings: Provisioner.Settings(), logger: .none, audit: audit)
        let writer = AuditWriter(client: client, audit: audit, elector: nil, logger: .none, events: nil, discoverySeconds: 0.3)
        let done = Atomic<Int>(0)
        spawnThread(name: "test-provision") { provisioner.run(); done.add(1, ordering: .relaxed) }
        audit.start()
        spawnThread(name: "test-audit") { writer.run(); done.add(1, ordering: .relaxed) }
        defer {
            writer.stop()
            audit.stop()
            provisioner.stop()
            _ = eventually { done.load(ordering: .relaxed) == 2 }
        }
        #expect(eventually { audit.isSynced && audit.verdict("team-a")?.findings.map(\.check) == [.externalIPs] })
        usleep(500_000)
        #expect(api.objects("policyreports", in: "team-a").isEmpty)
        api.serveAPI("wgpolicyk8s.io/v1alpha2", resources: ["policyreports"])
        #expect(eventually(5) { api.object("policyreports", "team-a", AuditVerdict.reportName) != nil })
    }
}
