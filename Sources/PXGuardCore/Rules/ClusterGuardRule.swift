/// R2 and R3 for the cluster-scoped guard objects (SPEC "Guard backends"): while a
/// cluster-scoped backend is in effect, its AdminNetworkPolicies, Calico Tier and
/// GlobalNetworkPolicies or CiliumClusterwideNetworkPolicies cannot be deleted,
/// weakened, stripped of their managed-by label or handed to an owner, and nobody
/// else may create an object of those kinds under the guard's label (the server's
/// watch selects by it).
struct ClusterGuardRule: AdmissionRule {
    let id = RuleID.guardPolicies

    func evaluate(_ request: AdmissionRequest, _ context: RuleContext) -> String? {
        let guardObjects = context.clusterGuard
        guard guardObjects.backend.isClusterScoped, request.subResource.isEmpty,
            GuardBackend.owning(group: request.group, kind: request.kind) == guardObjects.backend
        else { return nil }
        let name = request.objectName
        let subject = "\(request.kind) \(name)"
        let labels = request.object?["metadata"]?["labels"]
        let labelled = labels?[dynamic: GuardNames.managedByKey]?.string == GuardNames.managedByValue
        guard guardObjects.isGuardObject(group: request.group, kind: request.kind, name: name) else {
            // A labelled object already being deleted may still be updated, so that its finalizers'
            // controllers can remove them (as for NetworkPolicies, R3's reserved label).
            guard labelled, request.operation == .create || request.operation == .update, !request.isDeletingLabelledObject
            else { return nil }
            return "pxguard: guardPolicies: \(request.operation == .create ? "creating" : "changing") \(subject) with the label "
                + "\(GuardNames.managedByKey)=\(GuardNames.managedByValue) is not allowed: that label marks pxguard's own "
                + "guard objects. Remove the label."
        }
        switch request.operation {
        case .delete:
            return "pxguard: guardPolicies: deleting \(subject) is not allowed: it is the cluster-wide guard that keeps "
                + "pods away from the Portworx API on the nodes. Leave it in place (to change backends, set guardBackend "
                + "in pxguard's configuration; a break-glass change needs a user in exemptUsers/exemptGroups)."
        case .create, .update:
            guard let object = request.object else { return nil }
            let action = request.operation == .create ? "creating" : "changing"
            if !labelled {
                return "pxguard: guardPolicies: \(action) \(subject) without the label "
                    + "\(GuardNames.managedByKey)=\(GuardNames.managedByValue) is not allowed. "
                    + "Keep the label; other labels and annotations may change."
            }
            if let owners = object["metadata"]?["ownerReferences"], !owners.isEmptyContainerOrNull {
                let old = request.oldObject?.path("metadata", "ownerReferences")
                if old == nil || old!.isEmptyContainerOrNull || !owners.tokensEqual(old!) {
                    return "pxguard: guardPolicies: adding or changing ownerReferences on \(subject) is not allowed: "
                        + "the garbage collector deletes an object whose owner is deleted, and with it the guard. "
                        + "Remove metadata.ownerReferences."
                }
            }
            let spec = object["spec"].map { JSON($0) } ?? .null
            if !guardObjects.isCanonical(spec: spec, kind: request.kind, name: name) {
                return "pxguard: guardPolicies: \(action) \(subject) with a spec other than the canonical guard spec "
                    + "is not allowed. Restore it from `pxguard render policies --guard-backend "
                    + "\(guardObjects.backend.rawValue)` and change only labels or annotations."
            }
            return nil
        case .connect:
            return nil
        }
    }
}
