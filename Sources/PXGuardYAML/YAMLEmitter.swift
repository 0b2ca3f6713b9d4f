import CYAML
public import PXGuardCore

/// Writes JSON trees as block-style YAML for `kubectl apply`, through libyaml's
/// emitter: it picks the chomping indicator of block scalars (`|`, `|-`, `|+`), the
/// indentation indicator for text that starts with a space, and falls back to a
/// quoted style whenever a requested one cannot hold the text. pxguard only chooses
/// styles: strings a YAML 1.1 reader could take for anything else (numbers,
/// booleans, null, special characters) are double-quoted, multi-line text is
/// literal, and empty containers are `{}` / `[]`, so the output reads back exactly.
public enum YAMLEmitter {
    /// A multi-document stream, each document starting with `---`.
    public static func documents(_ docs: [JSON]) -> String {
        emitStream(docs, explicitStart: true)
    }

    /// One document without a `---` line.
    public static func emit(_ value: JSON) -> String {
        emitStream([value], explicitStart: false)
    }

    /// Collects the emitter's output.
    final class Sink {
        var bytes: [UInt8] = []
    }

    static func emitStream(_ docs: [JSON], explicitStart: Bool) -> String {
        var emitter = yaml_emitter_t()
        guard yaml_emitter_initialize(&emitter) == 1 else { return "" }
        defer { yaml_emitter_delete(&emitter) }
        let sink = Sink()
        let context = Unmanaged.passUnretained(sink).toOpaque()
        yaml_emitter_set_output(&emitter, { data, buffer, size in
            guard let data, let buffer else { return 0 }
            Unmanaged<Sink>.fromOpaque(data).takeUnretainedValue().bytes
                .append(contentsOf: UnsafeBufferPointer(start: buffer, count: size))
            return 1
        }, context)
        yaml_emitter_set_unicode(&emitter, 1)
        yaml_emitter_set_indent(&emitter, 2)
        // No folding: long strings (messages, base64 CA bundles) stay on one line.
        yaml_emitter_set_width(&emitter, -1)
        yaml_emitter_set_break(&emitter, YAML_LN_BREAK)

        var ok = true
        func emit(_ make: (UnsafeMutablePointer<yaml_event_t>) -> Int32) {
            guard ok else { return }
            var event = yaml_event_t()
            // The emitter takes ownership of the event, also on failure.
            ok = make(&event) == 1 && yaml_emitter_emit(&emitter, &event) == 1
        }
        emit { yaml_stream_start_event_initialize($0, YAML_UTF8_ENCODING) }
        for doc in docs {
            emit { yaml_document_start_event_initialize($0, nil, nil, nil, explicitStart ? 0 : 1) }
            write(doc, emit)
            emit { yaml_document_end_event_initialize($0, 1) }
        }
        emit { yaml_stream_end_event_initialize($0) }
        if ok { ok = yaml_emitter_flush(&emitter) == 1 }
        withExtendedLifetime(sink) {}
        precondition(ok, "libyaml refused to emit: \(emitter.problem.map { String(cString: $0) } ?? "unknown problem")")
        return String(decoding: sink.bytes, as: UTF8.self)
    }

    static func write(_ value: JSON, _ emit: ((UnsafeMutablePointer<yaml_event_t>) -> Int32) -> Void) {
        switch value {
        case .object(let members):
            let style = members.isEmpty ? YAML_FLOW_MAPPING_STYLE : YAML_BLOCK_MAPPING_STYLE
            emit { yaml_mapping_start_event_initialize($0, nil, nil, 1, style) }
            for member in members {
                scalar(member.key, style: isPlainSafe(member.key) ? YAML_PLAIN_SCALAR_STYLE : YAML_DOUBLE_QUOTED_SCALAR_STYLE, emit)
                write(member.value, emit)
            }
            emit { yaml_mapping_end_event_initialize($0) }
        case .array(let items):
            let style = items.isEmpty ? YAML_FLOW_SEQUENCE_STYLE : YAML_BLOCK_SEQUENCE_STYLE
            emit { yaml_sequence_start_event_initialize($0, nil, nil, 1, style) }
            for item in items { write(item, emit) }
            emit { yaml_sequence_end_event_initialize($0) }
        case .null:
            scalar("null", style: YAML_PLAIN_SCALAR_STYLE, emit)
        case .bool(let b):
            scalar(b ? "true" : "false", style: YAML_PLAIN_SCALAR_STYLE, emit)
        case .number(let n):
            scalar(n, style: YAML_PLAIN_SCALAR_STYLE, emit)
        case .string(let s):
            let style: yaml_scalar_style_t
            if isPlainSafe(s) {
                style = YAML_PLAIN_SCALAR_STYLE
            } else if s.contains("\n") {
                style = YAML_LITERAL_SCALAR_STYLE
            } else {
                style = YAML_DOUBLE_QUOTED_SCALAR_STYLE
            }
            scalar(s, style: style, emit)
        }
    }

    /// A scalar event. `plain_implicit` is set only for the plain style, so libyaml
    /// quotes anything it would not read back as this same string.
    static func scalar(_ text: String, style: yaml_scalar_style_t, _ emit: ((UnsafeMutablePointer<yaml_event_t>) -> Int32) -> Void) {
        // libyaml copies the value; the terminator keeps the buffer non-empty, so
        // even "" has a valid pointer.
        var bytes = Array(text.utf8) + [0]
        let length = Int32(bytes.count - 1)
        bytes.withUnsafeMutableBufferPointer { buffer in
            emit { yaml_scalar_event_initialize($0, nil, nil, buffer.baseAddress, length,
                                                style == YAML_PLAIN_SCALAR_STYLE ? 1 : 0, 1, style) }
        }
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
