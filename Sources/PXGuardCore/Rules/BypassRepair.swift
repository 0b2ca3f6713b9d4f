/// R4 `mode: repair`: rewrites each egress rule that reaches the protected set into
/// rules that allow exactly what it allowed before, minus the node subnets on the
/// protected ports.
///
/// A rule allows destinations D on ports Q. What stays allowed is
/// (D minus the nodes) × Q, plus (D ∩ the nodes) × (Q minus the protected ports),
/// so an offending rule becomes at most two rules:
/// - the first keeps the rule's selector peers and ports, its `ipBlock`s get the node
///   subnets they contain added to `except` (a block inside a node subnet moves to
///   the second rule); "every destination" becomes every pod (`namespaceSelector:
///   {}`, so that pod-to-pod traffic stays allowed on plugins that do not apply
///   ipBlocks to pods) plus `0.0.0.0/0` and `::/0` except the node subnets;
/// - the second allows the node subnets the rule reached (its blocks cut down to
///   them, their `except`s kept) on the rule's ports minus the protected ranges, per
///   protocol, as `port`/`endPort` ranges. Named ports are left out of it: they
///   resolve against pods, never against a node address.
/// A rule that would come out with an empty `to` or `ports` is left out, since an
/// empty list means "all".
struct BypassRepair: Sendable {
    let analysis: EgressAnalysis
    /// The node subnets, those inside another one dropped, so that the rest are
    /// disjoint: two CIDR blocks are either nested or disjoint.
    let nodes: [CIDR]
    let protectedPorts: [PortRange]

    init(config: Config) {
        analysis = EgressAnalysis(nodeCIDRs: config.nodeCIDRs, protectedPorts: config.protectedPorts)
        let all = config.nodeCIDRs
        nodes = all.enumerated().filter { i, c in
            !all.enumerated().contains { j, other in
                j != i && other.contains(c) && (other != c || j < i)
            }
        }.map(\.element)
        protectedPorts = analysis.protectedPorts
    }

    /// What a repair changed.
    struct Result: Sendable {
        /// RFC 6902 patch (JSON text) against the object.
        let patch: [UInt8]
        /// The spec's new `egress` list.
        let egress: JSON
        /// The indices of the rules that were rewritten, and what they reached.
        let repaired: [EgressAnalysis.RuleReach]
    }

    /// The repair for a NetworkPolicy `spec`, or nil when no egress rule reaches the
    /// protected set, or when one cannot be repaired (an `ipBlock` whose `cidr`
    /// cannot be parsed: the API server refuses it anyway).
    func repair(spec: JSONValue) -> Result? {
        let reaches = analysis.reaches(spec: spec)
        guard !reaches.isEmpty, let egress = spec["egress"] else { return nil }
        for reach in reaches {
            if case .unparsable = reach.destinations { return nil }
        }
        var offending = Set(reaches.map(\.ruleIndex))
        var rules: [JSON] = []
        egress.forEachElement { index, rule in
            if offending.remove(index) != nil {
                rules += split(rule)
            } else {
                rules.append(JSON(rule))
            }
        }
        var ops: [JSON] = [.obj(["op": "replace", "path": "/spec/egress", "value": .array(rules)])]
        // Without `policyTypes` the API server derives Egress from a non-empty
        // `egress`; the repaired list may be empty, so the types are written out.
        let types = spec["policyTypes"]
        if types == nil || types!.isEmptyContainerOrNull {
            ops.insert(.obj(["op": "add", "path": "/spec/policyTypes", "value": ["Ingress", "Egress"]]), at: 0)
        }
        var patch: [UInt8] = []
        JSON.array(ops).write(into: &patch)
        return Result(patch: patch, egress: .array(rules), repaired: reaches)
    }

    /// One offending rule as the rules that allow the same minus the protected set.
    /// Read from the request in place: only what is copied into the answer becomes
    /// an owned tree, and `except` blocks are parsed from their raw bytes.
    func split(_ rule: JSONValue) -> [JSON] {
        let (toValue, portsValue, _) = rule.members("to", "ports")
        let to = toValue.flatMap { $0.kind == .array ? $0 : nil }
        var everywhere = to == nil || to!.isEmptyContainerOrNull
        var outside: [JSON] = []
        var inside: [JSON] = []
        to?.forEachElement { _, peer in
            guard peer.kind == .object else {
                everywhere = true  // a null peer reads as `{}`
                return
            }
            let (blockValue, podSelector, namespaceSelector) = peer.members("ipBlock", "podSelector", "namespaceSelector")
            if let block = blockValue, block.kind == .object {
                let (out, into) = splitBlock(block)
                outside += out.map { .obj(["ipBlock": $0]) }
                inside += into.map { .obj(["ipBlock": $0]) }
            } else if (podSelector.map { !$0.isNull } ?? false) || (namespaceSelector.map { !$0.isNull } ?? false) {
                outside.append(JSON(peer))
            } else {
                everywhere = true  // `{}`: every destination
            }
        }
        if everywhere {
            outside = [.obj(["namespaceSelector": .object([])])]
                + GuardPolicies.outsideNodes(nodes, alwaysIPv6: true)
            inside = nodes.map { .obj(["ipBlock": .obj(["cidr": .string($0.description)])]) }
        }
        var out: [JSON] = []
        if !outside.isEmpty {
            // The rule as written (its ports included), with the new destinations.
            out.append(Self.copy(rule, replacing: "to", with: .array(outside)))
        }
        let open = openPorts(portsValue.map(JSON.init))
        if !inside.isEmpty && !open.isEmpty {
            out.append(.obj(["to": .array(inside), "ports": .array(open)]))
        }
        return out
    }

    /// An `ipBlock` as its part outside the node subnets (the same block with the
    /// node subnets it contains added to `except`, or nothing when it lies inside
    /// one) and its parts inside them (one block per node subnet it reaches).
    func splitBlock(_ block: JSONValue) -> (outside: [JSON], inside: [JSON]) {
        let (cidrValue, exceptValue, _) = block.members("cidr", "except")
        guard let cidr = cidrValue?.cidr else { return ([JSON(block)], []) }
        let mapped = IPRangeSet.asIPv4(cidr.range) != nil
        let range = IPRangeSet.effective(cidr.range)
        func covers(_ outer: IPRange, _ inner: IPRange) -> Bool {
            outer.family == inner.family && outer.lower <= inner.lower && inner.upper <= outer.upper
        }
        // Only the node subnets the block reaches matter; most blocks reach one.
        let reached = nodes.filter { IPRangeSet.effective($0.range).intersection(range) != nil }
        guard !reached.isEmpty else { return ([JSON(block)], []) }
        var excepts: [(value: JSONValue, range: IPRange)] = []
        exceptValue?.forEachElement { _, e in
            if let c = e.cidr { excepts.append((e, IPRangeSet.effective(c.range))) }
        }
        var addedExcepts: [JSON] = []
        var inside: [JSON] = []
        for node in reached {
            let n = IPRangeSet.effective(node.range)
            // Blocks nest or are disjoint: the part of the block in this node subnet
            // is the block itself or the whole node subnet. An except that covers
            // that part already keeps it out.
            let part = covers(n, range) ? range : n
            if excepts.contains(where: { covers($0.range, part) }) { continue }
            if covers(n, range) {
                // The whole block lies inside the node subnet.
                return ([], [JSON(block)])
            }
            let written = mapped ? Self.mappedForm(node) : node
            addedExcepts.append(.string(written.description))
            let kept = excepts.filter { covers(n, $0.range) && $0.range != n }.map { JSON($0.value) }
            inside.append(.obj(["cidr": .string(written.description), "except": kept.isEmpty ? nil : .array(kept)]))
        }
        guard !addedExcepts.isEmpty else { return ([JSON(block)], []) }
        var except: [JSON] = []
        except.reserveCapacity(excepts.count + addedExcepts.count)
        exceptValue?.forEachElement { _, e in except.append(JSON(e)) }
        return ([Self.copy(block, replacing: "except", with: .array(except + addedExcepts))], inside)
    }

    /// An owned copy of an object with one member replaced (or added at the end),
    /// the others kept in order; the replaced member is never copied.
    static func copy(_ object: JSONValue, replacing key: String, with value: JSON) -> JSON {
        var members: [JSON.Member] = []
        var replaced = false
        if object.kind == .object {
            object.forEachMember { k, v in
                let name = k.string ?? ""
                if name == key {
                    if !replaced { members.append(JSON.Member(key, value)) }
                    replaced = true
                } else {
                    members.append(JSON.Member(name, JSON(v)))
                }
            }
        }
        if !replaced { members.append(JSON.Member(key, value)) }
        return .object(members)
    }

    /// An IPv4 block in IPv4-mapped IPv6 form, for an except inside a mapped block.
    static func mappedForm(_ c: CIDR) -> CIDR {
        guard c.family == .v4 else { return c }
        return CIDR(family: .v6, network: UInt128(0xFFFF) << 32 | c.network, prefix: c.prefix + 96)
    }

    /// A rule's `ports` minus the protected ranges, per protocol, as entries; named
    /// ports are dropped (they never resolve for a node address).
    func openPorts(_ ports: JSON?) -> [JSON] {
        let entries = ports?.arrayValue ?? []
        if entries.isEmpty { return GuardPolicies.openPorts(protectedPorts) }
        var out: [JSON] = []
        for raw in entries {
            let entry: JSON = raw == .null ? .object([]) : raw
            let protoValue = entry["protocol"]
            let protoName = protoValue == nil || protoValue == .null ? "TCP" : (protoValue?.stringValue ?? "")
            guard let proto = TransportProtocol(rawValue: protoName) else {
                out.append(entry)  // a protocol pxguard does not protect
                continue
            }
            let lower: Int, upper: Int
            switch entry["port"] {
            case nil, .some(.null):
                lower = 1; upper = 65535
            case .some(.number(let text)):
                guard let p = Int(text) else { continue }
                lower = p
                upper = max(p, entry["endPort"]?.intValue ?? p)
            case .some(.string(let name)):
                guard let p = Int(name) else { continue }  // a named port
                lower = p; upper = p
            default:
                continue
            }
            var next = lower
            for closed in protectedPorts where closed.proto == proto && closed.upper >= lower && closed.lower <= upper {
                if closed.lower > next { out.append(GuardPolicies.portEntry(proto, next, closed.lower - 1)) }
                next = max(next, closed.upper + 1)
            }
            if next <= upper { out.append(GuardPolicies.portEntry(proto, next, upper)) }
        }
        return out
    }

    /// The `warnings` entry for a repair.
    func warning(namespace: String, name: String, _ result: Result) -> String {
        let rules = result.repaired.map { "egress rule \($0.ruleIndex) (\($0.addressesDescription) on \($0.portsDescription))" }
        return "pxguard: bypassPolicies: repaired NetworkPolicy \(namespace)/\(name): "
            + rules.joined(separator: ", ") + " rewritten to leave out the node subnets on the protected ports"
    }
}

extension CIDR {
    /// True when every address of `other` is in `self` (same family).
    func contains(_ other: CIDR) -> Bool {
        family == other.family && prefix <= other.prefix && range.lower <= other.range.lower && other.range.upper <= range.upper
    }
}
