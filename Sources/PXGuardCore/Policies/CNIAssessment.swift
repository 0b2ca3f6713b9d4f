/// Whether the cluster's network plugin enforces policies at all (the seed's
/// limitation 4: NetworkPolicies, and every guard, do nothing on a CNI that ignores
/// them). Judged from what the API shows: the API groups served and the DaemonSets of
/// the system namespaces. It can only say "not enforcing" when it recognises a plugin
/// that does not enforce and none that does (flannel alone); otherwise it says what it
/// found or that it cannot tell.
public struct CNIAssessment: Sendable, Equatable {
    /// What the evidence says.
    public enum Verdict: String, Sendable {
        /// A plugin known to enforce NetworkPolicies was found.
        case enforcing
        /// Only plugins known not to enforce them were found.
        case notEnforcing = "not-enforcing"
        /// Nothing recognised either way.
        case unknown
    }

    public let verdict: Verdict
    /// The plugins recognised, e.g. `calico`, `flannel`.
    public let plugins: [String]

    /// DaemonSet name prefixes (in kube-system or the plugin's own namespace) and API
    /// groups of plugins that enforce NetworkPolicies.
    static let enforcingDaemonSets: [(prefix: String, plugin: String)] = [
        ("calico-node", "calico"), ("canal", "calico"), ("cilium", "cilium"), ("antrea-agent", "antrea"),
        ("weave-net", "weave"), ("kube-router", "kube-router"), ("ovnkube-node", "ovn-kubernetes"),
        ("kube-network-policies", "kube-network-policies"), ("romana", "romana"),
    ]
    static let enforcingGroups: [(group: String, plugin: String)] = [
        ("crd.projectcalico.org", "calico"), ("projectcalico.org", "calico"), ("cilium.io", "cilium"),
        ("crd.antrea.io", "antrea"), ("k8s.ovn.org", "ovn-kubernetes"),
    ]
    /// Plugins that route pods but enforce no policy on their own.
    static let nonEnforcingDaemonSets: [(prefix: String, plugin: String)] = [
        ("kube-flannel", "flannel"), ("flannel", "flannel"),
    ]

    /// - Parameters:
    ///   - groups: API group names the cluster serves (`/apis`).
    ///   - daemonSets: DaemonSet names found in kube-system and the plugins' own
    ///     namespaces; nil when they could not be read.
    public init(groups: Set<String>, daemonSets: [String]?) {
        var enforcing: [String] = []
        for (group, plugin) in Self.enforcingGroups where groups.contains(group) && !enforcing.contains(plugin) {
            enforcing.append(plugin)
        }
        var other: [String] = []
        for name in daemonSets ?? [] {
            if let hit = Self.enforcingDaemonSets.first(where: { name.hasPrefix($0.prefix) }), !enforcing.contains(hit.plugin) {
                enforcing.append(hit.plugin)
            } else if let hit = Self.nonEnforcingDaemonSets.first(where: { name.hasPrefix($0.prefix) }), !other.contains(hit.plugin) {
                other.append(hit.plugin)
            }
        }
        if !enforcing.isEmpty {
            verdict = .enforcing
            plugins = enforcing + other
        } else if !other.isEmpty {
            verdict = .notEnforcing
            plugins = other
        } else {
            verdict = .unknown
            plugins = []
        }
    }

    /// One line for the log and the audit: what was found and what to do.
    public var message: String {
        switch verdict {
        case .enforcing:
            return "network plugin enforcing policies found: \(plugins.joined(separator: ", "))"
        case .notEnforcing:
            return "no network plugin that enforces NetworkPolicies was found (only \(plugins.joined(separator: ", "))): "
                + "the guard policies are stored but do nothing, and pods can reach the Portworx API on the nodes. "
                + "Install an enforcing plugin (Calico, Cilium, Antrea, kube-network-policies; flannel with Canal), "
                + "and keep the node firewall (pxguard render iptables)"
        case .unknown:
            return "cannot tell whether the network plugin enforces NetworkPolicies; prove it from a pod "
                + "(README: \"Is the guard enforced?\")"
        }
    }
}
