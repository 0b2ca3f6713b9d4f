import CSIMD
import PXGuardBytes

/// A syntax error in a JSON document, with the byte offset where it was found.
public struct JSONSyntaxError: Error, CustomStringConvertible, Sendable {
    public let offset: Int
    public let reason: String
    public var description: String { "invalid JSON at byte \(offset): \(reason)" }
}

/// A zero-copy view of one JSON value inside a document that `JSONDocument.parse`
/// has validated. Lookups skip unrelated members without allocating; strings are
/// only decoded when asked for. Valid only while the document's bytes are.
public struct JSONValue {
    public enum Kind: Sendable { case object, array, string, number, bool, null }

    @usableFromInline let base: UnsafePointer<UInt8>
    /// The structural tape of the document: one entry per array or object.
    @usableFromInline let tape: UnsafePointer<TapeEntry>
    /// Offset of the first byte of the value.
    public let start: Int
    /// Offset one past the last byte of the value.
    public let end: Int
    /// Index of this value's tape entry when it is a container.
    @usableFromInline let ordinal: Int

    @inlinable init(base: UnsafePointer<UInt8>, tape: UnsafePointer<TapeEntry>, start: Int, end: Int, ordinal: Int) {
        self.base = base
        self.tape = tape
        self.start = start
        self.end = end
        self.ordinal = ordinal
    }

    /// The child value starting at `i`; `next` is the tape index of the next
    /// container in document order, advanced past this child's containers.
    @inline(__always) func child(at i: Int, next: inout Int) -> JSONValue {
        let c = base[i]
        if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") {
            let entry = tape[next]
            let v = JSONValue(base: base, tape: tape, start: i, end: entry.end, ordinal: next)
            next = entry.next
            return v
        }
        let e = c == UInt8(ascii: "\"") ? JSONScanner.skipString(base, i, end: end) : JSONScanner.skipScalar(base, i)
        return JSONValue(base: base, tape: tape, start: i, end: e, ordinal: -1)
    }

    public var kind: Kind {
        switch base[start] {
        case UInt8(ascii: "{"): return .object
        case UInt8(ascii: "["): return .array
        case UInt8(ascii: "\""): return .string
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return .bool
        case UInt8(ascii: "n"): return .null
        default: return .number
        }
    }

    public var isNull: Bool { base[start] == UInt8(ascii: "n") }
    public var bool: Bool? {
        switch base[start] {
        case UInt8(ascii: "t"): return true
        case UInt8(ascii: "f"): return false
        default: return nil
        }
    }

    /// The raw bytes of the value, as written in the document.
    public var bytes: UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: base + start, count: end - start)
    }

    /// The decoded string, or nil when the value is not a string.
    public var string: String? {
        guard kind == .string else { return nil }
        return JSONScanner.decodeString(base, start, end)
    }

    /// The value as an integer when it is a number without fraction or exponent
    /// that fits in an `Int`.
    public var int: Int? {
        guard kind == .number else { return nil }
        var i = start
        var negative = false
        if base[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        var result = 0
        while i < end {
            let d = base[i] &- UInt8(ascii: "0")
            guard d < 10 else { return nil }
            let (m, o1) = result.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int(d))
            if o1 || o2 { return nil }
            result = a
            i += 1
        }
        return negative ? -result : result
    }

    /// True when the value is a string equal to `text`, compared without allocating
    /// when the string holds no escapes.
    public func stringEquals(_ text: StaticString) -> Bool {
        guard kind == .string else { return false }
        return JSONScanner.rawStringEquals(base, start, end, text.utf8Start, text.utf8CodeUnitCount)
            ?? (string == text.description)
    }

    /// The member named `key` (the last one when a key repeats, as Go's decoder does).
    public subscript(key: StaticString) -> JSONValue? {
        guard base[start] == UInt8(ascii: "{") else { return nil }
        var found: JSONValue?
        forEachMember { k, v in
            if k.keyEquals(key) { found = v }
        }
        return found
    }

    /// Up to three members in one pass over the object (each the last of its
    /// name), for hot paths that need several: one key scan instead of one per
    /// subscript.
    public func members(_ a: StaticString, _ b: StaticString, _ c: StaticString? = nil)
        -> (JSONValue?, JSONValue?, JSONValue?)
    {
        var found: (JSONValue?, JSONValue?, JSONValue?) = (nil, nil, nil)
        forEachMember { k, v in
            if k.keyEquals(a) {
                found.0 = v
            } else if k.keyEquals(b) {
                found.1 = v
            } else if let c, k.keyEquals(c) {
                found.2 = v
            }
        }
        return found
    }

    /// True when this member name equals `key` (escaped names are decoded first).
    @inline(__always) func keyEquals(_ key: StaticString) -> Bool {
        JSONScanner.rawStringEquals(base, start, end, key.utf8Start, key.utf8CodeUnitCount) ?? (string == key.description)
    }

    /// The member named `key`, for keys only known at run time.
    public subscript(dynamic key: String) -> JSONValue? {
        guard base[start] == UInt8(ascii: "{") else { return nil }
        var found: JSONValue?
        var key = key
        key.withUTF8 { k8 in
            forEachMember { k, v in
                if JSONScanner.rawStringEquals(base, k.start, k.end, k8.baseAddress!, k8.count)
                    ?? (k.string == String(decoding: k8, as: UTF8.self)) {
                    found = v
                }
            }
        }
        return found
    }

    /// Follows a path of member names, returning nil as soon as one is missing.
    public func path(_ keys: StaticString...) -> JSONValue? {
        var current: JSONValue? = self
        for key in keys { current = current?[key] }
        return current
    }

    /// Calls `body` for each member of an object, in document order.
    public func forEachMember(_ body: (_ key: JSONValue, _ value: JSONValue) -> Void) {
        guard base[start] == UInt8(ascii: "{") else { return }
        var next = ordinal + 1
        var i = JSONScanner.skipWS(base, start &+ 1, end)
        if base[i] == UInt8(ascii: "}") { return }
        while true {
            let keyEnd = JSONScanner.skipString(base, i, end: end)
            let key = JSONValue(base: base, tape: tape, start: i, end: keyEnd, ordinal: -1)
            i = JSONScanner.skipWS(base, keyEnd, end) &+ 1  // past ':'
            i = JSONScanner.skipWS(base, i, end)
            let value = child(at: i, next: &next)
            body(key, value)
            i = JSONScanner.skipWS(base, value.end, end)
            if base[i] == UInt8(ascii: "}") { return }
            i = JSONScanner.skipWS(base, i &+ 1, end)  // past ','
        }
    }

    /// Calls `body` for each element of an array, in order.
    public func forEachElement(_ body: (_ index: Int, _ value: JSONValue) -> Void) {
        guard base[start] == UInt8(ascii: "[") else { return }
        var next = ordinal + 1
        var i = JSONScanner.skipWS(base, start &+ 1, end)
        if base[i] == UInt8(ascii: "]") { return }
        var index = 0
        while true {
            let value = child(at: i, next: &next)
            body(index, value)
            index += 1
            i = JSONScanner.skipWS(base, value.end, end)
            if base[i] == UInt8(ascii: "]") { return }
            i = JSONScanner.skipWS(base, i &+ 1, end)
        }
    }

    /// The elements of an array (empty for anything else).
    public var elements: [JSONValue] {
        var out: [JSONValue] = []
        forEachElement { _, v in out.append(v) }
        return out
    }

    /// True for an absent-equivalent value: null, `[]` or `{}`.
    public var isEmptyContainerOrNull: Bool {
        switch kind {
        case .null: return true
        case .array, .object: return JSONScanner.skipWS(base, start + 1, end) == end - 1
        default: return false
        }
    }

    /// The strings of an array of strings; other elements are skipped.
    public var stringElements: [String] {
        var out: [String] = []
        forEachElement { _, v in if let s = v.string { out.append(s) } }
        return out
    }
}

/// Parsing entry point: validates a whole document once, then hands out views.
public enum JSONDocument {
    /// Maximum nesting of arrays and objects; deeper documents are rejected.
    public static let maxDepth = 256

    /// Validates `bytes` as one JSON value (RFC 8259) and calls `body` with its root.
    public static func parse<R>(
        _ bytes: UnsafeRawBufferPointer, _ body: (JSONValue) throws -> R
    ) throws -> R {
        guard let raw = bytes.baseAddress, bytes.count > 0 else {
            throw JSONSyntaxError(offset: 0, reason: "empty document")
        }
        let base = raw.assumingMemoryBound(to: UInt8.self)
        let count = bytes.count
        let words = (count + 63) / 64
        // Two bit masks per 64 bytes (on the stack for reviews of a few KB).
        return try withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 2 * words) { masks in
            StringMasks.fill(masks.baseAddress!, words: words, base: base, count: count)
            var validator = JSONValidator(base: base, count: count, masks: UnsafePointer(masks.baseAddress!))
            defer { validator.tape.deallocate() }
            let (start, end) = try validator.validateDocument()
            return try body(JSONValue(base: base, tape: validator.tape.base, start: start, end: end, ordinal: 0))
        }
    }

    /// Convenience for owned byte arrays.
    public static func parse<R>(_ bytes: [UInt8], _ body: (JSONValue) throws -> R) throws -> R {
        try bytes.withUnsafeBytes { try parse($0, body) }
    }
}

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
