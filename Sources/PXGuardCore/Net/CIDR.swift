/// An address family; IPv4 and IPv6 are separate address spaces.
public enum IPFamily: Sendable, Hashable {
    case v4, v6

    var bits: Int { self == .v4 ? 32 : 128 }
    var maxValue: UInt128 { self == .v4 ? UInt128(UInt32.max) : UInt128.max }
}

/// A contiguous, inclusive range of addresses of one family.
public struct IPRange: Hashable, Sendable, CustomStringConvertible {
    public let family: IPFamily
    public let lower: UInt128
    public let upper: UInt128

    public init(family: IPFamily, lower: UInt128, upper: UInt128) {
        self.family = family
        self.lower = lower
        self.upper = upper
    }

    func intersection(_ other: IPRange) -> IPRange? {
        guard family == other.family else { return nil }
        let lo = max(lower, other.lower)
        let hi = min(upper, other.upper)
        return lo <= hi ? IPRange(family: family, lower: lo, upper: hi) : nil
    }

    /// `self` minus `other`: zero, one or two ranges.
    func subtracting(_ other: IPRange) -> [IPRange] {
        guard let cut = intersection(other) else { return [self] }
        var out: [IPRange] = []
        if cut.lower > lower { out.append(IPRange(family: family, lower: lower, upper: cut.lower - 1)) }
        if cut.upper < upper { out.append(IPRange(family: family, lower: cut.upper + 1, upper: upper)) }
        return out
    }

    /// The smallest list of CIDR blocks that exactly covers the range.
    var cidrs: [CIDR] {
        var out: [CIDR] = []
        var start = lower
        let bits = family.bits
        while true {
            // Largest block aligned at `start` that does not pass `upper`.
            var size = start == 0 ? bits : min(bits, start.trailingZeroBitCount)
            while size > 0 {
                let span = size >= 128 ? UInt128.max : (UInt128(1) << size) - 1
                if start <= upper && upper - start >= span { break }
                size -= 1
            }
            out.append(CIDR(family: family, network: start, prefix: bits - size))
            let span = size >= 128 ? UInt128.max : (UInt128(1) << size) - 1
            if upper - start <= span { break }
            start += span + 1
        }
        return out
    }

    /// The range written as CIDR blocks, shortened after a few.
    public var description: String {
        let blocks = cidrs
        let shown = blocks.prefix(3).map(\.description).joined(separator: ", ")
        return blocks.count > 3 ? "\(shown) (+\(blocks.count - 3) more blocks)" : shown
    }
}

/// A validated CIDR block. Host bits written after the prefix are masked away,
/// the way network plugins read `10.0.0.1/24` as `10.0.0.0/24`.
public struct CIDR: Hashable, Sendable, CustomStringConvertible {
    public let family: IPFamily
    let network: UInt128
    public let prefix: Int

    init(family: IPFamily, network: UInt128, prefix: Int) {
        self.family = family
        self.network = network
        self.prefix = prefix
    }

    /// Parses `a.b.c.d/n` or an IPv6 block; a bare address is a host block.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddressParser.parse(parts[0]) else { return nil }
        let bits = address.family.bits
        var prefix = bits
        if parts.count == 2 {
            let p = parts[1]
            guard !p.isEmpty, p.count <= 3, p.allSatisfy(\.isASCIIDigitCharacter), let n = Int(p), n <= bits,
                !(p.count > 1 && p.first == "0")
            else { return nil }
            prefix = n
        }
        let hostBits = bits - prefix
        let mask: UInt128 = hostBits >= 128 ? .max : (UInt128(1) << hostBits) - 1
        self.init(family: address.family, network: address.value & ~mask, prefix: prefix)
    }

    /// Parses a JSON string token's raw bytes (quotes excluded) without
    /// allocating for the common IPv4 form; other forms go through `init?(_:)`.
    init?(rawBytes b: UnsafeBufferPointer<UInt8>) {
        var value: UInt32 = 0
        var octet: UInt32 = 0
        var digits = 0
        var dots = 0
        var prefix = -1
        var i = 0
        while i < b.count {
            let c = b[i]
            if c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") {
                if digits > 0 && octet == 0 { return nil }  // leading zero
                octet = octet * 10 + UInt32(c - UInt8(ascii: "0"))
                digits += 1
                if digits > 3 || (prefix < 0 && octet > 255) { break }
            } else if c == UInt8(ascii: ".") && prefix < 0 && digits > 0 && dots < 3 {
                value = value << 8 | octet
                octet = 0
                digits = 0
                dots += 1
            } else if c == UInt8(ascii: "/") && prefix < 0 && dots == 3 && digits > 0 {
                value = value << 8 | octet
                octet = 0
                digits = 0
                prefix = 0
            } else {
                break
            }
            i += 1
        }
        guard i == b.count, digits > 0, dots == 3 else {
            // IPv6 without escapes is read in place too (40,000 `except` blocks must
            // not cost 40,000 strings); escapes or anything else go to the general parser.
            if let v6 = CIDR.parseV6(rawBytes: b) {
                guard let c = v6 else { return nil }
                self = c
                return
            }
            guard let text = String(validating: b, as: UTF8.self), let c = CIDR(text) else { return nil }
            self = c
            return
        }
        if prefix < 0 {
            value = value << 8 | octet
            prefix = 32
        } else {
            guard octet <= 32 else { return nil }
            prefix = Int(octet)
        }
        let mask: UInt32 = prefix == 0 ? 0 : ~UInt32(0) << UInt32(32 - prefix)
        self.init(family: .v4, network: UInt128(value & mask), prefix: prefix)
    }

    /// An IPv6 block (`fd00::/64`, `::ffff:70.0.0.0/112`) read from raw bytes without
    /// allocating, with the rules of `IPAddressParser.parseV6`. Nil when the bytes are
    /// not for this parser (no `:`, or an escape); `.some(nil)` when they are and
    /// are not a valid block.
    static func parseV6(rawBytes b: UnsafeBufferPointer<UInt8>) -> CIDR?? {
        let colon = UInt8(ascii: ":"), slash = UInt8(ascii: "/")
        var n = b.count
        var hasColon = false
        for c in b {
            if c == UInt8(ascii: "\\") { return nil }
            if c == colon { hasColon = true }
        }
        guard hasColon else { return nil }
        var prefix = 128
        if let s = b.firstIndex(of: slash) {
            let digits = b.count - s - 1
            guard digits >= 1, digits <= 3, !(digits > 1 && b[s + 1] == UInt8(ascii: "0")) else { return .some(nil) }
            var v = 0
            for k in (s + 1)..<b.count {
                guard b[k] >= UInt8(ascii: "0"), b[k] <= UInt8(ascii: "9") else { return .some(nil) }
                v = v * 10 + Int(b[k] - UInt8(ascii: "0"))
            }
            guard v <= 128 else { return .some(nil) }
            prefix = v
            n = s
        }
        guard let value = parseV6Address(b, n) else { return .some(nil) }
        let hostBits = 128 - prefix
        let mask: UInt128 = hostBits >= 128 ? .max : (UInt128(1) << hostBits) - 1
        return .some(CIDR(family: .v6, network: value & ~mask, prefix: prefix))
    }

    /// The IPv6 address in `b[0..<n]`: one to four hex digits per group, `::` once,
    /// an IPv4 tail last.
    static func parseV6Address(_ b: UnsafeBufferPointer<UInt8>, _ n: Int) -> UInt128? {
        let colon = UInt8(ascii: ":")
        func hex(_ c: UInt8) -> UInt128? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt128(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt128(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt128(c - UInt8(ascii: "A") + 10)
            default: return nil
            }
        }
        var head: UInt128 = 0, tail: UInt128 = 0
        var headCount = 0, tailCount = 0
        var compressed = false
        func add(_ group: UInt128) -> Bool {
            if compressed {
                tail = tail << 16 | group; tailCount += 1
            } else {
                head = head << 16 | group; headCount += 1
            }
            return headCount + tailCount <= 8
        }
        var i = 0
        if n >= 2 && b[0] == colon && b[1] == colon {
            compressed = true
            i = 2
            if i == n { return 0 }
        } else if n == 0 || b[0] == colon {
            return nil
        }
        while i < n {
            var j = i
            var v: UInt128 = 0
            while j < n, j - i < 4, let h = hex(b[j]) { v = v << 4 | h; j += 1 }
            if j < n && b[j] == UInt8(ascii: ".") {
                // An IPv4 tail: the rest of the address, strictly dotted-decimal.
                guard let v4 = IPAddressParser.parseV4(rawBytes: UnsafeBufferPointer(rebasing: b[i..<n])),
                    add(UInt128(v4 >> 16)), add(UInt128(v4 & 0xFFFF))
                else { return nil }
                i = n
                break
            }
            guard j > i, j == n || b[j] == colon, add(v) else { return nil }
            if j == n { break }
            if j + 1 < n && b[j + 1] == colon {
                if compressed { return nil }
                compressed = true
                i = j + 2
            } else {
                i = j + 1
                if i == n { return nil }
            }
        }
        if compressed {
            guard headCount + tailCount <= 7 else { return nil }
            return headCount == 0 ? tail : head << (16 * (8 - headCount)) | tail
        }
        return headCount == 8 ? head : nil
    }

    public var range: IPRange {
        let hostBits = family.bits - prefix
        let mask: UInt128 = hostBits >= 128 ? .max : (UInt128(1) << hostBits) - 1
        return IPRange(family: family, lower: network, upper: network | mask)
    }

    /// The block covering a whole family: `0.0.0.0/0` or `::/0`.
    public static func all(_ family: IPFamily) -> CIDR { CIDR(family: family, network: 0, prefix: 0) }

    public var description: String { "\(IPAddressParser.format(network, family))/\(prefix)" }
}

extension Character {
    var isASCIIDigitCharacter: Bool { isASCII && isNumber }
}

/// Parsing and formatting of IPv4 and IPv6 addresses as 128-bit integers.
enum IPAddressParser {
    static func parse(_ text: Substring) -> (family: IPFamily, value: UInt128)? {
        if text.contains(":") {
            return parseV6(text).map { (.v6, $0) }
        }
        return parseV4(text).map { (.v4, UInt128($0)) }
    }

    /// Strict dotted-decimal IPv4 (no leading zeros) from raw bytes.
    static func parseV4(rawBytes b: UnsafeBufferPointer<UInt8>) -> UInt32? {
        var value: UInt32 = 0, octet: UInt32 = 0, digits = 0, dots = 0
        for c in b {
            if c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") {
                if digits > 0 && octet == 0 { return nil }
                octet = octet * 10 + UInt32(c - UInt8(ascii: "0"))
                digits += 1
                if digits > 3 || octet > 255 { return nil }
            } else if c == UInt8(ascii: ".") && digits > 0 && dots < 3 {
                value = value << 8 | octet
                octet = 0; digits = 0; dots += 1
            } else {
                return nil
            }
        }
        guard dots == 3, digits > 0 else { return nil }
        return value << 8 | octet
    }

    static func parseV4(_ text: Substring) -> UInt32? {
        let octets = text.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var value: UInt32 = 0
        for octet in octets {
            guard !octet.isEmpty, octet.count <= 3, octet.allSatisfy(\.isASCIIDigitCharacter),
                !(octet.count > 1 && octet.first == "0"), let n = UInt32(octet), n <= 255
            else { return nil }
            value = value << 8 | n
        }
        return value
    }

    static func parseV6(_ text: Substring) -> UInt128? {
        var groups: [UInt16] = []
        var head = text
        var tail: Substring = ""
        var compressed = false
        if let range = text.firstRange(of: "::") {
            compressed = true
            head = text[text.startIndex..<range.lowerBound]
            tail = text[range.upperBound...]
            if tail.contains("::") { return nil }
        }
        func parseGroups(_ part: Substring, allowV4Tail: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            var out: [UInt16] = []
            let fields = part.split(separator: ":", omittingEmptySubsequences: false)
            for (i, field) in fields.enumerated() {
                if allowV4Tail && i == fields.count - 1 && field.contains(".") {
                    guard let v4 = parseV4(field) else { return nil }
                    out.append(UInt16(v4 >> 16))
                    out.append(UInt16(v4 & 0xFFFF))
                    continue
                }
                guard !field.isEmpty, field.count <= 4, let g = UInt16(field, radix: 16) else { return nil }
                out.append(g)
            }
            return out
        }
        guard let h = parseGroups(head, allowV4Tail: !compressed),
            let t = parseGroups(tail, allowV4Tail: true)
        else { return nil }
        if compressed {
            guard h.count + t.count <= 7 else { return nil }
            groups = h + Array(repeating: 0, count: 8 - h.count - t.count) + t
        } else {
            guard h.count == 8 else { return nil }
            groups = h
        }
        return groups.reduce(UInt128(0)) { $0 << 16 | UInt128($1) }
    }

    static func format(_ value: UInt128, _ family: IPFamily) -> String {
        if family == .v4 {
            let v = UInt32(truncatingIfNeeded: value)
            return "\(v >> 24).\(v >> 16 & 0xFF).\(v >> 8 & 0xFF).\(v & 0xFF)"
        }
        let groups = (0..<8).map { UInt16(truncatingIfNeeded: value >> (16 * (7 - $0))) }
        // RFC 5952: compress the longest run of two or more zero groups.
        var bestStart = -1
        var bestLength = 1
        var i = 0
        while i < 8 {
            if groups[i] == 0 {
                var j = i
                while j < 8 && groups[j] == 0 { j += 1 }
                if j - i > bestLength { bestStart = i; bestLength = j - i }
                i = j
            } else {
                i += 1
            }
        }
        func hex(_ slice: ArraySlice<UInt16>) -> String {
            slice.map { String($0, radix: 16) }.joined(separator: ":")
        }
        if bestStart < 0 { return hex(groups[...]) }
        return hex(groups[0..<bestStart]) + "::" + hex(groups[(bestStart + bestLength)...])
    }
}
