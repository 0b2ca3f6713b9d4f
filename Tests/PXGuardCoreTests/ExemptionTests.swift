import Testing
@testable import PXGuardCore

@Suite("Exemptions: the server's own account and the cleanup identities")
struct ExemptionTests {
    static let serviceAccount = Config.default.serviceAccount
    static let policies = GuardPolicies(config: .default)
    static let managed: JSON = .obj([GuardNames.managedByKey: "pxguard"])
    static let owner: JSON = [.obj(["apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "1e6f0c55-2222-4333-8444-555566667777"])]

    struct Case: CustomTestStringConvertible, Sendable {
        let label: String
        let review: Review
        let allowed: Bool
        var rule: RuleID? = nil
        var testDescription: String { label }
    }

    static func guardPolicy(_ spec: JSON? = nil, owners: JSON? = nil) -> JSON {
        .obj(["apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": .obj(["name": .string(GuardNames.allowAPIPolicy), "namespace": "team-a", "labels": managed,
                                "ownerReferences": owners]),
              "spec": spec ?? policies.allowAPISpec])
    }

    static func netpol(_ operation: String, name: String = GuardNames.allowAPIPolicy, user: String,
                       object: JSON?, old: JSON?) -> Review {
        Review(group: "networking.k8s.io", kind: "NetworkPolicy", operation: operation, namespace: "team-a", name: name,
               user: user, groups: ["system:serviceaccounts", "system:authenticated"], object: object, oldObject: old)
    }

    static func namespace(_ labels: JSON) -> JSON {
        .obj(["apiVersion": "v1", "kind": "Namespace", "metadata": .obj(["name": "team-a", "labels": labels])])
    }

    static let allowAll: JSON = .obj(["podSelector": .object([]), "policyTypes": ["Egress"], "egress": [.object([])]])
    static let cm = AdmissionPolicy.controllerManager

    static let cases: [Case] = [
        // The server's own service account: exempt from R2, R3 and R5 only.
        Case(label: "service account repairs a guard policy (drops an ownerReference)",
             review: netpol("UPDATE", user: serviceAccount, object: guardPolicy(), old: guardPolicy(owners: owner)), allowed: true),
        Case(label: "service account rewrites a guard policy to a new canonical spec (config reload)",
             review: netpol("UPDATE", user: serviceAccount, object: guardPolicy(allowAll), old: guardPolicy()), allowed: true,
             rule: .guardPolicies),
        Case(label: "service account deletes a guard policy",
             review: netpol("DELETE", user: serviceAccount, object: nil, old: guardPolicy()), allowed: true, rule: .guardPolicies),
        Case(label: "service account puts the guarded label back to true from false",
             review: Review(kind: "Namespace", operation: "UPDATE", namespace: "team-a", name: "team-a", user: serviceAccount,
                            object: namespace(.obj([GuardNames.guardedLabel: "false"])),
                            oldObject: namespace(.obj([GuardNames.guardedLabel: "true"]))), allowed: true, rule: .optOut),
        Case(label: "service account creating a bypass policy is denied",
             review: netpol("CREATE", name: "allow-everything", user: serviceAccount,
                            object: networkPolicy(name: "allow-everything", namespace: "team-a", spec: allowAll), old: nil),
             allowed: false, rule: .bypassPolicies),
        Case(label: "service account creating a host-network pod is denied",
             review: Review(namespace: "team-a", user: serviceAccount, object: pod(hostNetwork: true)), allowed: false,
             rule: .hostNetwork),
        // Cleanup identities: DELETE always, nothing else.
        Case(label: "controller manager on its own credentials deletes a guard policy",
             review: netpol("DELETE", user: cm, object: nil, old: guardPolicy()), allowed: true, rule: .guardPolicies),
        Case(label: "namespace controller deletes a guard policy",
             review: netpol("DELETE", user: GuardNames.namespaceController, object: nil, old: guardPolicy()), allowed: true),
        Case(label: "garbage collector deletes a guard policy",
             review: netpol("DELETE", user: GuardNames.garbageCollector, object: nil, old: guardPolicy()), allowed: true),
        Case(label: "controller manager weakening a guard policy is denied",
             review: netpol("UPDATE", user: cm, object: guardPolicy(allowAll), old: guardPolicy()), allowed: false,
             rule: .guardPolicies),
        Case(label: "garbage collector adding an owner is denied",
             review: netpol("UPDATE", user: GuardNames.garbageCollector, object: guardPolicy(owners: owner), old: guardPolicy()),
             allowed: false, rule: .guardPolicies),
        Case(label: "an ordinary user deleting a guard policy is denied",
             review: netpol("DELETE", user: "alice@example.com", object: nil, old: guardPolicy()), allowed: false,
             rule: .guardPolicies),
    ]

    @Test("exemptions as the API server sends the requests", arguments: cases)
    func table(_ c: Case) throws {
        let v = try validate(c.review.bytes)
        #expect(v.allowed == c.allowed, "\(v.message ?? "allowed")")
        if let rule = c.rule { #expect(v.rule == rule) }
        if c.allowed && c.rule != nil { #expect(v.decision == .exempt) }
    }
}

extension ExemptionTests {
    @Test("the server's service account is not exempt from R7")
    func serviceAccountExternalIPs() throws {
        let svc = ExternalIPsRuleTests.service("team-a", ["70.0.98.11"])
        let v = try validate(Review(kind: "Service", namespace: "team-a", user: Self.serviceAccount, object: svc).bytes)
        #expect(!v.allowed)
        #expect(v.rule == .externalIPs)
    }
}
