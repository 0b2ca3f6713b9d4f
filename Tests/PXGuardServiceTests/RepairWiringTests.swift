import Foundation
import Testing
import PXGuardPlatform
@testable import PXGuardCore
@testable import PXGuardServer
@testable import PXGuardService

@Suite("R4 repair mode, through the server", .serialized)
struct RepairWiringTests {
    /// The AdmissionReview the API server sends for creating `policy`.
    static func review(_ policy: JSON) -> [UInt8] {
        let namespace = policy["metadata"]?["namespace"]?.stringValue ?? "default"
        return Array(JSON.obj([
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": .obj([
                "uid": "7c1d0c55-0000-4000-8000-000000000016",
                "kind": .obj(["group": "networking.k8s.io", "version": "v1", "kind": "NetworkPolicy"]),
                "resource": .obj(["group": "networking.k8s.io", "version": "v1", "resource": "networkpolicies"]),
                "name": policy["metadata"]?["name"], "namespace": .string(namespace), "operation": "CREATE",
                "userInfo": .obj(["username": "helm", "groups": ["system:authenticated"]]),
                "object": policy, "oldObject": .null, "dryRun": false,
            ]),
        ]).serialized.utf8)
    }

    @Test("/mutate answers kube-prometheus's allow-all egress with a JSONPatch and a warning; /validate denies it unrepaired and allows it repaired")
    func repairOverHTTPS() throws {
        let server = try TestServer(config: "rules:\n  bypassPolicies: {mode: repair}\n")
        let client = try server.client()
        let policy = try JSON(parsing: fixtureBytes("policies/kube-prometheus-grafana"))
        let mutated = try JSON(parsing: try client.request("POST", "/mutate", headers: jsonHeaders, body: Self.review(policy)).body)
        let response = try #require(mutated["response"])
        #expect(response["allowed"] == true)
        #expect(response["patchType"] == "JSONPatch")
        let warning = try #require(response["warnings"]?.arrayValue?.first?.stringValue)
        #expect(warning.hasPrefix("pxguard: bypassPolicies: repaired NetworkPolicy monitoring/grafana: egress rule 0"), "\(warning)")
        #expect(warning.count < 256)
        let encoded = try #require(response["patch"]?.stringValue)
        let patch = try JSON(parsing: Array(try #require(Data(base64Encoded: encoded))))
        #expect(patch.arrayValue?.first?["path"] == "/spec/egress")
        let egress = try #require(patch.arrayValue?.first?["value"])

        let unrepaired = try JSON(parsing: try client.request("POST", "/validate", headers: jsonHeaders, body: Self.review(policy)).body)
        #expect(unrepaired["response"]?["allowed"] == false)
        let spec = try #require(policy["spec"]).setting("egress", egress)
        let repaired = try JSON(parsing: try client.request("POST", "/validate", headers: jsonHeaders,
                                                            body: Self.review(policy.setting("spec", spec))).body)
        #expect(repaired["response"]?["allowed"] == true, "\(repaired.serialized)")
    }

    @Test("review --mutate answers the same offline")
    func reviewCommandRepairs() throws {
        let dir = try temporaryDirectory()
        try "rules:\n  bypassPolicies: {mode: repair}\n".write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        try Data(Self.review(try JSON(parsing: fixtureBytes("policies/online-boutique-frontend")))).write(to: URL(fileURLWithPath: dir + "/review.json"))
        let out = try JSON(parsing: Array(try reviewCommand(configPath: dir + "/config.yaml", mutate: true, file: dir + "/review.json").utf8))
        #expect(out["response"]?["patchType"] == "JSONPatch")
        let plain = try JSON(parsing: Array(try reviewCommand(configPath: nil, mutate: true, file: dir + "/review.json").utf8))
        #expect(plain["response"]?["patch"] == nil)
    }
}
