/// What the guard itself widens (SPEC "Guard backends"): the networkpolicy backend's
/// block policy selects every pod and allows all egress but the protected set, and
/// NetworkPolicy allows add up, so a tenant policy that restricted its pods' egress
/// no longer does. A tenant egress policy is widened when the block policy allows
/// some (destination, port) that the policy itself does not.
///
/// The block policy allows, per address family it covers and per protocol:
/// everything outside the node subnets on every port, and (in `ports` style) the
/// node subnets on the ports outside the protected ranges. The tenant policy allows
/// the union of its egress rules: `ipBlock`s (cidr minus except), every destination
/// for an absent or empty `to`; selector peers select pod IPs and named ports
/// resolve against pods, so neither can cover an address range and neither counts.
///
/// Decided per elementary port interval (cut at every port bound of the policy and
/// of the protected ranges): the union of the destinations of the rules that cover
/// it must hold what the block policy allows there. The work is bounded
/// (`maxChecks`); a policy too large to check is reported as widened, saying so.
struct GuardWidening: Sendable {
    let analysis: EgressAnalysis
    let nodes: IPRangeSet
    /// The protected ranges, merged per protocol.
    let protected: [PortRange]
    /// The address families the block policy allows egress in.
    let families: [IPFamily]
    let style: PolicyStyle

    /// Port entries looked at (over all intervals) one policy may cost before it is reported unchecked.
    static let maxChecks = 1 << 20

    init(config: Config) {
        analysis = EgressAnalysis(nodeCIDRs: config.nodeCIDRs, protectedPorts: config.protectedPorts)
        nodes = analysis.nodes
        protected = analysis.protectedPorts
        style = config.policyStyle
        // As GuardPolicies.outsideNodes: `ports` style always allows IPv6, the seed's
        // policies only when there are IPv6 node subnets.
        let hasV6 = config.nodeCIDRs.contains { $0.family == .v6 }
        families = style == .ports || hasV6 ? [.v4, .v6] : [.v4]
    }

    /// One allow rule of the tenant policy: destinations (nil: all) and ports (nil: all).
    struct Allow {
        var destinations: IPRangeSet?
        var ports: [PortRange]?
    }

    /// Something the block policy allows and the tenant policy does not.
    struct Opening: Equatable {
        let destination: IPRangeSet
        let ports: PortRange
    }

    enum Result: Equatable {
        case notWidened
        case widened(Opening)
        case tooLarge
    }

    /// The informational finding for a tenant policy's `spec`, or nil when the
    /// guard widens nothing of it. Kept short: a record holds it for as long as the
    /// policy exists, and most tenant egress policies are widened.
    func note(spec: JSONValue, namespace: String, name: String) -> String? {
        let opening: String
        switch check(spec: spec) {
        case .notWidened: return nil
        case .widened(let o):
            let first = o.destination.ranges.first?.cidrs.first.map(\.description) ?? "(none)"
            let more = o.destination.ranges.count > 1 || (o.destination.ranges.first?.cidrs.count ?? 0) > 1
            opening = "\(first)\(more ? " and more" : "") on \(o.ports)"
        case .tooLarge:
            opening = "more than it allows (too large to say what)"
        }
        return "pxguard: guardWidens: NetworkPolicy \(namespace)/\(name) restricts egress, but allows add up and the "
            + "guard's \(GuardNames.blockPolicy) allows every pod all but the Portworx API: its pods may also reach "
            + "\(opening). A cluster-scoped guard backend keeps the restriction."
    }

    func check(spec: JSONValue) -> Result {
        guard analysis.affectsEgress(spec) else { return .notWidened }
        var allows: [Allow] = []
        spec["egress"]?.forEachElement { _, rule in
            if let allow = self.allow(rule) { allows.append(allow) }
        }
        // A rule that allows every destination on every port leaves nothing to widen.
        if allows.contains(where: { $0.destinations == nil && $0.ports == nil }) { return .notWidened }
        var checks = 0
        for proto in TransportProtocol.allCases {
            let closed = protected.filter { $0.proto == proto }
            var bounds: [Int] = [1, 65536]
            for range in closed { bounds += [range.lower, range.upper + 1] }
            for allow in allows { for r in allow.ports ?? [] where r.proto == proto { bounds += [r.lower, r.upper + 1] } }
            bounds.sort()
            // Each bound once: a repeated bound would make an empty interval of the
            // first copy and hide the one that follows it.
            var unique: [Int] = []
            for b in bounds where unique.last != b { unique.append(b) }
            for (i, lower) in unique.enumerated() where i + 1 < unique.count {
                let upper = unique[i + 1] - 1
                // In the seed style the block policy never reaches the nodes; in
                // `ports` style only on the protected ranges.
                let nodesClosed = style == .seed || closed.contains { $0.lower <= lower && lower <= $0.upper }
                var requiredSet = IPRangeSet(families.map { CIDR.all($0).range })
                if nodesClosed { requiredSet = requiredSet.subtracting(nodes) }
                var covered: [IPRange] = []
                var all = false
                for allow in allows {
                    checks += 1 + (allow.ports?.count ?? 0)
                    if checks > Self.maxChecks { return .tooLarge }
                    guard allow.ports.map({ $0.contains { $0.proto == proto && $0.lower <= lower && lower <= $0.upper } }) ?? true
                    else { continue }
                    guard let destinations = allow.destinations else { all = true; break }
                    covered += destinations.ranges
                }
                if all { continue }
                let missing = requiredSet.subtracting(IPRangeSet(covered))
                if !missing.isEmpty {
                    return .widened(Opening(destination: missing, ports: PortRange(proto: proto, lower: lower, upper: upper)!))
                }
            }
        }
        return .notWidened
    }

    /// What one egress rule allows, or nil when it allows no address range.
    func allow(_ rule: JSONValue) -> Allow? {
        guard rule.kind == .object || rule.kind == .null else { return nil }
        let (portsValue, toValue, _) = rule.members("ports", "to")
        var allow = Allow()
        if let to = toValue, to.kind == .array, !to.isEmptyContainerOrNull {
            var ranges: [IPRange] = []
            var everything = false
            to.forEachElement { _, peer in
                guard !everything, peer.kind == .object || peer.kind == .null else { return }
                let (block, podSelector, namespaceSelector) = peer.members("ipBlock", "podSelector", "namespaceSelector")
                guard let block, !block.isNull else {
                    // `{}` or null: read as every destination, as R4 reads it.
                    if (podSelector == nil || podSelector!.isNull) && (namespaceSelector == nil || namespaceSelector!.isNull) {
                        everything = true
                    }
                    return
                }
                if let allowed = analysis.allowedAddresses(ipBlock: block) { ranges += allowed.ranges }
            }
            if !everything {
                guard !ranges.isEmpty else { return nil }
                allow.destinations = IPRangeSet(ranges)
            }
        }
        if let ports = portsValue, ports.kind == .array, !ports.isEmptyContainerOrNull {
            var ranges: [PortRange] = []
            ports.forEachElement { _, entry in
                guard entry.kind == .object || entry.kind == .null else { return }
                let (protoValue, portValue, endPortValue) = entry.members("protocol", "port", "endPort")
                let proto: TransportProtocol
                if protoValue == nil || protoValue!.isNull {
                    proto = .tcp
                } else if let p = protoValue?.string.flatMap(TransportProtocol.init(rawValue:)) {
                    proto = p
                } else {
                    return
                }
                switch portValue.flatMap({ $0.isNull ? nil : $0 }) {
                case nil:
                    ranges.append(PortRange(proto: proto, lower: 1, upper: 65535)!)
                case .some(let p) where p.kind == .number:
                    guard let lo = p.int else { return }
                    let hi = endPortValue.flatMap { $0.isNull ? nil : $0.int } ?? lo
                    if let r = PortRange(proto: proto, lower: lo, upper: max(lo, hi)) { ranges.append(r) }
                case .some(let p):
                    // A numeric string is that port; a named port covers no range.
                    if let n = p.string.flatMap({ Int($0) }), let r = PortRange(proto: proto, lower: n, upper: n) {
                        ranges.append(r)
                    }
                }
            }
            guard !ranges.isEmpty else { return nil }
            allow.ports = ranges
        }
        return allow
    }
}
