import Testing
@testable import PXGuardCore

/// R2/R3 for the cluster-scoped guard objects, and R6 standing down with them.
@Suite("R2/R3 cluster-scoped guard objects")
struct ClusterGuardRuleTests {
    static func config(_ backend: GuardBackend) -> Config {
        var c = Config.default
        c.guardBackend = backend
        return c
    }

    static func group(_ object: JSON) -> String {
        String((object["apiVersion"]?.stringValue ?? "").split(separator: "/")[0])
    }

    /// A review of `operation` on `object` (old: the canonical object).
    static func review(_ operation: String, _ object: JSON?, old: JSON?, user: String = "alice@example.com") -> Review {
        let any = object ?? old!
        return Review(group: group(any), kind: any["kind"]?.stringValue ?? "", operation: operation, namespace: "",
                      name: any["metadata"]?["name"]?.stringValue ?? "", user: user, object: object, oldObject: old)
    }

    static let cases: [(GuardBackend, Int)] = GuardBackend.discoveryOrder.flatMap { backend in
        ClusterGuardPolicies(config: config(backend)).objects.indices.map { (backend, $0) }
    }

    @Test("R2: deleting any guard object of the backend in effect is denied", arguments: cases)
    func deleteDenied(_ backend: GuardBackend, _ index: Int) throws {
        let object = ClusterGuardPolicies(config: Self.config(backend)).objects[index]
        let policy = AdmissionPolicy(config: Self.config(backend))
        let v = try validate(Self.review("DELETE", nil, old: object).bytes, policy)
        #expect(!v.allowed)
        #expect(v.rule == .guardPolicies)
        #expect(v.message?.hasPrefix("pxguard: guardPolicies: deleting \(object["kind"]!.stringValue!)") == true)
        // The server's own service account (the provisioner switching backends) may.
        var own = Self.review("DELETE", nil, old: object)
        own.user = Config.default.serviceAccount
        #expect(try validate(own.bytes, policy).allowed)
        // With the NetworkPolicy backend (or auto, unresolved) the same object is nobody's guard.
        #expect(try validate(Self.review("DELETE", nil, old: object).bytes, AdmissionPolicy(config: Self.config(.networkpolicy))).allowed)
    }

    @Test("R3: a label change that keeps managed-by is allowed; a canonical re-create too", arguments: cases)
    func labelChangeAllowed(_ backend: GuardBackend, _ index: Int) throws {
        let object = ClusterGuardPolicies(config: Self.config(backend)).objects[index]
        let policy = AdmissionPolicy(config: Self.config(backend))
        let relabelled = object.setting("metadata", object["metadata"]!.setting("labels", .obj([
            GuardNames.managedByKey: "pxguard", "team": "platform"])))
        #expect(try validate(Self.review("UPDATE", relabelled, old: object).bytes, policy).allowed)
        #expect(try validate(Self.review("CREATE", object, old: nil).bytes, policy).allowed)
    }

    /// Weakenings an admin with RBAC on the kind might try.
    static let weakenings: [(String, GuardBackend, @Sendable (JSON) -> JSON)] = [
        ("ANP: Deny turned into Pass", .adminnetworkpolicy, { edit($0) { s in
            s.setting("egress", .array((s["egress"]?.arrayValue ?? []).map { $0.setting("action", "Pass") })) } }),
        ("ANP: nodes peer turned into an empty namespaces peer", .adminnetworkpolicy, { edit($0) { s in
            s.setting("egress", .array((s["egress"]?.arrayValue ?? []).map { $0.setting("to", [.obj(["namespaces": .object([])])]) })) } }),
        ("ANP: priority lowered", .adminnetworkpolicy, { edit($0) { $0.setting("priority", 999) } }),
        ("Calico: Pass first", .calico, { edit($0) { s in
            s.setting("egress", .array((s["egress"]?.arrayValue ?? []).reversed())) } }),
        ("Calico: selector narrowed", .calico, { edit($0) { $0.setting("selector", "app == 'none'") } }),
        ("Cilium: default deny off removed", .cilium, { edit($0) { $0.setting("enableDefaultDeny", .null).setting("egressDeny", []) } }),
        ("Cilium: one entity dropped", .cilium, { edit($0) { s in
            s.setting("egressDeny", .array((s["egressDeny"]?.arrayValue ?? []).map { $0.setting("toEntities", ["host"]) })) } }),
    ]

    static func edit(_ object: JSON, _ change: (JSON) -> JSON) -> JSON {
        object.setting("spec", change(object["spec"] ?? .object([])))
    }

    @Test("R3: a weakened spec is denied on UPDATE and on CREATE", arguments: weakenings.map(\.0))
    func weakeningDenied(_ label: String) throws {
        let (_, backend, weaken) = try #require(Self.weakenings.first { $0.0 == label })
        let policy = AdmissionPolicy(config: Self.config(backend))
        for object in ClusterGuardPolicies(config: Self.config(backend)).objects where object["kind"]?.stringValue != "Tier" {
            let weakened = weaken(object)
            let v = try validate(Self.review("UPDATE", weakened, old: object).bytes, policy)
            #expect(!v.allowed, "\(label) on \(object["metadata"]!["name"]!.stringValue!)")
            #expect(v.message?.contains("canonical guard spec") == true)
            #expect(!(try validate(Self.review("CREATE", weakened, old: nil).bytes, policy).allowed))
        }
    }

    @Test("R3: dropping the managed-by label or adding an owner is denied", arguments: GuardBackend.discoveryOrder)
    func labelAndOwner(_ backend: GuardBackend) throws {
        let policy = AdmissionPolicy(config: Self.config(backend))
        let object = ClusterGuardPolicies(config: Self.config(backend)).objects[0]
        let unlabelled = object.setting("metadata", object["metadata"]!.setting("labels", .null))
        #expect(!(try validate(Self.review("UPDATE", unlabelled, old: object).bytes, policy).allowed))
        let owned = object.setting("metadata", object["metadata"]!.setting("ownerReferences", [.obj([
            "apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "1"])]))
        #expect(!(try validate(Self.review("UPDATE", owned, old: object).bytes, policy).allowed))
    }

    @Test("R3: the managed-by label is reserved on other objects of the guard's kinds", arguments: GuardBackend.discoveryOrder)
    func reservedLabel(_ backend: GuardBackend) throws {
        let policy = AdmissionPolicy(config: Self.config(backend))
        let object = ClusterGuardPolicies(config: Self.config(backend)).objects.last!
        let other = object.setting("metadata", object["metadata"]!.setting("name", "someone-elses"))
        #expect(!(try validate(Self.review("CREATE", other, old: nil).bytes, policy).allowed))
        // Without the label, other objects of the kind are none of pxguard's business.
        let plain = other.setting("metadata", other["metadata"]!.setting("labels", .null))
        #expect(try validate(Self.review("CREATE", plain, old: nil).bytes, policy).allowed)
        #expect(try validate(Self.review("DELETE", nil, old: plain).bytes, policy).allowed)
        // A labelled one from before, being deleted: its finalizer may still be removed.
        let deleting = other.setting("metadata", other["metadata"]!.setting("deletionTimestamp", "2026-12-07T07:00:00Z")
            .setting("finalizers", ["example.com/cleanup"]))
        let released = deleting.setting("metadata", deleting["metadata"]!.setting("finalizers", .null))
        #expect(try validate(Self.review("UPDATE", released, old: deleting).bytes, policy).allowed)
        #expect(!(try validate(Self.review("UPDATE", deleting.setting("metadata", other["metadata"]!), old: other).bytes, policy).allowed))
        // Adding the label to an object whose deletion has begun is still refused.
        let plainDeleting = plain.setting("metadata", plain["metadata"]!.setting("deletionTimestamp", "2026-12-07T07:00:00Z")
            .setting("finalizers", ["example.com/hold"]))
        #expect(!(try validate(Self.review("UPDATE", deleting, old: plainDeleting).bytes, policy).allowed))
    }

    /// A view that is in sync and knows no guard policies anywhere.
    struct EmptyView: GuardView {
        var isSynced: Bool { true }
        func namespaceHasCanonicalPolicies(_ namespace: String) -> Bool { false }
    }

    @Test("R6 stands down with a cluster-scoped backend and applies with NetworkPolicy", arguments: GuardBackend.allCases)
    func unguardedNamespace(_ backend: GuardBackend) throws {
        let policy = AdmissionPolicy(config: Self.config(backend), view: EmptyView())
        let review = Review(kind: "Pod", operation: "CREATE", namespace: "team-a", object: pod(hostNetwork: nil))
        let v = try validate(review.bytes, policy)
        #expect(v.allowed == backend.isClusterScoped, "\(backend)")
    }

    @Test("R6 applies with calico while its guard cannot be written (nodeCIDRs: auto, no node address yet)")
    func unguardedWhileCalicoPending() throws {
        var config = Config.install
        config.guardBackend = .calico
        let review = Review(kind: "Pod", operation: "CREATE", namespace: "team-a", object: pod(hostNetwork: nil))
        #expect(!(try validate(review.bytes, AdmissionPolicy(config: config, view: EmptyView())).allowed))
        let known = config.withNodeBlocks([CIDR("10.0.3.0/24")!])
        #expect(try validate(review.bytes, AdmissionPolicy(config: known, view: EmptyView())).allowed)
    }
}

/// Seed limitation 4: can the server tell that nothing enforces the policies?
@Suite("Network plugin assessment")
struct CNIAssessmentTests {
    @Test("flannel alone is not enforcing; with Calico's API (Canal) or an enforcing DaemonSet it is; nothing known: cannot tell")
    func verdicts() {
        #expect(CNIAssessment(groups: [], daemonSets: ["kube-flannel-ds"]).verdict == .notEnforcing)
        #expect(CNIAssessment(groups: ["crd.projectcalico.org"], daemonSets: ["kube-flannel-ds"]).verdict == .enforcing)
        #expect(CNIAssessment(groups: [], daemonSets: ["canal"]).plugins == ["calico"])
        #expect(CNIAssessment(groups: ["cilium.io"], daemonSets: nil).verdict == .enforcing)
        #expect(CNIAssessment(groups: [], daemonSets: nil).verdict == .unknown)
        #expect(CNIAssessment(groups: [], daemonSets: ["aws-node"]).verdict == .unknown)
        let flannel = CNIAssessment(groups: [], daemonSets: ["kube-flannel-ds"])
        #expect(flannel.message.contains("do nothing") && flannel.message.contains("render iptables"))
    }
}

@Suite("Webhook registrations: the cluster-scoped guard kinds reach R2/R3")
struct ClusterGuardRegistrationTests {
    static func config(_ backend: GuardBackend) -> Config {
        var c = Config.default
        c.guardBackend = backend
        return c
    }

    @Test("CREATE, UPDATE and DELETE of each kind a backend writes go to /validate (all of them under auto)",
          arguments: GuardBackend.allCases)
    func kindsRegistered(_ configured: GuardBackend) {
        let hooks = InstallBundle(config: Self.config(configured), caBundlePEM: nil).webhooks
        for backend in GuardBackend.discoveryOrder {
            let expected = configured == backend || configured == .auto
            for resource in backend.resources {
                for operation in ["CREATE", "UPDATE", "DELETE"] {
                    let request = APIServerRequest(operation: operation, group: resource.group, resource: resource.plural,
                                                   namespace: "", clusterScoped: true)
                    #expect(request.sentTo(hooks).contains("networkpolicies.pxguard.io") == expected,
                            "\(configured): \(operation) \(resource.plural)")
                }
            }
        }
    }
}
