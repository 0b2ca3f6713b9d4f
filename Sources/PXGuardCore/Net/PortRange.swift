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

    public func intersection(_ other: PortRange) -> PortRange? {
        guard proto == other.proto else { return nil }
        return PortRange(proto: proto, lower: max(lower, other.lower), upper: min(upper, other.upper))
    }

    /// `TCP/9001-9022`, or `TCP/9001` for a single port.
    public var description: String {
        lower == upper ? "\(proto.rawValue)/\(lower)" : "\(proto.rawValue)/\(lower)-\(upper)"
    }

    /// The range in the config file's notation (protocol omitted for TCP).
    public var configNotation: String {
        let ports = lower == upper ? "\(lower)" : "\(lower)-\(upper)"
        return proto == .tcp ? ports : "\(proto.rawValue)/\(ports)"
    }
}
