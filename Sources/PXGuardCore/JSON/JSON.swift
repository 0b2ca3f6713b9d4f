import PXGuardBytes

/// An owned JSON value tree with ordered object members: what pxguard renders
/// (policies, webhooks, bundles) and what off-path code (check, the provisioner)
/// builds from YAML. The request path uses `JSONValue` views instead.
public indirect enum JSON: Equatable, Sendable {
    case null
    case bool(Bool)
    /// A number kept as its canonical text, so that integers round-trip exactly.
    case number(String)
    case string(String)
    case array([JSON])
    case object([Member])

    /// One object member; objects keep their members in insertion order.
    public struct Member: Equatable, Sendable {
        public var key: String
        public var value: JSON
        public init(_ key: String, _ value: JSON) {
            self.key = key
            self.value = value
        }
    }

    public static func int(_ value: Int) -> JSON { .number(String(value)) }

    /// Builds an object from key-value pairs, dropping `nil` values.
    public static func obj(_ pairs: KeyValuePairs<String, JSON?>) -> JSON {
        .object(pairs.compactMap { k, v in v.map { Member(k, $0) } })
    }

    public subscript(key: String) -> JSON? {
        guard case .object(let members) = self else { return nil }
        return members.last(where: { $0.key == key })?.value
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var intValue: Int? {
        if case .number(let n) = self { return Int(n) }
        return nil
    }

    public var arrayValue: [JSON]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var members: [Member]? {
        if case .object(let m) = self { return m }
        return nil
    }

    /// Returns a copy with `key` set (replaced in place when present, else appended).
    public func setting(_ key: String, _ value: JSON) -> JSON {
        guard case .object(var members) = self else { return self }
        if let index = members.firstIndex(where: { $0.key == key }) {
            members[index].value = value
        } else {
            members.append(Member(key, value))
        }
        return .object(members)
    }

    /// The value with nulls, empty arrays and empty objects removed from objects,
    /// and object members sorted by key: two NetworkPolicy specs that mean the same
    /// thing to the API server (absent and empty are equivalent there) normalise equal.
    var normalized: JSON {
        switch self {
        case .array(let items):
            return .array(items.map(\.normalized))
        case .object(let members):
            let kept = members.compactMap { m -> Member? in
                let v = m.value.normalized
                switch v {
                case .null: return nil
                case .array(let a) where a.isEmpty: return nil
                case .object(let o) where o.isEmpty: return nil
                default: return Member(m.key, v)
                }
            }
            return .object(kept.sorted { $0.key < $1.key })
        default:
            return self
        }
    }
}

extension JSON: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .number(String(value)) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSON...) { self = .array(elements) }
}

extension JSON {
    /// Copies a validated view into an owned tree.
    public init(_ view: JSONValue) {
        switch view.kind {
        case .null: self = .null
        case .bool: self = .bool(view.bool ?? false)
        case .string: self = .string(view.string ?? "")
        case .number:
            let text = String(decoding: view.bytes, as: UTF8.self)
            self = .number(view.int.map(String.init) ?? text)
        case .array:
            var items: [JSON] = []
            view.forEachElement { _, v in items.append(JSON(v)) }
            self = .array(items)
        case .object:
            var members: [Member] = []
            view.forEachMember { k, v in members.append(Member(k.string ?? "", JSON(v))) }
            self = .object(members)
        }
    }

    /// Parses owned bytes into a tree.
    public init(parsing bytes: [UInt8]) throws {
        self = try JSONDocument.parse(bytes) { JSON($0) }
    }

    /// Compact serialisation (no insignificant whitespace).
    public var serialized: String {
        var out: [UInt8] = []
        write(into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the compact serialisation to `out`.
    public func write(into out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .number(let n): out.append(contentsOf: n.utf8)
        case .string(let s): JSONWriter.appendString(s, to: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                item.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (i, m) in members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONWriter.appendString(m.key, to: &out)
                out.append(UInt8(ascii: ":"))
                m.value.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }
}
