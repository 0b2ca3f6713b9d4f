/// A transport protocol as NetworkPolicy names it.
public enum TransportProtocol: String, Sendable, Hashable, CaseIterable {
    case tcp = "TCP"
    case udp = "UDP"
    case sctp = "SCTP"
}

/// An inclusive range of ports of one protocol, valid by construction (1…65535).
public struct PortRange: Hashable, Sendable, CustomStringConvertible {
    public let proto: TransportProtocol
    public let lower: Int
    public let upper: Int

    public init?(proto: TransportProtocol, lower: Int, upper: Int) {
        guard 1 <= lower, lower <= upper, upper <= 65535 else { return nil }
        self.proto = proto
        self.lower = lower
        self.upper = upper
    }

    /// Parses `9001`, `9001-9022`, `UDP/9002` or `SCTP/9001-9005` (TCP when no
    /// protocol is written).
    public init?(_ text: String) {
        var proto = TransportProtocol.tcp
        var rest = Substring(text)
        if let slash = text.firstIndex(of: "/") {
            guard let p = TransportProtocol(rawValue: text[..<slash].uppercased()) else { return nil }
            proto = p
            rest = text[text.index(after: slash)...]
        }
        let bounds = rest.split(separator: "-", omittingEmptySubsequences: false)
        guard bounds.count == 1 || bounds.count == 2 else { return nil }
        func port(_ s: Substring) -> Int? {
            guard !s.isEmpty, s.count <= 5, s.allSatisfy(\.isASCIIDigitCharacter) else { return nil }
            return Int(s)
        }
        guard let lo = port(bounds[0]), let hi = bounds.count == 2 ? port(bounds[1]) : lo else { return nil }
        self.init(proto: proto, lower: lo, upper: hi)
    }

    func intersection(_ other: PortRange) -> PortRange? {
        guard proto == other.proto else { return nil }
        return PortRange(proto: proto, lower: max(lower, other.lower), upper: min(upper, other.upper))
    }

    /// `TCP/9001-9022`, or `TCP/9001` for a single port.
    public var description: String {
        lower == upper ? "\(proto.rawValue)/\(lower)" : "\(proto.rawValue)/\(lower)-\(upper)"
    }

    /// The range in the config file's notation (protocol omitted for TCP).
    var configNotation: String {
        let ports = lower == upper ? "\(lower)" : "\(lower)-\(upper)"
        return proto == .tcp ? ports : "\(proto.rawValue)/\(ports)"
    }
}

extension PortRange {
    /// The union of `ranges`, sorted by protocol and then port, with overlapping and
    /// adjacent ranges of one protocol merged.
    static func coalesce(_ ranges: [PortRange]) -> [PortRange] {
        // Sorted as packed integer keys (protocol, lower, upper): a 3 MiB policy
        // can list 100,000 port entries.
        let protocols = TransportProtocol.allCases
        var keys = ranges.map { r -> UInt64 in
            UInt64(protocols.firstIndex(of: r.proto)!) << 34 | UInt64(r.lower) << 17 | UInt64(r.upper)
        }
        RadixSort.sort(&keys)
        var out: [PortRange] = []
        var current: (proto: Int, lower: Int, upper: Int)?
        for key in keys {
            let proto = Int(key >> 34), lower = Int(key >> 17 & 0x1FFFF), upper = Int(key & 0x1FFFF)
            if let c = current, c.proto == proto, lower <= c.upper + 1 {
                current = (proto, c.lower, max(c.upper, upper))
            } else {
                if let c = current { out.append(PortRange(proto: protocols[c.proto], lower: c.lower, upper: c.upper)!) }
                current = (proto, lower, upper)
            }
        }
        if let c = current { out.append(PortRange(proto: protocols[c.proto], lower: c.lower, upper: c.upper)!) }
        return out
    }
}
