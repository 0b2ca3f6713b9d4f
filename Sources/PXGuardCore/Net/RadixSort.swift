/// Least-significant-digit radix sort for the large key lists of the worst-case
/// reviews (40,000 `except` blocks, 100,000 external IPs): a fixed number of linear
/// passes, where a comparison sort spends most of a review's time. Short lists
/// use the standard library's sort.
enum RadixSort {
    /// Sorts `keys` ascending by bits `lowBit..<64` (lower bits keep their input
    /// order within equal digits, which is all callers need).
    static func sort(_ keys: inout [UInt64], lowBit: Int = 0) {
        guard keys.count > 256 else {
            if lowBit == 0 { keys.sort() } else { keys.sort { $0 >> UInt64(lowBit) < $1 >> UInt64(lowBit) } }
            return
        }
        // Only the bytes that differ somewhere need a pass (IPv4 keys share their
        // top bytes, node addresses most of theirs).
        var any: UInt64 = 0, all: UInt64 = ~0
        for k in keys { any |= k; all &= k }
        let varying = any ^ all
        var scratch = [UInt64](repeating: 0, count: keys.count)
        var counts = [Int](repeating: 0, count: 256)
        for shift in stride(from: lowBit, to: 64, by: 8) where (varying >> UInt64(shift)) & 0xFF != 0 {
            for i in 0..<256 { counts[i] = 0 }
            for k in keys { counts[Int(truncatingIfNeeded: k >> UInt64(shift) & 0xFF)] += 1 }
            var total = 0
            for i in 0..<256 {
                let c = counts[i]
                counts[i] = total
                total += c
            }
            for k in keys {
                let d = Int(truncatingIfNeeded: k >> UInt64(shift) & 0xFF)
                scratch[counts[d]] = k
                counts[d] += 1
            }
            swap(&keys, &scratch)
        }
    }
}
