import PXGuardBytes

/// Writes JSON trees as block-style YAML for `kubectl apply`. Strings that a YAML
/// reader could take for anything else (numbers, booleans, null, special
/// characters) are double-quoted, so the output reads back exactly.
public enum YAMLEmitter {
    /// A multi-document stream, each document starting with `---`.
    public static func documents(_ docs: [JSON]) -> String {
        docs.map { "---\n" + emit($0) }.joined()
    }

    public static func emit(_ value: JSON) -> String {
        var out = ""
        write(value, indent: 0, into: &out)
        return out
    }

    static func write(_ value: JSON, indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        switch value {
        case .object(let members) where !members.isEmpty:
            for m in members {
                out += pad + key(m.key) + ":"
                writeNested(m.value, indent: indent, into: &out)
            }
        case .array(let items) where !items.isEmpty:
            for item in items {
                out += pad + "-"
                switch item {
                case .object(let members) where !members.isEmpty:
                    // First member on the dash line, the rest aligned under it.
                    var first = ""
                    write(item, indent: indent + 2, into: &first)
                    out += " " + first.dropFirst(indent + 2)
                case .array(let inner) where !inner.isEmpty:
                    out += "\n"
                    write(item, indent: indent + 2, into: &out)
                default:
                    out += " " + scalar(item) + "\n"
                }
            }
        default:
            out += pad + scalar(value) + "\n"
        }
    }

    static func writeNested(_ value: JSON, indent: Int, into out: inout String) {
        switch value {
        case .object(let m) where !m.isEmpty:
            out += "\n"
            write(value, indent: indent + 2, into: &out)
        case .array(let a) where !a.isEmpty:
            out += "\n"
            write(value, indent: indent, into: &out)
        default:
            if case .string(let s) = value, s.contains("\n") {
                out += " |\n"
                let pad = String(repeating: " ", count: indent + 2)
                for line in s.split(separator: "\n", omittingEmptySubsequences: false).dropLast(s.hasSuffix("\n") ? 1 : 0) {
                    out += line.isEmpty ? "\n" : pad + line + "\n"
                }
            } else {
                out += " " + scalar(value) + "\n"
            }
        }
    }

    static func key(_ k: String) -> String { isPlainSafe(k) ? k : quote(k) }

    static func scalar(_ value: JSON) -> String {
        switch value {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let n): return n
        case .string(let s): return isPlainSafe(s) ? s : quote(s)
        case .array: return "[]"
        case .object: return "{}"
        }
    }

    static func quote(_ s: String) -> String {
        var bytes: [UInt8] = []
        JSONWriter.appendString(s, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Plain only for simple words that YAML 1.1 and 1.2 both read as strings.
    static func isPlainSafe(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, first.properties.isAlphabetic || ("0"..."9").contains(first) || first == "/"
        else { return false }
        guard !s.hasSuffix(":") else { return false }
        for c in s.unicodeScalars {
            switch c {
            case "a"..."z", "A"..."Z", "0"..."9", ".", "_", "-", "/", ":": continue
            default: return false
            }
        }
        let lowered = s.lowercased()
        if ["true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"].contains(lowered) { return false }
        if Double(s) != nil || Int(s) != nil { return false }
        if lowered.hasPrefix("0x") || lowered.hasPrefix("0o") { return false }
        // Things like 1e3, 1_000 or 12:30 (sexagesimal in YAML 1.1) stay quoted.
        if s.allSatisfy({ $0.isNumber || "eE._:+-".contains($0) }) { return false }
        return true
    }
}
