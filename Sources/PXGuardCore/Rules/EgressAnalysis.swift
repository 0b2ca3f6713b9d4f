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
///
/// Every rule is read once, in time linear in its size apart from one sort of the
/// `except` blocks that touch the node subnets: `cidr` minus `except` is a sort and
/// a sweep (`IPRangeSet`), never a subtraction inside a loop over the holes.
/// Absent values are read with the API server's defaulting: a missing or null
/// `protocol` is TCP, a null entry in `egress`, `to` or `ports` is `{}`.
public struct EgressAnalysis: Sendable {
    /// The node subnets, sorted and coalesced.
    public let nodes: IPRangeSet
    /// The protected ports, merged per protocol (sorted by protocol, then port).
    public let protectedPorts: [PortRange]

    public init(nodeCIDRs: [CIDR], protectedPorts: [PortRange]) {
        nodes = IPRangeSet(nodeCIDRs.map { IPRangeSet.effective($0.range) })
        self.protectedPorts = PortRange.coalesce(protectedPorts)
    }

    /// The node subnets as ranges (kept for callers of the first version).
    public var nodeRanges: [IPRange] { nodes.ranges }

    /// A named port in a rule: it resolves against destination pods, never against
    /// an ipBlock, so it cannot be ruled out and counts as overlapping.
    public struct NamedPort: Sendable, Equatable {
        public let name: String
        public let proto: TransportProtocol
    }

    /// Where one egress rule's destinations meet the node subnets.
    public enum Destinations: Sendable, Equatable {
        /// `to` absent, null or empty (or an empty peer): every destination.
        case all
        /// The node address pieces the rule's `ipBlock` peers reach, and the
        /// families of the blocks that reach them (for the fix: an `except` of the
        /// block's own family). Selector peers select pod IPs and never count.
        case ipBlocks(IPRangeSet, families: Set<IPFamily>)
        /// An `ipBlock` whose `cidr` cannot be parsed: the API server rejects it
        /// before validating webhooks run; offline it is treated as reaching every node.
        case unparsable(String)
    }

    /// One egress rule that reaches the protected set: what it reaches, in pieces
    /// a repair can cut out and a message can name.
    public struct RuleReach: Sendable, Equatable, CustomStringConvertible {
        /// Index of the rule in `spec.egress`.
        public let ruleIndex: Int
        /// How the rule's destinations meet the node subnets.
        public let destinations: Destinations
        /// The node addresses reached (all node subnets for `.all` and `.unparsable`).
        public let addresses: IPRangeSet
        /// True when `ports` is absent, null or empty (every port of every protocol).
        public let allPorts: Bool
        /// The protected port pieces reached by numeric ports (merged per protocol).
        public let ports: [PortRange]
        /// Named ports on a protected protocol.
        public let namedPorts: [NamedPort]

        /// Node addresses as CIDR blocks, shortened after a few.
        public var addressesDescription: String {
            if case .unparsable(let text) = destinations {
                return "the node subnets (ipBlock cidr \(text) cannot be parsed)"
            }
            let blocks = addresses.cidrs
            let shown = blocks.prefix(3).map(\.description).joined(separator: ", ")
            return blocks.count > 3 ? "\(shown) (and \(blocks.count - 3) more blocks)" : shown
        }

        /// Protected ports reached, shortened after a few.
        public var portsDescription: String {
            var parts = ports.prefix(4).map(\.description)
            if ports.count > 4 { parts.append("\(ports.count - 4) more ranges") }
            for n in namedPorts.prefix(2) {
                parts.append("named port \"\(n.name)\" (\(n.proto.rawValue), cannot be resolved for an ipBlock)")
            }
            if namedPorts.count > 2 { parts.append("\(namedPorts.count - 2) more named ports") }
            return parts.joined(separator: ", ")
        }

        public var description: String { "egress rule \(ruleIndex) allows \(addressesDescription) on \(portsDescription)" }
    }

    /// The first egress rule of `spec` that reaches a protected address and port.
    public func firstReach(spec: JSONValue) -> RuleReach? {
        var found: RuleReach?
        forEachReach(spec: spec) { found = $0; return false }
        return found
    }

    /// Every egress rule of `spec` that reaches a protected address and port, in order.
    public func reaches(spec: JSONValue) -> [RuleReach] {
        var all: [RuleReach] = []
        forEachReach(spec: spec) { all.append($0); return true }
        return all
    }

    /// Calls `body` for each egress rule that reaches the protected set, in order,
    /// until it returns false. Nothing when the policy does not affect egress.
    public func forEachReach(spec: JSONValue, _ body: (RuleReach) -> Bool) {
        guard affectsEgress(spec), let egress = spec["egress"] else { return }
        var going = true
        egress.forEachElement { index, rule in
            guard going, let reach = reach(rule: rule, index: index) else { return }
            going = body(reach)
        }
    }

    /// What one element of `spec.egress` reaches of the protected set, or nil for
    /// nothing. A null rule reads as `{}`: every destination on every port.
    public func reach(rule: JSONValue, index: Int) -> RuleReach? {
        guard rule.kind == .object || rule.kind == .null else { return nil }
        let (portsValue, toValue, _) = rule.members("ports", "to")
        // Ports first: they are cheap and rule out most rules.
        guard let ports = reachedPorts(portsValue) else { return nil }
        guard let destinations = reachedDestinations(toValue) else { return nil }
        let addresses: IPRangeSet
        switch destinations {
        case .all, .unparsable: addresses = nodes
        case .ipBlocks(let set, _): addresses = set
        }
        return RuleReach(ruleIndex: index, destinations: destinations, addresses: addresses,
                         allPorts: ports.all, ports: ports.ranges, namedPorts: ports.named)
    }

    /// `Egress` in `policyTypes`; without `policyTypes`, a non-empty `egress`
    /// (the API server's defaulting, k8s pkg/apis/networking/v1/defaults.go).
    public func affectsEgress(_ spec: JSONValue) -> Bool {
        if let types = spec["policyTypes"], types.kind == .array, !types.isEmptyContainerOrNull {
            var egress = false
            types.forEachElement { _, t in if t.stringEquals("Egress") { egress = true } }
            return egress
        }
        guard let egress = spec["egress"], egress.kind == .array else { return false }
        return !egress.isEmptyContainerOrNull
    }

    /// The addresses an `ipBlock` allows: its `cidr` minus its `except` blocks, with
    /// IPv4-mapped blocks read as IPv4. Nil when the `cidr` cannot be parsed.
    public func allowedAddresses(ipBlock: JSONValue) -> IPRangeSet? {
        let (cidrValue, except, _) = ipBlock.members("cidr", "except")
        guard let cidr = cidrValue?.cidr else { return nil }
        return Self.subtract(except: except, from: IPRangeSet(IPRangeSet.effective(cidr.range)))
    }

    /// The destinations of a rule's `to` that meet the node subnets, or nil for none.
    func reachedDestinations(_ to: JSONValue?) -> Destinations? {
        guard let to, to.kind == .array, !to.isEmptyContainerOrNull else { return .all }
        var pieces: [IPRange] = []
        var families: Set<IPFamily> = []
        var result: Destinations?
        to.forEachElement { _, peer in
            guard result == nil else { return }
            guard peer.kind == .object || peer.kind == .null else { return }
            let (block, podSelector, namespaceSelector) = peer.members("ipBlock", "podSelector", "namespaceSelector")
            guard let block, !block.isNull else {
                // A peer with neither an ipBlock nor a selector (`{}` or null): the
                // API server refuses it, and offline it is read as every destination.
                if (podSelector == nil || podSelector!.isNull) && (namespaceSelector == nil || namespaceSelector!.isNull) {
                    result = .all
                }
                return
            }
            let cidrValue = block["cidr"]
            guard let cidr = cidrValue?.cidr else {
                result = .unparsable(cidrValue?.string ?? "(missing)")
                return
            }
            let range = IPRangeSet.effective(cidr.range)
            // Most blocks miss the node subnets entirely: decide that before
            // looking at the except list.
            let candidates = nodes.intersection(IPRangeSet(range))
            if candidates.isEmpty { return }
            let left = Self.subtract(except: block["except"], from: candidates)
            if !left.isEmpty {
                pieces += left.ranges
                families.insert(range.family)
            }
        }
        if let result { return result }
        return pieces.isEmpty ? nil : .ipBlocks(IPRangeSet(pieces), families: families)
    }

    /// `set` minus the `except` blocks (IPv4-mapped ones read as IPv4). Only the
    /// blocks that touch `set` are kept, then sorted once and swept.
    static func subtract(except: JSONValue?, from set: IPRangeSet) -> IPRangeSet {
        guard let except, except.kind == .array, let first = set.ranges.first, let last = set.ranges.last else { return set }
        var holes: [IPRange] = []
        except.forEachElement { _, e in
            // An except that cannot be parsed removes nothing (the API server
            // refuses it; offline the block keeps reaching what it reached).
            guard let c = e.cidr else { return }
            let r = IPRangeSet.effective(c.range)
            // Cheap bounds check first; a precise one when the set has gaps.
            guard !IPRangeSet.entirelyBefore(r, first), !IPRangeSet.entirelyBefore(last, r) else { return }
            if set.ranges.count <= 4 && !set.ranges.contains(where: { $0.intersection(r) != nil }) { return }
            holes.append(r)
        }
        return holes.isEmpty ? set : set.subtracting(IPRangeSet(holes))
    }

    /// The protected ports a rule's `ports` reaches, or nil for none. Absent, null
    /// or empty `ports` means every port of every protocol.
    func reachedPorts(_ ports: JSONValue?) -> (all: Bool, ranges: [PortRange], named: [NamedPort])? {
        guard let ports, ports.kind == .array, !ports.isEmptyContainerOrNull else {
            return (true, protectedPorts, [])
        }
        var reached: [PortRange] = []
        var named: [NamedPort] = []
        ports.forEachElement { _, entry in
            guard entry.kind == .object || entry.kind == .null else { return }
            let (protoValue, portValue, endPortValue) = entry.members("protocol", "port", "endPort")
            let proto: TransportProtocol
            if protoValue == nil || protoValue!.isNull || protoValue!.stringEquals("TCP") {
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
                let hi = endPortValue.flatMap { $0.isNull ? nil : $0.int } ?? lo
                guard let r = PortRange(proto: proto, lower: lo, upper: max(lo, hi)) else { return }
                range = r
            case .some(let p):
                guard p.kind == .string else { return }
                let name = p.string ?? ""
                if let number = Int(name), let r = PortRange(proto: proto, lower: number, upper: number) {
                    range = r
                } else {
                    if protectedPorts.contains(where: { $0.proto == proto }) {
                        named.append(NamedPort(name: name, proto: proto))
                    }
                    return
                }
            }
            for protected in protectedPorts {
                if let overlap = range.intersection(protected) { reached.append(overlap) }
            }
        }
        guard !reached.isEmpty || !named.isEmpty else { return nil }
        return (false, PortRange.coalesce(reached), named)
    }
}

extension PortRange {
    /// The union of `ranges`, sorted by protocol and then port, with overlapping and
    /// adjacent ranges of one protocol merged.
    public static func coalesce(_ ranges: [PortRange]) -> [PortRange] {
        let order = TransportProtocol.allCases
        let sorted = ranges.sorted {
            $0.proto == $1.proto ? $0.lower < $1.lower : order.firstIndex(of: $0.proto)! < order.firstIndex(of: $1.proto)!
        }
        guard var current = sorted.first else { return [] }
        var out: [PortRange] = []
        for r in sorted.dropFirst() {
            if r.proto == current.proto && r.lower <= current.upper + 1 {
                current = PortRange(proto: current.proto, lower: current.lower, upper: max(current.upper, r.upper))!
            } else {
                out.append(current)
                current = r
            }
        }
        out.append(current)
        return out
    }
}
