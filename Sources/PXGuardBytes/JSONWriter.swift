/// Helpers for writing JSON text straight into byte buffers: the one JSON string
/// escaper, used by responses, rendering and the log.
public enum JSONWriter {
    static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    /// Appends `s` as a quoted JSON string, escaping what RFC 8259 requires.
    public static func appendString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { bytes in
            // Runs of bytes that need no escape are copied whole.
            var run = 0
            for (i, c) in bytes.enumerated() where c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") || c < 0x20 {
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run..<i]))
                run = i + 1
                appendEscape(c, to: &out)
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run...]))
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Appends `s` as a quoted JSON string whose content (between the quotes) takes at
    /// most `limit` bytes. A longer string is cut at a character boundary and ends in
    /// `marker`, which must be plain ASCII needing no escape. Returns whether it was cut.
    /// Costs O(limit), whatever the length of `s`.
    @discardableResult
    public static func appendString(_ s: String, to out: inout [UInt8], limit: Int, marker: String) -> Bool {
        out.append(UInt8(ascii: "\""))
        let start = out.count
        // Where the content stops if it turns out to need the marker.
        let markedBudget = max(0, limit - marker.utf8.count)
        var cut: Int?
        for scalar in s.unicodeScalars {
            let before = out.count
            if scalar.isASCII {
                let c = UInt8(scalar.value)
                if c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") || c < 0x20 { appendEscape(c, to: &out) } else { out.append(c) }
            } else {
                UTF8.encode(scalar) { out.append($0) }
            }
            if cut == nil && out.count - start > markedBudget { cut = before }
            if out.count - start > limit {
                out.removeSubrange(cut!...)
                out.append(contentsOf: marker.utf8)
                out.append(UInt8(ascii: "\""))
                return true
            }
        }
        out.append(UInt8(ascii: "\""))
        return false
    }

    /// The escape for a quote, a backslash or a control character.
    @inline(__always)
    static func appendEscape(_ c: UInt8, to out: inout [UInt8]) {
        switch c {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\")); out.append(c)
        case 0x0A: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "n"))
        case 0x0D: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "r"))
        case 0x09: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "t"))
        default:
            out.append(contentsOf: "\\u00".utf8)
            out.append(hex[Int(c >> 4)])
            out.append(hex[Int(c & 0xF)])
        }
    }
}
