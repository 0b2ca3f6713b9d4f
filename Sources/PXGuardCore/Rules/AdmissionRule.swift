/// Everything a rule may consult besides the request: the configuration, the
/// canonical policies rendered from it, and (when a Kubernetes API is watched) the
/// server's view of the cluster.
public struct RuleContext: Sendable {
    public let config: Config
    public let policies: GuardPolicies
    /// The cluster-scoped guard objects of the backend in effect (none for NetworkPolicy).
    public let clusterGuard: ClusterGuardPolicies
    /// The watched view of namespaces and guard policies; nil without an API.
    public let view: (any GuardView)?

    public init(config: Config, view: (any GuardView)? = nil) {
        self.config = config
        self.policies = GuardPolicies(config: config)
        self.clusterGuard = ClusterGuardPolicies(config: config)
        self.view = view
    }

    /// True when `name` is a guard policy in `namespace`: the block policy in
    /// kube-system, both policies in every guarded namespace.
    func isGuardPolicy(name: String, namespace: String) -> Bool {
        policies.isGuardPolicy(name: name, namespace: namespace)
    }
}

/// One validating rule of the SPEC. A rule only says what is wrong; exemptions and
/// modes are applied by `AdmissionPolicy`, the same way for every rule.
protocol AdmissionRule: Sendable {
    var id: RuleID { get }
    /// The violation message (starting with `pxguard: <rule>:`), or nil when the
    /// request does not violate this rule.
    func evaluate(_ request: AdmissionRequest, _ context: RuleContext) -> String?
}

extension AdmissionRequest {
    /// `metadata.name` of the new (or, for DELETE, the old) object, falling back to
    /// the request's name and then to `generateName`.
    var objectName: String {
        if !name.isEmpty { return name }
        let meta = (object ?? oldObject)?["metadata"]
        if let n = meta?["name"]?.string, !n.isEmpty { return n }
        if let g = meta?["generateName"]?.string { return g + "*" }
        return "(unnamed)"
    }

    var isNetworkPolicy: Bool { kind == "NetworkPolicy" && (group == "networking.k8s.io" || group == "extensions") }
    var isNamespace: Bool { kind == "Namespace" && group.isEmpty }
}
