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
    /// Every port but the protected ranges, as list elements (for a rule without ports).
    let openEverywhere: [UInt8]
    /// Each node subnet as a JSON string, and in IPv4-mapped form (written per rule).
    let nodeText: [[UInt8]]
    let mappedNodeText: [[UInt8]]
    /// The node subnets as ranges (IPv4-mapped ones as IPv4).
    let nodeRanges: [IPRange]

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
        var open: [UInt8] = []
        Self.writeList(GuardPolicies.openPorts(protectedPorts), into: &open)
        openEverywhere = open
        nodeRanges = nodes.map { IPRangeSet.effective($0.range) }
        nodeText = nodes.map { c in var t: [UInt8] = []; JSONWriter.appendString(c.description, to: &t); return t }
        mappedNodeText = nodes.map { c in var t: [UInt8] = []; JSONWriter.appendString(Self.mappedForm(c).description, to: &t); return t }
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
        var buffers = Buffers()
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
            if rewritten.insert(RawToken(rule.bytes)).inserted { split(rule, into: &out, &buffers) }
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
    /// rewritten once. The digest is taken once per token, with `digest` rather than
    /// SipHash over the bytes (a 3 MiB rule cost 40 M instructions in `Hasher`, a
    /// quarter of a repair, and a set that grows hashes its members again).
    struct RawToken: Hashable {
        let bytes: UnsafeBufferPointer<UInt8>
        let digest: UInt64
        init(_ bytes: UnsafeBufferPointer<UInt8>) {
            self.bytes = bytes
            digest = Self.digest(bytes)
        }

        func hash(into hasher: inout Hasher) { hasher.combine(digest) }

        /// Odd, and drawn from the process's random hashing seed: colliding rules
        /// cannot be prepared in advance (a collision only costs a byte compare).
        static let key: UInt64 = {
            var h = Hasher()
            h.combine(UInt64(0x9E37_79B9_7F4A_7C15))
            return UInt64(bitPattern: Int64(h.finalize())) | 1
        }()

        /// A keyed multiply-xorshift over 8-byte words: about one instruction per byte.
        static func digest(_ b: UnsafeBufferPointer<UInt8>) -> UInt64 {
            let k = key
            var h = k ^ (UInt64(b.count) &* 0x9E37_79B9_7F4A_7C15)
            guard let base = b.baseAddress else { return h }
            let raw = UnsafeRawPointer(base)
            let n = b.count
            var i = 0
            while i + 8 <= n {
                h = (h ^ raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* k
                h ^= h >> 32
                i += 8
            }
            var tail: UInt64 = 0
            var shift: UInt64 = 0
            while i < n {
                tail |= UInt64(b[i]) << shift
                shift += 8
                i += 1
            }
            h = (h ^ tail) &* k
            return h ^ (h >> 29)
        }

        static func == (a: RawToken, b: RawToken) -> Bool {
            a.digest == b.digest && a.bytes.count == b.bytes.count && (a.bytes.count == 0 || Bytes.equal(a.bytes.baseAddress!, b.bytes.baseAddress!, a.bytes.count))
        }
    }

    /// Appends the rules that allow what one offending rule allowed minus the
    /// protected set. Read from the request in place and written straight into the
    /// patch (kept members as the request wrote them); stops once the budget is spent.
    /// Buffers reused from rule to rule of one repair, so that a rewrite allocates
    /// nothing once they have grown (a repaired policy holds thousands of rules).
    struct Buffers {
        var outside: [UInt8] = []
        var inside: [UInt8] = []
        var reached: [Int] = []
        var excepts: [(value: JSONValue, range: IPRange, sameFamily: Bool)] = []
        var added: [Int] = []
        /// Per node subnet added: its index and its kept excepts, `kept[start..<end]`.
        var parts: [(node: Int, start: Int, end: Int)] = []
        var kept: [JSONValue] = []
    }

    func split(_ rule: JSONValue, into out: inout PatchWriter, _ buffers: inout Buffers) {
        let (toValue, portsValue, _) = rule.members("to", "ports")
        let to = toValue.flatMap { $0.kind == .array ? $0 : nil }
        var everywhere = to == nil || to!.isEmptyContainerOrNull
        buffers.outside.removeAll(keepingCapacity: true)
        buffers.inside.removeAll(keepingCapacity: true)
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
                splitBlock(block, &buffers)
            } else if (podSelector.map { !$0.isNull } ?? false) || (namespaceSelector.map { !$0.isNull } ?? false) {
                Self.separate(&buffers.outside)
                buffers.outside.append(contentsOf: peer.bytes)
            } else {
                everywhere = true  // `{}`: every destination
            }
            over = out.bytes.count + buffers.outside.count + buffers.inside.count > out.limit
        }
        if everywhere {
            buffers.outside.removeAll(keepingCapacity: true)
            buffers.outside += everywhereOutside
            buffers.inside.removeAll(keepingCapacity: true)
            buffers.inside += everywhereInside
        } else if over {
            out.overflowed = true
            return
        }
        if !buffers.outside.isEmpty {
            // The rule as written (its ports included), with the new destinations.
            out.element { bytes in
                Self.copy(rule, replacing: "to", into: &bytes) { bytes in
                    bytes.append(UInt8(ascii: "["))
                    bytes += buffers.outside
                    bytes.append(UInt8(ascii: "]"))
                }
            }
        }
        guard !buffers.inside.isEmpty, !out.exceeded else { return }
        let mark = out.bytes.count
        let elements = out.elements
        out.element { bytes in
            bytes += #"{"to":["#.utf8
            bytes += buffers.inside
            bytes += #"],"ports":["#.utf8
        }
        if writeOpenPorts(portsValue, into: &out.bytes) {
            out.bytes += "]}".utf8
        } else {
            // Nothing left open on the node side: no second rule (an empty list means all).
            out.bytes.removeSubrange(mark...)
            out.elements = elements
        }
    }

    /// Appends an `ipBlock` peer's part outside the node subnets to `outside` (the
    /// same block with the node subnets it contains added to `except`, or nothing
    /// when it lies inside one) and its parts inside them to `inside` (one block per
    /// node subnet it reaches).
    func splitBlock(_ block: JSONValue, _ buffers: inout Buffers) {
        func asIs(_ inside: Bool) {
            if inside { Self.appendBlock(block, to: &buffers.inside) } else { Self.appendBlock(block, to: &buffers.outside) }
        }
        let (cidrValue, exceptValue, _) = block.members("cidr", "except")
        guard let cidr = cidrValue?.cidr else { return asIs(false) }
        let mapped = IPRangeSet.asIPv4(cidr.range) != nil
        let range = IPRangeSet.effective(cidr.range)
        func covers(_ outer: IPRange, _ inner: IPRange) -> Bool {
            outer.family == inner.family && outer.lower <= inner.lower && inner.upper <= outer.upper
        }
        // Only the node subnets the block reaches matter; most blocks reach one.
        buffers.reached.removeAll(keepingCapacity: true)
        for i in nodeRanges.indices where nodeRanges[i].intersection(range) != nil { buffers.reached.append(i) }
        guard !buffers.reached.isEmpty else { return asIs(false) }
        let exceptList = exceptValue.flatMap { $0.kind == .array ? $0 : nil }
        // An except written in the other family keeps nothing out for certain (CNIs
        // differ): it is kept where it was, and also on the node-side block so that
        // the rewrite allows no more than the original under either reading.
        buffers.excepts.removeAll(keepingCapacity: true)
        exceptList?.forEachElement { _, e in
            if let c = e.cidr { buffers.excepts.append((e, IPRangeSet.effective(c.range), c.family == cidr.family)) }
        }
        // Node subnets by index: their JSON text is written from `nodeText`.
        buffers.added.removeAll(keepingCapacity: true)
        buffers.parts.removeAll(keepingCapacity: true)
        buffers.kept.removeAll(keepingCapacity: true)
        for node in buffers.reached {
            let n = nodeRanges[node]
            // Blocks nest or are disjoint: the part of the block in this node subnet
            // is the block itself or the whole node subnet. An except that covers
            // that part already keeps it out.
            let part = covers(n, range) ? range : n
            if buffers.excepts.contains(where: { $0.sameFamily && covers($0.range, part) }) { continue }
            // The whole block lies inside the node subnet.
            if covers(n, range) { return asIs(true) }
            buffers.added.append(node)
            let start = buffers.kept.count
            for e in buffers.excepts where covers(n, e.range) && (e.range != n || !e.sameFamily) { buffers.kept.append(e.value) }
            buffers.parts.append((node, start, buffers.kept.count))
        }
        guard !buffers.added.isEmpty else { return asIs(false) }
        Self.separate(&buffers.outside)
        buffers.outside += #"{"ipBlock":"#.utf8
        let added = buffers.added
        Self.copy(block, replacing: "except", into: &buffers.outside) { list in
            list.append(UInt8(ascii: "["))
            var first = true
            exceptList?.forEachElement { _, e in
                if !first { list.append(UInt8(ascii: ",")) }
                first = false
                list.append(contentsOf: e.bytes)
            }
            for node in added {
                if !first { list.append(UInt8(ascii: ",")) }
                first = false
                list += mapped ? mappedNodeText[node] : nodeText[node]
            }
            list.append(UInt8(ascii: "]"))
        }
        buffers.outside.append(UInt8(ascii: "}"))
        for part in buffers.parts {
            Self.separate(&buffers.inside)
            buffers.inside += #"{"ipBlock":{"cidr":"#.utf8
            buffers.inside += mapped ? mappedNodeText[part.node] : nodeText[part.node]
            if part.end > part.start {
                buffers.inside += #","except":["#.utf8
                for i in part.start..<part.end {
                    if i > part.start { buffers.inside.append(UInt8(ascii: ",")) }
                    buffers.inside.append(contentsOf: buffers.kept[i].bytes)
                }
                buffers.inside.append(UInt8(ascii: "]"))
            }
            buffers.inside += "}}".utf8
        }
    }

    /// An `ipBlock` peer as written.
    static func appendBlock(_ block: JSONValue, to list: inout [UInt8]) {
        separate(&list)
        list += #"{"ipBlock":"#.utf8
        list.append(contentsOf: block.bytes)
        list.append(UInt8(ascii: "}"))
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

    /// Appends a rule's `ports` minus the protected ranges, per protocol, as the
    /// elements of a JSON list (no brackets); named ports are dropped (they never
    /// resolve for a node address). Written straight into the patch: a repaired
    /// policy can hold tens of thousands of rules, and a tree of entries per rule cost
    /// more than the rest of the repair. False when nothing is left open.
    func writeOpenPorts(_ ports: JSONValue?, into out: inout [UInt8]) -> Bool {
        guard let ports, ports.kind == .array, !ports.isEmptyContainerOrNull else {
            out += openEverywhere
            return !openEverywhere.isEmpty
        }
        var first = true
        func entry(_ proto: TransportProtocol, _ lower: Int, _ upper: Int) {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            out += #"{"protocol":""#.utf8
            out += proto.rawValue.utf8
            out += #"","port":"#.utf8
            Self.appendInt(lower, to: &out)
            if lower != upper {
                out += #","endPort":"#.utf8
                Self.appendInt(upper, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
        ports.forEachElement { _, raw in
            guard raw.kind == .object || raw.kind == .null else { return }
            let (protoValue, portValue, endPortValue) = raw.kind == .null ? (nil, nil, nil) : raw.members("protocol", "port", "endPort")
            let proto: TransportProtocol
            if protoValue == nil || protoValue!.isNull || protoValue!.stringEquals("TCP") {
                proto = .tcp
            } else if protoValue!.stringEquals("UDP") {
                proto = .udp
            } else if protoValue!.stringEquals("SCTP") {
                proto = .sctp
            } else {
                // A protocol pxguard does not protect: kept as written.
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                out.append(contentsOf: raw.bytes)
                return
            }
            let lower: Int, upper: Int
            let port = portValue.flatMap { $0.isNull ? nil : $0 }
            switch port?.kind {
            case nil:
                lower = 1; upper = 65535
            case .number?:
                guard let p = port!.int else { return }
                lower = p
                upper = max(p, endPortValue.flatMap { $0.isNull ? nil : $0.int } ?? p)
            case .string?:
                guard let p = port!.string.flatMap({ Int($0) }) else { return }  // a named port
                lower = p; upper = p
            default:
                return
            }
            var next = lower
            for closed in protectedPorts where closed.proto == proto && closed.upper >= lower && closed.lower <= upper {
                if closed.lower > next { entry(proto, next, closed.lower - 1) }
                next = max(next, closed.upper + 1)
            }
            if next <= upper { entry(proto, next, upper) }
        }
        return !first
    }

    /// Decimal digits of a port.
    static func appendInt(_ value: Int, to out: inout [UInt8]) {
        guard value >= 10 else { out.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: max(0, value))); return }
        appendInt(value / 10, to: &out)
        out.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: value % 10))
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
