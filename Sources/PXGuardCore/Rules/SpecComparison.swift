/// Comparisons of request values that never copy them: R3 and R4 compare specs of
/// up to the body limit, so they walk the views in the request body instead of
/// building owned trees (an 8 MiB spec copied into `JSON` costs 30 times its size).
extension JSONValue {
    /// True when both values are the same token sequence: byte for byte, apart from
    /// whitespace between tokens. Equal tokens are equal values to any JSON reader,
    /// so "equal" is never wrong; a value written differently (reordered members,
    /// `1.0` for `1`) only reads as different.
    func tokensEqual(_ other: JSONValue) -> Bool {
        var i = start, j = other.start
        let a = base, b = other.base
        var inString = false
        while true {
            if !inString {
                while i < end && JSONScanner.isWS(a[i]) { i += 1 }
                while j < other.end && JSONScanner.isWS(b[j]) { j += 1 }
            }
            if i == end || j == other.end { return i == end && j == other.end }
            let c = a[i]
            guard c == b[j] else { return false }
            if inString {
                if c == UInt8(ascii: "\\") {
                    // The escaped byte is compared as is, whatever it is.
                    i += 1; j += 1
                    guard i < end, j < other.end, a[i] == b[j] else { return false }
                } else if c == UInt8(ascii: "\"") {
                    inString = false
                }
            } else if c == UInt8(ascii: "\"") {
                inString = true
            }
            i += 1; j += 1
        }
    }

    /// True when the value, normalised as `JSON.normalized` does (nulls, `[]` and
    /// `{}` dropped from objects, member order ignored), equals `normalized`, which
    /// must itself be normalised. Walks the view once; allocates nothing for
    /// member names and strings without escapes. A repeated member name never
    /// matches (Go's decoder would keep the last; a canonical spec has neither).
    func equalsNormalized(_ normalized: JSON) -> Bool {
        switch normalized {
        case .null: return kind == .null
        case .bool(let b): return bool == b
        case .number(let text):
            guard kind == .number else { return false }
            if let n = int { return String(n) == text }
            return String(decoding: bytes, as: UTF8.self) == text
        case .string(let s): return stringEquals(dynamic: s)
        case .array(let items):
            guard kind == .array else { return false }
            var ok = true
            var count = 0
            forEachElement { index, element in
                guard ok else { return }
                count += 1
                ok = index < items.count && element.equalsNormalized(items[index])
            }
            return ok && count == items.count
        case .object(let members):
            guard kind == .object else { return false }
            var seen = [Bool](repeating: false, count: members.count)
            var ok = true
            forEachMember { key, value in
                guard ok else { return }
                if value.isNormalizedEmpty { return }
                guard let index = members.firstIndex(where: { key.stringEquals(dynamic: $0.key) }), !seen[index] else {
                    ok = false
                    return
                }
                seen[index] = true
                ok = value.equalsNormalized(members[index].value)
            }
            return ok && !seen.contains(false)
        }
    }

    /// True when normalising drops this value from its object: null, `[]`, or an
    /// object whose members all normalise away.
    var isNormalizedEmpty: Bool {
        switch kind {
        case .null: return true
        case .array: return isEmptyContainerOrNull
        case .object:
            var empty = true
            forEachMember { _, v in if empty && !v.isNormalizedEmpty { empty = false } }
            return empty
        default: return false
        }
    }

    /// `stringEquals` for a text known only at run time.
    func stringEquals(dynamic text: String) -> Bool {
        guard kind == .string else { return false }
        var text = text
        return text.withUTF8 { t in
            guard let p = t.baseAddress else { return string == "" }
            return JSONScanner.rawStringEquals(base, start, end, p, t.count) ?? (string == String(decoding: t, as: UTF8.self))
        }
    }
}
