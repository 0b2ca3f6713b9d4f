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

        func asksForHostNetwork(_ object: JSONValue?) -> Bool {
            guard let object else { return false }
            let podSpec: JSONValue?
            switch self {
            case .spec: podSpec = object["spec"]
            case .template: podSpec = object.path("spec", "template", "spec")
            case .podTemplate: podSpec = object.path("template", "spec")
            case .cronJob: podSpec = object.path("spec", "jobTemplate", "spec", "template", "spec")
            }
            return podSpec?["hostNetwork"]?.bool == true
        }
    }

    func evaluate(_ request: AdmissionRequest, _ context: RuleContext) -> String? {
        guard request.operation == .create || request.operation == .update,
            let location = PodSpecLocation(group: request.group, kind: request.kind),
            context.config.isGuarded(namespace: request.namespace),
            location.asksForHostNetwork(request.object)
        else { return nil }
        // Objects that already had it stay updatable, so that finalizers, labels and
        // scaling never wedge; only turning it on is refused.
        if request.operation == .update && location.asksForHostNetwork(request.oldObject) { return nil }
        let verb = request.operation == .create ? "creating" : "turning on host network for"
        return "pxguard: hostNetwork: \(verb) \(request.kind) \(request.namespace)/\(request.objectName) "
            + "with \(location.fieldPath): true is not allowed in namespace \(request.namespace): "
            + "host-network pods escape the NetworkPolicies that keep pods away from the Portworx API. "
            + "Remove hostNetwork (or set it to false), or run the workload in an exempt namespace."
    }
}
