@testable import PXGuardCore

/// An independent evaluator of NetworkPolicy egress semantics, written from the
/// Kubernetes API reference rather than from pxguard's analysis, used as the oracle
/// for `policyStyle: ports` and for bypass repair. It answers one question by brute
/// force: does this policy allow a selected pod to reach this destination?
///
/// The model: a destination is an address with a port and protocol; it may be a pod
/// (labels, namespace, namespace labels, named container ports). Named ports resolve
/// only against pods: a node address or an external address has none (CNIs do not
/// resolve a named port for an ipBlock). IPv4 and IPv6 are separate spaces; an
/// `ipBlock` written in IPv4-mapped form (`::ffff:a.b.c.d/n`) is read as the IPv4
/// block it stands for, as pxguard's analysis and Go's `To4()` do.
struct EgressEvaluator {
    struct Destination: CustomStringConvertible {
        var family: IPFamily
        var address: UInt128
        var proto: TransportProtocol
        var port: Int
        var pod: Pod? = nil

        var description: String {
            let a = CIDR(family: family, network: address, prefix: family == .v4 ? 32 : 128).description
            return "\(proto.rawValue) \(a):\(port)" + (pod.map { " pod \($0.namespace)/\($0.labels)" } ?? "")
        }
    }

    struct Pod {
        var namespace: String
        var labels: [String: String]
        var namespaceLabels: [String: String]
        /// Named container ports: name → (protocol, number).
        var namedPorts: [String: (TransportProtocol, Int)] = [:]
    }

    /// The namespace the policy lives in (pod selectors without a namespace
    /// selector select pods there).
    let policyNamespace: String

    /// Blocks already read, by text: the oracle evaluates one policy against
    /// thousands of destinations. One evaluator per test, never shared.
    final class Blocks {
        var parsed: [String: (IPFamily, UInt128, UInt128)?] = [:]
    }
    let blocks = Blocks()

    /// Whether an `except` written in the other family than its `cidr` (an
    /// IPv4-mapped except under an IPv4 cidr) removes the addresses it maps: CNIs
    /// differ, so repairs are checked under both readings.
    let crossFamilyExcepts: Bool

    init(policyNamespace: String = "default", crossFamilyExcepts: Bool = true) {
        self.policyNamespace = policyNamespace
        self.crossFamilyExcepts = crossFamilyExcepts
    }

    func block(_ text: String) -> (IPFamily, UInt128, UInt128)? {
        if let known = blocks.parsed[text] { return known }
        let read = Self.readBlock(text)
        blocks.parsed[text] = read
        return read
    }

    /// Whether the policy isolates the selected pods for egress: `Egress` in
    /// `policyTypes`, or no `policyTypes` and a non-empty `egress` list.
    func isolatesEgress(_ spec: JSON) -> Bool {
        if let types = spec["policyTypes"]?.arrayValue, !types.isEmpty {
            return types.contains { $0.stringValue == "Egress" }
        }
        return !(spec["egress"]?.arrayValue ?? []).isEmpty
    }

    /// True when some egress rule of `spec` allows `destination`.
    func allows(_ spec: JSON, _ destination: Destination) -> Bool {
        guard isolatesEgress(spec) else { return false }
        for rule in spec["egress"]?.arrayValue ?? [] {
            // A null rule is `{}` after the API server's defaulting: allow all.
            let rule = rule == .null ? JSON.object([]) : rule
            if matchesPeers(rule["to"], destination) && matchesPorts(rule["ports"], destination) { return true }
        }
        return false
    }

    func matchesPeers(_ to: JSON?, _ destination: Destination) -> Bool {
        let peers = to?.arrayValue ?? []
        if peers.isEmpty { return true }
        return peers.contains { peer in
            if peer == .null { return true }
            if let block = peer["ipBlock"], block != .null {
                return inBlock(block, destination)
            }
            let podSelector = peer["podSelector"].flatMap { $0 == .null ? nil : $0 }
            let namespaceSelector = peer["namespaceSelector"].flatMap { $0 == .null ? nil : $0 }
            // A peer with neither (`{}`): the API server refuses it; read offline, as
            // pxguard does, as every destination.
            if podSelector == nil && namespaceSelector == nil { return true }
            guard let pod = destination.pod else { return false }
            if let namespaceSelector {
                guard matches(namespaceSelector, pod.namespaceLabels) else { return false }
            } else if pod.namespace != policyNamespace {
                return false
            }
            return podSelector.map { matches($0, pod.labels) } ?? true
        }
    }

    func inBlock(_ block: JSON, _ destination: Destination) -> Bool {
        guard let cidrText = block["cidr"]?.stringValue, let cidr = self.block(cidrText) else { return false }
        func contains(_ c: (IPFamily, UInt128, UInt128)) -> Bool {
            c.0 == destination.family && c.1 <= destination.address && destination.address <= c.2
        }
        guard contains(cidr) else { return false }
        for e in block["except"]?.arrayValue ?? [] {
            guard let text = e.stringValue, crossFamilyExcepts || text.contains(":") == cidrText.contains(":") else { continue }
            if let hole = self.block(text), contains(hole) { return false }
        }
        return true
    }

    /// A block's family and bounds, mapped blocks read as IPv4.
    static func readBlock(_ text: String) -> (IPFamily, UInt128, UInt128)? {
        guard let c = CIDR(text) else { return nil }
        let hostBits = (c.family == .v4 ? 32 : 128) - c.prefix
        let span: UInt128 = hostBits >= 128 ? .max : (UInt128(1) << hostBits) - 1
        let lower = c.network, upper = c.network | span
        let mapped: UInt128 = UInt128(0xFFFF) << 32
        if c.family == .v6, lower >= mapped, upper <= mapped | 0xFFFF_FFFF {
            return (.v4, lower & 0xFFFF_FFFF, upper & 0xFFFF_FFFF)
        }
        return (c.family, lower, upper)
    }

    func matchesPorts(_ ports: JSON?, _ destination: Destination) -> Bool {
        let entries = ports?.arrayValue ?? []
        if entries.isEmpty { return true }
        return entries.contains { entry in
            let protoName = entry["protocol"]?.stringValue ?? "TCP"
            guard protoName == destination.proto.rawValue else { return false }
            guard let port = entry["port"], port != .null else { return true }
            if let number = port.intValue {
                // An endPort below port is refused by the API server; read as pxguard's
                // analysis reads it, as the single port.
                let end = max(number, entry["endPort"]?.intValue ?? number)
                return number <= destination.port && destination.port <= end
            }
            guard let name = port.stringValue else { return false }
            if let number = Int(name) { return number == destination.port }
            guard let resolved = destination.pod?.namedPorts[name] else { return false }
            return resolved.0 == destination.proto && resolved.1 == destination.port
        }
    }

    /// A LabelSelector: `matchLabels` and `matchExpressions` (In, NotIn, Exists,
    /// DoesNotExist), all of which must hold; `{}` selects everything.
    func matches(_ selector: JSON, _ labels: [String: String]) -> Bool {
        for member in selector["matchLabels"]?.members ?? [] where labels[member.key] != member.value.stringValue {
            return false
        }
        for expression in selector["matchExpressions"]?.arrayValue ?? [] {
            let key = expression["key"]?.stringValue ?? ""
            let values = (expression["values"]?.arrayValue ?? []).compactMap(\.stringValue)
            let value = labels[key]
            switch expression["operator"]?.stringValue {
            case "In": if value == nil || !values.contains(value!) { return false }
            case "NotIn": if let value, values.contains(value) { return false }
            case "Exists": if value == nil { return false }
            case "DoesNotExist": if value != nil { return false }
            default: return false
            }
        }
        return true
    }
}

/// The protected set of a configuration, decided directly from the config values.
struct ProtectedSet {
    let config: Config

    func contains(_ d: EgressEvaluator.Destination) -> Bool {
        let inNodes = config.nodeCIDRs.contains { c in
            c.family == d.family && c.range.lower <= d.address && d.address <= c.range.upper
        }
        return inNodes && config.protectedPorts.contains { $0.proto == d.proto && $0.lower <= d.port && d.port <= $0.upper }
    }
}

/// Destinations sampled around what matters: every boundary of the node subnets and
/// of the protected ranges, plus random addresses and ports of both families.
struct DestinationSampler {
    let config: Config
    var generator: SeededGenerator

    init(config: Config, seed: UInt64) {
        self.config = config
        generator = SeededGenerator(seed: seed)
    }

    /// Addresses at and around each node subnet's edges, a few inside, and random ones
    /// of both families (IPv6 outside the IPv4-mapped block, which no packet carries).
    mutating func addresses(random count: Int) -> [(IPFamily, UInt128)] {
        var out: [(IPFamily, UInt128)] = []
        for c in config.nodeCIDRs {
            let r = c.range
            let max = c.family == .v4 ? UInt128(UInt32.max) : UInt128.max
            if r.lower > 0 { out.append((c.family, r.lower - 1)) }
            out.append((c.family, r.lower))
            out.append((c.family, r.lower + (r.upper - r.lower) / 2))
            out.append((c.family, r.upper))
            if r.upper < max { out.append((c.family, r.upper + 1)) }
        }
        for _ in 0..<count {
            if generator.next(2) == 0 {
                out.append((.v4, UInt128(generator.next() & 0xFFFF_FFFF)))
            } else {
                var v = UInt128(generator.next()) << 64 | UInt128(generator.next())
                if v >> 32 == 0xFFFF { v ^= UInt128(1) << 100 }
                out.append((.v6, v))
            }
            // A random address inside a node subnet, too.
            if let c = config.nodeCIDRs.randomElement(using: &generator) {
                let size = c.range.upper - c.range.lower
                let offset = (UInt128(generator.next()) << 64 | UInt128(generator.next())) % (size == .max ? size : size + 1)
                out.append((c.family, c.range.lower + offset))
            }
        }
        return out
    }

    /// Ports at each protected range's edges, the extremes, and random ones.
    mutating func ports(random count: Int, extra: [Int] = []) -> [Int] {
        var out: Set<Int> = [1, 2, 65534, 65535]
        for r in config.protectedPorts {
            for p in [r.lower - 1, r.lower, r.upper, r.upper + 1] where (1...65535).contains(p) { out.insert(p) }
        }
        for p in extra where (1...65535).contains(p) { out.insert(p) }
        for _ in 0..<count { out.insert(1 + generator.next(65535)) }
        return out.sorted()
    }
}
