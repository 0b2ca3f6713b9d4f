import Foundation
import Synchronization
import Testing
@testable import PXGuardCore
@testable import PXGuardKube
@testable import PXGuardPlatform
@testable import PXGuardServer
@testable import PXGuardService

/// Two replicas of the real service against the in-test API, with lifetimes of
/// seconds: the Lease holder rotates the serving pair and the CA while clients that
/// trust exactly the registrations' `caBundle` (as the API server does) keep sending
/// reviews over fresh TLS connections. No review and no `/readyz` may fail.
@Suite("Certificate rotation under load", .serialized)
struct CertificateRotationLoadTests {
    /// The kubelet's part: each replica's `--cert-dir` follows the Secret, swapped
    /// atomically (a symlink to a new directory, as the kubelet's atomic writer does).
    final class SecretProjector: @unchecked Sendable {
        let api: FakeKubeAPI
        let links: [String]
        let root: String
        let stopped = Atomic<Bool>(false)
        let done = DispatchSemaphore(value: 0)
        var generation = 0
        var last: [UInt8]? = nil

        init(api: FakeKubeAPI, root: String, links: [String]) {
            self.api = api
            self.root = root
            self.links = links
        }

        func project() {
            guard let secret = api.object("secrets", "pxguard-system", "pxguard-tls"),
                let cert = data(secret, "tls.crt"), let key = data(secret, "tls.key"), cert != last else { return }
            generation += 1
            let dir = "\(root)/gen-\(generation)"
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: dir + "/tls.key", contents: Data(key))
            _ = FileManager.default.createFile(atPath: dir + "/tls.crt", contents: Data(cert))
            _ = FileManager.default.createFile(atPath: dir + "/ca.crt", contents: Data(data(secret, "ca.crt") ?? []))
            for link in links {
                let temporary = link + ".new"
                try? FileManager.default.removeItem(atPath: temporary)
                try? FileManager.default.createSymbolicLink(atPath: temporary, withDestinationPath: dir)
                rename(temporary, link)
            }
            last = cert
        }

        func start() {
            spawnThread(name: "test-kubelet") { [self] in
                while !stopped.load(ordering: .relaxed) {
                    project()
                    usleep(200_000)
                }
                done.signal()
            }
        }

        func stop() {
            stopped.store(true, ordering: .relaxed)
            done.wait()
        }
    }

    static func review(_ uid: Int) -> [UInt8] {
        let review: JSON = .obj(["apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": .obj([
            "uid": .string("load-\(uid)"), "kind": .obj(["group": "", "version": "v1", "kind": "Pod"]),
            "resource": .obj(["group": "", "version": "v1", "resource": "pods"]),
            "name": "p", "namespace": "kube-system", "operation": "CREATE",
            "userInfo": .obj(["username": "alice"]),
            "object": .obj(["spec": .obj(["containers": [.obj(["name": "c", "image": "busybox"])]])]),
        ])])
        return Array(review.serialized.utf8)
    }

    @Test("serving pair and CA rotate under load with two replicas: zero failed reviews, /readyz never fails, every replica serves the new pair")
    func rotationUnderLoad() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        for ns in ["pxguard-system", "kube-system"] { api.addNamespace(ns) }
        let root = NSTemporaryDirectory() + "pxguard-rotation-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let configPath = root + "/config.yaml"
        // Lifetimes of seconds; four times longer under a sanitizer (scripts/sanitize.sh), whose
        // slowdown otherwise lets a pair expire before its renewal is served.
        let k = Int(slowdown)
        try """
            certificates: {caValiditySeconds: \(24 * k), caRenewBeforeSeconds: \(12 * k), validitySeconds: \(8 * k), renewBeforeSeconds: \(4 * k), rolloutSeconds: \(2 * k)}
            provisioning: {enabled: true, resyncSeconds: 300}
            """.write(toFile: configPath, atomically: true, encoding: .utf8)
        let config = try loadConfig(configPath)

        // Installed as scripts/install.sh does: `pxguard certs` into the Secret, the
        // registrations rendered with its CA.
        let initial = try installShSecret(root + "/install")
        api.put("secrets", "pxguard-system", "pxguard-tls", initial)
        WebhookManagerTests.install(api, config, caBundle: data(initial, "ca.crt"))
        let links = [root + "/replica-0", root + "/replica-1"]
        let projector = SecretProjector(api: api, root: root + "/kubelet", links: links)
        projector.project()
        projector.start()

        var services: [Service] = []
        for (i, link) in links.enumerated() {
            var options = ServeOptions()
            options.configPath = configPath
            options.certDir = link
            options.listen = "127.0.0.1:0"
            options.kubeAPI = api.url
            options.kubeTokenFile = api.tokenFile
            options.kubeCA = api.caFile
            options.certPollSeconds = 0.1
            options.shutdownGrace = 1
            options.identity = "replica-\(i)"
            let service = try Service(options: options, logger: .none)
            service.start()
            services.append(service)
        }
        defer {
            for service in services { service.stop() }
            projector.stop()
        }
        #expect(eventually { services.allSatisfy { $0.readiness.notReadyReason == nil } })

        let ports = services.map { $0.server.port }
        // The API servers' view of the registration lags it by a second (their
        // informers), so a CA must be trusted before it signs, not at the same moment.
        @Sendable func bundleNow() -> [UInt8] {
            WebhookManagerTests.hook(api.object("validatingwebhookconfigurations", "", "pxguard"), "workloads.pxguard.io")?["clientConfig"]?["caBundle"]?
                .stringValue.flatMap(Base64.decode) ?? []
        }
        let seen = Locked<[(at: Double, bundle: [UInt8])]>([(Clock.monotonic().seconds, bundleNow())])
        // Clients: each new connection trusts exactly the validating registration's caBundle.
        let reviews = Atomic<Int>(0)
        let failures = Locked<[String]>([])
        let stop = Atomic<Bool>(false)
        let group = DispatchGroup()
        group.enter()
        spawnThread(name: "test-apiserver-informer") {
            defer { group.leave() }
            while !stop.load(ordering: .relaxed) {
                let bundle = bundleNow()
                seen.withLock { if $0.last?.bundle != bundle { $0.append((Clock.monotonic().seconds, bundle)) } }
                usleep(50_000)
            }
        }
        for worker in 0..<4 {
            group.enter()
            spawnThread(name: "test-apiserver-\(worker)") {
                defer { group.leave() }
                let caFile = "\(root)/client-\(worker).pem"
                var n = 0
                while !stop.load(ordering: .relaxed) {
                    n += 1
                    let cutoff = Clock.monotonic().seconds - 1
                    let bundle = seen.withLock { history in (history.last { $0.at <= cutoff } ?? history[0]).bundle }
                    _ = FileManager.default.createFile(atPath: caFile, contents: Data(bundle))
                    let port = ports[(worker + n) % ports.count]
                    do {
                        let client = HTTPClientConnection(try TLSClientConnection(
                            address: SocketAddress(parsing: "127.0.0.1:\(port)"),
                            context: TLSContext.client(caFile: caFile), serverName: "pxguard.pxguard-system.svc", timeout: 5))
                        defer { client.close() }
                        for k in 0..<5 {
                            let answer = try client.request("POST", "/validate?timeout=5s", headers: [("Content-Type", "application/json")],
                                                            body: Self.review(worker * 1_000_000 + n * 10 + k))
                            guard answer.status == 200, (try? JSON(parsing: answer.body))?["response"]?["allowed"] != nil else {
                                failures.withLock { $0.append("review answered \(answer.status)") }
                                continue
                            }
                            reviews.add(1, ordering: .relaxed)
                        }
                        let ready = try client.request("GET", "/readyz")
                        if ready.status != 200 { failures.withLock { $0.append("/readyz \(ready.status): \(ready.bodyText)") } }
                    } catch {
                        failures.withLock { $0.append("connection \(n) to port \(port): \(error)") }
                    }
                }
            }
        }
        // Long enough for the CA adopted from install.sh to be replaced, the new CA to
        // be renewed ahead of its own expiry (12 s before it), and several serving renewals.
        let caRotations = { (services.map { $0.provisioner.upkeep?.certificates?.caRotations.load(ordering: .relaxed) ?? 0 }).reduce(0, +) }
        #expect(eventually(Double(40 * k)) { caRotations() >= 2 })
        usleep(1_000_000)
        stop.store(true, ordering: .relaxed)
        group.wait()

        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0.prefix(5) })")
        #expect(reviews.load(ordering: .relaxed) > 100)
        let servingRotations = services.map { $0.provisioner.upkeep?.certificates?.servingRotations.load(ordering: .relaxed) ?? 0 }.reduce(0, +)
        #expect(servingRotations >= 3)
        // Every replica serves the Secret's current pair.
        let secret = api.object("secrets", "pxguard-system", "pxguard-tls")
        let current = CertificateAuthority.notAfter(try #require(data(secret, "tls.crt")))
        #expect(eventually(5) { services.allSatisfy { $0.tls.value.notAfter == CertificateAuthority.notAfter(data(api.object("secrets", "pxguard-system", "pxguard-tls"), "tls.crt") ?? []) } })
        #expect(current != nil)
        // The registrations carry the Secret's bundle, and it holds the CA that signed the pair.
        let bundle = try #require(data(api.object("secrets", "pxguard-system", "pxguard-tls"), "ca.crt"))
        let carried = WebhookManagerTests.hook(api.object("validatingwebhookconfigurations", "", "pxguard"), "workloads.pxguard.io")?["clientConfig"]?["caBundle"]?.stringValue
        #expect(carried == Base64.encode(bundle))
        let metrics = services.map { $0.metrics.render(transport: nil, ready: true) }.joined()
        #expect(metrics.contains("pxguard_certificate_rotations_total{kind=\"ca\"}"))
        #expect(services.allSatisfy { $0.metrics.reloadFailures.load(ordering: .relaxed) == 0 })
    }

    @Test("first start of a bundle applied without a Secret: the replica creates it, waits for the kubelet to mount it, then serves; the Lease holder fills caBundle")
    func firstStartWithoutSecret() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        for ns in ["pxguard-system", "kube-system"] { api.addNamespace(ns) }
        let root = NSTemporaryDirectory() + "pxguard-bootstrap-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        try "provisioning: {enabled: true, resyncSeconds: 300}\n".write(toFile: root + "/config.yaml", atomically: true, encoding: .utf8)
        // The bundle as `kubectl apply -k deploy` leaves it: registrations without caBundle, no Secret.
        WebhookManagerTests.install(api, try loadConfig(root + "/config.yaml"))
        let projector = SecretProjector(api: api, root: root + "/kubelet", links: [root + "/certs"])
        projector.start()
        defer { projector.stop() }
        var options = ServeOptions()
        options.configPath = root + "/config.yaml"
        options.certDir = root + "/certs"
        options.listen = "127.0.0.1:0"
        options.kubeAPI = api.url
        options.kubeTokenFile = api.tokenFile
        options.kubeCA = api.caFile
        options.certPollSeconds = 0.1
        options.certWaitSeconds = 20
        options.shutdownGrace = 1
        let service = try Service(options: options, logger: .none)
        service.start()
        defer { service.stop() }
        let secret = try #require(api.object("secrets", "pxguard-system", "pxguard-tls"))
        #expect(data(secret, "ca.key") != nil)
        #expect(eventually { service.readiness.notReadyReason == nil })
        let encoded = Base64.encode(try #require(data(secret, "ca.crt")))
        #expect(eventually {
            WebhookManagerTests.hook(api.object("validatingwebhookconfigurations", "", "pxguard"), "workloads.pxguard.io")?["clientConfig"]?["caBundle"]?.stringValue == encoded
        })
        // A client that trusts exactly the registered caBundle gets answers.
        let caFile = root + "/bundle.pem"
        _ = FileManager.default.createFile(atPath: caFile, contents: Data(Base64.decode(encoded) ?? []))
        let client = HTTPClientConnection(try TLSClientConnection(address: SocketAddress(parsing: "127.0.0.1:\(service.server.port)"),
            context: TLSContext.client(caFile: caFile), serverName: "pxguard.pxguard-system.svc", timeout: 5))
        #expect(try client.request("POST", "/validate", headers: [("Content-Type", "application/json")], body: Self.review(1)).status == 200)
    }

    @Test("with no Secret mounted and none creatable, the start fails after certWaitSeconds with what to check")
    func firstStartFailsClearly() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        // No pxguard-system namespace: the create answers 404.
        let root = NSTemporaryDirectory() + "pxguard-bootstrap-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        var options = ServeOptions()
        options.certDir = root + "/certs"
        options.listen = "127.0.0.1:0"
        options.kubeAPI = api.url
        options.kubeTokenFile = api.tokenFile
        options.kubeCA = api.caFile
        options.certWaitSeconds = 1
        #expect(throws: CommandError.self) { _ = try Service(options: options, logger: .none) }
        do {
            _ = try Service(options: options, logger: .none)
        } catch {
            #expect("\(error)".contains("not reachable; check the API and RBAC on secrets"))
        }
    }
}
