public import PXGuardCore

/// Plain YAML scalars and JSON numbers read as kubectl reads them, so that `check`
/// judges what the cluster receives.
///
/// kubectl turns YAML into JSON with sigs.k8s.io/yaml, whose decoder is its fork of
/// go-yaml v2 (`goyaml.v2/resolve.go`). The rules taken from that resolver, not from
/// the YAML 1.1 spec where the two differ:
/// - exact words: `y Y yes Yes YES true True TRUE on On ON` are true, the `n`/`no`/
///   `false`/`off` spellings false, `"" ~ null Null NULL` null, `.nan`, `.inf`,
///   `+.inf`, `-.inf` (three spellings each) floats;
/// - the first character picks what else is tried: a digit or a sign: a timestamp
///   (`YYYY-…`, left a string here: no rule reads one), then, with every `_`
///   removed, Go's `strconv.ParseInt(s, 0, 64)` (sign; `0x`/`0X` hex, `0o`/`0O` and
///   a bare leading `0` octal, `0b`/`0B` binary, else decimal), then `ParseUint`,
///   then the float pattern `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
///   (so `09001`, not octal, is the float 9001), then `0b`/`-0b` binary; a `.`:
///   a float (`.5e3`, underscores not removed); anything else is a string.
///   Sexagesimal `1:30` (YAML 1.1's 90) is a string, as in go-yaml.
/// - then encoding/json writes a float: an integral value below 1e21 without a
///   fraction (`9001.0` and `9.001e3` become `9001`), and kubectl's own JSON
///   decoding does the same to a JSON manifest's numbers.
/// Integers beyond 64 bits and floats that overflow are not ports; they keep a
/// number (or, for an overflowing float, go-yaml's string) that no rule reads as one.
public enum KubectlScalar {
    /// A plain (or `!!`-tagged, see `YAMLNode.readsPlain`) scalar as kubectl's YAML
    /// reader resolves it.
    public static func resolve(_ text: String) -> JSON {
        switch classify(text) {
        case .null: return .null
        case .bool(let b): return .bool(b)
        case .int(let digits): return .number(digits)
        case .float(let value): return float(value, text)
        case .string: return .string(text)
        }
    }

    /// What go-yaml v2 resolves a plain scalar to.
    enum Resolved: Equatable {
        case null, string
        case bool(Bool)
        /// Decimal digits (with a `-` when negative).
        case int(String)
        case float(Double)
    }

    static let trueWords: Set<String> = ["y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"]
    static let falseWords: Set<String> = ["n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"]

    static func classify(_ text: String) -> Resolved {
        let bytes = Array(text.utf8)
        guard let first = bytes.first else { return .null }
        switch text {
        case "~", "null", "Null", "NULL": return .null
        case ".nan", ".NaN", ".NAN": return .float(.nan)
        case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF": return .float(.infinity)
        case "-.inf", "-.Inf", "-.INF": return .float(-.infinity)
        default: break
        }
        if trueWords.contains(text) { return .bool(true) }
        if falseWords.contains(text) { return .bool(false) }
        switch first {
        case UInt8(ascii: "."):
            return goFloat(bytes).map { .float($0) } ?? .string
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "+"), UInt8(ascii: "-"):
            if isTimestamp(bytes) { return .string }
            let plain = bytes.filter { $0 != UInt8(ascii: "_") }
            if let v = goParseInt(plain) { return .int(v) }
            if matchesYAMLFloat(plain), let d = goFloat(plain) { return .float(d) }
            if plain.starts(with: Array("0b".utf8)), let v = parseDigits(plain[2...], radix: 2, negative: false) { return .int(v) }
            if plain.starts(with: Array("-0b".utf8)), let v = parseDigits(plain[3...], radix: 2, negative: true) { return .int(v) }
            return .string
        default:
            return .string
        }
    }

    /// Go's `strconv.ParseInt(s, 0, 64)`, falling back to `ParseUint(s, 0, 64)`
    /// (no sign), as decimal digits. Past 64 bits go-yaml keeps a big integer; the
    /// value here is then its decimal form only when it was written in decimal.
    static func goParseInt(_ s: [UInt8]) -> String? {
        guard !s.isEmpty else { return nil }
        var body = s[...]
        var negative = false
        if body.first == UInt8(ascii: "+") || body.first == UInt8(ascii: "-") {
            negative = body.first == UInt8(ascii: "-")
            body = body.dropFirst()
        }
        guard let first = body.first else { return nil }
        var radix = 10
        if first == UInt8(ascii: "0") {
            let second = body.count >= 3 ? body[body.startIndex + 1] | 0x20 : 0
            switch second {
            case UInt8(ascii: "b"): radix = 2; body = body.dropFirst(2)
            case UInt8(ascii: "o"): radix = 8; body = body.dropFirst(2)
            case UInt8(ascii: "x"): radix = 16; body = body.dropFirst(2)
            default: radix = 8; body = body.dropFirst()
            }
        }
        return parseDigits(body, radix: radix, negative: negative)
    }

    /// Digits of `radix` (all of them valid, none at all is 0 only after a bare
    /// leading `0`, which the caller has consumed) as a decimal string.
    static func parseDigits(_ digits: ArraySlice<UInt8>, radix: Int, negative: Bool) -> String? {
        var value: UInt64 = 0
        var overflow = false
        for c in digits {
            let d: Int
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = Int(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): d = Int(c - UInt8(ascii: "a")) + 10
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): d = Int(c - UInt8(ascii: "A")) + 10
            default: return nil
            }
            guard d < radix else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: UInt64(radix))
            let (a, o2) = m.addingReportingOverflow(UInt64(d))
            if o1 || o2 { overflow = true }
            value = a
        }
        // `ParseInt(s[2:], 2, 64)` after a `0b` needs a digit; base 0 after a bare `0` does not.
        if digits.isEmpty && radix != 8 { return nil }
        if overflow || (negative && value > UInt64(Int64.max) + 1) {
            // Beyond 64 bits: go-yaml's big.Int. Decimal text is kept; another base
            // gets a number of the same sign that is no port either.
            guard radix == 10 else { return negative ? "-18446744073709551616" : "18446744073709551616" }
            let text = String(decoding: digits.drop { $0 == UInt8(ascii: "0") }, as: UTF8.self)
            return (negative ? "-" : "") + (text.isEmpty ? "0" : text)
        }
        if negative { return value == 0 ? "0" : "-" + String(value) }
        return String(value)
    }

    /// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`, go-yaml's float pattern.
    static func matchesYAMLFloat(_ s: [UInt8]) -> Bool {
        var i = 0
        func digits() -> Int {
            let start = i
            while i < s.count, s[i] >= UInt8(ascii: "0"), s[i] <= UInt8(ascii: "9") { i += 1 }
            return i - start
        }
        if i < s.count, s[i] == UInt8(ascii: "+") || s[i] == UInt8(ascii: "-") { i += 1 }
        if i < s.count, s[i] == UInt8(ascii: ".") {
            i += 1
            guard digits() > 0 else { return false }
        } else {
            guard digits() > 0 else { return false }
            if i < s.count, s[i] == UInt8(ascii: ".") { i += 1; _ = digits() }
        }
        if i < s.count, s[i] == UInt8(ascii: "e") || s[i] == UInt8(ascii: "E") {
            i += 1
            if i < s.count, s[i] == UInt8(ascii: "+") || s[i] == UInt8(ascii: "-") { i += 1 }
            guard digits() > 0 else { return false }
        }
        return i == s.count
    }

    /// Go's `strconv.ParseFloat(s, 64)` for the decimal forms go-yaml hands it
    /// (nil where it fails, overflow included: go-yaml then keeps a string).
    static func goFloat(_ s: [UInt8]) -> Double? {
        guard matchesYAMLFloat(s), let d = Double(String(decoding: s, as: UTF8.self)), d.isFinite else { return nil }
        return d
    }

    /// go-yaml's quick check before its timestamp layouts: four digits and a dash.
    /// Such a scalar is never a number (the integer and float forms have no dash
    /// after a digit), so it is left a string.
    static func isTimestamp(_ s: [UInt8]) -> Bool {
        s.count > 4 && s[4] == UInt8(ascii: "-") && s[..<4].allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    /// A float as encoding/json writes it: integral values below 1e21 without a
    /// fraction. NaN and infinities (which JSON cannot hold) stay the scalar's text.
    static func float(_ d: Double, _ text: String) -> JSON {
        guard d.isFinite else { return .string(text) }
        return .number(goJSON(d))
    }

    /// `json.Marshal(float64)`: the shortest representation, integral values below
    /// 1e21 as integers.
    static func goJSON(_ d: Double) -> String {
        if d == d.rounded(), abs(d) < 1e21 {
            if let i = Int64(exactly: d) { return String(i) }
            if let u = UInt64(exactly: d) { return String(u) }
            // 2^64 .. 1e21: exact integer digits of the double.
            var v = d, digits: [Character] = []
            while v >= 1 { let r = v.truncatingRemainder(dividingBy: 10); digits.append(Character(String(Int(r)))); v = (v - r) / 10 }
            return String(digits.reversed())
        }
        return String(d)
    }

    /// A JSON number's text as kubectl sends it: an integer when `ParseInt` reads
    /// it, else the float64 it decodes to, written by encoding/json.
    public static func jsonNumber(_ text: String) -> String {
        let bytes = Array(text.utf8)
        var body = bytes[...]
        let negative = body.first == UInt8(ascii: "-")
        if negative { body = body.dropFirst() }
        if !body.isEmpty, body.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let v = Int64(text)
        {
            return String(v)
        }
        guard let d = Double(text), d.isFinite else { return text }
        return goJSON(d)
    }

    /// `value` with every number rewritten by `jsonNumber`: a JSON manifest as
    /// kubectl sends it.
    public static func kubectlNumbers(_ value: JSON) -> JSON {
        switch value {
        case .number(let text): return .number(jsonNumber(text))
        case .array(let items): return .array(items.map(kubectlNumbers))
        case .object(let members): return .object(members.map { JSON.Member($0.key, kubectlNumbers($0.value)) })
        case .null, .bool, .string: return value
        }
    }
}
