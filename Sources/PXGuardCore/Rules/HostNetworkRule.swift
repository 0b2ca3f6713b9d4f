/// R1: no host-network pods, directly or through a pod template, in guarded
/// namespaces. Host-network pods are not subject to NetworkPolicies.
struct HostNetworkRule: AdmissionRule {
    let id = RuleID.hostNetwork

    /// Where the pod spec sits for each kind that makes pods, and how to name it.
    enum PodSpecLocation {
        case spec, template, podTemplate, cronJob

        init?(group: String, kind: String) {
            switch (group, kind) {
            case ("", "Pod"): self = .spec
            case ("", "ReplicationController"), ("apps", "Deployment"), ("apps", "ReplicaSet"),
                ("apps", "StatefulSet"), ("apps", "DaemonSet"), ("extensions", "Deployment"),
                ("extensions", "ReplicaSet"), ("extensions", "DaemonSet"), ("batch", "Job"):
                self = .template
            case ("", "PodTemplate"): self = .podTemplate
            case ("batch", "CronJob"), ("batch", "ScheduledJob"): self = .cronJob
            default: return nil
            }
        }

        var fieldPath: String {
            switch self {
            case .spec: return "spec.hostNetwork"
            case .template: return "spec.template.spec.hostNetwork"
            case .podTemplate: return "template.spec.hostNetwork"
            case .cronJob: return "spec.jobTemplate.spec.template.spec.hostNetwork"
            }
        }

        func podSpec(_ object: JSONValue?) -> JSONValue? {
            guard let object else { return nil }
            switch self {
            case .spec: return object["spec"]
            case .template: return object.path("spec", "template", "spec")
            case .podTemplate: return object.path("template", "spec")
            case .cronJob: return object.path("spec", "jobTemplate", "spec", "template", "spec")
            }
        }

        func asksForHostNetwork(_ object: JSONValue?) -> Bool {
            podSpec(object)?["hostNetwork"]?.bool == true
        }
    }

    func evaluate(_ request: AdmissionRequest, _ context: RuleContext) -> String? {
        guard request.operation == .create || request.operation == .update,
            let location = PodSpecLocation(group: request.group, kind: request.kind),
            context.config.isGuarded(namespace: request.namespace),
            location.asksForHostNetwork(request.object)
        else { return nil }
        // Subresources other than ephemeral containers (status, binding, resize)
        // cannot change what runs.
        if !request.subResource.isEmpty && request.subResource != "ephemeralcontainers" { return nil }
        if request.operation == .update && location.asksForHostNetwork(request.oldObject) {
            // Objects that already had it stay updatable (finalizers, labels, scaling)
            // so that they never wedge; what runs on the host network may not change.
            return legacyChange(request, location)
        }
        let verb = request.operation == .create ? "creating" : "turning on host network for"
        var message = "pxguard: hostNetwork: \(verb) \(request.kind) \(request.namespace)/\(request.objectName) "
            + "with \(location.fieldPath): true is not allowed in namespace \(request.namespace): "
            + "host-network pods escape the NetworkPolicies that keep pods away from the Portworx API. "
            + "Remove hostNetwork (or set it to false), or run the workload in an exempt namespace."
        if location == .spec, request.operation == .create,
            let owners = request.object?.path("metadata", "ownerReferences"), !owners.isEmptyContainerOrNull
        {
            message += " If its owner is a workload created before pxguard, scaling it up or rolling it out makes "
                + "pods that are denied the same way: drop hostNetwork from its pod template."
        }
        return message
    }

    /// An UPDATE of an object that already asked for host network: a Pod may not
    /// change a container or init container image nor add ephemeral containers
    /// (`kubectl debug`); a workload may not change its pod template's `spec`
    /// (turning host network off is allowed, and then not judged here).
    func legacyChange(_ request: AdmissionRequest, _ location: PodSpecLocation) -> String? {
        let subject = "\(request.kind) \(request.namespace)/\(request.objectName)"
        let why = "it runs on the node's host network (from before pxguard), around every NetworkPolicy, so new code "
            + "in it would reach the Portworx API."
        switch location {
        case .spec:
            guard let new = request.object?["spec"], let old = request.oldObject?["spec"] else { return nil }
            for field in ["containers", "initContainers"] {
                if let changed = Self.changedImage(new[dynamic: field], old[dynamic: field]) {
                    return "pxguard: hostNetwork: changing the image of \(field == "containers" ? "container" : "init container") "
                        + "\"\(changed)\" of \(subject) is not allowed: \(why) Recreate the pod without hostNetwork, or "
                        + "run it in an exempt namespace."
                }
            }
            if let added = Self.addedEphemeral(new["ephemeralContainers"], old["ephemeralContainers"]) {
                return "pxguard: hostNetwork: adding ephemeral container \"\(added)\" to \(subject) is not allowed "
                    + "(kubectl debug): \(why) Debug a copy without hostNetwork (kubectl debug --copy-to), or run it "
                    + "in an exempt namespace."
            }
            return nil
        case .template, .podTemplate, .cronJob:
            let newSpec = location.podSpec(request.object), oldSpec = location.podSpec(request.oldObject)
            if let n = newSpec, let o = oldSpec, n.tokensEqual(o) { return nil }
            return "pxguard: hostNetwork: changing the pod template of \(subject) is not allowed while it keeps "
                + "\(location.fieldPath): true: \(why) Its new pods would be denied by this rule and the rollout would "
                + "stall. Set hostNetwork to false in the same change, or run the workload in an exempt namespace; "
                + "scaling it down and deleting it still work, and scaling it up makes pods that are denied."
        }
    }

    /// The name of the first container whose image differs from the old one of the
    /// same name (or that is new).
    static func changedImage(_ new: JSONValue?, _ old: JSONValue?) -> String? {
        guard let new, new.kind == .array else { return nil }
        var oldImages: [String: JSONValue] = [:]
        old?.forEachElement { _, c in
            if c.kind == .object, let name = c["name"]?.string, let image = c["image"] { oldImages[name] = image }
        }
        var changed: String?
        new.forEachElement { _, c in
            guard changed == nil, c.kind == .object else { return }
            let name = c["name"]?.string ?? ""
            let image = c["image"]
            switch (image, oldImages[name]) {
            case (nil, nil): return
            case (let a?, let b?) where a.tokensEqual(b): return
            default: changed = name
            }
        }
        return changed
    }

    /// The first ephemeral container the old pod did not have.
    static func addedEphemeral(_ new: JSONValue?, _ old: JSONValue?) -> String? {
        guard let new, new.kind == .array else { return nil }
        var oldNames = Set<String>()
        old?.forEachElement { _, c in if let name = c["name"]?.string { oldNames.insert(name) } }
        var added: String?
        new.forEachElement { _, c in
            guard added == nil else { return }
            let name = c["name"]?.string ?? ""
            if !oldNames.contains(name) { added = name.isEmpty ? "(unnamed)" : name }
        }
        return added
    }
}
