import Testing
@testable import PXGuardCore

/// A view of the cluster the test sets by hand.
struct StaticView: GuardView {
    var isSynced: Bool
    var guarded: Set<String>
    func namespaceHasCanonicalPolicies(_ namespace: String) -> Bool { guarded.contains(namespace) }
}

@Suite("R6 unguardedNamespace")
struct UnguardedNamespaceRuleTests {
    static let pod: JSON = .obj(["spec": .obj(["containers": [.obj(["name": "c", "image": "busybox"])]])])

    func policy(synced: Bool = true, guarded: Set<String> = ["team-ok"], config: Config = .default) -> AdmissionPolicy {
        AdmissionPolicy(config: config, view: StaticView(isSynced: synced, guarded: guarded))
    }

    @Test("R6: in sync, a Pod CREATE in a guarded namespace without both canonical policies is denied")
    func denied() throws {
        let v = try validate(Review(namespace: "team-new", object: Self.pod).bytes, policy())
        #expect(!v.allowed)
        #expect(v.rule == .unguardedNamespace)
        let message = try #require(v.message)
        #expect(message.hasPrefix("pxguard: unguardedNamespace:"))
        #expect(message.contains("being guarded"))
        #expect(message.contains("retry in a few seconds") || message.contains("Retry in a few seconds"))
    }

    @Test("R6: a namespace that holds both canonical policies admits pods")
    func guardedAllowed() throws {
        #expect(try validate(Review(namespace: "team-ok", object: Self.pod).bytes, policy()).allowed)
    }

    @Test("R6: does not apply before the first sync, nor without a Kubernetes API")
    func notSynced() throws {
        #expect(try validate(Review(namespace: "team-new", object: Self.pod).bytes, policy(synced: false)).allowed)
        #expect(try validate(Review(namespace: "team-new", object: Self.pod).bytes, AdmissionPolicy(config: .default)).allowed)
    }

    @Test("R6: stands aside while provisioning is a dry run (no guard policy will be written to wait for)")
    func dryRun() throws {
        var config = Config.default
        config.provisioning.dryRun = true
        #expect(try validate(Review(namespace: "team-new", object: Self.pod).bytes, policy(config: config)).allowed)
    }

    struct Case: Sendable, CustomTestStringConvertible {
        let what: String
        let review: Review
        var testDescription: String { what }
    }

    static let untouched: [Case] = [
        Case(what: "exempt namespace", review: Review(namespace: "kube-system", object: pod)),
        Case(what: "Pod UPDATE", review: Review(operation: "UPDATE", namespace: "team-new", object: pod, oldObject: pod)),
        Case(what: "Pod DELETE", review: Review(operation: "DELETE", namespace: "team-new", oldObject: pod)),
        Case(what: "pods/exec subresource", review: Review(operation: "CONNECT", namespace: "team-new", subResource: "exec")),
        Case(what: "pods/binding", review: Review(namespace: "team-new", object: pod, subResource: "binding")),
        Case(what: "a Deployment (its pods are judged)", review: Review(group: "apps", kind: "Deployment", namespace: "team-new",
                                                                       object: .obj(["spec": .obj(["template": pod])]))),
    ]

    @Test("R6: only Pod CREATE in guarded namespaces is judged", arguments: untouched)
    func scope(_ c: Case) throws {
        #expect(try validate(c.review.bytes, policy()).allowed)
    }

    @Test("R6: modes and exemptions apply as for every rule")
    func modes() throws {
        var config = Config.default
        config.ruleModes[.unguardedNamespace] = .warn
        let warned = try validate(Review(namespace: "team-new", object: Self.pod).bytes, policy(config: config))
        #expect(warned.allowed && warned.decision == .warn && warned.warnings.count == 1)
        config.ruleModes[.unguardedNamespace] = .audit
        let audited = try validate(Review(namespace: "team-new", object: Self.pod).bytes, policy(config: config))
        #expect(audited.allowed && audited.decision == .audit)
        var exempt = Config.default
        exempt.exemptGroups = ["breakglass"]
        let v = try validate(Review(namespace: "team-new", groups: ["breakglass"], object: Self.pod).bytes, policy(config: exempt))
        #expect(v.allowed && v.decision == .exempt)
    }

    static let hostNetworkPod: JSON = .obj(["spec": .obj(["hostNetwork": true, "containers": [.obj(["name": "c", "image": "busybox"])]])])

    @Test("modes: a hostNetwork finding in warn or audit mode does not hide R6's denial of the same pod", arguments: [Mode.warn, .audit])
    func laterRuleStillDenies(_ mode: Mode) throws {
        var config = Config.default
        config.ruleModes[.hostNetwork] = mode
        let v = try validate(Review(namespace: "team-new", object: Self.hostNetworkPod).bytes, policy(config: config))
        #expect(!v.allowed && v.rule == .unguardedNamespace && v.decision == .deny)
        #expect(v.message?.hasPrefix("pxguard: unguardedNamespace:") == true)
        // The earlier finding is kept: its warning, and its rule in the audit annotations.
        #expect(v.warnings.count == (mode == .warn ? 1 : 0))
        #expect(v.warnings.allSatisfy { $0.hasPrefix("pxguard: hostNetwork:") })
        #expect(v.auditAnnotations.map(\.key) == ["rule", "decision", "hostNetwork"])
        #expect(v.auditAnnotations.map(\.value) == ["unguardedNamespace", "deny", mode.rawValue])
        #expect(v.auditAnnotations.allSatisfy { !$0.key.contains("/") })
    }

    @Test("modes: two findings that allow are both reported, the first one as `rule`")
    func findingsAccumulate() throws {
        var config = Config.default
        config.ruleModes[.hostNetwork] = .warn
        config.ruleModes[.unguardedNamespace] = .warn
        let v = try validate(Review(namespace: "team-new", object: Self.hostNetworkPod).bytes, policy(config: config))
        #expect(v.allowed && v.rule == .hostNetwork && v.decision == .warn)
        #expect(v.warnings.count == 2)
        #expect(v.warnings.first?.hasPrefix("pxguard: hostNetwork:") == true && v.warnings.last?.hasPrefix("pxguard: unguardedNamespace:") == true)
        #expect(v.auditAnnotations.map(\.key) == ["rule", "decision", "unguardedNamespace"])
        #expect(v.auditAnnotations.map(\.value) == ["hostNetwork", "warn", "warn"])
        // Without the second finding the answer is as before.
        let one = try validate(Review(namespace: "team-ok", object: Self.hostNetworkPod).bytes, policy(config: config))
        #expect(one.allowed && one.rule == .hostNetwork && one.warnings.count == 1 && one.auditAnnotations.count == 2)
    }
}
