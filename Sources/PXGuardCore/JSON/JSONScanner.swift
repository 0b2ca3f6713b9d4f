import PXGuardBytes

/// Byte-level helpers over validated input: no bounds or grammar checks here, the
/// validator has done them.
@usableFromInline enum JSONScanner {
    @inline(__always) static func isWS(_ c: UInt8) -> Bool {
        c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09
    }

    @inline(__always) static func skipWS(_ p: UnsafePointer<UInt8>, _ i: Int, _ end: Int) -> Int {
        var i = i
        while i < end && isWS(p[i]) { i &+= 1 }
        return i
    }

    /// From an opening quote, the offset one past the closing quote.
    @inline(__always) static func skipString(_ p: UnsafePointer<UInt8>, _ i: Int) -> Int {
        var i = i &+ 1
        while true {
            let c = p[i]
            if c == UInt8(ascii: "\"") { return i &+ 1 }
            i &+= c == UInt8(ascii: "\\") ? 2 : 1
        }
    }

    /// `skipString` eight bytes at a time where the document has room (`end`).
    @inline(__always) static func skipString(_ p: UnsafePointer<UInt8>, _ i: Int, end: Int) -> Int {
        var i = i &+ 1
        let ones: UInt64 = 0x0101_0101_0101_0101
        while i &+ 8 <= end {
            let w = UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)
            let quote = w ^ (ones &* 0x22)
            let slash = w ^ (ones &* 0x5C)
            let hit = (((quote &- ones) & ~quote) | ((slash &- ones) & ~slash)) & 0x8080_8080_8080_8080
            if hit == 0 { i &+= 8; continue }
            i &+= hit.trailingZeroBitCount >> 3
            if p[i] == UInt8(ascii: "\"") { return i &+ 1 }
            i &+= 2  // an escape: skip it and the escaped byte
        }
        return skipString(p, i &- 1)
    }

    /// The offset one past the number or literal starting at `i` (followed, in a
    /// validated container, by a delimiter).
    @inline(__always) static func skipScalar(_ p: UnsafePointer<UInt8>, _ i: Int) -> Int {
        var i = i &+ 1
        while true {
            switch p[i] {
            case UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x0A, 0x0D, 0x09:
                return i
            default: i &+= 1
            }
        }
    }

    /// Compares a string token without escapes to `text`; nil when the token has
    /// escapes and must be decoded first.
    @inline(__always) static func rawStringEquals(
        _ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int,
        _ text: UnsafePointer<UInt8>, _ count: Int
    ) -> Bool? {
        let length = end - start - 2
        let body = p + start + 1
        // An escaped token is longer than what it decodes to: equal raw lengths
        // compare bytewise, shorter ones never match, longer ones only with escapes.
        if length == count { return Bytes.equal(body, text, count) }
        // An escape decodes to at least one character, and a token can only decode
        // to `text` if it starts with text's first byte or with an escape.
        if length < count || count == 0 || (body[0] != text[0] && body[0] != UInt8(ascii: "\\")) { return false }
        for k in 0..<length where body[k] == UInt8(ascii: "\\") { return nil }
        return false
    }

    static func hexValue(_ c: UInt8) -> UInt32? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(c - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt32(c - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(c - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }

    static func hex4(_ p: UnsafePointer<UInt8>, _ i: Int) -> UInt32 {
        var v: UInt32 = 0
        for k in 0..<4 { v = v << 4 | (hexValue(p[i + k]) ?? 0) }
        return v
    }

    /// Decodes a validated string token (quotes included) into a Swift string.
    static func decodeString(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> String {
        let body = UnsafeBufferPointer(start: p + start + 1, count: end - start - 2)
        if !body.contains(UInt8(ascii: "\\")) {
            return String(decoding: body, as: UTF8.self)
        }
        var out: [UInt8] = []
        out.reserveCapacity(body.count)
        var i = start + 1
        let last = end - 1
        while i < last {
            let c = p[i]
            guard c == UInt8(ascii: "\\") else { out.append(c); i += 1; continue }
            let e = p[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "u"):
                var scalar = hex4(p, i)
                i += 4
                if (0xD800..<0xDC00).contains(scalar), i + 6 <= last,
                    p[i] == UInt8(ascii: "\\"), p[i + 1] == UInt8(ascii: "u")
                {
                    let low = hex4(p, i + 2)
                    if (0xDC00..<0xE000).contains(low) {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    }
                }
                let s = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                out.append(contentsOf: String(Character(s)).utf8)
            default: out.append(e)  // \" \\ \/
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
