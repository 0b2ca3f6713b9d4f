/// What the admission path may ask of the server's watched view of the cluster
/// (namespaces and guard policies). Read-only; implemented by the provisioner's
/// informers, absent in `review`, `check` and when provisioning is off.
public protocol GuardView: Sendable {
    /// True once the view has listed namespaces and guard policies and is being
    /// kept current by its watches. R6 applies only then.
    var isSynced: Bool { get }
    /// True when `namespace` holds both guard policies, labelled and in canonical
    /// form, as last seen by the watch.
    func namespaceHasCanonicalPolicies(_ namespace: String) -> Bool
}

/// R6: no pod in a guarded namespace before its guard policies are in place. This
/// closes the window between a namespace's creation and its policies; controllers
/// retry a denied pod on their own.
struct UnguardedNamespaceRule: AdmissionRule {
    let id = RuleID.unguardedNamespace

    func evaluate(_ request: AdmissionRequest, _ context: RuleContext) -> String? {
        guard request.operation == .create, request.kind == "Pod", request.group.isEmpty,
            request.subResource.isEmpty, let view = context.view, view.isSynced,
            // A cluster-scoped guard covers a namespace the moment it exists: no window to close
            // (unless it cannot be written yet: Calico before any node address is known).
            !ClusterGuardPolicies.coversEveryNamespace(context.config),
            // A dry run writes no guard policy: waiting for one would deny every new pod.
            !context.config.provisioning.dryRun
        else { return nil }
        let namespace = request.namespace
        guard context.config.isGuarded(namespace: namespace), !view.namespaceHasCanonicalPolicies(namespace)
        else { return nil }
        return "pxguard: unguardedNamespace: namespace \(namespace) is being guarded: its NetworkPolicies "
            + "\(context.config.guardPolicyNames.block) and \(context.config.guardPolicyNames.allowAPI) are not in place yet. "
            + "Retry in a few seconds (controllers retry on their own)."
    }
}
