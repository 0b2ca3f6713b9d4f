/// R5: a guarded namespace cannot drop out of the guard by removing or changing
/// its `pxguard.io/guarded` label.
struct OptOutRule: AdmissionRule {
    let id = RuleID.optOut

    func evaluate(_ request: AdmissionRequest, _ context: RuleContext) -> String? {
        guard request.isNamespace, request.operation == .update, request.subResource.isEmpty,
            let object = request.object
        else { return nil }
        let name = request.objectName
        guard context.config.isGuarded(namespace: name) else { return nil }
        let new = object.path("metadata", "labels")?[dynamic: GuardNames.guardedLabel]
        let old = request.oldObject?.path("metadata", "labels")?[dynamic: GuardNames.guardedLabel]
        let removed = old != nil && new == nil
        let changed = new != nil && !(new!.stringEquals("true"))
        guard removed || changed else { return nil }
        let what = removed ? "removing" : "changing"
        return "pxguard: optOut: \(what) the label \(GuardNames.guardedLabel) on namespace \(name) is not "
            + "allowed: guarded namespaces keep \(GuardNames.guardedLabel)=\"true\". Leave the label as it is; "
            + "to exempt a namespace, add it to exemptNamespaces in the pxguard configuration."
    }
}
