import Testing
@testable import PXGuardCore

@Suite("IPRangeSet: sort-and-sweep set math")
struct IPRangeSetTests {
    /// Random ranges in a small window of each family, placed at the bottom or the
    /// top of the address space so that the `+ 1`/`- 1` edges at 0 and max are hit.
    static func randomRanges(_ rng: inout SeededGenerator, count: Int) -> [IPRange] {
        (0..<count).map { _ in
            let family: IPFamily = rng.next(2) == 0 ? .v4 : .v6
            let top = rng.next(2) == 0
            let a = UInt128(rng.next(48)), b = UInt128(rng.next(48))
            let (lo, hi) = (min(a, b), max(a, b))
            return top
                ? IPRange(family: family, lower: family.maxValue - hi, upper: family.maxValue - lo)
                : IPRange(family: family, lower: lo, upper: hi)
        }
    }

    /// Every address the test windows can hold, for membership by brute force.
    static let probes: [(IPFamily, UInt128)] = [IPFamily.v4, .v6].flatMap { f in
        (0..<50).flatMap { i in [(f, UInt128(i)), (f, f.maxValue - UInt128(i))] }
    }

    static func member(_ ranges: [IPRange], _ f: IPFamily, _ a: UInt128) -> Bool {
        ranges.contains { $0.family == f && $0.lower <= a && a <= $0.upper }
    }

    @Test("subtract, intersect and union agree with point-by-point membership (2,000 random cases)")
    func againstMembership() {
        var rng = SeededGenerator(seed: 12)
        for _ in 0..<2_000 {
            let a = Self.randomRanges(&rng, count: rng.next(6))
            let b = Self.randomRanges(&rng, count: rng.next(8))
            let sa = IPRangeSet(a), sb = IPRangeSet(b)
            let minus = sa.subtracting(sb), both = sa.intersection(sb), either = sa.union(sb)
            for (f, x) in Self.probes {
                let inA = Self.member(a, f, x), inB = Self.member(b, f, x)
                #expect(sa.contains(x, family: f) == inA)
                #expect(minus.contains(x, family: f) == (inA && !inB), "\(a) - \(b) at \(x)")
                #expect(both.contains(x, family: f) == (inA && inB), "\(a) & \(b) at \(x)")
                #expect(either.contains(x, family: f) == (inA || inB))
            }
            // Canonical form: sorted, disjoint and not adjacent.
            for s in [sa, minus, both, either] {
                for (p, q) in zip(s.ranges, s.ranges.dropFirst()) {
                    #expect(IPRangeSet.precedes(p, q))
                    #expect(p.family != q.family || p.upper + 1 < q.lower)
                }
            }
        }
    }

    @Test("the whole space minus everything is empty, minus nothing is whole")
    func extremes() {
        for f in [IPFamily.v4, .v6] {
            let all = IPRangeSet(CIDR.all(f).range)
            #expect(all.subtracting(all).isEmpty)
            #expect(all.subtracting(IPRangeSet()) == all)
            let halves = IPRangeSet([IPRange(family: f, lower: f.maxValue / 2 + 1, upper: f.maxValue),
                                     IPRange(family: f, lower: 0, upper: f.maxValue / 2)])
            #expect(halves == all)
        }
    }
}

@Suite("CIDR: the in-place reader against the string parser")
struct CIDRRawParserTests {
    /// Random text near the IPv6 and IPv4 grammars: groups, `::`, IPv4 tails,
    /// prefixes, and the usual mistakes (five hex digits, a second `::`, a
    /// trailing colon, leading zeros in a prefix or an octet).
    static func randomText(_ rng: inout SeededGenerator) -> String {
        let pieces = ["0", "1", "ff", "ffff", "fd00", "70", "abcd", "ABCD", "12345", "g", ""]
        var s = ""
        if rng.next(5) == 0 { s += "::" }
        for k in 0..<rng.next(10) {
            if k > 0 { s += rng.next(9) == 0 ? "::" : ":" }
            s += pieces[rng.next(pieces.count)]
        }
        if rng.next(4) == 0 { s += (s.isEmpty || s.hasSuffix(":") ? "" : ":") + ["70.0.0.1", "255.255.255.255", "01.2.3.4", "1.2.3", "256.1.1.1"][rng.next(5)] }
        if rng.next(5) == 0 { s += "::" }
        if rng.next(2) == 0 { s += "/" + ["0", "64", "96", "112", "128", "129", "064", "", "1000"][rng.next(9)] }
        return s
    }

    @Test("20,000 generated blocks read the same in place and through String")
    func agrees() throws {
        var rng = SeededGenerator(seed: 6)
        var valid = 0
        for _ in 0..<20_000 {
            let text = Self.randomText(&rng)
            let expected = CIDR(text)
            if expected != nil { valid += 1 }
            let got = Array(text.utf8).withUnsafeBufferPointer { CIDR(rawBytes: $0) }
            #expect(got == expected, "\(text)")
        }
        #expect(valid > 1_000)
    }

    @Test("an escaped cidr in a request is decoded, as the API server decodes it")
    func escaped() throws {
        let doc = Array(#"["\u00370.0.0.0/16", "fd00\u003a:/64"]"#.utf8)
        try JSONDocument.parse(doc) { root in
            let e = root.elements
            #expect(e[0].cidr == CIDR("70.0.0.0/16"))
            #expect(e[1].cidr == CIDR("fd00::/64"))
        }
    }
}

@Suite("Radix sort")
struct RadixSortTests {
    @Test("sorts like the standard library, by whole keys and by the high half", arguments: [0, 3, 200, 257, 5_000])
    func agrees(_ count: Int) {
        var rng = SeededGenerator(seed: UInt64(count))
        for shape in 0..<3 {
            var keys: [UInt64] = (0..<count).map { _ in
                switch shape {
                case 0: return rng.next()
                case 1: return UInt64(70) << 56 | UInt64(rng.next(1 << 16)) << 32 | UInt64(rng.next(64))  // shared top bytes
                default: return UInt64(rng.next(4))  // many equal keys
                }
            }
            var whole = keys
            RadixSort.sort(&whole)
            #expect(whole == keys.sorted())
            RadixSort.sort(&keys, lowBit: 32)
            #expect(keys.map { $0 >> 32 } == keys.map { $0 >> 32 }.sorted())
            #expect(keys.sorted() == whole)
        }
    }
}

@Suite("Port range union")
struct PortCoalesceTests {
    @Test("coalesce keeps exactly the ports of its input, merged and sorted (1,000 random lists)")
    func againstMembership() {
        var rng = SeededGenerator(seed: 22)
        for _ in 0..<1_000 {
            let input: [PortRange] = (0..<rng.next(400)).map { _ in
                let lo = 1 + rng.next(40) + (rng.next(2) == 0 ? 65_480 : 0)
                return PortRange(proto: TransportProtocol.allCases[rng.next(3)], lower: lo, upper: min(65_535, lo + rng.next(6)))!
            }
            let out = PortRange.coalesce(input)
            for proto in TransportProtocol.allCases {
                for port in Array(1...50) + Array(65_470...65_535) {
                    let inInput = input.contains { $0.proto == proto && $0.lower <= port && port <= $0.upper }
                    #expect(out.contains { $0.proto == proto && $0.lower <= port && port <= $0.upper } == inInput)
                }
            }
            for (a, b) in zip(out, out.dropFirst()) where a.proto == b.proto { #expect(a.upper + 1 < b.lower) }
        }
    }
}
