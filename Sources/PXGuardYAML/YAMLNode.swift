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
    var typeName: String {
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

    /// A plain scalar as kubectl's go-yaml v2 resolves it (see `KubectlScalar`).
    static func resolvePlain(_ text: String) -> JSON { KubectlScalar.resolve(text) }
}

extension YAMLNode {
    /// A plain scalar read as an integer the way go-yaml v2 resolves `!!int`.
    static func integer(_ text: String) -> Int? {
        guard case .int(let digits) = KubectlScalar.classify(text) else { return nil }
        return Int(digits)
    }

    static let tagPrefix = "tag:yaml.org,2002:"

    /// Whether a scalar with an explicit tag reads as a plain scalar (resolved to
    /// its type) or as a string, as go-yaml (kubectl's reader) decodes it: `!!bool`,
    /// `!!int`, `!!float` and `!!null` resolve the text, quoted or not, and refuse text
    /// of another type; `!!str`, the non-specific `!` and tags go-yaml does not
    /// resolve leave the text a string. Nil when the text does not fit the tag.
    static func readsPlain(tag: String, text: String) -> Bool? {
        guard tag.hasPrefix(tagPrefix) else { return false }
        let resolved = resolvePlain(text)
        switch tag.dropFirst(tagPrefix.count) {
        case "bool":
            if case .bool = resolved { return true }
            return nil
        case "null":
            return resolved == .null ? true : nil
        case "int":
            return integer(text) != nil ? true : nil
        case "float":
            // go-yaml widens an integer to a float.
            if case .number = resolved { return true }
            return nil
        case "merge":
            return text == "<<" ? true : nil
        default:
            return false
        }
    }

    /// True for the merge key `<<` (plain, or tagged `!!merge`).
    var isMergeKey: Bool {
        if case .scalar("<<", plain: true) = value { return true }
        return false
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
    static let maxNodes = 1_000_000
    /// Collections may nest this deep. Configuration nests about 4 levels and the
    /// deepest Kubernetes manifests (CRD schemas) a few dozen; the cap keeps every
    /// recursive walk of a tree, and its release, far from the thread's stack limit.
    public static let maxDepth = 128

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

    /// Builds trees from libyaml events in time linear in the input: frames are
    /// mutated in place (never copied per item), and nesting is capped at
    /// `maxDepth`, which also bounds every recursive walk and the release of a tree.
    struct Builder {
        enum Kind { case sequence, mapping }

        /// An open collection. `height` and `nodes` describe what it holds so far, so an
        /// alias to it can be checked against the limits without walking it.
        struct Frame {
            let kind: Kind
            let line: Int
            let column: Int
            let anchor: String?
            var items: [YAMLNode] = []
            var pairs: [(key: YAMLNode, value: YAMLNode)] = []
            var pendingKey: YAMLNode?
            var height = 1
            var nodes = 1
        }

        /// A finished node with its height (1 for a scalar) and node count.
        struct Built {
            let node: YAMLNode
            let height: Int
            let nodes: Int
        }

        let file: String
        var stack: [Frame] = []
        var documents: [YAMLNode] = []
        var anchors: [String: Built] = [:]
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
                var plain = s.style == YAML_PLAIN_SCALAR_STYLE && s.plain_implicit == 1
                if let tag = Self.string(s.tag) {
                    guard let tagged = YAMLNode.readsPlain(tag: tag, text: text) else {
                        let short = tag.hasPrefix(YAMLNode.tagPrefix) ? "!!" + tag.dropFirst(YAMLNode.tagPrefix.count) : tag
                        throw YAMLError(file: file, line: line, column: column,
                                        message: "cannot decode \"\(text)\" as \(short); write a value of that type or drop the tag")
                    }
                    plain = tagged
                }
                let node = YAMLNode(value: .scalar(text, plain: plain), line: line, column: column)
                let built = Built(node: node, height: 1, nodes: 1)
                if let anchor = Self.string(s.anchor) { anchors[anchor] = built }
                try add(built)
            case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                // Checked before libyaml reads further in: its flow-level bookkeeping is
                // quadratic in depth, so a shallow cap keeps it linear as well.
                guard stack.count < YAMLReader.maxDepth else {
                    throw YAMLError(file: file, line: line, column: column,
                                    message: "nesting deeper than \(YAMLReader.maxDepth) levels; flatten the document")
                }
                let isSequence = event.type == YAML_SEQUENCE_START_EVENT
                let anchor = isSequence ? event.data.sequence_start.anchor : event.data.mapping_start.anchor
                stack.append(Frame(kind: isSequence ? .sequence : .mapping, line: line, column: column,
                                   anchor: Self.string(anchor)))
            case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                guard let frame = stack.popLast() else { return }
                let node: YAMLNode
                switch frame.kind {
                case .sequence:
                    node = YAMLNode(value: .sequence(frame.items), line: frame.line, column: frame.column)
                case .mapping:
                    try refuseDuplicateKeys(frame.pairs)
                    node = YAMLNode(value: .mapping(try merged(frame.pairs)), line: frame.line, column: frame.column)
                }
                let built = Built(node: node, height: frame.height, nodes: frame.nodes)
                if let anchor = frame.anchor { anchors[anchor] = built }
                try add(built)
            case YAML_ALIAS_EVENT:
                let name = Self.string(event.data.alias.anchor) ?? ""
                guard let target = anchors[name] else {
                    throw YAMLError(file: file, line: line, column: column, message: "unknown alias *\(name)")
                }
                // An alias repeats its target: it counts as deep and as large as the target.
                if stack.count + target.height > YAMLReader.maxDepth {
                    throw YAMLError(file: file, line: line, column: column,
                                    message: "alias *\(name) nests deeper than \(YAMLReader.maxDepth) levels; flatten the document")
                }
                nodeCount += target.nodes - 1
                try add(Built(node: target.node, height: target.height, nodes: target.nodes))
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

        /// A mapping's pairs with its merge key (`<<`) replaced by the pairs it merges
        /// (YAML 1.1 merge, as kubectl's reader does it): a key written in the mapping
        /// wins over a merged one, and of a list of mappings the earlier ones win.
        /// A key written *before* the `<<` that the merge also sets is refused: go-yaml
        /// v2 (kubectl) lets the merge overwrite it and YAML 1.1 keeps it, so the
        /// cluster could see another value than `check` judged.
        func merged(_ pairs: [(key: YAMLNode, value: YAMLNode)]) throws -> [(key: YAMLNode, value: YAMLNode)] {
            guard let at = pairs.firstIndex(where: { $0.key.isMergeKey }) else { return pairs }
            let mergeKey = pairs[at].key
            let value = pairs[at].value
            var sources: [[(key: YAMLNode, value: YAMLNode)]] = []
            switch value.value {
            case .mapping(let p):
                sources = [p]
            case .sequence(let items):
                for item in items {
                    guard case .mapping(let p) = item.value else {
                        throw YAMLError(file: file, line: item.line, column: item.column,
                                        message: "the merge key << takes a mapping or a list of mappings, not \(item.typeName)")
                    }
                    sources.append(p)
                }
            case .scalar:
                throw YAMLError(file: file, line: value.line, column: value.column,
                                message: "the merge key << takes a mapping or a list of mappings, not \(value.typeName)")
            }
            var explicit: [String: Int] = [:]
            for (i, pair) in pairs.enumerated() where i != at {
                if let name = pair.key.scalar { explicit[name] = i }
            }
            var seen = Set<String>()
            var merged: [(key: YAMLNode, value: YAMLNode)] = []
            for source in sources {
                for pair in source {
                    guard let name = pair.key.scalar else {
                        merged.append(pair)
                        continue
                    }
                    if let i = explicit[name] {
                        if i < at {
                            let key = pairs[i].key
                            throw YAMLError(file: file, line: key.line, column: key.column,
                                            message: "key \"\(name)\" is set before the merge key << on line \(mergeKey.line) that also "
                                                + "sets it: kubectl's reader lets the merge win, YAML 1.1 this key; move it after <<")
                        }
                        continue
                    }
                    if seen.insert(name).inserted { merged.append(pair) }
                }
            }
            return Array(pairs[..<at]) + merged + Array(pairs[(at + 1)...])
        }

        /// Counts a finished node and appends it to the innermost open collection
        /// (in place, so a list of n items costs O(n)), or ends a document.
        mutating func add(_ built: Built) throws {
            nodeCount += 1
            let node = built.node
            if nodeCount > YAMLReader.maxNodes {
                throw YAMLError(file: file, line: node.line, column: node.column,
                                message: "document expands to more than \(YAMLReader.maxNodes) nodes (alias bomb?)")
            }
            guard !stack.isEmpty else {
                documents.append(node)
                return
            }
            let top = stack.count - 1
            stack[top].height = max(stack[top].height, built.height + 1)
            stack[top].nodes += built.nodes
            switch stack[top].kind {
            case .sequence:
                stack[top].items.append(node)
            case .mapping:
                if let key = stack[top].pendingKey {
                    stack[top].pairs.append((key, node))
                    stack[top].pendingKey = nil
                } else {
                    stack[top].pendingKey = node
                }
            }
        }
    }
}
