/// R2 and R3: the guard policies cannot be deleted, weakened or stripped of their
/// managed-by label. A guard-named policy created by hand must also be canonical,
/// so that nobody can pre-empt the provisioner with a permissive `allow-api`.
struct GuardPolicyRule: AdmissionRule {
    let id = RuleID.guardPolicies

    func evaluate(_ request: AdmissionRequest, _ context: RuleContext) -> String? {
        guard request.isNetworkPolicy, request.subResource.isEmpty else { return nil }
        let name = request.objectName
        let namespace = request.namespace
        guard context.isGuardPolicy(name: name, namespace: namespace) else { return nil }
        let subject = "NetworkPolicy \(namespace)/\(name)"
        switch request.operation {
        case .delete:
            return "pxguard: guardPolicies: deleting \(subject) is not allowed: it is part of the guard "
                + "that keeps pods away from the Portworx API on the node subnets. Leave it in place "
                + "(ask a cluster admin in exemptUsers/exemptGroups for a break-glass change)."
        case .create, .update:
            guard let object = request.object else { return nil }
            let action = request.operation == .create ? "creating" : "changing"
            let labels = object.path("metadata", "labels")
            if labels?[dynamic: GuardNames.managedByKey]?.string != GuardNames.managedByValue {
                return "pxguard: guardPolicies: \(action) \(subject) without the label "
                    + "\(GuardNames.managedByKey)=\(GuardNames.managedByValue) is not allowed. "
                    + "Keep the label; other labels and annotations may change."
            }
            let spec = object["spec"].map(JSON.init) ?? .object([])
            if !context.policies.isCanonical(spec: spec, name: name, namespace: namespace) {
                return "pxguard: guardPolicies: \(action) the spec of \(subject) is not allowed: it must "
                    + "stay equal to the canonical guard spec. Restore it from `pxguard render policies` "
                    + "and change only labels or annotations."
            }
            return nil
        case .connect:
            return nil
        }
    }
}
