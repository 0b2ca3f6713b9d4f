/// What `guardBackend: networkpolicy` costs tenants (SPEC "Guard backends"): the block
/// policy selects every pod and allows all egress but the protected set, and allows are
/// a union, so every pod a tenant's policy had isolated for egress gains what the block
/// policy allows. For the audit: which of a guarded namespace's policies are widened.
public enum GuardWidening {
    /// The names of `policies` (one guarded namespace's NetworkPolicies, guard policies
    /// excluded) whose pods the block policy gives more egress: each policy that isolates
    /// egress, unless one of its own rules already allows every port towards every
    /// address outside the node subnets (and, in `ports` style, the node subnets' other
    /// ports: then only a rule open to every destination qualifies). A policy left out is
    /// never widened; one reported may in rare cases be covered by its other rules taken
    /// together.
    public static func widened(_ policies: [(name: String, spec: JSON)], config: Config) -> [String] {
        policies.filter { isolatesEgress($0.spec) && !allowsWhatTheGuardAllows($0.spec, config) }.map(\.name)
    }

    static func isolatesEgress(_ spec: JSON) -> Bool {
        if let types = spec["policyTypes"]?.arrayValue, !types.isEmpty { return types.contains { $0.stringValue == "Egress" } }
        return !(spec["egress"]?.arrayValue ?? []).isEmpty
    }

    static func allowsWhatTheGuardAllows(_ spec: JSON, _ config: Config) -> Bool {
        (spec["egress"]?.arrayValue ?? []).contains { rule in
            let rule = rule == .null ? JSON.object([]) : rule
            guard (rule["ports"]?.arrayValue ?? []).isEmpty else { return false }
            let peers = rule["to"]?.arrayValue ?? []
            if peers.isEmpty || peers.contains(where: { $0 == .null || $0 == .object([]) }) { return true }
            // The seed style allows nothing on the node subnets: both families' "everything
            // but the nodes" suffice, with excepts inside the node subnets only.
            guard config.policyStyle == .seed else { return false }
            return [IPFamily.v4, .v6].allSatisfy { family in
                guard family == .v4 || config.nodeCIDRs.contains(where: { $0.family == .v6 }) else { return true }
                return peers.contains { peer in
                    guard let block = peer["ipBlock"], let cidr = block["cidr"]?.stringValue.flatMap(CIDR.init),
                        cidr.family == family, cidr.prefix == 0
                    else { return false }
                    return (block["except"]?.arrayValue ?? []).allSatisfy { e in
                        guard let hole = e.stringValue.flatMap(CIDR.init) else { return false }
                        return config.nodeCIDRs.contains { n in
                            n.family == hole.family && n.range.lower <= hole.range.lower && hole.range.upper <= n.range.upper
                        }
                    }
                }
            }
        }
    }
}
