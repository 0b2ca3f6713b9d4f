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
