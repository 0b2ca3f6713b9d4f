/// R2 and R3: the guard policies cannot be deleted, weakened, stripped of their
/// managed-by label or handed to an owner. A guard-named policy created by hand
/// must also be canonical, so that nobody can pre-empt the provisioner with a
/// permissive `allow-api`.
struct GuardPolicyRule: AdmissionRule {
    let id = RuleID.guardPolicies

    func evaluate(_ request: AdmissionRequest, _ context: RuleContext) -> String? {
        guard request.isNetworkPolicy, request.subResource.isEmpty else { return nil }
        let name = request.objectName
        let namespace = request.namespace
        let subject = "NetworkPolicy \(namespace)/\(name)"
        guard context.isGuardPolicy(name: name, namespace: namespace) else {
            return reservedLabel(request, subject, context)
        }
        switch request.operation {
        case .delete:
            return "pxguard: guardPolicies: deleting \(subject) is not allowed: it is part of the guard "
                + "that keeps pods away from the Portworx API on the node subnets. Leave it in place "
                + "(ask a cluster admin in exemptUsers/exemptGroups for a break-glass change)."
        case .create, .update:
            guard let object = request.object else { return nil }
            let action = request.operation == .create ? "creating" : "changing"
            let metadata = object["metadata"]
            let labels = metadata?["labels"]
            if labels?[dynamic: GuardNames.managedByKey]?.string != GuardNames.managedByValue {
                return "pxguard: guardPolicies: \(action) \(subject) without the label "
                    + "\(GuardNames.managedByKey)=\(GuardNames.managedByValue) is not allowed. "
                    + "Keep the label; other labels and annotations may change."
            }
            if let owners = metadata?["ownerReferences"], !owners.isEmptyContainerOrNull {
                let old = request.oldObject?.path("metadata", "ownerReferences")
                if old == nil || old!.isEmptyContainerOrNull || !owners.tokensEqual(old!) {
                    let verb = old == nil || old!.isEmptyContainerOrNull ? "adding" : "changing"
                    return "pxguard: guardPolicies: \(verb) ownerReferences on \(subject) is not allowed: the "
                        + "garbage collector deletes an object whose owner is deleted, and with it the guard. "
                        + "Remove metadata.ownerReferences."
                }
            }
            // Compared against the normalised canonical spec in place: an 8 MiB
            // spec is walked, never copied into a tree.
            guard let canonical = context.policies.canonicalSpec(name: name, namespace: namespace)?.normalized else {
                return nil
            }
            if !(object["spec"]?.equalsNormalized(canonical) ?? (canonical == .object([]))) {
                return "pxguard: guardPolicies: \(action) \(subject) with a spec other than the canonical guard "
                    + "spec is not allowed. Restore it from `pxguard render policies` "
                    + "and change only labels or annotations."
            }
            return nil
        case .connect:
            return nil
        }
    }

    /// R3's reserved label: `app.kubernetes.io/managed-by: pxguard` marks guard
    /// policies, and the server's view lists them by it, so no other NetworkPolicy
    /// may carry it (a tenant's hundreds of labelled policies would swell the list
    /// until the view never syncs). The server's own account is exempt, as from all
    /// of R3.
    /// An object already labelled and being deleted may still be updated (its finalizers'
    /// controllers remove them that way): a labelled policy from before pxguard must not
    /// stay, with its namespace, terminating. Adding the label stays refused. R4 still
    /// judges what such an update allows.
    func reservedLabel(_ request: AdmissionRequest, _ subject: String, _ context: RuleContext) -> String? {
        guard request.operation == .create || request.operation == .update,
            let label = request.object?.path("metadata", "labels")?[dynamic: GuardNames.managedByKey],
            label.stringEquals("pxguard"),
            !request.isDeletingLabelledObject
        else { return nil }
        let action = request.operation == .create ? "creating" : "updating"
        let names = context.config.exemptNamespaces.contains(request.namespace) && request.namespace != GuardNames.kubeSystem
            ? "no guard policy belongs in this namespace"
            : request.namespace == GuardNames.kubeSystem
                ? "only \(GuardNames.blockPolicy) belongs in kube-system"
                : "only \(GuardNames.blockPolicy) and \(GuardNames.allowAPIPolicy) belong in this namespace"
        return "pxguard: guardPolicies: \(action) \(subject) with the label \(GuardNames.managedByKey)="
            + "\(GuardNames.managedByValue) is not allowed: the label is reserved for pxguard's guard policies (\(names)), "
            + "which pxguard writes itself. Remove the label or use another value."
    }
}

extension AdmissionRequest {
    /// True for an UPDATE of an object whose deletion has begun (`metadata.deletionTimestamp`
    /// set in the stored object: only its finalizers' controllers are still at work on it)
    /// and that already carries the reserved label: it may finish, nobody may add the label.
    var isDeletingLabelledObject: Bool {
        guard let old = oldObject, let stamp = old.path("metadata", "deletionTimestamp"), !stamp.isNull else { return false }
        return old.path("metadata", "labels")?[dynamic: GuardNames.managedByKey]?.stringEquals("pxguard") == true
    }
}
