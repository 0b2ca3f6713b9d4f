import PXGuardBytes

/// The one validating pass over a document: grammar, string escapes, control
/// characters, number syntax, UTF-8 well-formedness and nesting depth. One loop
/// over an explicit stack instead of recursive calls, with the cursor in a local,
/// so the common bytes cost a few instructions each. It also builds the tape.
/// Cursor arithmetic on the hot paths wraps (`&+`): offsets never exceed the
/// buffer's size, and an overflow check is a branch per byte or token.
struct JSONValidator {
    let p: UnsafePointer<UInt8>
    let n: Int
    let masks: UnsafePointer<UInt64>
    var tape: Tape

    init(base: UnsafePointer<UInt8>, count: Int, masks: UnsafePointer<UInt64>) {
        p = base
        n = count
        self.masks = masks
        tape = Tape(capacity: max(16, count / 24))
    }

    static func fail(_ reason: String, at offset: Int) -> JSONSyntaxError {
        JSONSyntaxError(offset: offset, reason: reason)
    }

    enum State { case key, value, afterValue }

    mutating func validateDocument() throws(JSONSyntaxError) -> (Int, Int) {
        let p = self.p
        let n = self.n
        let masks = self.masks
        var i = 0
        // Open containers: tape index, negative for arrays (index + 1 negated).
        var stack = FixedStack(capacity: JSONDocument.maxDepth + 1)
        defer { stack.deallocate() }
        @inline(__always) func skipWS(_ i: inout Int) {
            while i < n, JSONScanner.isWS(p[i]) { i &+= 1 }
        }
        skipWS(&i)
        let start = i
        var state = State.value
        // Each pass through the switch falls through from a member name to its
        // value to what follows it, so a typical `"key": value,` is one trip.
        while true {
            switch state {
            case .key:
                guard i < n, p[i] == UInt8(ascii: "\"") else { throw Self.fail("expected a member name", at: i) }
                i = try Self.scanString(p, n, i, masks)
                skipWS(&i)
                guard i < n, p[i] == UInt8(ascii: ":") else { throw Self.fail("expected ':'", at: i) }
                i &+= 1
                skipWS(&i)
                fallthrough
            case .value:
                guard i < n else { throw Self.fail("unexpected end of input", at: i) }
                let c = p[i]
                switch c {
                case UInt8(ascii: "\""):
                    i = try Self.scanString(p, n, i, masks)
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    if stack.count >= JSONDocument.maxDepth { throw Self.fail("nesting deeper than \(JSONDocument.maxDepth)", at: i) }
                    let isObject = c == UInt8(ascii: "{")
                    let entry = tape.append()
                    stack.append(isObject ? entry : -(entry + 1))
                    i &+= 1
                    skipWS(&i)
                    if i < n && p[i] == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                        close(&stack, isObject: isObject, at: &i)
                        state = .afterValue
                    } else {
                        state = isObject ? .key : .value
                    }
                    continue
                case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): i = try Self.scanNumber(p, n, i)
                case UInt8(ascii: "t"): i = try Self.literal(p, n, i, "true")
                case UInt8(ascii: "f"): i = try Self.literal(p, n, i, "false")
                case UInt8(ascii: "n"): i = try Self.literal(p, n, i, "null")
                default: throw Self.fail("unexpected character", at: i)
                }
                fallthrough
            case .afterValue:
                skipWS(&i)
                guard let top = stack.last else {
                    guard i >= n else { throw Self.fail("unexpected data after the JSON value", at: i) }
                    return (start, endOfValue(start))
                }
                guard i < n else { throw Self.fail("unexpected end of input", at: i) }
                let isObject = top >= 0
                let c = p[i]
                if c == UInt8(ascii: ",") {
                    i &+= 1
                    skipWS(&i)
                    state = isObject ? .key : .value
                } else if c == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                    close(&stack, isObject: isObject, at: &i)
                    state = .afterValue
                } else {
                    throw Self.fail(isObject ? "expected ',' or '}'" : "expected ',' or ']'", at: i)
                }
            }
        }
    }

    /// The end of the root value: after its last non-space byte.
    func endOfValue(_ start: Int) -> Int {
        var e = n
        while e > start && JSONScanner.isWS(p[e - 1]) { e -= 1 }
        return e
    }

    @inline(__always) mutating func close(_ stack: inout FixedStack, isObject: Bool, at i: inout Int) {
        let top = stack.removeLast()
        let entry = isObject ? top : -top - 1
        i &+= 1
        tape.base[entry].end = i
        tape.base[entry].next = tape.count
    }

    @inline(__always) static func literal(_ p: UnsafePointer<UInt8>, _ n: Int, _ i: Int, _ word: StaticString) throws(JSONSyntaxError) -> Int {
        let count = word.utf8CodeUnitCount
        guard i + count <= n, Bytes.equal(p + i, word.utf8Start, count) else {
            throw Self.fail("invalid literal", at: i)
        }
        return i + count
    }

    /// From an opening quote, the offset past the closing one. A string whose next
    /// quote comes before any backslash, control or non-ASCII byte ends at that
    /// quote and is valid; anything else takes the byte-by-byte path.
    @inline(__always) static func scanString(
        _ p: UnsafePointer<UInt8>, _ n: Int, _ open: Int, _ masks: UnsafePointer<UInt64>
    ) throws(JSONSyntaxError) -> Int {
        var position = open &+ 1
        while position < n {
            let word = position >> 6
            let shift = UInt64(truncatingIfNeeded: position & 63)
            let quotes = masks[word &* 2] >> shift
            let special = masks[word &* 2 &+ 1] >> shift
            if quotes != 0 {
                let quote = quotes.trailingZeroBitCount
                if special == 0 || special.trailingZeroBitCount > quote { return position &+ quote &+ 1 }
                break
            }
            if special != 0 { break }
            position = (word &+ 1) << 6
        }
        return try scanString(p, n, open)
    }

    /// From an opening quote, the offset past the closing one, byte by byte (eight
    /// at a time where it can): escapes, UTF-8, control characters, unterminated.
    /// Static, so a call passes two registers instead of a copy of the validator.
    static func scanString(_ p: UnsafePointer<UInt8>, _ n: Int, _ open: Int) throws(JSONSyntaxError) -> Int {
        var j = open + 1
        while j < n {
            // Eight bytes at a time while none is a quote, a backslash, a control
            // character or non-ASCII (SWAR "has byte" tests on a UInt64).
            while j + 8 <= n {
                let w = UnsafeRawPointer(p + j).loadUnaligned(as: UInt64.self)
                let ones: UInt64 = 0x0101_0101_0101_0101
                let quote = w ^ (ones &* 0x22)
                let slash = w ^ (ones &* 0x5C)
                let special = (((quote &- ones) & ~quote) | ((slash &- ones) & ~slash) | (w &- ones &* 0x20) | w)
                    & 0x8080_8080_8080_8080
                if special != 0 {
                    // The lowest flagged byte is a true hit (borrows only run upward):
                    // jump to it and handle it below.
                    j += special.trailingZeroBitCount >> 3
                    break
                }
                j += 8
            }
            guard j < n else { break }
            let c = p[j]
            // The closing quote is by far the most common stop.
            if c == UInt8(ascii: "\"") { return j + 1 }
            if c >= 0x20 && c < 0x80 && c != UInt8(ascii: "\\") { j += 1; continue }
            if c < 0x20 { throw Self.fail("control character in string", at: j) }
            if c == UInt8(ascii: "\\") {
                guard j + 1 < n else { break }
                switch p[j + 1] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                    UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    j += 2
                case UInt8(ascii: "u"):
                    guard j + 6 <= n else { throw Self.fail("truncated \\u escape", at: j) }
                    for k in 2..<6 where JSONScanner.hexValue(p[j + k]) == nil { throw Self.fail("invalid \\u escape", at: j) }
                    j += 6
                default:
                    throw Self.fail("invalid escape", at: j)
                }
                continue
            }
            j = try Self.utf8Sequence(p, n, j)
        }
        throw Self.fail("unterminated string", at: open)
    }

    /// Checks one multi-byte UTF-8 sequence (RFC 3629: no overlongs, no surrogates).
    static func utf8Sequence(_ p: UnsafePointer<UInt8>, _ n: Int, _ i: Int) throws(JSONSyntaxError) -> Int {
        let c = p[i]
        let length: Int
        var lowerBound: UInt8 = 0x80
        var upperBound: UInt8 = 0xBF
        switch c {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; lowerBound = 0xA0
        case 0xE1...0xEC, 0xEE, 0xEF: length = 3
        case 0xED: length = 3; upperBound = 0x9F
        case 0xF0: length = 4; lowerBound = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; upperBound = 0x8F
        default: throw Self.fail("invalid UTF-8", at: i)
        }
        guard i + length <= n else { throw Self.fail("truncated UTF-8", at: i) }
        let second = p[i + 1]
        guard second >= lowerBound && second <= upperBound else { throw Self.fail("invalid UTF-8", at: i) }
        for k in 2..<length where p[i + k] & 0xC0 != 0x80 { throw Self.fail("invalid UTF-8", at: i) }
        return i + length
    }

    @inline(__always) static func scanNumber(_ p: UnsafePointer<UInt8>, _ n: Int, _ start: Int) throws(JSONSyntaxError) -> Int {
        var i = start
        @inline(__always) func isDigit(_ i: Int) -> Bool { i < n && p[i] >= UInt8(ascii: "0") && p[i] <= UInt8(ascii: "9") }
        if p[i] == UInt8(ascii: "-") { i += 1 }
        guard i < n else { throw Self.fail("truncated number", at: i) }
        if p[i] == UInt8(ascii: "0") {
            i += 1
        } else if isDigit(i) {
            while isDigit(i) { i += 1 }
        } else {
            throw Self.fail("invalid number", at: i)
        }
        if i < n && p[i] == UInt8(ascii: ".") {
            i += 1
            let digits = i
            while isDigit(i) { i += 1 }
            if i == digits { throw Self.fail("invalid number", at: i) }
        }
        if i < n && (p[i] == UInt8(ascii: "e") || p[i] == UInt8(ascii: "E")) {
            i += 1
            if i < n && (p[i] == UInt8(ascii: "+") || p[i] == UInt8(ascii: "-")) { i += 1 }
            let digits = i
            while isDigit(i) { i += 1 }
            if i == digits { throw Self.fail("invalid number", at: i) }
        }
        return i
    }
}
