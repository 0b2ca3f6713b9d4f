extension JSONValue {
    /// The value as a CIDR when it is a string holding one.
    var cidr: CIDR? {
        guard kind == .string else { return nil }
        return CIDR(rawBytes: UnsafeBufferPointer(start: base + start + 1, count: end - start - 2))
    }
}

/// The egress analysis behind R4: does a NetworkPolicy spec allow egress to some
/// protected address (a node subnet) on some protected port?
///
/// The question is "overlaps", not "fully covers": policies are additive, so a
/// single allowed (address, port) pair inside the protected set is a hole.
public struct EgressAnalysis: Sendable {
    public let nodeRanges: [IPRange]
    public let protectedPorts: [PortRange]

    public init(nodeCIDRs: [CIDR], protectedPorts: [PortRange]) {
        nodeRanges = nodeCIDRs.map(\.range)
        self.protectedPorts = protectedPorts
    }

    /// One egress rule that reaches the protected set.
    public struct Reach: Sendable, Equatable, CustomStringConvertible {
        /// Index of the rule in `spec.egress`.
        public let ruleIndex: Int
        /// The part of the node subnets the rule reaches.
        public let addresses: String
        /// The part of the protected ports the rule reaches.
        public let ports: String

        public var description: String { "egress rule \(ruleIndex) allows \(addresses) on \(ports)" }
    }

    /// The first egress rule of `spec` that reaches a protected address and port.
    public func firstReach(spec: JSONValue) -> Reach? {
        guard affectsEgress(spec), let egress = spec["egress"] else { return nil }
        var found: Reach?
        egress.forEachElement { index, rule in
            // Ports first: they are cheap to check and rule out most rules. Words
            // for the message are only built for the rule that reaches.
            guard found == nil, rule.kind == .object else { return }
            let (portsValue, toValue, _) = rule.members("ports", "to")
            guard reachedPorts(portsValue, describe: false) != nil,
                reachedAddresses(toValue, describe: false) != nil,
                let ports = reachedPorts(portsValue, describe: true),
                let addresses = reachedAddresses(toValue, describe: true)
            else { return }
            found = Reach(ruleIndex: index, addresses: addresses, ports: ports)
        }
        return found
    }

    /// `Egress` in `policyTypes`; without `policyTypes`, a non-empty `egress`
    /// (the API server's defaulting, k8s pkg/apis/networking/v1/defaults.go).
    func affectsEgress(_ spec: JSONValue) -> Bool {
        if let types = spec["policyTypes"], types.kind == .array, !types.isEmptyContainerOrNull {
            var egress = false
            types.forEachElement { _, t in if t.stringEquals("Egress") { egress = true } }
            return egress
        }
        guard let egress = spec["egress"], egress.kind == .array else { return false }
        return !egress.isEmptyContainerOrNull
    }

    /// The node addresses a rule's `to` reaches, described, or nil for none.
    /// Absent or empty `to` means every destination. Pod and namespace selector
    /// peers select pod IPs, not the node subnets, and do not count (SPEC R4).
    func reachedAddresses(_ to: JSONValue?, describe: Bool) -> String? {
        guard let to, to.kind == .array, !to.isEmptyContainerOrNull else {
            return describe ? nodeRanges.map(\.description).joined(separator: ", ") : ""
        }
        var reached: [IPRange] = []
        var unparsable: String?
        to.forEachElement { _, peer in
            guard let block = peer["ipBlock"], block.kind == .object else { return }
            let (cidrValue, except, _) = block.members("cidr", "except")
            guard let cidr = cidrValue?.cidr else {
                // The API server rejects these before validating webhooks run; offline
                // (`pxguard check`) an unreadable block is treated as reaching everything.
                unparsable = cidrValue?.string ?? "(missing)"
                return
            }
            // Most blocks miss the node subnets entirely: decide that before
            // looking at the except list.
            let candidatesForBlock = [cidr.range] + [IPRangeSet.asIPv4(cidr.range)].compactMap { $0 }
            if !candidatesForBlock.contains(where: { c in nodeRanges.contains { c.intersection($0) != nil } }) { return }
            var holes: [IPRange] = []
            except?.forEachElement { _, e in
                if let c = e.cidr { holes.append(c.range) }
            }
            let allowed = IPRangeSet.subtract([cidr.range], holes)
            for range in allowed {
                let candidates = [range] + [IPRangeSet.asIPv4(range)].compactMap { $0 }
                reached += IPRangeSet.intersect(candidates, nodeRanges)
            }
        }
        if let unparsable {
            return "the node subnets (ipBlock cidr \(unparsable) cannot be parsed)"
        }
        guard !reached.isEmpty else { return nil }
        guard describe else { return "" }
        let shown = reached.prefix(2).map(\.description).joined(separator: ", ")
        return reached.count > 2 ? shown + " (and more)" : shown
    }

    /// The protected ports a rule's `ports` reaches, described, or nil for none.
    /// Absent or empty `ports` means every port of every protocol.
    func reachedPorts(_ ports: JSONValue?, describe: Bool) -> String? {
        guard let ports, ports.kind == .array, !ports.isEmptyContainerOrNull else {
            return describe ? protectedPorts.map(\.description).joined(separator: ", ") : ""
        }
        var reached: [String] = []
        ports.forEachElement { _, entry in
            guard describe || reached.isEmpty else { return }
            let (protoValue, portValue, endPortValue) = entry.members("protocol", "port", "endPort")
            let proto: TransportProtocol
            if protoValue == nil || protoValue!.stringEquals("TCP") {
                proto = .tcp
            } else if protoValue!.stringEquals("UDP") {
                proto = .udp
            } else if protoValue!.stringEquals("SCTP") {
                proto = .sctp
            } else {
                return
            }
            let range: PortRange
            let port = portValue.flatMap { $0.isNull ? nil : $0 }
            switch port {
            case nil:
                range = PortRange(proto: proto, lower: 1, upper: 65535)!
            case .some(let p) where p.kind == .number:
                guard let lo = p.int else { return }
                let hi = endPortValue?.int ?? lo
                guard let r = PortRange(proto: proto, lower: lo, upper: max(lo, hi)) else { return }
                range = r
            case .some(let p):
                let name = p.string ?? ""
                if let number = Int(name), let r = PortRange(proto: proto, lower: number, upper: number) {
                    range = r
                } else {
                    // A named port resolves against destination pods, never against an
                    // ipBlock; it cannot be ruled out, so it counts as overlapping.
                    if protectedPorts.contains(where: { $0.proto == proto }) {
                        reached.append("named port \"\(name)\" (\(proto.rawValue), cannot be resolved for an ipBlock)")
                    }
                    return
                }
            }
            for protected in protectedPorts {
                if let overlap = range.intersection(protected) { reached.append(overlap.description) }
            }
        }
        return reached.isEmpty ? nil : reached.joined(separator: ", ")
    }
}
