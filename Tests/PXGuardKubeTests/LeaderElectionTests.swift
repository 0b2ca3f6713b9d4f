import Foundation
import Synchronization
import Testing
@testable import PXGuardCore
@testable import PXGuardKube
@testable import PXGuardPlatform
@testable import PXGuardServer
@testable import PXGuardService

/// Lease election on observed time (client-go `leaderelection`) and the release on
/// shutdown, against the in-test API.
@Suite("Leader election against the in-test Kubernetes API", .serialized)
struct LeaderElectionTests {
    static let leaseKey = "leases/pxguard-system/\(GuardNames.leaseName)"

    static func elector(_ api: FakeKubeAPI, _ identity: String, duration: Double = 2, retry: Double = 0.2) throws -> LeaderElector {
        let client = try KubeClient(endpoint: KubeEndpoint(url: api.url, tokenFile: api.tokenFile, caFile: api.caFile), timeout: 5)
        var timing = LeaderElector.Timing()
        timing.leaseDuration = duration
        timing.retryPeriod = retry
        return LeaderElector(client: client, namespace: "pxguard-system", identity: identity, timing: timing, logger: .none)
    }

    /// A Lease written by another replica whose wall clock is `skew` seconds off ours.
    static func foreignLease(holder: String, skew: Double, duration: Int = 2) -> JSON {
        .obj(["apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
              "metadata": .obj(["name": .string(GuardNames.leaseName)]),
              "spec": .obj(["holderIdentity": .string(holder), "leaseDurationSeconds": .int(duration),
                            "acquireTime": .string(Clock.rfc3339(Clock.wall() + skew)),
                            "renewTime": .string(Clock.rfc3339(Clock.wall() + skew)), "leaseTransitions": 3])])
    }

    static func holder(_ api: FakeKubeAPI) -> String? {
        api.state.withLock { $0.objects[leaseKey] }?["spec"]?["holderIdentity"]?.stringValue
    }

    @Test("a dead holder whose clock ran 300 s ahead is taken over once its record stood still for the lease duration")
    func deadHolderAhead() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("pxguard-system")
        api.put("leases", "pxguard-system", GuardNames.leaseName, Self.foreignLease(holder: "ghost", skew: 300))
        let b = try Self.elector(api, "replica-b")
        spawnThread(name: "t-lease") { b.run() }
        defer { b.stop() }
        // Judged by wall clocks this lease runs for another 300 s; observed, it is dead after 2.
        #expect(eventually(8) { b.isLeader })
        #expect(Self.holder(api) == "replica-b")
        let transitions = api.state.withLock { $0.objects[Self.leaseKey] }?["spec"]?["leaseTransitions"]?.intValue
        #expect(transitions == 4)
    }

    @Test("a live holder whose clock is 300 s behind keeps the lease: renewals seen changing are never expired")
    func liveHolderBehind() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("pxguard-system")
        let renewing = Locked<Bool>(true)
        let stopped = Locked<Bool>(false)
        api.put("leases", "pxguard-system", GuardNames.leaseName, Self.foreignLease(holder: "live", skew: -300))
        spawnThread(name: "t-live-holder") {
            while renewing.withLock { $0 } {
                usleep(300_000)
                api.put("leases", "pxguard-system", GuardNames.leaseName, Self.foreignLease(holder: "live", skew: -300))
            }
            stopped.withLock { $0 = true }
        }
        let b = try Self.elector(api, "replica-b")
        spawnThread(name: "t-lease") { b.run() }
        defer { b.stop() }
        // Three lease durations: by wall clocks the lease expired 298 s ago at every look.
        let deadline = Date().addingTimeInterval(6)
        var displaced = false
        while Date() < deadline {
            displaced = displaced || b.isLeader || Self.holder(api) != "live"
            usleep(20_000)
        }
        #expect(!displaced, "a live holder was displaced because its clock is behind")
        renewing.withLock { $0 = false }
        #expect(eventually { stopped.withLock { $0 } })
        // Once it stops renewing, its record stands still and expires on our clock.
        #expect(eventually(8) { b.isLeader })
    }

    @Test("release clears the holder (client-go ReleaseOnCancel): the other replica leads on its next round, not after the lease duration")
    func releaseHandsOver() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("pxguard-system")
        let a = try Self.elector(api, "replica-a", duration: 30)
        let b = try Self.elector(api, "replica-b", duration: 30)
        spawnThread(name: "t-lease-a") { a.run() }
        #expect(eventually { a.isLeader })
        spawnThread(name: "t-lease-b") { b.run() }
        defer { a.stop(); b.stop() }
        usleep(500_000)
        #expect(!b.isLeader)
        let started = Date()
        #expect(a.release())
        #expect(!a.isLeader)
        #expect(eventually(3) { b.isLeader }, "without a release the follower waits the whole 30 s lease")
        #expect(Date().timeIntervalSince(started) < 3)
        #expect(Self.holder(api) == "replica-b")
        // A released elector runs no more rounds: it never takes the lease back.
        usleep(500_000)
        #expect(!a.isLeader && Self.holder(api) == "replica-b")
    }

    @Test("SIGTERM on the leading service: the lease is released before the shutdown delay ends and the other replica writes within 5 s")
    func serviceReleasesOnStop() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        for ns in ["pxguard-system", "kube-system"] { api.addNamespace(ns) }
        let dir = NSTemporaryDirectory() + "pxguard-lease-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "provisioning: {enabled: true, resyncSeconds: 300}\n".write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        func service(_ name: String) throws -> Service {
            var options = ServeOptions()
            options.configPath = dir + "/config.yaml"
            options.certDir = dir + "/certs-" + name
            options.listen = "127.0.0.1:0"
            options.kubeAPI = api.url
            options.kubeTokenFile = api.tokenFile
            options.kubeCA = api.caFile
            options.shutdownGrace = 1
            options.shutdownDelay = 5 * slowdown
            options.devCerts = true
            let s = try Service(options: options, logger: .none)
            s.start()
            return s
        }
        // Default timing: a 15 s lease, rounds every 2 s with jitter.
        let first = try service("a")
        #expect(eventually { first.provisioner.provisioner?.isLeader == true })
        let second = try service("b")
        defer { second.stop() }
        #expect(eventually { second.provisioner.view?.isSynced == true })
        #expect(second.provisioner.provisioner?.isLeader == false)
        let stopping = Date()
        let done = Locked<Bool>(false)
        spawnThread(name: "t-sigterm") {
            first.stop()
            done.withLock { $0 = true }
        }
        // Released at once, while the old leader still serves through its 5 s delay.
        // (The follower's next round is 2 s away at most, with 20% jitter.)
        #expect(eventually(5) { Self.holder(api) != nil && Self.holder(api) != first.provisioner.elector?.identity })
        api.addNamespace("team-after-sigterm")
        #expect(eventually(5) { canonical(api, "team-after-sigterm") })
        #expect(Date().timeIntervalSince(stopping) < 5 * slowdown, "the new leader wrote \(Date().timeIntervalSince(stopping)) s after SIGTERM")
        #expect(!done.withLock { $0 }, "the old replica is still in its shutdown delay")
        #expect(eventually(10) { done.withLock { $0 } })
    }
}
