/// A set of addresses of either family, held as sorted, disjoint, non-adjacent
/// ranges (IPv4 before IPv6, then by lower bound). Built by one sort; every set
/// operation after that is a single sweep over both operands, so `cidr` minus a
/// list of `except` blocks costs O(k log k) for k blocks, never O(k²).
struct IPRangeSet: Sendable, Equatable {
    /// The ranges, sorted and coalesced.
    private(set) var ranges: [IPRange]

    /// The empty set.
    init() { ranges = [] }

    /// The union of `ranges`, in any order, overlapping or not.
    init<S: Sequence>(_ ranges: S) where S.Element == IPRange {
        // IPv4 ranges are sorted as packed 64-bit keys (lower, upper) by radix:
        // moving 8 bytes per element in linear passes instead of comparing 48-byte
        // ranges, which was most of the cost of 40,000 `except` blocks.
        var v4: [UInt64] = []
        var v6: [IPRange] = []
        for r in ranges {
            if r.family == .v4 {
                v4.append(UInt64(truncatingIfNeeded: r.lower) << 32 | UInt64(truncatingIfNeeded: r.upper))
            } else {
                v6.append(r)
            }
        }
        RadixSort.sort(&v4)
        v6.sort { $0.lower < $1.lower }
        var sorted: [IPRange] = []
        sorted.reserveCapacity(v4.count + v6.count)
        for key in v4 { sorted.append(IPRange(family: .v4, lower: UInt128(key >> 32), upper: UInt128(key & 0xFFFF_FFFF))) }
        sorted += v6
        self.ranges = Self.coalesce(sorted)
    }

    /// The set holding exactly `range`.
    init(_ range: IPRange) { ranges = [range] }

    init(coalesced: [IPRange]) { ranges = coalesced }

    var isEmpty: Bool { ranges.isEmpty }

    /// True when `address` of `family` is in the set (binary search).
    func contains(_ address: UInt128, family: IPFamily) -> Bool {
        var lo = 0
        var hi = ranges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            let r = ranges[mid]
            if Self.key(r.family) < Self.key(family) || (r.family == family && r.upper < address) {
                lo = mid + 1
            } else {
                hi = mid
            }
        }
        return lo < ranges.count && ranges[lo].family == family && ranges[lo].lower <= address
    }

    /// The addresses in `self` and not in `other`: one sweep. A hole that reaches
    /// past the end of one range is kept for the next, so every range of either
    /// operand is visited a bounded number of times.
    func subtracting(_ other: IPRangeSet) -> IPRangeSet {
        let holes = other.ranges
        var out: [IPRange] = []
        var j = 0
        for r in ranges {
            while j < holes.count && Self.entirelyBefore(holes[j], r) { j += 1 }
            var lower = r.lower
            var open = true
            var k = j
            while k < holes.count && holes[k].family == r.family && holes[k].lower <= r.upper {
                let h = holes[k]
                if h.lower > lower { out.append(IPRange(family: r.family, lower: lower, upper: h.lower - 1)) }
                if h.upper >= r.upper { open = false; break }
                lower = max(lower, h.upper + 1)
                k += 1
            }
            if open { out.append(IPRange(family: r.family, lower: lower, upper: r.upper)) }
            j = k
        }
        return IPRangeSet(coalesced: out)
    }

    /// The addresses in both sets: one merge-style sweep.
    func intersection(_ other: IPRangeSet) -> IPRangeSet {
        let a = ranges
        let b = other.ranges
        var out: [IPRange] = []
        var i = 0
        var j = 0
        while i < a.count && j < b.count {
            if let cut = a[i].intersection(b[j]) { out.append(cut) }
            // Advance whichever ends first; the other may still meet the next range.
            if Self.endsBefore(a[i], b[j]) { i += 1 } else { j += 1 }
        }
        return IPRangeSet(coalesced: out)
    }

    /// True when the sets share an address.
    func overlaps(_ other: IPRangeSet) -> Bool { !intersection(other).isEmpty }

    /// The union of both sets.
    func union(_ other: IPRangeSet) -> IPRangeSet { IPRangeSet(ranges + other.ranges) }

    /// The set written as the fewest CIDR blocks, in order.
    var cidrs: [CIDR] { ranges.flatMap(\.cidrs) }

    // MARK: ordering

    static func key(_ family: IPFamily) -> Int { family == .v4 ? 0 : 1 }

    static func precedes(_ a: IPRange, _ b: IPRange) -> Bool {
        a.family == b.family ? a.lower < b.lower : key(a.family) < key(b.family)
    }

    /// `a` lies wholly before `b` in the set order.
    static func entirelyBefore(_ a: IPRange, _ b: IPRange) -> Bool {
        a.family == b.family ? a.upper < b.lower : key(a.family) < key(b.family)
    }

    /// `a` ends no later than `b` in the set order.
    static func endsBefore(_ a: IPRange, _ b: IPRange) -> Bool {
        a.family == b.family ? a.upper <= b.upper : key(a.family) < key(b.family)
    }

    /// Merges overlapping and adjacent neighbours of a sorted list.
    static func coalesce(_ sorted: [IPRange]) -> [IPRange] {
        guard var current = sorted.first else { return [] }
        var out: [IPRange] = []
        out.reserveCapacity(sorted.count)
        for r in sorted.dropFirst() {
            if r.family == current.family && (current.upper == current.family.maxValue || r.lower <= current.upper + 1) {
                if r.upper > current.upper { current = IPRange(family: current.family, lower: current.lower, upper: r.upper) }
            } else {
                out.append(current)
                current = r
            }
        }
        out.append(current)
        return out
    }

    // MARK: list helpers kept for callers that hold plain arrays

    /// `base` minus every range in `holes`, sorted and coalesced (sort, then sweep).
    static func subtract(_ base: [IPRange], _ holes: [IPRange]) -> [IPRange] {
        IPRangeSet(base).subtracting(IPRangeSet(holes)).ranges
    }

    /// The intersection of two lists, sorted and coalesced (sort, then sweep).
    static func intersect(_ a: [IPRange], _ b: [IPRange]) -> [IPRange] {
        IPRangeSet(a).intersection(IPRangeSet(b)).ranges
    }

    // MARK: IPv4-mapped IPv6

    /// The IPv4-mapped IPv6 block `::ffff:0:0/96`.
    static let v4Mapped = IPRange(family: .v6, lower: UInt128(0xFFFF) << 32, upper: UInt128(0xFFFF) << 32 | 0xFFFF_FFFF)

    /// The IPv4 range a block written in IPv4-mapped form (`::ffff:70.0.0.0/112`)
    /// stands for. Plugins that normalise addresses the way Go's `To4()` does turn
    /// such a block into an IPv4 one, so it is judged as IPv4. Other IPv6 blocks,
    /// `::/0` included, are programmed into ip6tables and never match IPv4 packets.
    static func asIPv4(_ range: IPRange) -> IPRange? {
        guard range.family == .v6, range.lower >= v4Mapped.lower, range.upper <= v4Mapped.upper else { return nil }
        return IPRange(family: .v4, lower: range.lower & 0xFFFF_FFFF, upper: range.upper & 0xFFFF_FFFF)
    }

    /// The range as a network plugin reads it: IPv4-mapped blocks as IPv4.
    static func effective(_ range: IPRange) -> IPRange { asIPv4(range) ?? range }
}
