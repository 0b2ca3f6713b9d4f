/// How the guard is expressed in the cluster (SPEC "Guard backends"): per-namespace
/// NetworkPolicies, which can only allow and so widen what tenants restricted, or one
/// of the cluster-scoped policy kinds with a Deny action, which widen nothing and which
/// no tenant NetworkPolicy can override.
public enum GuardBackend: String, Sendable, CaseIterable {
    /// The per-namespace `block-…`/`allow-api` NetworkPolicies (every enforcing CNI).
    case networkpolicy
    /// `policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy, `nodes` egress peer.
    case adminnetworkpolicy
    /// `projectcalico.org/v3` GlobalNetworkPolicy in pxguard's own Tier.
    case calico
    /// `cilium.io/v2` CiliumClusterwideNetworkPolicy with `egressDeny`.
    case cilium
    /// The first cluster-scoped backend the cluster serves, else `networkpolicy`.
    case auto

    /// True for the backends whose guard is a few cluster-scoped objects (nothing to
    /// provision per namespace, no window for R6 to close).
    public var isClusterScoped: Bool {
        switch self {
        case .adminnetworkpolicy, .calico, .cilium: true
        case .networkpolicy, .auto: false
        }
    }

    /// The cluster-scoped backends in the order `auto` prefers them: the upstream API
    /// first, then the CNI-specific ones.
    public static let discoveryOrder: [GuardBackend] = [.adminnetworkpolicy, .calico, .cilium]

    /// What a backend is made of in the API: group, version, plural resource, kind.
    public struct Resource: Sendable, Equatable {
        public let group: String
        public let version: String
        public let plural: String
        public let kind: String

        /// `/apis/<group>/<version>/<plural>`: the cluster-scoped collection.
        public var collectionPath: String { "/apis/\(group)/\(version)/\(plural)" }
        /// `group/version`, as `apiVersion` writes it.
        public var apiVersion: String { "\(group)/\(version)" }
    }

    /// The kinds this backend writes, the guard policies first (Calico adds its Tier,
    /// which must exist before a policy can name it).
    public var resources: [Resource] {
        switch self {
        case .adminnetworkpolicy:
            [Resource(group: "policy.networking.k8s.io", version: "v1alpha1", plural: "adminnetworkpolicies", kind: "AdminNetworkPolicy")]
        case .calico:
            [Self.calicoTier, Resource(group: "projectcalico.org", version: "v3", plural: "globalnetworkpolicies", kind: "GlobalNetworkPolicy")]
        case .cilium:
            [Resource(group: "cilium.io", version: "v2", plural: "ciliumclusterwidenetworkpolicies", kind: "CiliumClusterwideNetworkPolicy")]
        case .networkpolicy, .auto:
            []
        }
    }

    static let calicoTier = Resource(group: "projectcalico.org", version: "v3", plural: "tiers", kind: "Tier")

    /// The backend whose guard objects are of this group and kind, if any.
    public static func owning(group: String, kind: String) -> GuardBackend? {
        discoveryOrder.first { backend in backend.resources.contains { $0.group == group && $0.kind == kind } }
    }

    /// What `auto` becomes given the API groups and versions the cluster serves
    /// (`/apis`, as `group/version` strings): the first backend of `discoveryOrder`
    /// whose every resource group/version is served, else `networkpolicy`.
    public static func resolve(servedGroupVersions: Set<String>) -> GuardBackend {
        discoveryOrder.first { backend in backend.resources.allSatisfy { servedGroupVersions.contains($0.apiVersion) } }
            ?? .networkpolicy
    }
}

extension Config {
    /// The backend in effect: `auto` counts as `networkpolicy` until the server has
    /// resolved it through discovery (offline commands never resolve it).
    public var activeBackend: GuardBackend { guardBackend == .auto ? .networkpolicy : guardBackend }
}
