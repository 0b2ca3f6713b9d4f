import Foundation
import Testing
@testable import PXGuardCore
@testable import PXGuardKube
@testable import PXGuardPlatform
@testable import PXGuardServer
@testable import PXGuardService

/// The real service (TLS listener, admission, provisioner, lease) against the
/// in-test Kubernetes API, both over real HTTPS on loopback.
@Suite("Service against the in-test Kubernetes API", .serialized)
struct ServiceEndToEndTests {
    static func podCreate(_ namespace: String) -> [UInt8] {
        let review: JSON = .obj(["apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": .obj([
            "uid": "e2e-1", "kind": .obj(["group": "", "version": "v1", "kind": "Pod"]),
            "resource": .obj(["group": "", "version": "v1", "resource": "pods"]),
            "name": "p", "namespace": .string(namespace), "operation": "CREATE",
            "userInfo": .obj(["username": "system:serviceaccount:kube-system:replicaset-controller"]),
            "object": .obj(["spec": .obj(["containers": [.obj(["name": "c", "image": "busybox"])]])]),
        ])])
        return Array(review.serialized.utf8)
    }

    @Test("namespace created → watch → policies → R6 lifts; a config file change rewrites every guard policy; /mutate writes nothing")
    func endToEnd() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        for ns in ["pxguard-system", "kube-system", "team-old"] { api.addNamespace(ns) }
        let dir = NSTemporaryDirectory() + "pxguard-e2e-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let configPath = dir + "/config.yaml"
        let (service, client) = try startService(api, config: "provisioning: {enabled: true, resyncSeconds: 300}\n", dir: dir)
        defer { service.stop() }
        func allowed(_ namespace: String) throws -> (Bool, String) {
            let answer = try client.request("POST", "/validate", headers: [("Content-Type", "application/json")],
                                            body: Self.podCreate(namespace))
            let response = try JSON(parsing: answer.body)["response"]
            return (response?["allowed"] == true, response?["status"]?["message"]?.stringValue ?? "")
        }
        #expect(eventually { canonical(api, "team-old") })
        // The Lease holder's first upkeep round (Secret, then both registrations) is done
        // before the log is cleared: its next round is 30 s away.
        #expect(eventually { api.requests.contains { $0.contains("/mutatingwebhookconfigurations/pxguard") } })
        // kube-system's block policy (another worker) and the audit's first lists are in too.
        #expect(eventually { api.objects("networkpolicies", in: "kube-system") == [GuardNames.blockPolicy] })
        #expect(eventually { (try? client.request("GET", "/metrics").bodyText.contains("\npxguard_audit_synced 1\n")) == true })

        // /mutate answers and writes nothing.
        api.clearLog()
        let namespaceReview: JSON = .obj(["apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": .obj([
            "uid": "e2e-2", "kind": .obj(["group": "", "version": "v1", "kind": "Namespace"]),
            "resource": .obj(["group": "", "version": "v1", "resource": "namespaces"]),
            "name": "team-new", "operation": "CREATE", "userInfo": .obj(["username": "alice"]),
            "object": .obj(["metadata": .obj(["name": "team-new"])]),
        ])])
        let mutated = try client.request("POST", "/mutate", headers: [("Content-Type", "application/json")],
                                         body: Array(namespaceReview.serialized.utf8))
        #expect(mutated.status == 200)
        usleep(300_000)
        // (Events for the provisioner's earlier writes may still be on their way, the Lease
        // holder's upkeep of certificates and registrations runs on its own clock, and the
        // audit's Lease holder may be looking up which report CRD is served: none is /mutate's.)
        #expect(api.requests.filter {
            !$0.contains("watch=1") && !$0.contains("/leases") && !$0.contains("/events") && !$0.contains("/secrets")
                && !$0.contains("webhookconfigurations") && !$0.hasPrefix("GET /apis/wgpolicyk8s.io/")
                && !$0.hasPrefix("GET /apis/openreports.io/")
        }.isEmpty)

        // The namespace appears; its pods wait until both policies are in place.
        api.inject((0..<4).map { _ in .init(status: 500, reason: "InternalError", retryAfter: nil, matching: "/namespaces/team-new") })
        api.addNamespace("team-new")
        usleep(100_000)
        let (early, message) = try allowed("team-new")
        #expect(!early && message.contains("being guarded"))
        #expect(eventually { (try? allowed("team-new").0) == true })
        #expect(canonical(api, "team-new"))
        #expect(try allowed("team-old").0)

        // A config file change (new node subnets) rewrites every guard policy.
        var config = Config.default
        config.nodeCIDRs = [CIDR("10.9.0.0/16")!]
        try "nodeCIDRs: [\"10.9.0.0/16\"]\nprovisioning: {enabled: true, resyncSeconds: 300}\n"
            .write(toFile: configPath, atomically: true, encoding: .utf8)
        #expect(eventually { ["team-old", "team-new"].allSatisfy { canonical(api, $0, config) } })
        #expect(eventually { GuardPolicies(config: config).isCanonical(
            spec: api.policy("kube-system", GuardNames.blockPolicy)?["spec"] ?? .null, name: GuardNames.blockPolicy, namespace: "kube-system") })
        // The reload also lists NetworkPolicies again (the audit judges them anew): the view
        // catches up with the rewritten policies once that list is done.
        #expect(eventually {
            let metrics = (try? client.request("GET", "/metrics").bodyText) ?? ""
            return metrics.contains("pxguard_unguarded_namespaces 0") && metrics.contains("pxguard_view_synced 1")
        })
    }
}
