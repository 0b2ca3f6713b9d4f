import PXGuardBytes

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
///
/// The answer is bounded by construction: the patch is written as it is generated,
/// into a budget of twice the spec (at least 256 KiB, at most the 1.5 MiB the API
/// server stores), and generation stops as soon as the budget is spent. Identical
/// offending rules are rewritten once (rules are a union, a copy adds nothing). A
/// policy whose rewrite would not fit is left as written, with a warning; `/validate`
/// then denies it.
struct BypassRepair: Sendable {
    let analysis: EgressAnalysis
    /// The node subnets, those inside another one dropped, so that the rest are
    /// disjoint: two CIDR blocks are either nested or disjoint.
    let nodes: [CIDR]
    let protectedPorts: [PortRange]
    /// The `to` peers and the node-side peers of a rule that reached every
    /// destination, serialised once (they depend on the config only).
    let everywhereOutside: [UInt8]
    let everywhereInside: [UInt8]

    init(config: Config) {
        analysis = EgressAnalysis(nodeCIDRs: config.nodeCIDRs, protectedPorts: config.protectedPorts)
        let all = config.nodeCIDRs
        let nodes = all.enumerated().filter { i, c in
            !all.enumerated().contains { j, other in
                j != i && other.contains(c) && (other != c || j < i)
            }
        }.map(\.element)
        self.nodes = nodes
        protectedPorts = analysis.protectedPorts
        var outside: [UInt8] = []
        Self.writeList([.obj(["namespaceSelector": .object([])])] + GuardPolicies.outsideNodes(nodes, alwaysIPv6: true), into: &outside)
        everywhereOutside = outside
        var inside: [UInt8] = []
        Self.writeList(nodes.map { .obj(["ipBlock": .obj(["cidr": .string($0.description)])]) }, into: &inside)
        everywhereInside = inside
    }

    /// The API server stores objects up to about 1.5 MiB; a larger patch could never
    /// be applied.
    static let maxPatchBytes = 1_536 << 10

    /// The most patch a repair of a `spec` of `specBytes` bytes may write: twice the
    /// spec, at least 256 KiB, at most `maxPatchBytes`.
    static func patchBudget(specBytes: Int) -> Int {
        min(maxPatchBytes, max(256 << 10, 2 * specBytes))
    }

    /// What a repair changed.
    struct Result: Sendable {
        /// RFC 6902 patch (JSON text) against the object.
        let patch: [UInt8]
        /// The first few rules that were rewritten, and what they reached.
        let repaired: [EgressAnalysis.RuleReach]
        /// How many offending rules there were (identical ones rewritten once).
        let repairedCount: Int
    }

    /// The answer of a repair.
    enum Outcome: Sendable {
        case repaired(Result)
        /// The rewrite would need more than `limit` bytes of patch: nothing is patched.
        case tooLarge(limit: Int)
    }

    /// How many rewritten rules a warning names.
    static let namedRules = 3

    /// The repair for a NetworkPolicy `spec`, or nil when no egress rule reaches the
    /// protected set, or when one cannot be repaired (an `ipBlock` whose `cidr`
    /// cannot be parsed: the API server refuses it anyway).
    func repair(spec: JSONValue) -> Outcome? {
        guard analysis.affectsEgress(spec), let egress = spec["egress"], egress.kind == .array else { return nil }
        let limit = Self.patchBudget(specBytes: spec.end - spec.start)
        var out = PatchWriter(limit: limit)
        // Without `policyTypes` the API server derives Egress from a non-empty
        // `egress`; the repaired list may be empty, so the types are written out.
        let types = spec["policyTypes"]
        out.bytes.append(UInt8(ascii: "["))
        if types == nil || types!.isEmptyContainerOrNull {
            out.bytes += #"{"op":"add","path":"/spec/policyTypes","value":["Ingress","Egress"]},"#.utf8
        }
        out.bytes += #"{"op":"replace","path":"/spec/egress","value":["#.utf8
        var scratch = EgressAnalysis.Scratch()
        var named: [EgressAnalysis.RuleReach] = []
        var count = 0
        var unparsable = false
        var rewritten = Set<RawToken>()
        egress.forEachElement { index, rule in
            // Past the budget (or an unrepairable rule) the answer is known: the rest
            // is only skipped over.
            guard !unparsable, !out.exceeded else { return }
            guard let reach = analysis.reach(rule: rule, index: index, &scratch) else {
                out.element { $0.append(contentsOf: rule.bytes) }
                return
            }
            if case .unparsable = reach.destinations {
                unparsable = true
                return
            }
            count += 1
            if named.count < Self.namedRules { named.append(reach) }
            if rewritten.insert(RawToken(rule.bytes)).inserted { split(rule, into: &out) }
        }
        if unparsable || count == 0 { return nil }
        out.bytes += "]}]".utf8
        if out.exceeded { return .tooLarge(limit: limit) }
        return .repaired(Result(patch: out.bytes, repaired: named, repairedCount: count))
    }

    /// The patch as it is written: the elements of one JSON array, and the budget.
    struct PatchWriter {
        var bytes: [UInt8] = []
        let limit: Int
        var elements = 0
        /// Set when a rule's rewrite was abandoned half-way for the budget.
        var overflowed = false

        init(limit: Int) { self.limit = limit }

        var exceeded: Bool { overflowed || bytes.count > limit }

        /// Appends one array element (comma first when it is not the first).
        mutating func element(_ write: (inout [UInt8]) -> Void) {
            if elements > 0 { bytes.append(UInt8(ascii: ",")) }
            elements += 1
            write(&bytes)
        }
    }

    /// A JSON token's raw bytes, hashed and compared as bytes: identical rules are
    /// rewritten once.
    struct RawToken: Hashable {
        let bytes: UnsafeBufferPointer<UInt8>
        init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        func hash(into hasher: inout Hasher) { hasher.combine(bytes: UnsafeRawBufferPointer(bytes)) }

        static func == (a: RawToken, b: RawToken) -> Bool {
            a.bytes.count == b.bytes.count && (a.bytes.count == 0 || Bytes.equal(a.bytes.baseAddress!, b.bytes.baseAddress!, a.bytes.count))
        }
    }

    /// Appends the rules that allow what one offending rule allowed minus the
    /// protected set. Read from the request in place and written straight into the
    /// patch (kept members as the request wrote them); stops once the budget is spent.
    func split(_ rule: JSONValue, into out: inout PatchWriter) {
        let (toValue, portsValue, _) = rule.members("to", "ports")
        let to = toValue.flatMap { $0.kind == .array ? $0 : nil }
        var everywhere = to == nil || to!.isEmptyContainerOrNull
        var outside: [UInt8] = []
        var inside: [UInt8] = []
        var over = false
        to?.forEachElement { _, peer in
            guard !everywhere else { return }
            guard peer.kind == .object else {
                everywhere = true  // a null peer reads as `{}`
                return
            }
            let (blockValue, podSelector, namespaceSelector) = peer.members("ipBlock", "podSelector", "namespaceSelector")
            if over {
                // Past the budget only a peer that means "every destination" (and
                // so a small rewrite) still matters.
                if blockValue?.kind != .object && (podSelector.map(\.isNull) ?? true) && (namespaceSelector.map(\.isNull) ?? true) {
                    everywhere = true
                }
            } else if let block = blockValue, block.kind == .object {
                splitBlock(block, outside: &outside, inside: &inside)
            } else if (podSelector.map { !$0.isNull } ?? false) || (namespaceSelector.map { !$0.isNull } ?? false) {
                Self.separate(&outside)
                outside.append(contentsOf: peer.bytes)
            } else {
                everywhere = true  // `{}`: every destination
            }
            over = out.bytes.count + outside.count + inside.count > out.limit
        }
        if everywhere {
            outside = everywhereOutside
            inside = everywhereInside
        } else if over {
            out.overflowed = true
            return
        }
        if !outside.isEmpty {
            // The rule as written (its ports included), with the new destinations.
            out.element { bytes in
                Self.copy(rule, replacing: "to", into: &bytes) { bytes in
                    bytes.append(UInt8(ascii: "["))
                    bytes += outside
                    bytes.append(UInt8(ascii: "]"))
                }
            }
        }
        guard !inside.isEmpty, !out.exceeded else { return }
        let open = openPorts(portsValue.map(JSON.init))
        if !open.isEmpty {
            out.element { bytes in
                bytes += #"{"to":["#.utf8
                bytes += inside
                bytes += #"],"ports":"#.utf8
                JSON.array(open).write(into: &bytes)
                bytes.append(UInt8(ascii: "}"))
            }
        }
    }

    /// Appends an `ipBlock` peer's part outside the node subnets to `outside` (the
    /// same block with the node subnets it contains added to `except`, or nothing
    /// when it lies inside one) and its parts inside them to `inside` (one block per
    /// node subnet it reaches).
    func splitBlock(_ block: JSONValue, outside: inout [UInt8], inside: inout [UInt8]) {
        func asIs(_ list: inout [UInt8]) {
            Self.separate(&list)
            list += #"{"ipBlock":"#.utf8
            list.append(contentsOf: block.bytes)
            list.append(UInt8(ascii: "}"))
        }
        let (cidrValue, exceptValue, _) = block.members("cidr", "except")
        guard let cidr = cidrValue?.cidr else { return asIs(&outside) }
        let mapped = IPRangeSet.asIPv4(cidr.range) != nil
        let range = IPRangeSet.effective(cidr.range)
        func covers(_ outer: IPRange, _ inner: IPRange) -> Bool {
            outer.family == inner.family && outer.lower <= inner.lower && inner.upper <= outer.upper
        }
        // Only the node subnets the block reaches matter; most blocks reach one.
        let reached = nodes.filter { IPRangeSet.effective($0.range).intersection(range) != nil }
        guard !reached.isEmpty else { return asIs(&outside) }
        let exceptList = exceptValue.flatMap { $0.kind == .array ? $0 : nil }
        // An except written in the other family keeps nothing out for certain (CNIs
        // differ): it is kept where it was, and also on the node-side block so that
        // the rewrite allows no more than the original under either reading.
        var excepts: [(value: JSONValue, range: IPRange, sameFamily: Bool)] = []
        exceptList?.forEachElement { _, e in
            if let c = e.cidr { excepts.append((e, IPRangeSet.effective(c.range), c.family == cidr.family)) }
        }
        var added: [CIDR] = []
        var parts: [(cidr: CIDR, kept: [JSONValue])] = []
        for node in reached {
            let n = IPRangeSet.effective(node.range)
            // Blocks nest or are disjoint: the part of the block in this node subnet
            // is the block itself or the whole node subnet. An except that covers
            // that part already keeps it out.
            let part = covers(n, range) ? range : n
            if excepts.contains(where: { $0.sameFamily && covers($0.range, part) }) { continue }
            // The whole block lies inside the node subnet.
            if covers(n, range) { return asIs(&inside) }
            let written = mapped ? Self.mappedForm(node) : node
            added.append(written)
            parts.append((written, excepts.filter { covers(n, $0.range) && ($0.range != n || !$0.sameFamily) }.map(\.value)))
        }
        guard !added.isEmpty else { return asIs(&outside) }
        Self.separate(&outside)
        outside += #"{"ipBlock":"#.utf8
        Self.copy(block, replacing: "except", into: &outside) { list in
            list.append(UInt8(ascii: "["))
            var first = true
            exceptList?.forEachElement { _, e in
                if !first { list.append(UInt8(ascii: ",")) }
                first = false
                list.append(contentsOf: e.bytes)
            }
            for c in added {
                if !first { list.append(UInt8(ascii: ",")) }
                first = false
                JSONWriter.appendString(c.description, to: &list)
            }
            list.append(UInt8(ascii: "]"))
        }
        outside.append(UInt8(ascii: "}"))
        for part in parts {
            Self.separate(&inside)
            inside += #"{"ipBlock":{"cidr":"#.utf8
            JSONWriter.appendString(part.cidr.description, to: &inside)
            if !part.kept.isEmpty {
                inside += #","except":["#.utf8
                for (i, e) in part.kept.enumerated() {
                    if i > 0 { inside.append(UInt8(ascii: ",")) }
                    inside.append(contentsOf: e.bytes)
                }
                inside.append(UInt8(ascii: "]"))
            }
            inside += "}}".utf8
        }
    }

    /// A comma before the next element of a list being written, unless it is the first.
    static func separate(_ list: inout [UInt8]) {
        if !list.isEmpty { list.append(UInt8(ascii: ",")) }
    }

    /// Elements written as one comma-separated list (no brackets).
    static func writeList(_ items: [JSON], into out: inout [UInt8]) {
        for item in items {
            separate(&out)
            item.write(into: &out)
        }
    }

    /// Writes an object with one member replaced (or added at the end), the others
    /// kept in order as the request wrote them; the replaced member is never copied.
    /// Anything but an object (a null rule reads as `{}`) becomes that one member.
    static func copy(_ object: JSONValue, replacing key: StaticString, into out: inout [UInt8],
                     with value: (inout [UInt8]) -> Void) {
        out.append(UInt8(ascii: "{"))
        var replaced = false
        var first = true
        if object.kind == .object {
            object.forEachMember { k, v in
                let isKey = k.keyEquals(key)
                if isKey && replaced { return }
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                out.append(contentsOf: k.bytes)
                out.append(UInt8(ascii: ":"))
                if isKey {
                    replaced = true
                    value(&out)
                } else {
                    out.append(contentsOf: v.bytes)
                }
            }
        }
        if !replaced {
            if !first { out.append(UInt8(ascii: ",")) }
            JSONWriter.appendString(key.description, to: &out)
            out.append(UInt8(ascii: ":"))
            value(&out)
        }
        out.append(UInt8(ascii: "}"))
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

    /// The `warnings` entry for a repair: the first few rules it rewrote, and how many.
    func warning(namespace: String, name: String, _ result: Result) -> String {
        var rules = result.repaired.map { "egress rule \($0.ruleIndex) (\($0.addressesDescription) on \($0.portsDescription))" }
        if result.repairedCount > rules.count { rules.append("and \(result.repairedCount - rules.count) more rules") }
        return "pxguard: bypassPolicies: repaired NetworkPolicy \(namespace)/\(name): "
            + rules.joined(separator: ", ") + " rewritten to leave out the node subnets on the protected ports"
    }

    /// The `warnings` entry for a policy too large to repair.
    func tooLargeWarning(namespace: String, name: String, limit: Int) -> String {
        "pxguard: bypassPolicies: NetworkPolicy \(namespace)/\(name) is too large to repair (the rewrite needs more than "
            + "\(limit >> 10) KiB of patch); it is left as written and denied: leave the node subnets on the protected ports "
            + "out of its egress rules by hand"
    }
}

extension CIDR {
    /// True when every address of `other` is in `self` (same family).
    func contains(_ other: CIDR) -> Bool {
        family == other.family && prefix <= other.prefix && range.lower <= other.range.lower && other.range.upper <= range.upper
    }
}
