import CSIMD

/// One container in document order: where it ends, and the tape index that
/// follows all of its descendants (so siblings are found without rescanning).
public struct TapeEntry {
    var end: Int
    var next: Int
}

/// Where the quotes and the bytes that need a closer look (backslash, control,
/// non-ASCII) are, as bit masks: word `2w` holds the quotes of bytes 64w..<64w+64,
/// word `2w+1` the others. Lets the validator find the end of a plain string with
/// a bit scan instead of walking its bytes.
enum StringMasks {
    static func fill(_ masks: UnsafeMutablePointer<UInt64>, words: Int, base: UnsafePointer<UInt8>, count: Int) {
        let full = count / 64
        pxg_string_masks(base, full, masks)
        if full < words {
            // The tail, zero-padded: a zero byte counts as special, never as a quote,
            // so nothing past the end can look like the end of a string.
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64) { block in
                block.initialize(repeating: 0)
                block.baseAddress!.update(from: base + 64 * full, count: count - 64 * full)
                pxg_string_masks(block.baseAddress!, 1, masks + 2 * full)
            }
        }
    }
}

/// The validator's stack of open containers, fixed at the nesting limit.
struct FixedStack {
    let base: UnsafeMutablePointer<Int>
    var count = 0

    init(capacity: Int) { base = .allocate(capacity: capacity) }
    func deallocate() { base.deallocate() }

    var isEmpty: Bool { count == 0 }
    var last: Int? { count > 0 ? base[count - 1] : nil }
    @inline(__always) mutating func append(_ v: Int) {
        base[count] = v
        count &+= 1
    }
    @inline(__always) mutating func removeLast() -> Int {
        count &-= 1
        return base[count]
    }
}

/// A growable buffer of tape entries, freed by the parse that made it.
struct Tape {
    var base: UnsafeMutablePointer<TapeEntry>
    var count = 0
    var capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        base = .allocate(capacity: capacity)
    }

    mutating func append() -> Int {
        if count == capacity {
            let grown = UnsafeMutablePointer<TapeEntry>.allocate(capacity: capacity * 2)
            grown.moveInitialize(from: base, count: count)
            base.deallocate()
            base = grown
            capacity *= 2
        }
        (base + count).initialize(to: TapeEntry(end: 0, next: 0))
        count &+= 1
        return count &- 1
    }

    func deallocate() { base.deallocate() }
}
