import Foundation
import Testing
@testable import PXGuardCore
@testable import PXGuardYAML

/// A reference for kubectl's scalar reading, written separately from
/// `KubectlScalar` from the rules of sigs.k8s.io/yaml's goyaml.v2/resolve.go (go-yaml
/// v2.4.0) and Go's strconv, with regular expressions where the implementation walks
/// bytes: the resolve table's first-character hint, the word map, the timestamp quick
/// check, `_` removal, `ParseInt(s, 0, 64)`, the float pattern, `0b`/`-0b`, then
/// encoding/json's float output (integral below 1e21 as an integer).
enum GoYAMLReference {
    static func matches(_ pattern: String, _ s: String) -> Bool {
        s.range(of: pattern, options: .regularExpression) != nil
    }

    static func resolve(_ s: String) -> JSON {
        let words: [String: JSON] = [
            "y": true, "Y": true, "yes": true, "Yes": true, "YES": true, "true": true, "True": true, "TRUE": true,
            "on": true, "On": true, "ON": true, "n": false, "N": false, "no": false, "No": false, "NO": false,
            "false": false, "False": false, "FALSE": false, "off": false, "Off": false, "OFF": false,
            "": .null, "~": .null, "null": .null, "Null": .null, "NULL": .null,
        ]
        if let w = words[s] { return w }
        if [".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF"].contains(s) {
            return .string(s)  // not JSON numbers; no rule reads them as ports
        }
        guard let first = s.first else { return .null }
        if first == "." {
            return matches(#"^\.[0-9]+([eE][-+]?[0-9]+)?$"#, s) ? float(Double(s)!) : .string(s)
        }
        guard first.isASCII && (first.isNumber || first == "+" || first == "-") else { return .string(s) }
        if matches(#"^[0-9]{4}-"#, s) { return .string(s) }
        let plain = s.replacingOccurrences(of: "_", with: "")
        // strconv.ParseInt(plain, 0, 64) / ParseUint.
        let forms: [(String, Int, Int)] = [  // pattern, radix, prefix length after the sign
            (#"^[+-]?0[xX][0-9a-fA-F]+$"#, 16, 2), (#"^[+-]?0[oO][0-7]+$"#, 8, 2), (#"^[+-]?0[bB][01]+$"#, 2, 2),
            (#"^[+-]?0[0-7]*$"#, 8, 1), (#"^[+-]?[1-9][0-9]*$"#, 10, 0),
        ]
        for (pattern, radix, prefix) in forms where matches(pattern, plain) {
            let negative = plain.hasPrefix("-")
            let body = plain.drop { $0 == "+" || $0 == "-" }.dropFirst(prefix)
            let magnitude = body.isEmpty ? 0 : Int64(body, radix: radix)
            if let magnitude { return .number(String(negative ? -magnitude : magnitude)) }
            return .string("(beyond 64 bits, not generated)")
        }
        if matches(#"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$"#, plain), let d = Double(plain), d.isFinite {
            return float(d)
        }
        return .string(s)
    }

    static func float(_ d: Double) -> JSON {
        if d == d.rounded(), abs(d) < 1e21, let i = Int64(exactly: d) { return .number(String(i)) }
        return .number(String(d))
    }

    /// A JSON number as kubectl sends it: `ParseInt` succeeds, or the float64, marshalled.
    static func jsonNumber(_ s: String) -> String {
        if matches(#"^-?(0|[1-9][0-9]*)$"#, s), let i = Int64(s) { return String(i) }
        guard case .number(let n) = float(Double(s)!) else { return s }
        return n
    }
}

@Suite("check reads scalars as kubectl does (go-yaml v2, then JSON)")
struct ScalarResolutionTests {
    /// `port` written in one of the forms kubectl accepts (or nearly accepts).
    static func form(_ v: Int, _ rng: inout SystemRandomNumberGeneratorSeeded) -> String {
        func underscored(_ s: String) -> String {
            guard s.count > 1, rng.next(3) == 0 else { return s }
            var chars = Array(s)
            chars.insert("_", at: 1 + rng.next(chars.count - 1))
            return String(chars)
        }
        let hex = String(v, radix: 16)
        switch rng.next(22) {
        case 0: return String(v)
        case 1: return "+" + String(v)
        case 2: return "0" + String(v)                      // octal if every digit is < 8, else the float v
        case 3: return underscored("0" + String(v, radix: 8))
        case 4: return "0o" + String(v, radix: 8)
        case 5: return "0O" + String(v, radix: 8)
        case 6: return underscored("0x" + hex)
        case 7: return "0X" + hex.uppercased()
        case 8: return underscored("0b" + String(v, radix: 2))
        case 9: return "0B" + String(v, radix: 2)
        case 10: return underscored(String(v))
        case 11: return "\(v).0"
        case 12: return "\(v)."
        case 13: return "\(v)e0"
        case 14: return "\(v * 100)e-2"
        case 15: return "\(Double(v) / 1000)e3"
        case 16: return "+\(v).00"
        case 17: return "\(v).5"
        case 18: return "_" + String(v)                      // a string: `_` is no number's first character
        case 19: return ["1:30", "0x", "0o", "0b", "9001a", "0b102", "0o9", "1e400", "~", "yes", "On", "2026-12-07", ".5e4"][rng.next(13)]
        case 20: return "-0b" + String(v, radix: 2)
        default: return String(v) + "_"
        }
    }

    @Test("10,000 ports in every form resolve as the reference written from go-yaml v2's rules")
    func property() throws {
        var rng = SystemRandomNumberGeneratorSeeded(seed: 23)
        var failures = 0
        var numbers = 0
        for _ in 0..<10_000 where failures < 10 {
            let v = rng.next(4) == 0 ? rng.next(65_536) : 9_000 + rng.next(24)
            let text = Self.form(v, &rng)
            let doc = try #require(try YAMLReader.documents(Array("port: \(text)\n".utf8), file: "t.yaml").first)
            let got = doc.json["port"]
            let expected = GoYAMLReference.resolve(text)
            if case .number = expected { numbers += 1 }
            if got != expected { failures += 1 }
            #expect(got == expected, "port: \(text) read as \(got?.serialized ?? "nothing"), reference \(expected.serialized)")
        }
        #expect(numbers > 7_000, "\(numbers) numbers")
    }

    @Test("the issue's forms: octal 021451, hex, underscores, integral floats are 9001; sexagesimal stays a string",
          arguments: [("021451", "9001"), ("0x2329", "9001"), ("9_001", "9001"), ("9001.0", "9001"), ("9.001e3", "9001"),
                      ("0o21451", "9001"), ("0b10001100101001", "9001"), ("+9001", "9001"), ("09001", "9001"),
                      ("1:30", "\"1:30\""), ("yes", "true"), ("off", "false"), ("9001.5", "9001.5")])
    func issueForms(_ text: String, _ json: String) throws {
        let doc = try #require(try YAMLReader.documents(Array("port: \(text)\n".utf8), file: "t.yaml").first)
        #expect(doc.json["port"]?.serialized == json)
    }

    @Test("JSON numbers by value, as kubectl sends them", arguments: [
        "9001", "9001.0", "9.001e3", "9001E0", "90010e-1", "900100E-2", "-0", "0.5", "1e21", "123456789012345678", "9001.25",
    ])
    func jsonNumbers(_ text: String) {
        #expect(KubectlScalar.jsonNumber(text) == GoYAMLReference.jsonNumber(text), "\(text)")
    }
}

/// A seeded generator for the property (the same inputs on every run).
struct SystemRandomNumberGeneratorSeeded: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state
    }
    mutating func next(_ bound: Int) -> Int { Int((next() >> 33) % UInt64(bound)) }
}
