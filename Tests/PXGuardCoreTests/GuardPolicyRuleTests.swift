import Testing
@testable import PXGuardCore

@Suite("R2/R3 guard policies")
struct GuardPolicyRuleTests {
    static let policies = GuardPolicies(config: .default)
    static let managed: JSON = .obj([GuardNames.managedByKey: "pxguard"])

    static func delete(_ name: String, in namespace: String, by user: String = "alice@example.com") -> Review {
        Review(group: "networking.k8s.io", kind: "NetworkPolicy", operation: "DELETE", namespace: namespace,
               name: name, user: user, object: nil,
               oldObject: policies.policy(name: name, namespace: namespace) ?? networkPolicy(name: name, spec: .object([])))
    }

    static func update(_ name: String, in namespace: String = "default", labels: JSON? = managed, spec: JSON) -> Review {
        let new = networkPolicy(name: name, namespace: namespace, labels: labels, spec: spec)
        return Review(group: "networking.k8s.io", kind: "NetworkPolicy", operation: "UPDATE", namespace: namespace,
                      name: name, object: new, oldObject: policies.policy(name: name, namespace: namespace))
    }

    @Test("R2: deleting a guard policy in a guarded namespace or kube-system is denied",
          arguments: [("default", GuardNames.blockPolicy), ("default", GuardNames.allowAPIPolicy),
                      ("team-a", GuardNames.allowAPIPolicy), ("kube-system", GuardNames.blockPolicy)])
    func deleteDenied(_ namespace: String, _ name: String) throws {
        let v = try validate(Self.delete(name, in: namespace).bytes)
        #expect(!v.allowed)
        #expect(v.rule == .guardPolicies)
        #expect(v.message?.contains("pxguard: guardPolicies:") == true)
    }

    @Test("R2: other names, allow-api in kube-system and exempt namespaces are not guard policies",
          arguments: [("default", "something-else"), ("kube-system", GuardNames.allowAPIPolicy),
                      ("portworx", GuardNames.blockPolicy)])
    func deleteAllowed(_ namespace: String, _ name: String) throws {
        #expect(try validate(Self.delete(name, in: namespace).bytes).allowed)
    }

    @Test("R2: the namespace controller and garbage collector may delete (namespace teardown)",
          arguments: [GuardNames.namespaceController, GuardNames.garbageCollector])
    func cleanupControllers(_ user: String) throws {
        let v = try validate(Self.delete(GuardNames.blockPolicy, in: "default", by: user).bytes)
        #expect(v.allowed)
        #expect(v.decision == .exempt)
    }

    @Test("R2: break-glass users are allowed and audited")
    func breakGlass() throws {
        var config = Config.default
        config.exemptUsers = ["breakglass"]
        let v = try validate(Self.delete(GuardNames.blockPolicy, in: "default", by: "breakglass").bytes,
                             AdmissionPolicy(config: config))
        #expect(v.allowed)
        #expect(v.auditAnnotations.map(\.value) == ["guardPolicies", "exempt"])
        #expect(v.auditAnnotations.allSatisfy { !$0.key.contains("/") })
    }

    @Test("R3: label and annotation changes that keep the managed-by label are allowed")
    func labelChangeAllowed() throws {
        let labels: JSON = .obj([GuardNames.managedByKey: "pxguard", "team": "a"])
        #expect(try validate(Self.update(GuardNames.blockPolicy, labels: labels,
                                         spec: Self.policies.namespaceBlockSpec).bytes).allowed)
        #expect(try validate(Self.update(GuardNames.blockPolicy, in: "kube-system",
                                         spec: Self.policies.kubeSystemBlockSpec).bytes).allowed)
    }

    @Test("R3: a spec equal in meaning (reordered keys, explicit empty lists) is canonical")
    func equivalentSpec() throws {
        let spec: JSON = .obj([
            "policyTypes": ["Egress"],
            "ingress": .array([]),
            "egress": Self.policies.allowAPISpec["egress"],
            "podSelector": .obj(["matchLabels": .object([])]),
        ])
        #expect(try validate(Self.update(GuardNames.allowAPIPolicy, spec: spec).bytes).allowed)
    }

    @Test("R3: weakening the spec is denied")
    func weakenDenied() throws {
        let open: JSON = .obj(["podSelector": .object([]), "policyTypes": ["Egress"],
                               "egress": [.obj(["to": [.obj(["ipBlock": .obj(["cidr": "0.0.0.0/0"])])]])]])
        let v = try validate(Self.update(GuardNames.blockPolicy, spec: open).bytes)
        #expect(!v.allowed)
        #expect(v.message?.contains("canonical") == true)
        // The namespace variant in kube-system is not the kube-system spec.
        #expect(try validate(Self.update(GuardNames.blockPolicy, in: "kube-system",
                                         spec: Self.policies.namespaceBlockSpec).bytes).allowed == false)
    }

    @Test("R3: dropping the managed-by label is denied")
    func dropLabel() throws {
        let v = try validate(Self.update(GuardNames.blockPolicy, labels: .obj(["team": "a"]),
                                         spec: Self.policies.namespaceBlockSpec).bytes)
        #expect(!v.allowed)
        #expect(v.message?.contains(GuardNames.managedByKey) == true)
    }

    @Test("R3: a hand-made permissive allow-api cannot pre-empt the provisioner")
    func createPermissive() throws {
        var r = Self.update(GuardNames.allowAPIPolicy, spec: .obj(["podSelector": .object([]), "policyTypes": ["Egress"],
                                                                   "egress": [.object([])]]))
        r.operation = "CREATE"
        r.oldObject = nil
        #expect(try validate(r.bytes).allowed == false)
        var canonical = Self.update(GuardNames.allowAPIPolicy, spec: Self.policies.allowAPISpec)
        canonical.operation = "CREATE"
        canonical.oldObject = nil
        #expect(try validate(canonical.bytes).allowed)
    }
}

@Suite("R3 owners, creation and the in-place canonical comparison")
struct GuardPolicyWeakenTests {
    static let policies = GuardPolicies(config: .default)

    struct Case: CustomTestStringConvertible, Sendable {
        let label: String
        var operation = "UPDATE"
        var namespace = "team-a"
        var name = GuardNames.allowAPIPolicy
        var user = "alice@example.com"
        var old: JSON?
        var new: JSON?
        let allowed: Bool
        var message: String? = nil
        var testDescription: String { label }
    }

    static let configMapOwner: JSON = [.obj(["apiVersion": "v1", "kind": "ConfigMap", "name": "mine",
                                             "uid": "1e6f0c55-2222-4333-8444-555566667777"])]
    static let otherOwner: JSON = [.obj(["apiVersion": "v1", "kind": "ConfigMap", "name": "mine",
                                         "uid": "9a9a9a9a-2222-4333-8444-555566667777"])]

    /// A guard policy as the API server sends it: server-set metadata included.
    static func stored(_ name: String = GuardNames.allowAPIPolicy, namespace: String = "team-a", spec: JSON? = nil,
                       owners: JSON? = nil, labels: JSON? = nil, deleting: Bool = false, finalizers: [String] = []) -> JSON {
        .obj([
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": .obj([
                "name": .string(name), "namespace": .string(namespace),
                "uid": "0f0f0f0f-3333-4444-8555-666677778888", "resourceVersion": "4242", "generation": 1,
                "labels": labels ?? .obj([GuardNames.managedByKey: "pxguard"]),
                "ownerReferences": owners,
                "deletionTimestamp": deleting ? "2026-12-07T07:00:00Z" : nil,
                "finalizers": finalizers.isEmpty ? nil : .array(finalizers.map { .string($0) }),
            ]),
            "spec": spec ?? policies.canonicalSpec(name: name, namespace: namespace)!,
        ])
    }

    static let permissive: JSON = .obj(["podSelector": .object([]), "policyTypes": ["Egress"], "egress": [.object([])]])
    static var allowAPI: JSON { policies.allowAPISpec }
    /// A tenant's policy that reaches nothing protected (R4 has nothing to say).
    static let harmless: JSON = .obj(["podSelector": .object([]), "policyTypes": ["Ingress"], "ingress": [.object([])]])

    static let cases: [Case] = [
        Case(label: "UPDATE adding an ownerReference to a ConfigMap the user owns", old: stored(),
             new: stored(owners: configMapOwner), allowed: false, message: "adding ownerReferences"),
        Case(label: "UPDATE changing an existing ownerReference", old: stored(owners: configMapOwner),
             new: stored(owners: otherOwner), allowed: false, message: "changing ownerReferences"),
        Case(label: "UPDATE adding an ownerReference to the kube-system block policy", namespace: "kube-system",
             name: GuardNames.blockPolicy, old: stored(GuardNames.blockPolicy, namespace: "kube-system"),
             new: stored(GuardNames.blockPolicy, namespace: "kube-system", owners: configMapOwner), allowed: false,
             message: "ownerReferences"),
        Case(label: "UPDATE removing an ownerReference (what the provisioner's repair does)",
             old: stored(owners: configMapOwner), new: stored(), allowed: true),
        Case(label: "UPDATE keeping an ownerReference set before pxguard, changing a label",
             old: stored(owners: configMapOwner),
             new: stored(owners: configMapOwner, labels: .obj([GuardNames.managedByKey: "pxguard", "team": "a"])), allowed: true),
        Case(label: "UPDATE with an empty ownerReferences list", old: stored(), new: stored(owners: .array([])), allowed: true),
        Case(label: "UPDATE with a member repeated in the spec", old: stored(),
             new: stored(spec: .object(allowAPI.members! + [.init("policyTypes", ["Egress"])])), allowed: false,
             message: "canonical"),
        Case(label: "UPDATE adding an ingress rule", old: stored(),
             new: stored(spec: allowAPI.setting("ingress", [.object([])])), allowed: false, message: "canonical"),
        Case(label: "UPDATE writing the port as a string", old: stored(),
             new: stored(spec: allowAPI.setting("egress", [.obj(["to": allowAPI["egress"]!.arrayValue![0]["to"]!,
                                                                "ports": [.obj(["protocol": "TCP", "port": "6443"])]])])),
             allowed: false, message: "canonical"),
        Case(label: "UPDATE keeping a null field and an empty selector", old: stored(),
             new: stored(spec: allowAPI.setting("podSelector", .obj(["matchLabels": .null])).setting("ingress", .null)),
             allowed: true),
        Case(label: "CREATE of a permissive allow-api is R3's job", operation: "CREATE", old: nil,
             new: stored(spec: permissive), allowed: false, message: "pxguard: guardPolicies: creating NetworkPolicy team-a/allow-api with a spec other than the canonical"),
        Case(label: "CREATE of a block policy that opens one port", operation: "CREATE", name: GuardNames.blockPolicy, old: nil,
             new: stored(GuardNames.blockPolicy, spec: policies.namespaceBlockSpec.setting("egress", [.object([])])),
             allowed: false, message: "pxguard: guardPolicies:"),
        Case(label: "CREATE of a canonical guard policy", operation: "CREATE", old: nil, new: stored(), allowed: true),
        Case(label: "CREATE of a canonical guard policy with an owner", operation: "CREATE", old: nil,
             new: stored(owners: configMapOwner), allowed: false, message: "ownerReferences"),
        Case(label: "CREATE of allow-api in kube-system is no guard policy (and kube-system is exempt)", operation: "CREATE",
             namespace: "kube-system", old: nil, new: stored(namespace: "kube-system", spec: permissive, labels: .obj([:])),
             allowed: true),
        Case(label: "CREATE in an exempt namespace", operation: "CREATE", namespace: "portworx", old: nil,
             new: stored(namespace: "portworx", spec: permissive, labels: .obj(["team": "px"])), allowed: true),
        // The reserved label (issue 23, finding 7): only guard policies carry it.
        Case(label: "CREATE of a tenant's own policy labelled managed-by: pxguard", operation: "CREATE", name: "mine", old: nil,
             new: stored("mine", spec: harmless), allowed: false,
             message: "the label is reserved for pxguard's guard policies"),
        Case(label: "UPDATE keeping the reserved label on a tenant's policy", name: "mine", old: stored("mine", spec: harmless),
             new: stored("mine", spec: harmless, labels: .obj([GuardNames.managedByKey: "pxguard", "a": "b"])), allowed: false,
             message: "updating NetworkPolicy team-a/mine with the label"),
        // A labelled policy from before pxguard, being deleted: its finalizer's controller must
        // be able to finish (a denied UPDATE would leave it, and its namespace, terminating).
        Case(label: "UPDATE removing the finalizer of a labelled tenant policy being deleted", name: "mine",
             old: stored("mine", spec: harmless, deleting: true, finalizers: ["example.com/cleanup"]),
             new: stored("mine", spec: harmless, deleting: true), allowed: true),
        Case(label: "UPDATE adding the reserved label to a tenant policy being deleted", name: "mine",
             old: stored("mine", spec: harmless, labels: .obj([:]), deleting: true, finalizers: ["example.com/hold"]),
             new: stored("mine", spec: harmless, deleting: true, finalizers: ["example.com/hold"]), allowed: false,
             message: "the label is reserved"),
        Case(label: "UPDATE changing another value of managed-by to pxguard on a policy being deleted", name: "mine",
             old: stored("mine", spec: harmless, labels: .obj([GuardNames.managedByKey: "helm"]), deleting: true,
                         finalizers: ["example.com/hold"]),
             new: stored("mine", spec: harmless, deleting: true, finalizers: ["example.com/hold"]), allowed: false,
             message: "the label is reserved"),
        Case(label: "UPDATE adding a finalizer to a labelled tenant policy not being deleted", name: "mine",
             old: stored("mine", spec: harmless), new: stored("mine", spec: harmless, finalizers: ["example.com/cleanup"]),
             allowed: false, message: "the label is reserved"),
        Case(label: "UPDATE removing the reserved label from a tenant's policy", name: "mine",
             old: stored("mine", spec: harmless), new: stored("mine", spec: harmless, labels: .obj(["a": "b"])), allowed: true),
        Case(label: "another value of managed-by is the tenant's own", operation: "CREATE", name: "mine", old: nil,
             new: stored("mine", spec: harmless, labels: .obj([GuardNames.managedByKey: "helm"])), allowed: true),
        Case(label: "allow-api in kube-system labelled managed-by: pxguard (not where it belongs)", operation: "CREATE",
             namespace: "kube-system", old: nil, new: stored(namespace: "kube-system", spec: permissive), allowed: false,
             message: "only block-9001-for-non-system-users belongs in kube-system"),
        Case(label: "a labelled policy in an exempt namespace", operation: "CREATE", namespace: "portworx", old: nil,
             new: stored(namespace: "portworx", spec: permissive), allowed: false, message: "no guard policy belongs"),
        Case(label: "pxguard's own service account may write the label", operation: "CREATE", name: "mine",
             user: "system:serviceaccount:pxguard-system:pxguard", old: nil, new: stored("mine", spec: harmless), allowed: true),
    ]

    @Test("R3: owners, creation and weakening, as the API server sends them", arguments: cases)
    func table(_ c: Case) throws {
        let review = Review(group: "networking.k8s.io", kind: "NetworkPolicy", operation: c.operation, namespace: c.namespace,
                            name: c.name, user: c.user, object: c.new, oldObject: c.old)
        let v = try validate(review.bytes)
        #expect(v.allowed == c.allowed, "\(v.message ?? "allowed")")
        if !c.allowed {
            #expect(v.rule == .guardPolicies)
            if let m = c.message { #expect(v.message?.contains(m) == true, "\(v.message ?? "")") }
        }
    }

    /// Random trees over a small alphabet, so that equal, reordered and
    /// almost-equal values come up often.
    static func randomJSON(_ rng: inout SeededGenerator, depth: Int) -> JSON {
        switch rng.next(depth > 3 ? 5 : 8) {
        case 0: return .null
        case 1: return .number(["1", "2", "1.0", "-1", "1e2"][rng.next(5)])
        case 2: return .string(["a", "b", "", "TCP", "\u{1}"][rng.next(5)])
        case 3: return .bool(rng.next(2) == 0)
        case 4: return rng.next(2) == 0 ? .array([]) : .object([])
        case 5: return .array((0..<rng.next(3)).map { _ in randomJSON(&rng, depth: depth + 1) })
        default:
            // Unique names, as in a canonical spec; `rewrite` repeats some.
            let first = rng.next(3)
            return .object((0..<rng.next(4)).map { k in .init(["a", "b", "c"][(first + k) % 3], randomJSON(&rng, depth: depth + 1)) })
        }
    }

    /// The same meaning written differently (members shuffled, empty members
    /// added), and now and then a member repeated.
    static func rewrite(_ value: JSON, _ rng: inout SeededGenerator) -> JSON {
        switch value {
        case .array(let items): return .array(items.map { rewrite($0, &rng) })
        case .object(var members):
            members = members.map { .init($0.key, rewrite($0.value, &rng)) }
            if rng.next(3) == 0 { members.append(.init("z", [.null, .array([]), .object([])][rng.next(3)])) }
            if rng.next(8) == 0, let some = members.first { members.append(some) }
            for i in stride(from: members.count - 1, to: 0, by: -1) { members.swapAt(i, rng.next(i + 1)) }
            return .object(members)
        default: return value
        }
    }

    @Test("R3: the in-place comparison agrees with normalising a copy (5,000 generated pairs, guard specs included)")
    func inPlaceAgreesWithCopy() throws {
        var rng = SeededGenerator(seed: 3)
        let specs = [Self.policies.namespaceBlockSpec, Self.policies.kubeSystemBlockSpec, Self.policies.allowAPISpec]
        var equalSeen = 0
        for i in 0..<5_000 {
            let target = (i % 4 == 0 ? specs[rng.next(3)] : Self.randomJSON(&rng, depth: 0)).normalized
            let candidate: JSON
            switch rng.next(3) {
            case 0: candidate = Self.rewrite(target, &rng)
            case 1: candidate = Self.randomJSON(&rng, depth: 0)
            default: candidate = Self.rewrite(i % 2 == 0 ? specs[rng.next(3)] : target, &rng)
            }
            let bytes = Array(candidate.serialized.utf8)
            try JSONDocument.parse(bytes) { view in
                let expected = JSON(view).normalized == target
                if expected { equalSeen += 1 }
                #expect(view.equalsNormalized(target) == expected, "\(candidate.serialized) vs \(target.serialized)")
            }
        }
        #expect(equalSeen > 500)
    }
}
