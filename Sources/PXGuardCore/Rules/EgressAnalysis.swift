extension JSONValue {
    /// The value as a CIDR when it is a string holding one: read in place, or
    /// decoded first when it holds escapes (the API server decodes them too).
    var cidr: CIDR? {
        guard kind == .string else { return nil }
        let raw = UnsafeBufferPointer(start: base + start + 1, count: end - start - 2)
        if raw.contains(UInt8(ascii: "\\")) { return string.flatMap(CIDR.init) }
        return CIDR(rawBytes: raw)
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
struct EgressAnalysis: Sendable {
    /// The node subnets, sorted and coalesced.
    let nodes: IPRangeSet
    /// The protected ports, merged per protocol (sorted by protocol, then port).
    let protectedPorts: [PortRange]

    init(nodeCIDRs: [CIDR], protectedPorts: [PortRange]) {
        nodes = IPRangeSet(nodeCIDRs.map { IPRangeSet.effective($0.range) })
        self.protectedPorts = PortRange.coalesce(protectedPorts)
    }

    /// The node subnets as ranges (kept for callers of the first version).
    var nodeRanges: [IPRange] { nodes.ranges }

    /// A named port in a rule: it resolves against destination pods, never against
    /// an ipBlock, so it cannot be ruled out and counts as overlapping.
    struct NamedPort: Sendable, Equatable {
        let name: String
        let proto: TransportProtocol
    }

    /// Where one egress rule's destinations meet the node subnets.
    enum Destinations: Sendable, Equatable {
        /// `to` absent, null or empty (or an empty peer): every destination.
        case all
        /// The node address pieces the rule's `ipBlock` peers reach, and the
        /// families of the blocks that reach them (for the fix: an `except` of the
        /// block's own family; `mapped` when an IPv4 one is written IPv4-mapped).
        /// Selector peers select pod IPs and never count.
        case ipBlocks(IPRangeSet, families: Set<IPFamily>, mapped: Bool)
        /// An `ipBlock` whose `cidr` cannot be parsed: the API server rejects it
        /// before validating webhooks run; offline it is treated as reaching every node.
        case unparsable(String)
    }

    /// One egress rule that reaches the protected set: what it reaches, in pieces
    /// a repair can cut out and a message can name.
    struct RuleReach: Sendable, Equatable, CustomStringConvertible {
        /// Index of the rule in `spec.egress`.
        let ruleIndex: Int
        /// How the rule's destinations meet the node subnets.
        let destinations: Destinations
        /// The node addresses reached (all node subnets for `.all` and `.unparsable`).
        let addresses: IPRangeSet
        /// True when `ports` is absent, null or empty (every port of every protocol).
        let allPorts: Bool
        /// The protected port pieces reached by numeric ports (merged per protocol).
        let ports: [PortRange]
        /// Named ports on a protected protocol.
        let namedPorts: [NamedPort]

        /// Node addresses as CIDR blocks, shortened after a few.
        var addressesDescription: String {
            if case .unparsable(let text) = destinations {
                return "the node subnets (ipBlock cidr \(text) cannot be parsed)"
            }
            let blocks = addresses.cidrs
            let shown = blocks.prefix(3).map(\.description).joined(separator: ", ")
            return blocks.count > 3 ? "\(shown) (and \(blocks.count - 3) more blocks)" : shown
        }

        /// Protected ports reached, shortened after a few.
        var portsDescription: String {
            var parts = ports.prefix(4).map(\.description)
            if ports.count > 4 { parts.append("\(ports.count - 4) more ranges") }
            for n in namedPorts.prefix(2) {
                parts.append("named port \"\(n.name)\" (\(n.proto.rawValue), cannot be resolved for an ipBlock)")
            }
            if namedPorts.count > 2 { parts.append("\(namedPorts.count - 2) more named ports") }
            return parts.joined(separator: ", ")
        }

        var description: String { "egress rule \(ruleIndex) allows \(addressesDescription) on \(portsDescription)" }
    }

    /// The first egress rule of `spec` that reaches a protected address and port.
    func firstReach(spec: JSONValue) -> RuleReach? {
        var found: RuleReach?
        forEachReach(spec: spec) { found = $0; return false }
        return found
    }

    /// Every egress rule of `spec` that reaches a protected address and port, in order.
    func reaches(spec: JSONValue) -> [RuleReach] {
        var all: [RuleReach] = []
        forEachReach(spec: spec) { all.append($0); return true }
        return all
    }

    /// Calls `body` for each egress rule that reaches the protected set, in order,
    /// until it returns false. Nothing when the policy does not affect egress.
    func forEachReach(spec: JSONValue, _ body: (RuleReach) -> Bool) {
        guard affectsEgress(spec), let egress = spec["egress"] else { return }
        var going = true
        var scratch = Scratch()
        egress.forEachElement { index, rule in
            guard going, let reach = reach(rule: rule, index: index, &scratch) else { return }
            going = body(reach)
        }
    }

    /// What one element of `spec.egress` reaches of the protected set, or nil for
    /// nothing. A null rule reads as `{}`: every destination on every port.
    func reach(rule: JSONValue, index: Int) -> RuleReach? {
        var scratch = Scratch()
        return reach(rule: rule, index: index, &scratch)
    }

    /// Buffers reused from rule to rule of one policy, so that a rule that reaches
    /// nothing allocates nothing (a 3 MiB policy holds tens of thousands of rules).
    struct Scratch {
        var ports: [PortRange] = []
        var named: [NamedPort] = []
        var holes4: [UInt64] = []
        var holes6: [IPRange] = []
        var pieces: [IPRange] = []
    }

    func reach(rule: JSONValue, index: Int, _ scratch: inout Scratch) -> RuleReach? {
        guard rule.kind == .object || rule.kind == .null else { return nil }
        let (portsValue, toValue, _) = rule.members("ports", "to")
        // Ports first: they are cheap and rule out most rules. The first port that
        // hits is enough to go on; the pieces are only collected for a rule that
        // also reaches a node address.
        guard let allPorts = reachedPorts(portsValue, &scratch, collect: false) else { return nil }
        guard let destinations = reachedDestinations(toValue, &scratch) else { return nil }
        if !allPorts { _ = reachedPorts(portsValue, &scratch, collect: true) }
        let addresses: IPRangeSet
        switch destinations {
        case .all, .unparsable: addresses = nodes
        case .ipBlocks(let set, _, _): addresses = set
        }
        return RuleReach(ruleIndex: index, destinations: destinations, addresses: addresses, allPorts: allPorts,
                         ports: allPorts ? protectedPorts : PortRange.coalesce(scratch.ports), namedPorts: scratch.named)
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

    /// The addresses an `ipBlock` allows: its `cidr` minus its `except` blocks of the
    /// same written family, with IPv4-mapped blocks read as IPv4. Nil when the `cidr`
    /// cannot be parsed.
    func allowedAddresses(ipBlock: JSONValue) -> IPRangeSet? {
        let (cidrValue, except, _) = ipBlock.members("cidr", "except")
        guard let cidr = cidrValue?.cidr else { return nil }
        var scratch = Scratch()
        let range = IPRangeSet.effective(cidr.range)
        Self.subtract(except: except, writtenAs: cidr.family, from: [range], within: range, into: &scratch)
        return IPRangeSet(scratch.pieces)
    }

    /// The destinations of a rule's `to` that meet the node subnets, or nil for none.
    func reachedDestinations(_ to: JSONValue?, _ scratch: inout Scratch) -> Destinations? {
        guard let to, to.kind == .array, !to.isEmptyContainerOrNull else { return .all }
        scratch.pieces.removeAll(keepingCapacity: true)
        var v4 = false, v6 = false, mapped = false
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
            let (cidrValue, except, _) = block.members("cidr", "except")
            guard let cidr = cidrValue?.cidr else {
                result = .unparsable(cidrValue?.string ?? "(missing)")
                return
            }
            let range = IPRangeSet.effective(cidr.range)
            // Most blocks miss the node subnets entirely: decide that before
            // looking at the except list.
            guard nodes.ranges.contains(where: { $0.intersection(range) != nil }) else { return }
            let before = scratch.pieces.count
            Self.subtract(except: except, writtenAs: cidr.family, from: nodes.ranges, within: range, into: &scratch)
            if scratch.pieces.count > before {
                if range.family == .v4 { v4 = true } else { v6 = true }
                if range.family != cidr.family { mapped = true }
            }
        }
        if let result { return result }
        guard !scratch.pieces.isEmpty else { return nil }
        let families: Set<IPFamily> = v4 && v6 ? [.v4, .v6] : v4 ? [.v4] : [.v6]
        return .ipBlocks(IPRangeSet(scratch.pieces), families: families, mapped: mapped)
    }

    /// Appends to `scratch.pieces` each of `ranges` cut to `within`, minus the
    /// `except` blocks written in `family`, the family the block's `cidr` is written
    /// in (IPv4-mapped ones read as IPv4). Only the blocks that touch the cut ranges
    /// are kept; they are sorted once (IPv4 as radix-sorted packed keys) and swept,
    /// overlapping one another or not.
    static func subtract(except: JSONValue?, writtenAs family: IPFamily, from ranges: [IPRange], within: IPRange,
                         into scratch: inout Scratch) {
        scratch.holes4.removeAll(keepingCapacity: true)
        scratch.holes6.removeAll(keepingCapacity: true)
        if let except, except.kind == .array {
            except.forEachElement { _, e in
                // An except that cannot be parsed removes nothing (the API server
                // refuses it; offline the block keeps reaching what it reached). Nor
                // does one written in the other family (`::ffff:70.0.0.0/112` under
                // `0.0.0.0/0`): some CNIs read a mapped prefix as IPv4, others keep it
                // IPv6 and leave the addresses reachable.
                guard let c = e.cidr, c.family == family else { return }
                let r = IPRangeSet.effective(c.range)
                guard let cut = r.intersection(within), ranges.contains(where: { $0.intersection(cut) != nil }) else { return }
                if cut.family == .v4 {
                    scratch.holes4.append(UInt64(truncatingIfNeeded: cut.lower) << 32 | UInt64(truncatingIfNeeded: cut.upper))
                } else {
                    scratch.holes6.append(cut)
                }
            }
            RadixSort.sort(&scratch.holes4)
            scratch.holes6.sort { $0.lower < $1.lower }
        }
        for node in ranges {
            guard let c = node.intersection(within) else { continue }
            var lower = c.lower
            var open = true
            // Holes sorted by lower bound: a gap before each, then jump past it.
            func cut(_ hLower: UInt128, _ hUpper: UInt128) -> Bool {
                if hUpper < lower { return true }
                if hLower > c.upper { return false }
                if hLower > lower { scratch.pieces.append(IPRange(family: c.family, lower: lower, upper: hLower - 1)) }
                if hUpper >= c.upper { open = false; return false }
                lower = hUpper + 1
                return true
            }
            if c.family == .v4 {
                for key in scratch.holes4 where !cut(UInt128(key >> 32), UInt128(key & 0xFFFF_FFFF)) { break }
            } else {
                for h in scratch.holes6 where !cut(h.lower, h.upper) { break }
            }
            if open { scratch.pieces.append(IPRange(family: c.family, lower: lower, upper: c.upper)) }
        }
    }

    /// The protected ports a rule's `ports` reaches, or nil for none. Absent, null
    /// or empty `ports` means every port of every protocol.
    /// True for every port, false for the pieces left in `scratch.ports` and
    /// `scratch.named`.
    /// Without `collect`, stops looking at the first entry that hits.
    func reachedPorts(_ ports: JSONValue?, _ scratch: inout Scratch, collect: Bool) -> Bool? {
        scratch.ports.removeAll(keepingCapacity: true)
        scratch.named.removeAll(keepingCapacity: true)
        guard let ports, ports.kind == .array, !ports.isEmptyContainerOrNull else { return true }
        // Without `collect` the walk stops at the first hit: a rule that also reaches
        // a node address is walked again to collect, so a hit early in a 3 MiB list
        // costs one walk, not two.
        ports.forEachElementWhile { _, entry in
            guard collect || (scratch.ports.isEmpty && scratch.named.isEmpty) else { return false }
            guard entry.kind == .object || entry.kind == .null else { return true }
            let (protoValue, portValue, endPortValue) = entry.members("protocol", "port", "endPort")
            let proto: TransportProtocol
            if protoValue == nil || protoValue!.isNull || protoValue!.stringEquals("TCP") {
                proto = .tcp
            } else if protoValue!.stringEquals("UDP") {
                proto = .udp
            } else if protoValue!.stringEquals("SCTP") {
                proto = .sctp
            } else {
                return true
            }
            let range: PortRange
            let port = portValue.flatMap { $0.isNull ? nil : $0 }
            switch port {
            case nil:
                range = PortRange(proto: proto, lower: 1, upper: 65535)!
            case .some(let p) where p.kind == .number:
                guard let lo = p.int else { return true }
                let hi = endPortValue.flatMap { $0.isNull ? nil : $0.int } ?? lo
                guard let r = PortRange(proto: proto, lower: lo, upper: max(lo, hi)) else { return true }
                range = r
            case .some(let p):
                guard p.kind == .string else { return true }
                let name = p.string ?? ""
                if let number = Int(name), let r = PortRange(proto: proto, lower: number, upper: number) {
                    range = r
                } else {
                    if protectedPorts.contains(where: { $0.proto == proto }) {
                        scratch.named.append(NamedPort(name: name, proto: proto))
                    }
                    return true
                }
            }
            for protected in protectedPorts {
                if let overlap = range.intersection(protected) { scratch.ports.append(overlap) }
            }
            return true
        }
        return scratch.ports.isEmpty && scratch.named.isEmpty ? nil : false
    }
}
