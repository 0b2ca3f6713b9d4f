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
