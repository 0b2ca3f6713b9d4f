import Foundation
import Testing
@testable import PXGuardCore

/// A fixed-seed generator (a 64-bit LCG), so that generated tests see the same
/// inputs on every run.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state
    }

    /// A number in 0..<bound from the generator's high bits.
    mutating func next(_ bound: Int) -> Int { Int((next() >> 33) % UInt64(bound)) }
}

/// Builds AdmissionReview bodies for the rule corpus.
struct Review {
    var version = "admission.k8s.io/v1"
    var group = ""
    var kind = "Pod"
    var operation = "CREATE"
    var namespace = "default"
    var name = "demo"
    var user = "alice@example.com"
    var groups: [String] = ["system:authenticated"]
    var object: JSON? = nil
    var oldObject: JSON? = nil
    var dryRun = false
    var subResource: String? = nil

    var json: JSON {
        .obj([
            "apiVersion": .string(version),
            "kind": "AdmissionReview",
            "request": .obj([
                "uid": "0d3c2b1a-0000-4000-8000-000000000001",
                "kind": .obj(["group": .string(group), "version": "v1", "kind": .string(kind)]),
                "resource": .obj(["group": .string(group), "version": "v1", "resource": "things"]),
                "subResource": subResource.map { .string($0) },
                "name": .string(name),
                "namespace": .string(namespace),
                "operation": .string(operation),
                "userInfo": .obj(["username": .string(user), "groups": .array(groups.map { .string($0) })]),
                "object": object ?? .null,
                "oldObject": oldObject ?? .null,
                "dryRun": .bool(dryRun),
            ]),
        ])
    }

    var bytes: [UInt8] { Array(json.serialized.utf8) }
}

/// Decodes `bytes` and runs the validating side of `policy`.
func validate(_ bytes: [UInt8], _ policy: AdmissionPolicy = AdmissionPolicy(config: .default)) throws -> Verdict {
    try bytes.withUnsafeBytes { raw in
        try AdmissionRequest.withDecoded(raw) { policy.validate($0) }
    }
}

func mutate(_ bytes: [UInt8], _ policy: AdmissionPolicy = AdmissionPolicy(config: .default)) throws -> AdmissionPolicy.Mutation {
    try bytes.withUnsafeBytes { raw in
        try AdmissionRequest.withDecoded(raw) { policy.mutate($0) }
    }
}

func fixture(_ name: String) throws -> [UInt8] {
    let url = try #require(Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures"))
    return Array(try Data(contentsOf: url))
}

func pod(hostNetwork: Bool?, deletionTimestamp: Bool = false) -> JSON {
    var meta: JSON = .obj(["name": "demo", "namespace": "default"])
    if deletionTimestamp { meta = meta.setting("deletionTimestamp", "2026-11-24T10:00:00Z") }
    var spec: JSON = .obj(["containers": [.obj(["name": "c", "image": "busybox"])]])
    if let hostNetwork { spec = spec.setting("hostNetwork", .bool(hostNetwork)) }
    return .obj(["apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec])
}

func networkPolicy(name: String = "custom", namespace: String = "default", labels: JSON? = nil, spec: JSON) -> JSON {
    .obj([
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": .obj(["name": .string(name), "namespace": .string(namespace), "labels": labels]),
        "spec": spec,
    ])
}

/// A minimal RFC 6902 applier (add, remove, replace, test) for checking patches.
enum JSONPatchApplier {
    struct Failure: Error, CustomStringConvertible { let description: String }

    static func apply(_ patch: JSON, to document: JSON) throws -> JSON {
        guard let ops = patch.arrayValue else { throw Failure(description: "patch is not an array") }
        var doc = document
        for op in ops {
            guard let name = op["op"]?.stringValue, let path = op["path"]?.stringValue else {
                throw Failure(description: "operation without op or path")
            }
            let tokens = try pointer(path)
            switch name {
            case "add", "replace":
                guard let value = op["value"] else { throw Failure(description: "\(name) without value") }
                doc = try set(doc, tokens[...], value, mustExist: name == "replace")
            case "remove":
                doc = try remove(doc, tokens[...])
            default:
                throw Failure(description: "unsupported op \(name)")
            }
        }
        return doc
    }

    static func pointer(_ path: String) throws -> [String] {
        guard path.hasPrefix("/") else { throw Failure(description: "path \(path) does not start with /") }
        return path.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map {
            $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
        }
    }

    static func set(_ node: JSON, _ tokens: ArraySlice<String>, _ value: JSON, mustExist: Bool) throws -> JSON {
        guard let key = tokens.first else { return value }
        guard case .object = node else { throw Failure(description: "parent of \(key) is not an object") }
        if tokens.count == 1 {
            if mustExist && node[key] == nil { throw Failure(description: "replace of missing \(key)") }
            return node.setting(key, value)
        }
        guard let child = node[key] else { throw Failure(description: "missing path at \(key)") }
        return node.setting(key, try set(child, tokens.dropFirst(), value, mustExist: mustExist))
    }

    static func remove(_ node: JSON, _ tokens: ArraySlice<String>) throws -> JSON {
        guard let key = tokens.first, case .object(let members) = node else { throw Failure(description: "bad remove") }
        if tokens.count == 1 { return .object(members.filter { $0.key != key }) }
        guard let child = node[key] else { throw Failure(description: "missing path at \(key)") }
        return node.setting(key, try remove(child, tokens.dropFirst()))
    }
}
