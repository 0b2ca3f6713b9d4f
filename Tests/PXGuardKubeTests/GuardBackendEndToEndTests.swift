import Foundation
import Testing
@testable import PXGuardCore
@testable import PXGuardKube
@testable import PXGuardPlatform
@testable import PXGuardServer
@testable import PXGuardService

/// The real service with `guardBackend: auto` against the in-test API that serves
/// Cilium's API: discovery picks cilium, the objects appear, R6 stands aside, R2
/// protects them, the metrics say so; a reload to `networkpolicy` provisions the
/// per-namespace policies before the CiliumClusterwideNetworkPolicies go.
@Suite("Service with a cluster-scoped guard backend", .serialized)
struct GuardBackendEndToEndTests {
    static func review(_ uid: String, group: String, kind: String, namespace: String, name: String, operation: String,
                       object: JSON?, old: JSON?) -> [UInt8] {
        let review: JSON = .obj(["apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": .obj([
            "uid": .string(uid), "kind": .obj(["group": .string(group), "version": "v2", "kind": .string(kind)]),
            "resource": .obj(["group": .string(group), "version": "v2", "resource": "things"]),
            "name": .string(name), "namespace": .string(namespace), "operation": .string(operation),
            "userInfo": .obj(["username": "alice"]), "object": object ?? .null, "oldObject": old ?? .null,
        ])])
        return Array(review.serialized.utf8)
    }

    /// The in-test API serving Cilium's group, with pxguard's, kube-system and one tenant namespace.
    static func ciliumAPI() throws -> FakeKubeAPI {
        let api = try FakeKubeAPI()
        api.state.withLock { $0.servedGroupVersions = ["apps/v1", "networking.k8s.io/v1", "cilium.io/v2"] }
        for ns in ["pxguard-system", "kube-system", "team-a"] { api.addNamespace(ns) }
        return api
    }

    @Test("auto → cilium: objects created, R6 aside, R2 on the objects, metrics; reload to networkpolicy swaps guards safely")
    func ciliumThenNetworkPolicy() throws {
        let api = try Self.ciliumAPI()
        defer { api.shutdown() }
        api.put("daemonsets", "kube-system", "cilium", .obj(["metadata": .obj(["name": "cilium"])]))
        let dir = NSTemporaryDirectory() + "pxguard-backend-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let configPath = dir + "/config.yaml"
        let (service, client) = try startService(api, config: "guardBackend: auto\n", dir: dir)
        defer { service.stop() }
        func validate(_ body: [UInt8]) throws -> Bool {
            let answer = try client.request("POST", "/validate", headers: [("Content-Type", "application/json")], body: body)
            return try JSON(parsing: answer.body)["response"]?["allowed"] == true
        }
        let cilium = GuardBackend.cilium.resources[0]
        func ccnp(_ name: String) -> JSON? { api.state.withLock { $0.objects["\(cilium.plural)//\(name)"] } }
        #expect(eventually { ccnp(GuardNames.clusterBlock) != nil && ccnp(GuardNames.clusterBlockKubeSystem) != nil })

        // A new namespace: covered at once, so its first pod is admitted at once (R6 aside).
        api.addNamespace("team-new")
        let pod: JSON = .obj(["spec": .obj(["containers": [.obj(["name": "c", "image": "busybox"])]])])
        #expect(try validate(Self.review("p1", group: "", kind: "Pod", namespace: "team-new", name: "p", operation: "CREATE", object: pod, old: nil)))
        #expect(eventually { label(api, "team-new", GuardNames.guardedLabel) == "true" })
        #expect(api.objects("networkpolicies", in: "team-new").isEmpty)

        // R2 on the guard object.
        let object = try #require(ccnp(GuardNames.clusterBlock))
        #expect(!(try validate(Self.review("d1", group: "cilium.io", kind: "CiliumClusterwideNetworkPolicy", namespace: "",
                                           name: GuardNames.clusterBlock, operation: "DELETE", object: nil, old: object))))
        let metrics = try client.request("GET", "/metrics").bodyText
        #expect(metrics.contains("pxguard_guard_backend{backend=\"cilium\"} 1"))
        #expect(metrics.contains("pxguard_cni_enforcement{verdict=\"enforcing\"} 1"))
        #expect(metrics.contains("pxguard_cluster_guard_in_place{backend=\"cilium\"} 1"))
        #expect(metrics.contains("pxguard_unguarded_namespaces 0"))

        // Reload to networkpolicy: the pair in every guarded namespace first, then the CCNPs go.
        api.clearLog()
        try "guardBackend: networkpolicy\n".write(toFile: configPath, atomically: true, encoding: .utf8)
        #expect(eventually(15) { canonical(api, "team-a") && canonical(api, "team-new") })
        #expect(eventually { ccnp(GuardNames.clusterBlock) == nil && ccnp(GuardNames.clusterBlockKubeSystem) == nil })
        let log = api.requests
        let lastCreate = try #require(log.lastIndex { $0.hasPrefix("POST /apis/networking.k8s.io") })
        let firstDelete = try #require(log.firstIndex { $0.hasPrefix("DELETE /apis/cilium.io") })
        #expect(lastCreate < firstDelete)
        let after = try client.request("GET", "/metrics").bodyText
        #expect(after.contains("pxguard_guard_backend{backend=\"networkpolicy\"} 1"))
        // Every change it made to the cluster is an Event: the objects created, then removed.
        #expect(eventually { events(api, reason: "GuardObjectCreated").count == 2 && events(api, reason: "GuardObjectRemoved").count == 2 })
        let created = events(api, reason: "GuardObjectCreated").compactMap { $0["involvedObject"]?["kind"]?.stringValue }
        #expect(created == ["CiliumClusterwideNetworkPolicy", "CiliumClusterwideNetworkPolicy"])
        if api.object("secrets", "pxguard-system", "pxguard-tls") != nil {
            #expect(eventually { events(api, reason: "CertificatesCreated").count == 1 })
        }
    }

    @Test("auto with discovery failing at start: tried again until it answers, then the served backend is used without a reload")
    func discoveryRetried() throws {
        let api = try Self.ciliumAPI()
        defer { api.shutdown() }
        api.inject([.init(status: 503, reason: "ServiceUnavailable", retryAfter: nil, exactly: "/apis"),
                    .init(status: 503, reason: "ServiceUnavailable", retryAfter: nil, exactly: "/apis")])
        let dir = NSTemporaryDirectory() + "pxguard-backend-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (service, client) = try startService(api, config: "guardBackend: auto\n", dir: dir)
        defer { service.stop() }
        // A broken file meanwhile (its reload refused): the retry runs on the configuration in force.
        try "guardBackend: [\n".write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        let cilium = GuardBackend.cilium.resources[0]
        #expect(eventually(30) { api.state.withLock { $0.objects["\(cilium.plural)//\(GuardNames.clusterBlock)"] } != nil })
        let metrics = try client.request("GET", "/metrics").bodyText
        #expect(metrics.contains("pxguard_guard_backend{backend=\"cilium\"} 1"))
        #expect(api.requests.filter { $0 == "GET /apis" }.count >= 3)
    }
}
