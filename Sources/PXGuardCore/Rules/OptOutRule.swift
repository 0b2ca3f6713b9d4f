/// R5: a guarded namespace cannot drop out of the guard, and an exempt name
/// cannot be claimed.
///
/// - An UPDATE may not remove or change `pxguard.io/guarded`, nor leave the Pod
///   Security level M1 sets (`pod-security.kubernetes.io/enforce`) changed to one
///   below the configured `podSecurity`: privileged and hostPID pods reach the
///   node's network namespace, around every NetworkPolicy. Whatever the
///   subresource: `namespaces/status` and `namespaces/finalize` save labels too.
/// - A CREATE of a Namespace named in `exemptNamespaces` is refused unless the user
///   is exempt or in `system:masters`: whoever creates `portworx` first could
///   otherwise run host-network pods there, unguarded.
/// - A CREATE of a guarded Namespace must arrive carrying what M1 adds
///   (`pxguard.io/guarded: "true"`, Pod Security at `podSecurity` or stricter).
struct OptOutRule: AdmissionRule {
    let id = RuleID.optOut

    static let podSecurityLabel = NamespaceMutation.podSecurityLabel
    static let mastersGroup = "system:masters"

    func evaluate(_ request: AdmissionRequest, _ context: RuleContext) -> String? {
        guard request.isNamespace, let object = request.object else { return nil }
        let name = request.objectName
        switch request.operation {
        case .create:
            if context.config.isGuarded(namespace: name) { return unguardedCreate(object, name: name, context.config) }
            // pxguard's own namespace is left out, as its registration leaves it out
            // (`claimableNames`): a reinstall must work, and `check` on the bundle agrees.
            guard name != context.config.namespace, !request.groups.contains(Self.mastersGroup) else { return nil }
            return "pxguard: optOut: creating namespace \(name) is not allowed: its name is in exemptNamespaces, "
                + "so nothing in it would be guarded. Only exempt users and groups and system:masters may create it "
                + "(install the component that owns it with such an identity), or pick another name."
        case .update:
            guard context.config.isGuarded(namespace: name) else { return nil }
            let via = request.subResource.isEmpty ? "" : " (through namespaces/\(request.subResource))"
            let newLabels = object.path("metadata", "labels")
            let oldLabels = request.oldObject?.path("metadata", "labels")
            let new = newLabels?[dynamic: GuardNames.guardedLabel]
            let old = oldLabels?[dynamic: GuardNames.guardedLabel]
            let removed = old != nil && new == nil
            let changed = new != nil && !(new!.stringEquals("true"))
            if removed || changed {
                let what = removed ? "removing" : "changing"
                return "pxguard: optOut: \(what) the label \(GuardNames.guardedLabel) on namespace \(name)\(via) is not "
                    + "allowed: guarded namespaces keep \(GuardNames.guardedLabel)=\"true\". Leave the label as it is; "
                    + "to exempt a namespace, add it to exemptNamespaces in the pxguard configuration."
            }
            return podSecurityOptOut(new: newLabels, old: oldLabels, namespace: name, via: via, context.config.podSecurity)
        case .delete, .connect:
            return nil
        }
    }

    /// A guarded namespace created without what M1 adds: `/validate` sees it as it will
    /// be stored (generated name and `kubernetes.io/metadata.name` set), so whatever
    /// skipped the mutation (a `generateName` that dodged a selector, the mutating
    /// webhook down under `failurePolicy: Ignore`) is caught here.
    func unguardedCreate(_ object: JSONValue, name: String, _ config: Config) -> String? {
        let labels = object.path("metadata", "labels")
        let guarded = labels?[dynamic: GuardNames.guardedLabel]
        if !(guarded?.stringEquals("true") ?? false) {
            let what = guarded == nil ? "without the label \(GuardNames.guardedLabel)" : "with \(GuardNames.guardedLabel) "
                + "set to \(guarded!.string.map { "\"\($0)\"" } ?? "a non-string value")"
            return "pxguard: optOut: creating namespace \(name) \(what) is not allowed: every namespace not in "
                + "exemptNamespaces is guarded and carries \(GuardNames.guardedLabel)=\"true\" (pxguard's mutating "
                + "webhook adds it; it did not run or was overridden). Create it without the label, or with the value "
                + "\"true\"; to exempt a namespace, add it to exemptNamespaces in the pxguard configuration."
        }
        guard config.podSecurity != .none else { return nil }
        let level = labels?[dynamic: Self.podSecurityLabel]
        guard PodSecurityLevel.rank(ofLabel: level?.string) < PodSecurityLevel.rank(ofLabel: config.podSecurity.rawValue)
        else { return nil }
        let what = level == nil ? "without the label \(Self.podSecurityLabel)"
            : "with \(Self.podSecurityLabel) set to \(level!.string.map { "\"\($0)\"" } ?? "a non-string value")"
        return "pxguard: optOut: creating namespace \(name) \(what) is not allowed: guarded namespaces keep Pod "
            + "Security level \(config.podSecurity.rawValue) or stricter, which keeps privileged and hostPID pods (they "
            + "reach the Portworx API around every NetworkPolicy) out. Set \(Self.podSecurityLabel) to "
            + "\(config.podSecurity == .restricted ? "restricted" : "baseline or restricted"), or leave it out and let "
            + "pxguard's mutating webhook set it."
    }

    /// A change of the Pod Security label that leaves the level below `required`
    /// (removal included). A level left as it was is not judged, so that a namespace
    /// from before pxguard can still be updated; a stricter level may change to any
    /// level at or above `required`.
    func podSecurityOptOut(new: JSONValue?, old: JSONValue?, namespace: String, via: String,
                           _ required: PodSecurityLevel) -> String? {
        guard required != .none else { return nil }
        let newValue = new?[dynamic: Self.podSecurityLabel]
        let oldValue = old?[dynamic: Self.podSecurityLabel]
        switch (newValue, oldValue) {
        case (nil, nil): return nil
        case (let n?, let o?) where n.tokensEqual(o): return nil
        default: break
        }
        let newText = newValue?.string
        guard PodSecurityLevel.rank(ofLabel: newText) < PodSecurityLevel.rank(ofLabel: required.rawValue) else { return nil }
        let what = newValue == nil
            ? "removing the label \(Self.podSecurityLabel)"
            : "setting \(Self.podSecurityLabel) to \"\(newText ?? "(not a string)")\""
        return "pxguard: optOut: \(what) on namespace \(namespace)\(via) is not allowed: guarded namespaces keep "
            + "Pod Security level \(required.rawValue) or stricter, which keeps privileged and hostPID pods (they "
            + "reach the Portworx API around every NetworkPolicy) out. Keep \(Self.podSecurityLabel) at "
            + "\(required == .restricted ? "restricted" : "baseline or restricted")."
    }
}
