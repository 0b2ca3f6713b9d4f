import Testing
@testable import PXGuardCore

/// A deliberately plain recursive-descent reading of RFC 8259, used only to hold
/// the fast validator to the grammar: same accept/reject decision, same tree.
struct ReferenceJSON {
    let b: [UInt8]
    var i = 0
    var depth = 0

    static func parse(_ bytes: [UInt8]) -> JSON? {
        var r = ReferenceJSON(b: bytes)
        r.ws()
        guard let v = r.value() else { return nil }
        r.ws()
        return r.i == bytes.count ? v : nil
    }

    mutating func ws() { while i < b.count, [0x20, 0x09, 0x0A, 0x0D].contains(b[i]) { i += 1 } }

    mutating func eat(_ c: Character) -> Bool {
        guard i < b.count, b[i] == c.asciiValue! else { return false }
        i += 1
        return true
    }

    mutating func value() -> JSON? {
        guard i < b.count else { return nil }
        switch b[i] {
        case UInt8(ascii: "{"):
            depth += 1
            defer { depth -= 1 }
            guard depth <= JSONDocument.maxDepth else { return nil }
            i += 1; ws()
            var members: [JSON.Member] = []
            if eat("}") { return .object(members) }
            while true {
                guard let k = string() else { return nil }
                ws()
                guard eat(":") else { return nil }
                ws()
                guard let v = value() else { return nil }
                members.append(JSON.Member(k, v))
                ws()
                if eat("}") { return .object(members) }
                guard eat(",") else { return nil }
                ws()
            }
        case UInt8(ascii: "["):
            depth += 1
            defer { depth -= 1 }
            guard depth <= JSONDocument.maxDepth else { return nil }
            i += 1; ws()
            var items: [JSON] = []
            if eat("]") { return .array(items) }
            while true {
                guard let v = value() else { return nil }
                items.append(v)
                ws()
                if eat("]") { return .array(items) }
                guard eat(",") else { return nil }
                ws()
            }
        case UInt8(ascii: "\""): return string().map(JSON.string)
        case UInt8(ascii: "t"): return word("true") ? .bool(true) : nil
        case UInt8(ascii: "f"): return word("false") ? .bool(false) : nil
        case UInt8(ascii: "n"): return word("null") ? .null : nil
        default: return number()
        }
    }

    mutating func word(_ w: String) -> Bool {
        let u = Array(w.utf8)
        guard i + u.count <= b.count, Array(b[i..<i + u.count]) == u else { return false }
        i += u.count
        return true
    }

    mutating func number() -> JSON? {
        let start = i
        func digits(_ r: inout ReferenceJSON) -> Int {
            let s = r.i
            while r.i < r.b.count, (0x30...0x39).contains(r.b[r.i]) { r.i += 1 }
            return r.i - s
        }
        _ = eat("-")
        if eat("0") {} else if digits(&self) == 0 { return nil }
        if eat("."), digits(&self) == 0 { return nil }
        if eat("e") || eat("E") {
            if !eat("+") { _ = eat("-") }
            if digits(&self) == 0 { return nil }
        }
        let text = String(decoding: b[start..<i], as: UTF8.self)
        return .number(Int(text).map(String.init) ?? text)
    }

    mutating func string() -> String? {
        guard eat("\"") else { return nil }
        var units: [UInt16] = []
        var raw: [UInt8] = []
        func flush() -> Bool {
            guard let s = String(validating: raw, as: UTF8.self) else { return false }
            units += Array(s.utf16)
            raw = []
            return true
        }
        while i < b.count {
            let c = b[i]
            i += 1
            switch c {
            case UInt8(ascii: "\""):
                guard flush() else { return nil }
                return String(decoding: units, as: UTF16.self)
            case 0..<0x20: return nil
            case UInt8(ascii: "\\"):
                guard flush(), i < b.count else { return nil }
                let e = b[i]
                i += 1
                let simple: [UInt8: UInt16] = [0x22: 0x22, 0x5C: 0x5C, 0x2F: 0x2F, 0x62: 8, 0x66: 12, 0x6E: 10, 0x72: 13, 0x74: 9]
                if let u = simple[e] {
                    units.append(u)
                } else if e == UInt8(ascii: "u"), i + 4 <= b.count,
                    let u = UInt16(String(decoding: b[i..<i + 4], as: UTF8.self), radix: 16),
                    b[i..<i + 4].allSatisfy({ JSONScanner.hexValue($0) != nil })
                {
                    units.append(u)
                    i += 4
                } else {
                    return nil
                }
            default: raw.append(c)
            }
        }
        return nil
    }
}

@Suite("JSON grammar against a reference reader")
struct JSONGrammarTests {
    /// Valid documents with random whitespace, then the same documents with one to
    /// three bytes inserted, deleted or replaced: the fast validator and the plain
    /// reference must agree on every one, and on the tree of every accepted one.
    @Test("4,000 generated and mutated documents")
    func differential() {
        var random = SeededGenerator(seed: 0x2545_F491_4F6C_DD1D)
        func next(_ bound: Int) -> Int { random.next(bound) }
        func space() -> String { ["", "", "", " ", "\n", "\t ", "\r\n  "][next(7)] }
        func scalar() -> String {
            ["0", "-1", "12.5e-3", "1E+9", "true", "false", "null", "\"\"", "\"plain text\"", "\"é\\u00e9\\n\\\"\"",
             "\"" + String(repeating: "y", count: next(90)) + "\"", "123456789012345678901234567890"][next(12)]
        }
        func value(_ depth: Int) -> String {
            switch depth > 4 ? 2 : next(3) {
            case 0:
                let members = (0..<next(5)).map { _ in
                    space() + "\"k\(next(9))\"" + space() + ":" + space() + value(depth + 1) + space()
                }
                return "{" + space() + members.joined(separator: ",") + "}"
            case 1:
                let items = (0..<next(5)).map { _ in space() + value(depth + 1) + space() }
                return "[" + space() + items.joined(separator: ",") + "]"
            default: return scalar()
            }
        }
        let noise: [UInt8] = Array("{}[]:,\"\\ \n0-.eE+tfnul\u{01}".utf8) + [0xC3, 0xA9, 0xFF]
        var mismatches: [String] = []
        var accepted = 0
        for round in 0..<4_000 {
            var bytes = Array((space() + value(0) + space()).utf8)
            if round % 4 != 0 {
                for _ in 0..<(1 + next(3)) {
                    let at = next(bytes.count + 1)
                    switch next(3) {
                    case 0: bytes.insert(noise[next(noise.count)], at: at)
                    case 1: if at < bytes.count { bytes.remove(at: at) }
                    default: if at < bytes.count { bytes[at] = noise[next(noise.count)] }
                    }
                }
            }
            let expected = ReferenceJSON.parse(bytes)
            let actual = try? JSONDocument.parse(bytes) { JSON($0) }
            if expected != nil { accepted += 1 }
            if expected != actual, mismatches.count < 5 {
                mismatches.append(String(decoding: bytes, as: UTF8.self))
            }
        }
        #expect(mismatches.isEmpty)
        // The mutations must leave both outcomes common, or the test proves little.
        #expect(accepted > 1_000 && accepted < 3_600)
    }

    @Test("nesting at the limit is accepted, one deeper is refused")
    func depthLimit() {
        let limit = JSONDocument.maxDepth
        for (depth, ok) in [(limit, true), (limit + 1, false)] {
            let text = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
            #expect(((try? JSONDocument.parse(Array(text.utf8)) { _ in }) != nil) == ok)
            #expect((ReferenceJSON.parse(Array(text.utf8)) != nil) == ok)
        }
    }
}
