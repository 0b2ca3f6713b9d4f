/// M1: a new guarded namespace is labelled and annotated on creation.
public struct NamespaceMutation: Sendable {
    public init() {}

    /// The JSON patch for a Namespace CREATE in a guarded namespace, or nil when
    /// there is nothing to change.
    public func patch(for request: AdmissionRequest, config: Config) -> [UInt8]? {
        guard request.isNamespace, request.operation == .create, let object = request.object,
            config.isGuarded(namespace: request.objectName)
        else { return nil }
        var ops: [JSON] = []
        let metadata = object["metadata"]
        if metadata == nil || metadata!.kind != .object {
            ops.append(.obj(["op": "add", "path": "/metadata", "value": .obj([
                "labels": .obj([GuardNames.guardedLabel: "true"]),
                "annotations": .obj([GuardNames.policiesAnnotation: .string(GuardNames.policiesAnnotationValue)]),
            ])]))
        } else {
            appendAdd(&ops, map: metadata?["labels"], mapPath: "/metadata/labels",
                      key: GuardNames.guardedLabel, value: "true")
            appendAdd(&ops, map: metadata?["annotations"], mapPath: "/metadata/annotations",
                      key: GuardNames.policiesAnnotation, value: GuardNames.policiesAnnotationValue)
        }
        guard !ops.isEmpty else { return nil }
        var out: [UInt8] = []
        JSON.array(ops).write(into: &out)
        return out
    }

    /// Adds `key: value` to the map at `mapPath`, creating the map when it is absent
    /// (RFC 6902 `add` needs the parent) and leaving other entries alone.
    func appendAdd(_ ops: inout [JSON], map: JSONValue?, mapPath: String, key: String, value: String) {
        guard let map, map.kind == .object else {
            ops.append(.obj(["op": "add", "path": .string(mapPath), "value": .obj([key: .string(value)])]))
            return
        }
        if map[dynamic: key]?.string == value { return }
        ops.append(.obj(["op": "add", "path": .string(mapPath + "/" + Self.escapePointer(key)), "value": .string(value)]))
    }

    /// RFC 6901: `~` becomes `~0` first, then `/` becomes `~1`.
    public static func escapePointer(_ segment: String) -> String {
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
