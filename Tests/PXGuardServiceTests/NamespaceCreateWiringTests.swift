import Foundation
import Testing
@testable import PXGuardCore
@testable import PXGuardServer
@testable import PXGuardService

/// Issue 23, finding 1, over HTTPS against the real server: a namespace CREATE with
/// `generateName` and a spoofed `kubernetes.io/metadata.name`, as the API server sends
/// it to the mutating webhook (nameless) and then to the validating one (as stored).
@Suite("generateName namespaces over HTTPS: mutated without a name, judged as stored", .serialized)
struct NamespaceCreateWiringTests {
    static let spoofed: JSON = .obj([
        "kubernetes.io/metadata.name": "kube-system", "pxguard.io/guarded": "false",
        "pod-security.kubernetes.io/enforce": "privileged",
    ])

    static func review(_ metadata: JSON, name: String) -> [UInt8] {
        let object: JSON = .obj(["apiVersion": "v1", "kind": "Namespace", "metadata": metadata, "spec": .obj(["finalizers": ["kubernetes"]]),
                                 "status": .obj(["phase": "Active"])])
        let review: JSON = .obj([
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": .obj([
                "uid": "9e9e9e9e-1111-4222-8333-444455556666",
                "kind": .obj(["group": "", "version": "v1", "kind": "Namespace"]),
                "resource": .obj(["group": "", "version": "v1", "resource": "namespaces"]),
                "requestKind": .obj(["group": "", "version": "v1", "kind": "Namespace"]),
                "name": .string(name), "operation": "CREATE",
                "userInfo": .obj(["username": "tenant-admin", "groups": ["system:authenticated"]]),
                "object": object, "oldObject": .null, "dryRun": false,
                "options": .obj(["apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"]),
            ]),
        ])
        return Array(review.serialized.utf8)
    }

    @Test("the nameless CREATE gets M1's patch; the stored namespace is denied unless the patch was applied")
    func generateName() throws {
        let server = try TestServer()
        let client = try server.client()
        // Mutating admission: no name yet, the label as the requester wrote it.
        let nameless: JSON = .obj(["generateName": "team-", "creationTimestamp": .null, "labels": Self.spoofed])
        let mutated = try JSON(parsing: try client.request("POST", "/mutate", headers: jsonHeaders,
                                                           body: Self.review(nameless, name: "")).body)
        let patchText = try #require(mutated["response"]?["patch"]?.stringValue)
        let patch = try JSON(parsing: Array(Data(base64Encoded: patchText)!))
        let ops = patch.arrayValue?.compactMap { $0["path"]?.stringValue } ?? []
        #expect(ops.contains("/metadata/labels/pxguard.io~1guarded"), "\(patch.serialized)")
        #expect(ops.contains("/metadata/labels/pod-security.kubernetes.io~1enforce"), "\(patch.serialized)")
        // Validating admission sees it as stored: generated name, the real name label.
        var labels = Self.spoofed.setting("kubernetes.io/metadata.name", "team-x7k2p")
        let skipped = try JSON(parsing: try client.request("POST", "/validate", headers: jsonHeaders, body: Self.review(
            .obj(["name": "team-x7k2p", "generateName": "team-", "labels": labels]), name: "team-x7k2p")).body)
        #expect(skipped["response"]?["allowed"] == false)
        #expect(skipped["response"]?["status"]?["message"]?.stringValue?.contains("pxguard: optOut: creating namespace team-x7k2p") == true)
        labels = labels.setting("pxguard.io/guarded", "true").setting("pod-security.kubernetes.io/enforce", "baseline")
        let patched = try JSON(parsing: try client.request("POST", "/validate", headers: jsonHeaders, body: Self.review(
            .obj(["name": "team-x7k2p", "generateName": "team-", "labels": labels]), name: "team-x7k2p")).body)
        #expect(patched["response"]?["allowed"] == true)
    }
}
