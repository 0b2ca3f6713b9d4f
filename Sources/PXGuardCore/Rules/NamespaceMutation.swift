/// M1: a new guarded namespace is labelled and annotated on creation, and given
/// the configured Pod Security level (never lowering a stricter one it carries).
struct NamespaceMutation: Sendable {
    init() {}

    /// The Pod Security Admission label M1 sets and R5 keeps.
    static let podSecurityLabel = "pod-security.kubernetes.io/enforce"

    /// The JSON patch for a Namespace CREATE in a guarded namespace, or nil when
    /// there is nothing to change. A level the requester asked for and did not get is
    /// recorded as the provisioner records its raises (`pxguard.io/previous-enforce`, so
    /// that uninstalling restores it) and told in `warning`; a namespace that asked for
    /// no level gets the patch the SPEC describes, nothing more.
    func patch(for request: AdmissionRequest, config: Config) -> (patch: [UInt8], warning: String?)? {
        guard request.isNamespace, request.operation == .create, let object = request.object,
            config.isGuarded(namespace: request.objectName)
        else { return nil }
        var labels: [(String, String)] = [(GuardNames.guardedLabel, "true")]
        var annotations = [(GuardNames.policiesAnnotation, config.guardPolicyNames.annotation)]
        var warning: String?
        let metadata = object["metadata"].flatMap { $0.kind == .object ? $0 : nil }
        if config.podSecurity != .none {
            // A stricter level than the configured one stays; anything lower
            // (privileged, an unknown value, none) is raised.
            let current = metadata?.path("labels")?[dynamic: Self.podSecurityLabel]?.string
            if PodSecurityLevel.rank(ofLabel: current) < PodSecurityLevel.rank(ofLabel: config.podSecurity.rawValue) {
                labels.append((Self.podSecurityLabel, config.podSecurity.rawValue))
                if let current, !current.isEmpty {
                    annotations.append((GuardNames.previousEnforceAnnotation, current))
                    warning = "pxguard: Pod Security enforce level raised from \(current) to \(config.podSecurity.rawValue) "
                        + "(pxguard's podSecurity); the level asked for is kept in \(GuardNames.previousEnforceAnnotation)"
                } else if metadata?.path("annotations")?[dynamic: GuardNames.previousEnforceAnnotation] != nil {
                    // The requester's own "previous level" would be taken for pxguard's record and
                    // restored on uninstall: there was none.
                    annotations.append((GuardNames.previousEnforceAnnotation, ""))
                }
            }
        }
        var ops: [JSON] = []
        guard let metadata else {
            ops.append(.obj(["op": "add", "path": "/metadata", "value": .obj([
                "labels": Self.map(labels),
                "annotations": Self.map(annotations),
            ])]))
            return (Self.serialize(ops), warning)
        }
        appendAdd(&ops, map: metadata["labels"], mapPath: "/metadata/labels", entries: labels)
        appendAdd(&ops, map: metadata["annotations"], mapPath: "/metadata/annotations", entries: annotations)
        return ops.isEmpty ? nil : (Self.serialize(ops), warning)
    }

    static func map(_ entries: [(String, String)]) -> JSON {
        .object(entries.map { JSON.Member($0.0, .string($0.1)) })
    }

    static func serialize(_ ops: [JSON]) -> [UInt8] {
        var out: [UInt8] = []
        JSON.array(ops).write(into: &out)
        return out
    }

    /// Adds the entries to the map at `mapPath`, creating the map when it is absent
    /// (RFC 6902 `add` needs the parent; one `add` with every entry, so that a
    /// second entry does not replace the map the first created) and leaving other
    /// entries alone.
    func appendAdd(_ ops: inout [JSON], map: JSONValue?, mapPath: String, entries: [(String, String)]) {
        guard let map, map.kind == .object else {
            ops.append(.obj(["op": "add", "path": .string(mapPath), "value": Self.map(entries)]))
            return
        }
        for (key, value) in entries where map[dynamic: key]?.string != value {
            ops.append(.obj(["op": "add", "path": .string(mapPath + "/" + Self.escapePointer(key)), "value": .string(value)]))
        }
    }

    /// RFC 6901: `~` becomes `~0` first, then `/` becomes `~1`.
    static func escapePointer(_ segment: String) -> String {
        var out = ""
        for c in segment {
            switch c {
            case "~": out += "~0"
            case "/": out += "~1"
            default: out.append(c)
            }
        }
        return out
    }
}
