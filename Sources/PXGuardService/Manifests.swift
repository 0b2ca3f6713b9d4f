import PXGuardCore
import PXGuardPlatform
import PXGuardYAML
#if canImport(Glibc)
import Glibc
#endif

/// One Kubernetes object found in a manifest, with where it starts.
struct ManifestObject {
    let file: String
    let line: Int
    let column: Int
    let object: JSON
}

/// Something in the input that could not be read as an object: a missing file, a
/// syntax error, an object without `kind`. Reported, and the rest still checked.
struct ManifestProblem: Error {
    let file: String
    let line: Int
    let column: Int
    let message: String

    var description: String { line > 0 ? "\(file):\(line):\(column): \(message)" : "\(file): \(message)" }
}

/// What `kubectl apply -f` reads, read the same way: files, directories (`-R`
/// recursive), `-` for standard input; multi-document YAML, streams of
/// concatenated JSON objects, `List` and typed lists.
struct ManifestReader {
    var recursive = false
    /// Largest single file read.
    var limit = 64 << 20

    /// The extensions kubectl reads from a directory (files named explicitly are
    /// read whatever their name).
    static let extensions = [".json", ".yaml", ".yml"]

    /// Reads every path in order; each entry is an object or a problem.
    func read(_ paths: [String]) -> [Result<ManifestObject, ManifestProblem>] {
        var out: [Result<ManifestObject, ManifestProblem>] = []
        for path in paths {
            for file in files(for: path, &out) {
                let bytes: [UInt8]
                do {
                    bytes = try FileIO.read(file == "-" ? "/dev/stdin" : file, limit: limit)
                } catch {
                    out.append(.failure(ManifestProblem(file: Self.name(file), line: 0, column: 0, message: "\(error)")))
                    continue
                }
                out += Self.objects(file: Self.name(file), bytes: bytes)
            }
        }
        return out
    }

    static func name(_ file: String) -> String { file == "-" ? "standard input" : file }

    /// The files a path stands for: itself, or a directory's manifest files in
    /// lexical order (subdirectories only with `-R`, depth first, as `filepath.Walk`).
    func files(for path: String, _ problems: inout [Result<ManifestObject, ManifestProblem>]) -> [String] {
        if path == "-" { return [path] }
        var info = stat()
        do {
            try Syscall.check("cannot read") { stat(path, &info) }
        } catch {
            problems.append(.failure(ManifestProblem(file: path, line: 0, column: 0, message: "\(error)")))
            return []
        }
        guard info.st_mode & S_IFMT == S_IFDIR else { return [path] }
        var files: [String] = []
        walk(path, into: &files, problems: &problems)
        return files
    }

    func walk(_ directory: String, into files: inout [String], problems: inout [Result<ManifestObject, ManifestProblem>]) {
        let dir: OpaquePointer
        do {
            let fd = try Syscall.open(directory, O_RDONLY | O_DIRECTORY)
            guard let opened = fdopendir(fd) else {
                Syscall.close(fd)
                problems.append(.failure(ManifestProblem(file: directory, line: 0, column: 0, message: "cannot read the directory")))
                return
            }
            dir = opened
        } catch {
            problems.append(.failure(ManifestProblem(file: directory, line: 0, column: 0, message: "\(error)")))
            return
        }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(dir)
        for name in names.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }) {
            let path = directory.hasSuffix("/") ? directory + name : directory + "/" + name
            var info = stat()
            // lstat, as filepath.Walk: a symlink to a directory is not descended into.
            guard (try? Syscall.check("lstat \(path)") { lstat(path, &info) }) != nil else { continue }
            if info.st_mode & S_IFMT == S_IFDIR {
                if recursive { walk(path, into: &files, problems: &problems) }
            } else if Self.extensions.contains(where: { name.hasSuffix($0) }) {
                files.append(path)
            }
        }
    }

    /// The objects of one file's bytes. JSON when the first significant byte opens
    /// an object or array (kubectl's sniffing), YAML otherwise.
    static func objects(file: String, bytes: [UInt8]) -> [Result<ManifestObject, ManifestProblem>] {
        let first = bytes.first { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }
        var out: [Result<ManifestObject, ManifestProblem>] = []
        if first == UInt8(ascii: "{") || first == UInt8(ascii: "[") {
            jsonStream(file: file, bytes: bytes, into: &out)
        } else {
            let (documents, error) = YAMLReader.documentsUntilError(bytes, file: file)
            for document in documents {
                expand(Located(yaml: document), file: file, into: &out)
            }
            if let error {
                out.append(.failure(ManifestProblem(file: file, line: error.line, column: error.column, message: error.message)))
            }
        }
        return out
    }

    /// A stream of JSON values one after another (`{...}{...}` or one per line), as
    /// Go's `json.Decoder` reads them for kubectl.
    static func jsonStream(file: String, bytes: [UInt8], into out: inout [Result<ManifestObject, ManifestProblem>]) {
        let lines = LineIndex(bytes)
        var i = 0
        while true {
            while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
            guard i < bytes.count else { return }
            let start = i
            guard bytes[i] == UInt8(ascii: "{") || bytes[i] == UInt8(ascii: "[") else {
                let (line, column) = lines.position(start)
                out.append(.failure(ManifestProblem(file: file, line: line, column: column,
                                                    message: "expected a JSON object here")))
                return
            }
            guard let end = endOfContainer(bytes, from: start) else {
                let (line, column) = lines.position(start)
                out.append(.failure(ManifestProblem(file: file, line: line, column: column,
                                                    message: "the JSON value starting here never ends")))
                return
            }
            let chunk = Array(bytes[start..<end])
            do {
                let located = try JSONDocument.parse(chunk) { view in Located(json: view, offset: start, lines: lines) }
                expand(located, file: file, into: &out)
            } catch let error as JSONSyntaxError {
                let (line, column) = lines.position(start + error.offset)
                out.append(.failure(ManifestProblem(file: file, line: line, column: column, message: "invalid JSON: \(error.reason)")))
            } catch {
                let (line, column) = lines.position(start)
                out.append(.failure(ManifestProblem(file: file, line: line, column: column, message: "\(error)")))
            }
            i = end
        }
    }

    /// The offset just past the object or array that opens at `start`, found by
    /// bracket depth outside strings; the parser validates the chunk afterwards.
    static func endOfContainer(_ bytes: [UInt8], from start: Int) -> Int? {
        var depth = 0
        var i = start
        var inString = false
        while i < bytes.count {
            let c = bytes[i]
            if inString {
                if c == UInt8(ascii: "\\") { i += 1 } else if c == UInt8(ascii: "\"") { inString = false }
            } else if c == UInt8(ascii: "\"") {
                inString = true
            } else if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") {
                depth += 1
            } else if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") {
                depth -= 1
                if depth == 0 { return i + 1 }
            }
            i += 1
        }
        return nil
    }

    /// Turns a document into objects: lists are expanded, each item at its own
    /// line; items of a typed list (`PodList`) without `kind` get it from the list,
    /// as apimachinery fills it in.
    static func expand(_ node: Located, file: String, into out: inout [Result<ManifestObject, ManifestProblem>]) {
        let object = node.json
        switch object {
        case .null:
            return  // an empty document
        case .array(let items):
            for (index, item) in items.enumerated() {
                expand(node.item(index, item), file: file, into: &out)
            }
            return
        case .object:
            break
        default:
            out.append(.failure(ManifestProblem(file: file, line: node.line, column: node.column,
                                                message: "expected a Kubernetes object, got \(object.serialized.prefix(40))")))
            return
        }
        let kind = object["kind"]?.stringValue ?? ""
        let apiVersion = object["apiVersion"]?.stringValue ?? ""
        if kind.hasSuffix("List"), let items = object["items"]?.arrayValue {
            let itemKind = kind == "List" ? nil : String(kind.dropLast(4))
            for (index, var item) in items.enumerated() {
                if let itemKind, case .object = item {
                    if (item["kind"]?.stringValue ?? "").isEmpty { item = item.setting("kind", .string(itemKind)) }
                    if (item["apiVersion"]?.stringValue ?? "").isEmpty { item = item.setting("apiVersion", .string(apiVersion)) }
                }
                expand(node.item(index, item), file: file, into: &out)
            }
            return
        }
        guard !kind.isEmpty, !apiVersion.isEmpty else {
            out.append(.failure(ManifestProblem(file: file, line: node.line, column: node.column,
                                                message: "object has no \(kind.isEmpty ? "kind" : "apiVersion")")))
            return
        }
        out.append(.success(ManifestObject(file: file, line: node.line, column: node.column, object: object)))
    }
}

/// A document and where it and its list items start.
struct Located {
    let json: JSON
    let line: Int
    let column: Int
    /// Positions of the elements of the top-level array, or of `items` for a list.
    let itemPositions: [(line: Int, column: Int)]

    init(json: JSON, line: Int, column: Int, itemPositions: [(line: Int, column: Int)]) {
        self.json = json
        self.line = line
        self.column = column
        self.itemPositions = itemPositions
    }

    init(yaml: YAMLNode) {
        var positions: [(line: Int, column: Int)] = []
        switch yaml.value {
        case .sequence(let items):
            positions = items.map { ($0.line, $0.column) }
        case .mapping(let pairs):
            if let items = pairs.first(where: { $0.key.scalar == "items" })?.value, case .sequence(let elements) = items.value {
                positions = elements.map { ($0.line, $0.column) }
            }
        case .scalar:
            break
        }
        self.init(json: yaml.json, line: yaml.line, column: yaml.column, itemPositions: positions)
    }

    init(json view: JSONValue, offset: Int, lines: LineIndex) {
        let container = view.kind == .array ? view : view["items"]
        let positions = container.map { c in c.kind == .array ? c.elements.map { lines.position(offset + $0.start) } : [] } ?? []
        let (line, column) = lines.position(offset + view.start)
        // Numbers as kubectl sends them: `9001.0` and `9.001e3` are 9001.
        self.init(json: KubectlScalar.kubectlNumbers(JSON(view)), line: line, column: column, itemPositions: positions)
    }

    /// Element `index` at its own position (nested lists keep this one's).
    func item(_ index: Int, _ value: JSON) -> Located {
        let position = index < itemPositions.count ? itemPositions[index] : (line, column)
        return Located(json: value, line: position.line, column: position.column, itemPositions: [])
    }
}

/// Byte offset → 1-based line and column.
struct LineIndex {
    let starts: [Int]

    init(_ bytes: [UInt8]) {
        var starts = [0]
        for (i, b) in bytes.enumerated() where b == 0x0A { starts.append(i + 1) }
        self.starts = starts
    }

    func position(_ offset: Int) -> (line: Int, column: Int) {
        var lo = 0, hi = starts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if starts[mid] <= offset { lo = mid } else { hi = mid - 1 }
        }
        return (lo + 1, offset - starts[lo] + 1)
    }
}
