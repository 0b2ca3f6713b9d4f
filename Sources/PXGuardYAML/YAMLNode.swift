import CYAML
public import PXGuardCore

/// A YAML node with the position it was read from (1-based line and column).
public struct YAMLNode: Sendable {
    public enum Value: Sendable {
        /// A scalar's text; `plain` is false for quoted and block scalars, which
        /// are always strings.
        case scalar(String, plain: Bool)
        case sequence([YAMLNode])
        case mapping([(key: YAMLNode, value: YAMLNode)])
    }

    public let value: Value
    public let line: Int
    public let column: Int

    public var scalar: String? {
        if case .scalar(let s, _) = value { return s }
        return nil
    }

    /// What the node is, for error messages.
    public var typeName: String {
        switch value {
        case .scalar: return "a scalar"
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        }
    }

    /// The node as JSON, resolving plain scalars the way Kubernetes' YAML reader
    /// (go-yaml, YAML 1.1 rules) does: null, booleans, integers, floats.
    public var json: JSON {
        switch value {
        case .scalar(let text, let plain):
            return plain ? Self.resolvePlain(text) : .string(text)
        case .sequence(let items):
            return .array(items.map(\.json))
        case .mapping(let pairs):
            return .object(pairs.map { JSON.Member($0.key.scalar ?? $0.key.json.serialized, $0.value.json) })
        }
    }

    static func resolvePlain(_ text: String) -> JSON {
        switch text {
        case "", "~", "null", "Null", "NULL": return .null
        case "true", "True", "TRUE", "y", "Y", "yes", "Yes", "YES", "on", "On", "ON": return .bool(true)
        case "false", "False", "FALSE", "n", "N", "no", "No", "NO", "off", "Off", "OFF": return .bool(false)
        default: break
        }
        var digits = Substring(text)
        if digits.first == "-" || digits.first == "+" { digits = digits.dropFirst() }
        if !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let v = Int(text) {
            return .int(v)
        }
        if digits.hasPrefix("0x"), let v = Int(digits.dropFirst(2), radix: 16) {
            return .int(text.hasPrefix("-") ? -v : v)
        }
        if let d = Double(text), text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }),
            text.allSatisfy({ "0123456789.eE+-".contains($0) })
        {
            return .number(d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : String(d))
        }
        return .string(text)
    }
}

/// A YAML syntax or structure error, located.
public struct YAMLError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let line: Int
    public let column: Int
    public let message: String
    public init(file: String, line: Int, column: Int, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }
    public var description: String { "\(file):\(line):\(column): \(message)" }
}

/// Reads YAML streams with libyaml's event API into `YAMLNode` trees.
public enum YAMLReader {
    /// Aliases may not expand a document past this many nodes ("billion laughs").
    public static let maxNodes = 1_000_000

    /// Parses every document of a stream. libyaml does not copy its input, so the
    /// bytes are kept alive for the whole parse.
    public static func documents(_ bytes: [UInt8], file: String) throws -> [YAMLNode] {
        let (documents, error) = documentsUntilError(bytes, file: file)
        if let error { throw error }
        return documents
    }

    /// Every complete document before the first error, and that error: `check`
    /// still judges the documents of a stream that breaks further down, as kubectl
    /// applies them.
    public static func documentsUntilError(_ bytes: [UInt8], file: String) -> (documents: [YAMLNode], error: YAMLError?) {
        var builder = Builder(file: file)
        do {
            try parse(bytes, file: file, into: &builder)
            return (builder.documents, nil)
        } catch let error as YAMLError {
            return (builder.documents, error)
        } catch {
            return (builder.documents, YAMLError(file: file, line: 0, column: 0, message: "\(error)"))
        }
    }

    static func parse(_ bytes: [UInt8], file: String, into builder: inout Builder) throws {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            throw YAMLError(file: file, line: 0, column: 0, message: "cannot initialise the YAML parser")
        }
        defer { yaml_parser_delete(&parser) }
        try bytes.withUnsafeBufferPointer { input in
            yaml_parser_set_input_string(&parser, input.baseAddress, input.count)
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else {
                    let problem = parser.problem.map { String(cString: $0) } ?? "invalid YAML"
                    let context = parser.context.map { String(cString: $0) + ": " } ?? ""
                    throw YAMLError(file: file, line: Int(parser.problem_mark.line) + 1,
                                    column: Int(parser.problem_mark.column) + 1, message: "\(context)\(problem)")
                }
                defer { yaml_event_delete(&event) }
                if event.type == YAML_STREAM_END_EVENT { break }
                try builder.handle(&event)
            }
        }
    }

    struct Builder {
        enum Frame {
            case sequence(line: Int, column: Int, anchor: String?, items: [YAMLNode])
            case mapping(line: Int, column: Int, anchor: String?, pairs: [(key: YAMLNode, value: YAMLNode)], pendingKey: YAMLNode?)
        }

        let file: String
        var stack: [Frame] = []
        var documents: [YAMLNode] = []
        var anchors: [String: YAMLNode] = [:]
        var nodeCount = 0

        init(file: String) { self.file = file }

        static func string(_ p: UnsafeMutablePointer<yaml_char_t>?) -> String? {
            p.map { String(cString: UnsafePointer($0)) }
        }

        mutating func handle(_ event: inout yaml_event_t) throws {
            let line = Int(event.start_mark.line) + 1
            let column = Int(event.start_mark.column) + 1
            switch event.type {
            case YAML_SCALAR_EVENT:
                let s = event.data.scalar
                let text = String(decoding: UnsafeBufferPointer(start: s.value, count: s.length), as: UTF8.self)
                let node = YAMLNode(value: .scalar(text, plain: s.style == YAML_PLAIN_SCALAR_STYLE && s.plain_implicit == 1),
                                    line: line, column: column)
                if let anchor = Self.string(s.anchor) { anchors[anchor] = node }
                try add(node)
            case YAML_SEQUENCE_START_EVENT:
                stack.append(.sequence(line: line, column: column, anchor: Self.string(event.data.sequence_start.anchor), items: []))
            case YAML_MAPPING_START_EVENT:
                stack.append(.mapping(line: line, column: column, anchor: Self.string(event.data.mapping_start.anchor),
                                      pairs: [], pendingKey: nil))
            case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                guard let frame = stack.popLast() else { return }
                let node: YAMLNode
                let anchor: String?
                switch frame {
                case .sequence(let l, let c, let a, let items):
                    node = YAMLNode(value: .sequence(items), line: l, column: c)
                    anchor = a
                case .mapping(let l, let c, let a, let pairs, _):
                    try refuseDuplicateKeys(pairs)
                    node = YAMLNode(value: .mapping(pairs), line: l, column: c)
                    anchor = a
                }
                if let anchor { anchors[anchor] = node }
                try add(node)
            case YAML_ALIAS_EVENT:
                let name = Self.string(event.data.alias.anchor) ?? ""
                guard let target = anchors[name] else {
                    throw YAMLError(file: file, line: line, column: column, message: "unknown alias *\(name)")
                }
                nodeCount += Self.size(target)
                try add(target)
            default:
                break
            }
        }

        /// A repeated key is refused, as kubectl does: silently keeping the last
        /// one would let an edit of the first go unnoticed.
        func refuseDuplicateKeys(_ pairs: [(key: YAMLNode, value: YAMLNode)]) throws {
            var seen: [String: Int] = [:]
            for (key, _) in pairs {
                guard let name = key.scalar else { continue }
                if let first = seen.updateValue(key.line, forKey: name) {
                    throw YAMLError(file: file, line: key.line, column: key.column,
                                    message: "duplicate key \"\(name)\" (first defined on line \(first)); keep one")
                }
            }
        }

        static func size(_ node: YAMLNode) -> Int {
            switch node.value {
            case .scalar: return 1
            case .sequence(let items): return 1 + items.reduce(0) { $0 + size($1) }
            case .mapping(let pairs): return 1 + pairs.reduce(0) { $0 + size($1.key) + size($1.value) }
            }
        }

        mutating func add(_ node: YAMLNode) throws {
            nodeCount += 1
            if nodeCount > YAMLReader.maxNodes {
                throw YAMLError(file: file, line: node.line, column: node.column,
                                message: "document expands to more than \(YAMLReader.maxNodes) nodes (alias bomb?)")
            }
            guard let top = stack.popLast() else {
                documents.append(node)
                return
            }
            switch top {
            case .sequence(let l, let c, let a, var items):
                items.append(node)
                stack.append(.sequence(line: l, column: c, anchor: a, items: items))
            case .mapping(let l, let c, let a, var pairs, let pendingKey):
                if let key = pendingKey {
                    pairs.append((key, node))
                    stack.append(.mapping(line: l, column: c, anchor: a, pairs: pairs, pendingKey: nil))
                } else {
                    stack.append(.mapping(line: l, column: c, anchor: a, pairs: pairs, pendingKey: node))
                }
            }
        }
    }
}
