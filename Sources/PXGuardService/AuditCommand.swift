import PXGuardCore
import PXGuardPlatform

/// Largest input `audit` reads: a cluster's objects, not a manifest (2,000 namespaces
/// with 20,000 policies print some 50 MB).
let auditInputLimit = 1 << 30

/// How `audit` prints its verdicts.
public enum AuditOutput: String, Sendable {
    /// A table: namespace, verdict, findings, each finding on its own line below.
    case text
    /// One JSON document with every verdict, every input problem and the counts.
    case json
}

/// What `audit` found: the report for standard output, input problems for
/// standard error (also in the report with `-o json`), and the exit code.
public struct AuditResult: Sendable {
    public let report: String
    public let errors: [String]
    public let code: Int32
}

/// `pxguard audit`: the verdict for every guarded namespace, offline, from what
/// `kubectl get namespaces,networkpolicies,pods,services,endpoints,endpointslices -A -o json`
/// prints (any mix of lists and objects, JSON or YAML). The same judge and verdict
/// functions as the server's audit. Exit 2 when any input was bad, else 1 when any
/// guarded namespace is exposed, else 0.
public func auditCommand(configPath: String?, file: String, output: AuditOutput = .text, nodes: String? = nil,
                         note: (String) -> Void = { _ in })
    throws(CommandError) -> AuditResult
{
    let config = try offlineConfig(configPath, nodes: nodes, command: "audit", note: note)
    let judge = AuditJudge(config: config, reportsGuardWidening: config.activeBackend == .networkpolicy)
    var errors: [String] = []
    var namespaces: [AuditNamespace] = []
    var records: [AuditRecord] = []
    var objects = 0
    let bytes: [UInt8]
    do {
        bytes = try FileIO.read(file == "-" ? "/dev/stdin" : file, limit: auditInputLimit)
    } catch {
        throw CommandError("audit: \(ManifestReader.name(file)): \(error)")
    }
    // kubectl's `-o json` is one JSON document: judged in place, item by item, the way
    // an informer judges a list page (no owned copy of any object). Anything else
    // (YAML, concatenated objects) goes through the reader `check` uses.
    let inPlace: Bool
    do {
        inPlace = try JSONDocument.parse(bytes) { root in
            auditVisit(root, listKind: nil, listAPIVersion: "", judge: judge, index: nil, file: ManifestReader.name(file),
                       namespaces: &namespaces, records: &records, errors: &errors, objects: &objects)
            return true
        }
    } catch {
        inPlace = false
    }
    if !inPlace {
        for entry in ManifestReader.objects(file: ManifestReader.name(file), bytes: bytes) {
            let item: ManifestObject
            switch entry {
            case .failure(let problem):
                errors.append(problem.description)
                continue
            case .success(let object):
                item = object
            }
            objects += 1
            let where_ = "\(item.file):\(item.line):\(item.column)"
            let serialized = Array(item.object.serialized.utf8)
            do {
                try JSONDocument.parse(serialized) { view in
                    auditClassify(view, kind: item.object["kind"]?.stringValue ?? "", apiVersion: item.object["apiVersion"]?.stringValue ?? "",
                                  judge: judge, where_: where_, namespaces: &namespaces, records: &records, errors: &errors)
                }
            } catch {
                errors.append("\(where_): \(error)")
            }
        }
    }
    if objects == 0 && errors.isEmpty {
        errors.append("no objects found in \(ManifestReader.name(file)); give what "
            + "kubectl get namespaces,networkpolicies,pods,services,endpoints,endpointslices -A -o json prints")
    }
    let verdicts = Audit.verdicts(namespaces: namespaces, records: records, config: config)
    let exposed = verdicts.filter(\.exposed).count
    let code: Int32 = !errors.isEmpty ? 2 : exposed > 0 ? 1 : 0
    switch output {
    case .text:
        return AuditResult(report: auditTable(verdicts), errors: errors.map { "audit: " + $0 }, code: code)
    case .json:
        func finding(_ f: AuditVerdict.Finding) -> JSON {
            .obj(["rule": .string(f.check.rawValue),
                  "kind": f.object.map { .string($0.kind.rawValue) } ?? "Namespace",
                  "name": .string(f.object?.name ?? ""),
                  "message": .string(f.message)])
        }
        let document: JSON = .obj([
            "namespaces": .array(verdicts.map { v in
                .obj(["namespace": .string(v.namespace), "verdict": v.exposed ? "exposed" : "protected",
                      "findings": .array(v.findings.map(finding)), "notes": .array(v.notes.map(finding))])
            }),
            "errors": .array(errors.map { .string($0) }),
            "summary": .obj(["guarded": .int(verdicts.count), "protected": .int(verdicts.count - exposed),
                             "exposed": .int(exposed), "errors": .int(errors.count)]),
        ])
        return AuditResult(report: document.serialized + "\n", errors: errors.map { "audit: " + $0 }, code: code)
    }
}

/// Walks one JSON value of kubectl's output: a `List` or typed list (items take the
/// list's kind), an array, or one object.
func auditVisit(_ value: JSONValue, listKind: String?, listAPIVersion: String, judge: AuditJudge, index: Int?, file: String,
                namespaces: inout [AuditNamespace], records: inout [AuditRecord], errors: inout [String], objects: inout Int) {
    let where_ = index.map { "\(file): item \($0)" } ?? file
    switch value.kind {
    case .array:
        for (i, element) in value.elements.enumerated() {
            auditVisit(element, listKind: nil, listAPIVersion: "", judge: judge, index: i, file: file,
                       namespaces: &namespaces, records: &records, errors: &errors, objects: &objects)
        }
        return
    case .object:
        break
    default:
        errors.append("\(where_): expected a Kubernetes object")
        return
    }
    let kind = value["kind"]?.string ?? listKind ?? ""
    let apiVersion = value["apiVersion"]?.string ?? listAPIVersion
    if kind.hasSuffix("List"), let items = value["items"], items.kind == .array {
        for (i, item) in items.elements.enumerated() {
            guard item.kind == .object else {
                errors.append("\(file): item \(i): expected a Kubernetes object")
                continue
            }
            auditVisit(item, listKind: kind == "List" ? nil : String(kind.dropLast(4)), listAPIVersion: apiVersion,
                       judge: judge, index: i, file: file, namespaces: &namespaces, records: &records, errors: &errors,
                       objects: &objects)
        }
        return
    }
    guard !kind.isEmpty, !apiVersion.isEmpty else {
        errors.append("\(where_): object has no \(kind.isEmpty ? "kind" : "apiVersion")")
        return
    }
    objects += 1
    auditClassify(value, kind: kind, apiVersion: apiVersion, judge: judge, where_: where_,
                  namespaces: &namespaces, records: &records, errors: &errors)
}

/// A Namespace becomes namespace state, an object the audit reads a record; other
/// kinds are left alone.
func auditClassify(_ view: JSONValue, kind: String, apiVersion: String, judge: AuditJudge, where_: String,
                   namespaces: inout [AuditNamespace], records: inout [AuditRecord], errors: inout [String]) {
    if kind == "Namespace" && apiVersion == "v1" {
        if let state = AuditNamespace(object: view) {
            namespaces.append(state)
        } else {
            errors.append("\(where_): a Namespace without metadata.name")
        }
        return
    }
    guard let auditKind = AuditKind(apiVersion: apiVersion, kind: kind) else { return }
    let record = judge.judge(view, as: auditKind)
    if record.namespace.isEmpty {
        errors.append("\(where_): \(record.kind.rawValue) \(record.name) has no metadata.namespace; "
            + "list with -A -o json so that every object carries its namespace")
    } else {
        records.append(record)
    }
}

/// The table: one row per guarded namespace, then one indented line per finding
/// (`note` for informational ones), then the counts.
func auditTable(_ verdicts: [AuditVerdict]) -> String {
    let width = max("NAMESPACE".count, verdicts.map(\.namespace.count).max() ?? 0) + 2
    func pad(_ text: String, _ n: Int) -> String { text + String(repeating: " ", count: max(1, n - text.count)) }
    var out = pad("NAMESPACE", width) + pad("VERDICT", 11) + "FINDINGS\n"
    for v in verdicts {
        let count = "\(v.findings.count)" + (v.notes.isEmpty ? "" : " (\(v.notes.count) note\(v.notes.count == 1 ? "" : "s"))")
        out += pad(v.namespace, width) + pad(v.exposed ? "exposed" : "protected", 11) + count + "\n"
        for f in v.findings { out += "  - \(subject(f)): \(f.message)\n" }
        for f in v.notes { out += "  - note \(subject(f)): \(f.message)\n" }
    }
    let exposed = verdicts.filter(\.exposed).count
    out += "\(verdicts.count) guarded namespace\(verdicts.count == 1 ? "" : "s"): "
        + "\(verdicts.count - exposed) protected, \(exposed) exposed\n"
    return out
}

/// `rule kind/name` (`rule namespace` for the namespace's own state).
func subject(_ f: AuditVerdict.Finding) -> String {
    f.check.rawValue + " " + (f.object.map { "\($0.kind.rawValue.lowercased())/\($0.name)" } ?? "namespace")
}
