import Foundation
import Testing
@testable import PXGuardCore
@testable import PXGuardKube
@testable import PXGuardPlatform
@testable import PXGuardServer

func data(_ secret: JSON?, _ key: String) -> [UInt8]? {
    secret?["data"]?[key]?.stringValue.flatMap(Base64.decode)
}

/// The Secret as `scripts/install.sh` makes it from `pxguard certs`: no CA key.
func installShSecret(_ dir: String) throws -> JSON {
    try CertificateFactory.write(to: dir, service: "pxguard", namespace: "pxguard-system")
    func b64(_ name: String) throws -> JSON { .string(Base64.encode(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name))))) }
    return .obj(["apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                 "metadata": .obj(["name": "pxguard-tls", "namespace": "pxguard-system"]),
                 "data": .obj(["tls.crt": try b64("tls.crt"), "tls.key": try b64("tls.key"), "ca.crt": try b64("ca.crt")])])
}

@Suite("Self-managed certificates against the in-test Kubernetes API", .serialized)
struct CertificateManagerTests {
    static func client(_ api: FakeKubeAPI) throws -> KubeConnection {
        try KubeClient(endpoint: KubeEndpoint(url: api.url, tokenFile: api.tokenFile, caFile: api.caFile)).connection()
    }

    static func settings(validity: Int = 3600, renewBefore: Int = 600, caValidity: Int = 86_400, caRenewBefore: Int = 7200,
                         rollout: Int = 1) -> Config.Certificates {
        var s = Config.Certificates()
        s.validitySeconds = validity
        s.renewBeforeSeconds = renewBefore
        s.caValiditySeconds = caValidity
        s.caRenewBeforeSeconds = caRenewBefore
        s.rolloutSeconds = rollout
        return s
    }

    @Test("no Secret: one write creates a CA and a serving pair it signs, and the bundle is published")
    func createsSecret() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("pxguard-system")
        let manager = CertificateManager(service: "pxguard", namespace: "pxguard-system", settings: Self.settings(), logger: .none)
        var published: [[UInt8]] = []
        let (outcome, bundle) = manager.round(try Self.client(api)) { published.append($0); return true }
        #expect(outcome == .created)
        let secret = api.object("secrets", "pxguard-system", "pxguard-tls")
        #expect(secret?["type"] == "kubernetes.io/tls")
        let ca = try #require(data(secret, "ca.crt"))
        let tls = try #require(data(secret, "tls.crt"))
        #expect(bundle == ca && published.last == ca)
        #expect(CertificateAuthority.isSigned(tls, by: ca))
        #expect(CertificateAuthority.keyMatches(certificate: tls, key: try #require(data(secret, "tls.key"))))
        #expect(CertificateAuthority.keyMatches(certificate: ca, key: try #require(data(secret, "ca.key"))))
        #expect(CertificateAuthority.validity(tls) == .valid)
        // In step: the next round writes nothing.
        #expect(manager.round(try Self.client(api)) { _ in true }.0 == .unchanged)
    }

    @Test("every write of the Secret is an Event on it; a round that writes nothing records none")
    func events() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("pxguard-system")
        let recorder = try EventRecorderTests().recorder(api)
        spawnThread(name: "t-events") { recorder.run() }
        defer { recorder.stop() }
        // renewBefore longer than the lifetime: the second round renews the serving pair.
        let manager = CertificateManager(service: "pxguard", namespace: "pxguard-system", settings: Self.settings(validity: 60, renewBefore: 120),
                                         logger: .none, events: recorder)
        let connection = try Self.client(api)
        _ = manager.round(connection) { _ in true }
        _ = manager.round(connection) { _ in true }
        #expect(eventually { api.events().count == 2 })
        let reasons = api.events().compactMap { $0["reason"]?.stringValue }.sorted()
        #expect(reasons == ["CertificatesCreated", "CertificatesUpdated"])
        #expect(api.events().allSatisfy { $0["involvedObject"]?["name"] == "pxguard-tls" && $0["metadata"]?["namespace"] == "pxguard-system" })
        #expect(api.events().contains { ($0["message"]?.stringValue ?? "").contains("serving certificate renewed") })
    }

    @Test("a serving certificate inside renewBefore of its expiry (X509_cmp_time) is replaced; the CA stays")
    func renewsServing() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("pxguard-system")
        // renewBefore longer than the lifetime: every serving pair is already due.
        var settings = Self.settings(validity: 60, renewBefore: 120)
        let manager = CertificateManager(service: "pxguard", namespace: "pxguard-system", settings: settings, logger: .none)
        let connection = try Self.client(api)
        _ = manager.round(connection) { _ in true }
        let before = api.object("secrets", "pxguard-system", "pxguard-tls")
        let (outcome, _) = manager.round(connection) { _ in true }
        #expect(outcome == .updated(["serving certificate renewed"]))
        let after = api.object("secrets", "pxguard-system", "pxguard-tls")
        #expect(data(after, "tls.crt") != data(before, "tls.crt"))
        #expect(data(after, "ca.crt") == data(before, "ca.crt"))
        #expect(data(after, "ca.key") == data(before, "ca.key"))
        #expect(CertificateAuthority.isSigned(try #require(data(after, "tls.crt")), by: try #require(data(after, "ca.crt"))))
        // With an ordinary margin it is left alone.
        settings.renewBeforeSeconds = 10
        manager.reload(settings)
        #expect(manager.round(connection) { _ in true }.0 == .unchanged)
        #expect(manager.metricsText.contains("pxguard_certificate_rotations_total{kind=\"serving\"} 2"))
    }

    @Test("CA rotation overlaps: the new CA is published, signs nothing until the registrations carried it for rolloutSeconds, and the old CA stays trusted")
    func rotatesCAWithOverlap() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("pxguard-system")
        let dir = NSTemporaryDirectory() + "pxguard-certs-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Adopting install.sh's Secret: a CA without its key, so a new CA is needed.
        api.put("secrets", "pxguard-system", "pxguard-tls", try installShSecret(dir))
        let oldCA = try #require(data(api.object("secrets", "pxguard-system", "pxguard-tls"), "ca.crt"))
        let oldServing = data(api.object("secrets", "pxguard-system", "pxguard-tls"), "tls.crt")
        let manager = CertificateManager(service: "pxguard", namespace: "pxguard-system", settings: Self.settings(rollout: 1), logger: .none)
        let connection = try Self.client(api)
        var registrations: [UInt8] = oldCA
        var trusting = false
        let publish: ([UInt8]) -> Bool = { bundle in
            if trusting { registrations = bundle }
            return trusting
        }

        // Round 1: the new CA joins the bundle; the serving pair is untouched.
        guard case .updated = manager.round(connection, publish: publish).0 else { Issue.record("no update"); return }
        var secret = api.object("secrets", "pxguard-system", "pxguard-tls")
        let bundle = try #require(data(secret, "ca.crt"))
        #expect(CertificateAuthority.certificates(inBundle: bundle).count == 2)
        #expect(data(secret, "tls.crt") == oldServing)
        #expect(data(secret, "next-ca.crt") != nil)

        // While the registrations do not carry it, nothing is promoted, however long.
        usleep(1_200_000)
        _ = manager.round(connection, publish: publish)
        #expect(data(api.object("secrets", "pxguard-system", "pxguard-tls"), "tls.crt") == oldServing)

        // Trusted from now; promoted only once rolloutSeconds have passed.
        trusting = true
        _ = manager.round(connection, publish: publish)
        secret = api.object("secrets", "pxguard-system", "pxguard-tls")
        #expect(data(secret, "tls.crt") == oldServing)
        #expect(secret?["metadata"]?["annotations"]?[CertificateManager.trustedSinceAnnotation] != nil)
        #expect(eventually(5) {
            _ = manager.round(connection, publish: publish)
            return data(api.object("secrets", "pxguard-system", "pxguard-tls"), "tls.crt") != oldServing
        })
        secret = api.object("secrets", "pxguard-system", "pxguard-tls")
        let serving = try #require(data(secret, "tls.crt"))
        let finalBundle = try #require(data(secret, "ca.crt"))
        let newCA = try #require(CertificateAuthority.certificates(inBundle: finalBundle).last)
        #expect(CertificateAuthority.isSigned(serving, by: newCA))
        #expect(!CertificateAuthority.isSigned(serving, by: oldCA))
        // Old CA still trusted (it has not expired); the registrations carry both.
        #expect(CertificateAuthority.certificates(inBundle: finalBundle).contains(CertificateAuthority.certificates(inBundle: oldCA)[0]))
        #expect(registrations == finalBundle)
        #expect(data(secret, "next-ca.crt") == nil)
        #expect(CertificateAuthority.keyMatches(certificate: newCA, key: try #require(data(secret, "ca.key"))))
        #expect(manager.metricsText.contains("pxguard_certificate_rotations_total{kind=\"ca\"} 1"))
    }

    @Test("an expired CA leaves the bundle")
    func dropsExpiredCA() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("pxguard-system")
        let manager = CertificateManager(service: "pxguard", namespace: "pxguard-system", settings: Self.settings(), logger: .none)
        let connection = try Self.client(api)
        _ = manager.round(connection) { _ in true }
        var secret = try #require(api.object("secrets", "pxguard-system", "pxguard-tls"))
        // A CA that expired a second after its five-minute backdating: notAfter is in the past.
        let expired = try CertificateAuthority.newCA(lifetimeSeconds: -1)
        #expect(CertificateAuthority.isExpired(expired.certificate))
        let bundle = try #require(data(secret, "ca.crt"))
        secret = secret.setting("data", (secret["data"] ?? .obj([:])).setting("ca.crt", .string(Base64.encode(expired.certificate + bundle))))
        api.put("secrets", "pxguard-system", "pxguard-tls", secret)
        let (outcome, published) = manager.round(connection) { _ in true }
        #expect(outcome == .updated(["expired CA removed from ca.crt"]))
        #expect(published == bundle)
    }

    @Test("a Secret cert-manager manages is left alone")
    func standsAsideForCertManager() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("pxguard-system")
        let dir = NSTemporaryDirectory() + "pxguard-certs-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var secret = try installShSecret(dir)
        secret = secret.setting("metadata", secret["metadata"]!.setting("annotations", .obj(["cert-manager.io/certificate-name": "pxguard"])))
        api.put("secrets", "pxguard-system", "pxguard-tls", secret)
        let before = api.object("secrets", "pxguard-system", "pxguard-tls")
        let manager = CertificateManager(service: "pxguard", namespace: "pxguard-system", settings: Self.settings(), logger: .none)
        var asked = false
        let (outcome, bundle) = manager.round(try Self.client(api)) { _ in asked = true; return true }
        #expect(outcome == .standingAside && bundle == nil && !asked)
        #expect(api.object("secrets", "pxguard-system", "pxguard-tls") == before)
    }
}
