import Testing
@testable import PXGuardCore
import PXGuardYAML

/// R4 against a brute-force reference: random NetworkPolicies, and a reader that
/// knows nothing of ranges or sweeps. It walks every protected destination (each
/// node address × each protected port; the node subnets are kept small so that
/// the walk is exhaustive, not a guess) and asks, point by point, whether a rule
/// lets a pod reach it. Both the verdict and what the first offending rule
/// reaches (addresses and ports) must agree.
@Suite("R4 differential: the analysis against a point-by-point reference")
struct BypassDifferentialTests {
    static let config: Config = {
        var c = Config.default
        c.nodeCIDRs = [CIDR("70.0.0.0/24")!, CIDR("fd00:70::/120")!]
        c.protectedPorts = [PortRange("9001-9022")!, PortRange("UDP/9002")!]
        return c
    }()

    /// Every protected address: (family, value).
    static let v4Base: UInt128 = UInt128(70) << 24
    static let v6Base: UInt128 = UInt128(0xfd00) << 112 | UInt128(0x70) << 96
    static let nodeAddresses: [(IPFamily, UInt128)] = {
        var out: [(IPFamily, UInt128)] = []
        for i in 0..<256 { out.append((.v4, v4Base + UInt128(i))) }
        for i in 0..<256 { out.append((.v6, v6Base + UInt128(i))) }
        return out
    }()
    /// Every protected (protocol, port).
    static let protectedPorts: [(TransportProtocol, Int)] = (9001...9022).map { (.tcp, $0) } + [(.udp, 9002)]

    // MARK: the reference

    /// A block as plain prefix arithmetic reads it; a block inside `::ffff:0:0/96`
    /// is the IPv4 block it maps.
    struct Block {
        let family: IPFamily
        let network: UInt128
        let prefix: Int
        /// The family as written (a mapped block is written IPv6).
        let written: IPFamily

        init?(_ text: String) {
            guard let c = CIDR(text) else { return nil }
            written = text.contains(":") ? .v6 : .v4
            if c.family == .v6 && c.prefix >= 96 && c.network >> 32 == 0xffff {
                (family, network, prefix) = (.v4, c.network & 0xffff_ffff, c.prefix - 96)
            } else {
                (family, network, prefix) = (c.family, c.network, c.prefix)
            }
        }

        func holds(_ f: IPFamily, _ value: UInt128) -> Bool {
            guard family == f else { return false }
            let shift = f.bits - prefix
            return shift >= 128 || value >> shift == network >> shift
        }
    }

    static func isEmpty(_ v: JSON?) -> Bool {
        switch v {
        case nil, .null?: return true
        case .array(let a)?: return a.isEmpty
        default: return false
        }
    }

    /// The protected addresses one rule's `to` lets a pod reach.
    static func referenceAddresses(_ rule: JSON) -> Set<Int> {
        let all = Set(nodeAddresses.indices)
        guard let to = rule["to"], !isEmpty(to) else { return all }
        guard let peers = to.arrayValue else { return all }
        var out: Set<Int> = []
        for peer in peers {
            let block = peer["ipBlock"]
            if block == nil || block == .null {
                if (peer["podSelector"] ?? .null) == .null && (peer["namespaceSelector"] ?? .null) == .null { return all }
                continue
            }
            guard let cidr = block!["cidr"]?.stringValue.flatMap(Block.init) else { return all }
            // An except written in the other family removes nothing (CNIs differ on
            // whether a mapped prefix is IPv4).
            let excepts = block!["except"]?.arrayValue?.compactMap { $0.stringValue.flatMap(Block.init) }
                .filter { $0.written == cidr.written } ?? []
            for (i, (family, value)) in nodeAddresses.enumerated()
            where cidr.holds(family, value) && !excepts.contains(where: { $0.holds(family, value) }) {
                out.insert(i)
            }
        }
        return out
    }

    /// The protected ports one rule's `ports` lets a pod reach.
    static func referencePorts(_ rule: JSON) -> Set<Int> {
        let all = Set(protectedPorts.indices)
        guard let ports = rule["ports"], !isEmpty(ports), let entries = ports.arrayValue else { return all }
        var out: Set<Int> = []
        for entry in entries {
            let protoText = entry["protocol"]?.stringValue ?? (entry["protocol"].map { $0 == .null } ?? true ? "TCP" : "?")
            guard let proto = TransportProtocol(rawValue: protoText) else { continue }
            for (i, (p, port)) in protectedPorts.enumerated() where p == proto {
                switch entry["port"] {
                case nil, .null?: out.insert(i)
                case .number(let n)?:
                    let lo = Int(n)!, hi = max(lo, entry["endPort"]?.intValue ?? lo)
                    if lo <= port && port <= hi { out.insert(i) }
                case .string(let s)?:
                    if let n = Int(s) { if n == port { out.insert(i) } } else { out.insert(i) }  // named: unresolvable
                default: break
                }
            }
        }
        return out
    }

    /// The first rule that reaches something, with what it reaches.
    static func reference(_ spec: JSON) -> (rule: Int, addresses: Set<Int>, ports: Set<Int>)? {
        let types = spec["policyTypes"]?.arrayValue
        let egress = spec["egress"]?.arrayValue ?? []
        let affects = types.map { $0.isEmpty ? !egress.isEmpty : $0.contains("Egress") } ?? !egress.isEmpty
        guard affects else { return nil }
        for (i, rule) in egress.enumerated() {
            let r = rule == .null ? JSON.object([]) : rule
            let ports = referencePorts(r)
            let addresses = referenceAddresses(r)
            if !ports.isEmpty && !addresses.isEmpty { return (i, addresses, ports) }
        }
        return nil
    }

    // MARK: the generator

    static func pick<T>(_ rng: inout SeededGenerator, _ items: [T]) -> T { items[rng.next(items.count)] }

    /// A block near the node subnets more often than not, in either family, now and
    /// then in IPv4-mapped form.
    static func randomBlock(_ rng: inout SeededGenerator) -> CIDR {
        switch rng.next(5) {
        case 0, 1:
            let prefix = pick(&rng, [0, 8, 16, 23, 24, 24, 25, 26, 27, 28, 29, 30, 31, 32, 32])
            let base: UInt128 = pick(&rng, [UInt128(70) << 24, UInt128(70) << 24 | 1 << 8, UInt128(69) << 24 | 0xff_ff00, UInt128(10) << 24])
            return CIDR(family: .v4, network: mask(base + UInt128(rng.next(256)), prefix, 32), prefix: prefix)
        case 2, 3:
            let prefix = pick(&rng, [0, 64, 112, 119, 120, 120, 121, 122, 124, 126, 127, 128, 128])
            let base: UInt128 = pick(&rng, [UInt128(0xfd00) << 112 | UInt128(0x70) << 96, UInt128(0xfd00) << 112 | UInt128(0x71) << 96])
            return CIDR(family: .v6, network: mask(base + UInt128(rng.next(512)), prefix, 128), prefix: prefix)
        default:
            let prefix = 96 + pick(&rng, [16, 24, 25, 28, 32])
            let v4 = UInt128(70) << 24 + UInt128(rng.next(300))
            return CIDR(family: .v6, network: mask(UInt128(0xffff) << 32 | v4, prefix, 128), prefix: prefix)
        }
    }

    static func mask(_ value: UInt128, _ prefix: Int, _ bits: Int) -> UInt128 {
        let host = bits - prefix
        return host >= 128 ? 0 : value & ~((UInt128(1) << host) - 1)
    }

    /// A strict sub-block of `c` (what the API server accepts as an except).
    static func randomExcept(_ c: CIDR, _ rng: inout SeededGenerator) -> CIDR? {
        let bits = c.family.bits
        guard c.prefix < bits else { return nil }
        let prefix = c.prefix + 1 + rng.next(min(bits - c.prefix, 12))
        let span = bits - c.prefix >= 128 ? UInt128.max : (UInt128(1) << (bits - c.prefix)) - 1
        // Aim at the node region when it is inside the block.
        let offset = UInt128(rng.next(1 << 12)) & span
        let candidates: [UInt128] = [UInt128(70) << 24, UInt128(0xfd00) << 112 | UInt128(0x70) << 96, UInt128(0xffff) << 32 | UInt128(70) << 24]
        var base = c.network + offset
        for k in candidates where k & ~span == c.network { base = k + UInt128(rng.next(256)) }
        return CIDR(family: c.family, network: mask(base, prefix, bits), prefix: prefix)
    }

    static func randomPeer(_ rng: inout SeededGenerator) -> JSON {
        switch rng.next(10) {
        case 0: return .obj(["podSelector": .object([])])
        case 1: return .obj(["namespaceSelector": .obj(["matchLabels": .obj(["team": "a"])])])
        case 2: return rng.next(3) == 0 ? .null : .obj(["ipBlock": .obj(["cidr": "70.0.0.0/33"])])
        default:
            let c = randomBlock(&rng)
            var excepts = (0..<rng.next(5)).compactMap { _ in randomExcept(c, &rng) }
            // Now and then the first except written in the other family.
            if rng.next(3) == 0, let e = excepts.first {
                if e.family == .v4 {
                    excepts[0] = BypassRepair.mappedForm(e)
                } else if e.prefix >= 96 && e.network >> 32 == 0xffff {
                    excepts[0] = CIDR(family: .v4, network: e.network & 0xffff_ffff, prefix: e.prefix - 96)
                }
            }
            return .obj(["ipBlock": .obj(["cidr": .string(c.description),
                                          "except": excepts.isEmpty ? nil : .array(excepts.map { .string($0.description) })])])
        }
    }

    static func randomPort(_ rng: inout SeededGenerator) -> JSON {
        let proto: JSON? = pick(&rng, [nil, .null, "TCP", "TCP", "UDP", "SCTP"])
        var members: [JSON.Member] = []
        if let proto { members.append(.init("protocol", proto)) }
        switch rng.next(8) {
        case 0: break
        case 1: members.append(.init("port", .null))
        case 2: members.append(.init("port", .string(pick(&rng, ["px-api", "http", "9002"]))))
        default:
            let port = pick(&rng, [80, 8999, 9000, 9001, 9002, 9003, 9021, 9022, 9023, 9500])
            members.append(.init("port", .int(port)))
            if rng.next(2) == 0 { members.append(.init("endPort", .int(port + pick(&rng, [0, 1, 20, 22, 500])))) }
        }
        return rng.next(15) == 0 ? .null : .object(members)
    }

    static func randomList(_ rng: inout SeededGenerator, _ element: (inout SeededGenerator) -> JSON) -> JSON? {
        switch rng.next(6) {
        case 0: return nil
        case 1: return pick(&rng, [.null, .array([])])
        default: return .array((0..<(1 + rng.next(3))).map { _ in element(&rng) })
        }
    }

    static func randomSpec(_ rng: inout SeededGenerator) -> JSON {
        let rules: [JSON] = (0..<rng.next(4)).map { _ in
            rng.next(12) == 0 ? .null : .obj(["to": randomList(&rng, randomPeer), "ports": randomList(&rng, randomPort)])
        }
        let types: JSON? = pick(&rng, [nil, ["Egress"], ["Egress"], ["Ingress"], ["Ingress", "Egress"], .array([])])
        return .obj(["podSelector": .object([]), "policyTypes": types, "egress": .array(rules)])
    }

    // MARK: the property

    @Test("R4: 3,000 random policies (v4, v6, mapped, excepts, ports, endPorts, named ports, nulls) agree with the reference")
    func differential() throws {
        let analysis = EgressAnalysis(nodeCIDRs: Self.config.nodeCIDRs, protectedPorts: Self.config.protectedPorts)
        var rng = SeededGenerator(seed: 2026)
        var reached = 0
        var failures = 0
        for _ in 0..<3_000 where failures < 5 {
            let spec = Self.randomSpec(&rng)
            let expected = Self.reference(spec)
            let bytes = Array(spec.serialized.utf8)
            let got = try JSONDocument.parse(bytes) { analysis.firstReach(spec: $0) }
            if expected != nil { reached += 1 }
            var agree = (got == nil) == (expected == nil)
            if let got, let expected {
                let addresses = Set(Self.nodeAddresses.indices.filter { got.addresses.contains(Self.nodeAddresses[$0].1, family: Self.nodeAddresses[$0].0) })
                let ports = Set(Self.protectedPorts.indices.filter { i in
                    let (proto, port) = Self.protectedPorts[i]
                    return got.ports.contains { $0.proto == proto && $0.lower <= port && port <= $0.upper }
                        || got.namedPorts.contains { $0.proto == proto }
                })
                agree = got.ruleIndex == expected.rule && addresses == expected.addresses && ports == expected.ports
            }
            if !agree { failures += 1 }
            #expect(agree, "spec \(spec.serialized): analysis \(got.map(\.description) ?? "nothing"), reference rule \(expected.map { "\($0.rule): \($0.addresses.count) addresses, \($0.ports.count) ports" } ?? "nothing")")
        }
        // The generator must exercise both answers.
        #expect(reached > 600 && reached < 2_400, "\(reached) of 3,000 reached")
    }

    // MARK: the same policies, as `check` reads them from a file

    /// `value`'s JSON text with every number written in a form kubectl reads as the
    /// same number: YAML (go-yaml v2: octal, `0o`, hex, binary, `_`, signs, integral
    /// floats, leading-zero floats) or JSON (integral floats and exponents).
    static func written(_ value: JSON, yaml: Bool, _ rng: inout SeededGenerator) -> String {
        switch value {
        case .number(let n):
            guard let v = Int(n), v >= 0 else { return n }
            let yamlForms = ["0" + String(v, radix: 8), "0o" + String(v, radix: 8), "0x" + String(v, radix: 16),
                             "0X" + String(v, radix: 16).uppercased(), "0b" + String(v, radix: 2), "+\(v)",
                             String(v).count > 1 ? String(v).prefix(1) + "_" + String(v).dropFirst() : String(v),
                             "\(v).0", "\(v).", "\(v * 100)e-2", "\(Double(v) / 1000)e3", String(v)]
            let jsonForms = ["\(v).0", "\(v)e0", "\(v * 10)E-1", "\(Double(v) / 1000)e3", "\(v).000", String(v)]
            return pick(&rng, yaml ? yamlForms : jsonForms)
        case .array(let items):
            return "[" + items.map { written($0, yaml: yaml, &rng) }.joined(separator: ", ") + "]"
        case .object(let members):
            return "{" + members.map { JSON.string($0.key).serialized + ": " + written($0.value, yaml: yaml, &rng) }
                .joined(separator: ", ") + "}"
        case .null, .bool, .string:
            return value.serialized
        }
    }

    @Test("R4 as check reads files: 1,500 random policies with ports in every YAML and JSON number form agree with the reference")
    func differentialNumberForms() throws {
        let analysis = EgressAnalysis(nodeCIDRs: Self.config.nodeCIDRs, protectedPorts: Self.config.protectedPorts)
        var rng = SeededGenerator(seed: 2323)
        var failures = 0
        var reached = 0
        for i in 0..<1_500 where failures < 5 {
            let spec = Self.randomSpec(&rng)
            let expected = Self.reference(spec)
            if expected != nil { reached += 1 }
            let yaml = i % 2 == 0
            let text = Self.written(spec, yaml: yaml, &rng)
            // What check hands the rules: the YAML reader's JSON, or a JSON manifest's numbers as kubectl sends them.
            let read: JSON = yaml
                ? try #require(try YAMLReader.documents(Array(("spec: " + text + "\n").utf8), file: "p.yaml").first?.json["spec"])
                : KubectlScalar.kubectlNumbers(try JSON(parsing: Array(text.utf8)))
            let got = try JSONDocument.parse(Array(read.serialized.utf8)) { analysis.firstReach(spec: $0) }
            let agree = got?.ruleIndex == expected?.rule
            if !agree { failures += 1 }
            #expect(agree, "\(yaml ? "YAML" : "JSON") \(text): analysis \(got.map(\.description) ?? "nothing"), reference rule \(expected.map { String($0.rule) } ?? "nothing")")
        }
        #expect(reached > 300 && reached < 1_200, "\(reached) of 1,500 reached")
    }
}
