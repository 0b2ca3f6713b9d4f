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

    var isNull: Bool { base[start] == UInt8(ascii: "n") }
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
    func stringEquals(_ text: StaticString) -> Bool {
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
    func forEachMember(_ body: (_ key: JSONValue, _ value: JSONValue) -> Void) {
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
    func forEachElement(_ body: (_ index: Int, _ value: JSONValue) -> Void) {
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

    /// Calls `body` for each element of an array, in order, until it returns false.
    func forEachElementWhile(_ body: (_ index: Int, _ value: JSONValue) -> Bool) {
        guard base[start] == UInt8(ascii: "[") else { return }
        var next = ordinal + 1
        var i = JSONScanner.skipWS(base, start &+ 1, end)
        if base[i] == UInt8(ascii: "]") { return }
        var index = 0
        while true {
            let value = child(at: i, next: &next)
            guard body(index, value) else { return }
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
    var isEmptyContainerOrNull: Bool {
        switch kind {
        case .null: return true
        case .array, .object: return JSONScanner.skipWS(base, start + 1, end) == end - 1
        default: return false
        }
    }

    /// The strings of an array of strings; other elements are skipped.
    var stringElements: [String] {
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
