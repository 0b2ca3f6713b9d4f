/// Reading JSON as it arrives, keeping only chosen fields: the informers decode
/// list pages and watch events with it, so that memory is set by the fields the
/// rules read, never by what an object carries (labels, annotations,
/// managedFields). Everything not asked for is skipped without being stored; what
/// is asked for is copied out as raw JSON within a per-object byte budget.
/// Pure: bytes come from a source closure, nothing here touches I/O or clocks.

/// A set of member paths to keep from an object, e.g. `["metadata", "name"]`.
/// Paths are matched on object members only (arrays are kept or skipped whole).
public struct JSONPaths: Sendable {
    /// One level of the path trie: a path ending here is captured whole.
    final class Node: Sendable {
        let capture: Int?
        let children: [String: Node]
        init(capture: Int?, children: [String: Node]) {
            self.capture = capture
            self.children = children
        }
    }

    let root: Node
    /// The paths in the order given: a capture's values are indexed the same way.
    public let paths: [[String]]

    /// Builds the set; a path that lies inside another is covered by the outer one.
    public init(_ paths: [[String]]) {
        self.paths = paths
        func build(_ indexed: [(Int, ArraySlice<String>)]) -> Node {
            let whole = indexed.first { $0.1.isEmpty }?.0
            var groups: [String: [(Int, ArraySlice<String>)]] = [:]
            for (i, path) in indexed where !path.isEmpty { groups[path.first!, default: []].append((i, path.dropFirst())) }
            return Node(capture: whole, children: groups.mapValues(build))
        }
        root = build(paths.enumerated().map { ($0.offset, $0.element[...]) })
    }
}

/// The fields kept from one object, as raw JSON, indexed like `JSONPaths.paths`.
public struct JSONCapture: Sendable {
    /// Raw JSON text of each path's value; nil when the object does not have it
    /// (or it was over the budget: see `overBudget`).
    public var raw: [[UInt8]?]
    /// Paths whose value did not fit in the per-object budget: the object cannot be
    /// judged on those fields (never silently read as absent).
    public var overBudget: [Bool]

    init(count: Int) {
        raw = [[UInt8]?](repeating: nil, count: count)
        overBudget = [Bool](repeating: false, count: count)
    }

    /// True when some field was over the budget.
    public var isOverBudget: Bool { overBudget.contains(true) }

    /// The value of path `index`, parsed; nil when absent or over the budget.
    public func json(_ index: Int) -> JSON? {
        guard index < raw.count, let bytes = raw[index] else { return nil }
        return try? JSON(parsing: bytes)
    }

    /// The string value of path `index`.
    public func string(_ index: Int) -> String? { json(index)?.stringValue }

    /// The captures of paths `range` (to split one capture made of several sets).
    public func slice(_ range: Range<Int>) -> JSONCapture {
        var out = JSONCapture(count: 0)
        out.raw = Array(raw[range])
        out.overBudget = Array(overBudget[range])
        return out
    }
}

/// A document that is not JSON, or nested deeper than allowed.
public struct JSONStreamError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// A pull reader over a stream of JSON values (one document, or values one after
/// another as in a watch). Memory: the source's last piece, plus the captured
/// fields of the object being read (at most its budget, plus one source piece).
public struct JSONStreamReader {
    /// More bytes, or nil at the end of the stream.
    let source: () throws -> ArraySlice<UInt8>?
    /// Deepest nesting accepted (client-go's decoder allows 10,000; objects nest far
    /// less: managedFields, the deepest, stays under 30).
    public var maxDepth = 512
    /// Longest object key compared against the paths; longer keys match nothing.
    let maxKeyBytes = 1024
    var buffer: [UInt8] = []
    var position = 0
    var ended = false
    /// While capturing: where the value started in `buffer`, and what was saved of it
    /// before a refill replaced the buffer.
    var mark: Int?
    var recorded: [UInt8] = []
    var recordLimit = 0
    var recordOver = false
    /// Bytes taken from the source so far.
    public private(set) var consumed = 0

    /// A reader pulling from `source`.
    public init(source: @escaping () throws -> ArraySlice<UInt8>?) {
        self.source = source
    }

    /// Only called once every buffered byte is consumed, so the buffer is replaced whole.
    mutating func refill() throws -> Bool {
        if ended { return false }
        if let mark {
            if !recordOver {
                if recorded.count + (buffer.count - mark) > recordLimit {
                    recordOver = true
                    recorded = []
                } else {
                    recorded.append(contentsOf: buffer[mark..<buffer.count])
                }
            }
            self.mark = 0
        }
        while true {
            guard let more = try source() else {
                ended = true
                buffer.removeAll(keepingCapacity: true)
                position = 0
                return false
            }
            if more.isEmpty { continue }
            consumed += more.count
            buffer.removeAll(keepingCapacity: true)
            buffer.append(contentsOf: more)
            position = 0
            return true
        }
    }

    @inline(__always) mutating func peek() throws -> UInt8? {
        if position < buffer.count { return buffer[position] }
        return try refill() ? buffer[position] : nil
    }

    mutating func expectByte() throws -> UInt8 {
        guard let b = try peek() else { throw JSONStreamError("JSON ends early") }
        position += 1
        return b
    }

    @inline(__always) static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 }

    /// Skips white space; returns the next byte without taking it (nil at the end).
    mutating func skipSpace() throws -> UInt8? {
        while true {
            while position < buffer.count {
                let c = buffer[position]
                if !Self.isSpace(c) { return c }
                position += 1
            }
            if try !refill() { return nil }
        }
    }

    /// True when only white space is left in the stream.
    public mutating func atEnd() throws -> Bool { try skipSpace() == nil }

    /// Skips a string from its opening quote.
    mutating func skipString() throws {
        position += 1
        while true {
            let (found, at) = buffer.withUnsafeBufferPointer { p -> (Bool, Int) in
                var i = position
                let end = p.count
                while i < end {
                    let c = p[i]
                    if c == 0x22 { return (true, i) }
                    if c == 0x5C {
                        if i + 1 >= end { return (false, i) }  // the escaped byte is in the next piece
                        i += 2
                        continue
                    }
                    i += 1
                }
                return (false, end)
            }
            if found {
                position = at + 1
                return
            }
            position = buffer.count
            if at < buffer.count {
                // A backslash ends this piece: its escaped byte begins the next one.
                guard try refill() else { throw JSONStreamError("JSON ends inside a string") }
                position = 1
                continue
            }
            guard try refill() else { throw JSONStreamError("JSON ends inside a string") }
        }
    }

    /// Skips one value of any kind, at any depth, keeping nothing of it.
    mutating func skipValue(depth: Int) throws {
        var stack: [UInt8] = []
        repeat {
            guard let c = try skipSpace() else { throw JSONStreamError("JSON ends early") }
            switch c {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                guard depth + stack.count < maxDepth else { throw JSONStreamError("JSON nested deeper than \(maxDepth)") }
                stack.append(c == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]"))
                position += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                guard stack.last == c else { throw JSONStreamError("unbalanced \(Character(Unicode.Scalar(c))) in JSON") }
                stack.removeLast()
                position += 1
            case UInt8(ascii: "\""):
                try skipString()
            case UInt8(ascii: ","), UInt8(ascii: ":"):
                guard !stack.isEmpty else { throw JSONStreamError("unexpected \(Character(Unicode.Scalar(c))) in JSON") }
                position += 1
            default:
                try skipScalar()
            }
        } while !stack.isEmpty
    }

    /// A number, `true`, `false` or `null`.
    mutating func skipScalar() throws {
        var length = 0
        while let c = try peek() {
            let ok = (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7A) || c == 0x2B || c == 0x2D || c == 0x2E || c == 0x45
            if !ok { break }
            position += 1
            length += 1
            guard length <= 1024 else { throw JSONStreamError("JSON literal longer than 1024 bytes") }
        }
        guard length > 0 else { throw JSONStreamError("unexpected byte \(try peek() ?? 0) in JSON") }
    }

    /// Reads an object key (escapes decoded); nil for keys longer than `maxKeyBytes`,
    /// which are skipped and match no path.
    mutating func readKey() throws -> String? {
        guard try skipSpace() == UInt8(ascii: "\"") else { throw JSONStreamError("expected an object key in JSON") }
        position += 1
        var bytes: [UInt8] = []
        var tooLong = false
        while true {
            let c = try expectByte()
            if c == 0x22 { break }
            if c == 0x5C {
                let e = try expectByte()
                switch e {
                case UInt8(ascii: "b"): bytes.append(8)
                case UInt8(ascii: "f"): bytes.append(12)
                case UInt8(ascii: "n"): bytes.append(10)
                case UInt8(ascii: "r"): bytes.append(13)
                case UInt8(ascii: "t"): bytes.append(9)
                case UInt8(ascii: "u"):
                    var unit = try hex4()
                    if (0xD800..<0xDC00).contains(unit) {
                        guard try expectByte() == 0x5C, try expectByte() == UInt8(ascii: "u") else {
                            throw JSONStreamError("lone surrogate in a JSON key")
                        }
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw JSONStreamError("lone surrogate in a JSON key") }
                        unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let scalar = Unicode.Scalar(unit) else { throw JSONStreamError("bad \\u escape in a JSON key") }
                    bytes.append(contentsOf: Array(String(Character(scalar)).utf8))
                default: bytes.append(e)
                }
            } else {
                bytes.append(c)
            }
            if bytes.count > maxKeyBytes {
                tooLong = true
                bytes.removeAll(keepingCapacity: true)
            }
        }
        guard try skipSpace() == UInt8(ascii: ":") else { throw JSONStreamError("expected ':' after a JSON key") }
        position += 1
        return tooLong ? nil : String(decoding: bytes, as: UTF8.self)
    }

    mutating func hex4() throws -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = try expectByte()
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - 0x30)
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - 0x61 + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - 0x41 + 10)
            default: throw JSONStreamError("bad \\u escape in a JSON key")
            }
            v = v << 4 | d
        }
        return v
    }

    /// After a member or element: true when another follows, false at `close`.
    mutating func more(_ close: UInt8) throws -> Bool {
        guard let c = try skipSpace() else { throw JSONStreamError("JSON ends early") }
        position += 1
        if c == UInt8(ascii: ",") { return true }
        if c == close { return false }
        throw JSONStreamError("expected ',' or '\(Character(Unicode.Scalar(close)))' in JSON")
    }

    /// Copies one value's raw text into the capture, or marks it over the budget
    /// (the value is consumed either way).
    mutating func captureValue(_ index: Int, _ capture: inout JSONCapture, budget: inout Int, depth: Int) throws {
        _ = try skipSpace()
        mark = position
        recorded = []
        recordLimit = max(budget, 0)
        recordOver = false
        try skipValue(depth: depth)
        let start = mark ?? position
        mark = nil
        if !recordOver && recorded.count + (position - start) <= recordLimit {
            recorded.append(contentsOf: buffer[start..<position])
            budget -= recorded.count
            // A key given twice: the last one counts, as for every JSON reader here.
            capture.raw[index] = recorded
            capture.overBudget[index] = false
        } else {
            // The budget stays for the fields after it: a small needed field is not
            // lost because a large one came first.
            capture.raw[index] = nil
            capture.overBudget[index] = true
        }
        recorded = []
    }

    /// Reads one value, capturing the fields `node` asks for.
    mutating func read(_ node: JSONPaths.Node, _ capture: inout JSONCapture, budget: inout Int, depth: Int) throws {
        if let index = node.capture { return try captureValue(index, &capture, budget: &budget, depth: depth) }
        guard !node.children.isEmpty, try skipSpace() == UInt8(ascii: "{") else { return try skipValue(depth: depth) }
        guard depth < maxDepth else { throw JSONStreamError("JSON nested deeper than \(maxDepth)") }
        position += 1
        if try skipSpace() == UInt8(ascii: "}") {
            position += 1
            return
        }
        repeat {
            let key = try readKey()
            if let key, let child = node.children[key] {
                try read(child, &capture, budget: &budget, depth: depth + 1)
            } else {
                try skipValue(depth: depth + 1)
            }
        } while try more(UInt8(ascii: "}"))
    }

    /// Reads the next value of the stream, keeping `paths` within `budget` bytes.
    public mutating func next(_ paths: JSONPaths, budget: Int) throws -> JSONCapture {
        var capture = JSONCapture(count: paths.paths.count)
        var left = budget
        guard try skipSpace() != nil else { throw JSONStreamError("JSON ends early") }
        try read(paths.root, &capture, budget: &left, depth: 0)
        return capture
    }

    /// Reads one object whose member `arrayKey` is an array (a Kubernetes list):
    /// each element is captured with `element` and handed to `onElement` as soon
    /// as it is read, so the list is never held whole. Returns the other members
    /// asked for by `top` (a list's `metadata.continue`, `resourceVersion`).
    public mutating func list(_ top: JSONPaths, arrayKey: String, element: JSONPaths, budget: Int,
                              onElement: (JSONCapture) throws -> Void) throws -> JSONCapture {
        var capture = JSONCapture(count: top.paths.count)
        var left = Int.max
        guard try skipSpace() == UInt8(ascii: "{") else { throw JSONStreamError("expected a JSON object") }
        position += 1
        if try skipSpace() == UInt8(ascii: "}") {
            position += 1
            return capture
        }
        repeat {
            let key = try readKey()
            if key == arrayKey, try skipSpace() == UInt8(ascii: "[") {
                position += 1
                if try skipSpace() == UInt8(ascii: "]") {
                    position += 1
                    continue
                }
                repeat {
                    try onElement(try next(element, budget: budget))
                } while try more(UInt8(ascii: "]"))
            } else if let key, let child = top.root.children[key] {
                try read(child, &capture, budget: &left, depth: 1)
            } else {
                try skipValue(depth: 1)
            }
        } while try more(UInt8(ascii: "}"))
        return capture
    }
}
