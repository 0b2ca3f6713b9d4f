#if canImport(Glibc)
import Glibc
#endif
import PXGuardCore
public import PXGuardPlatform
import Synchronization

/// Lease-based leader election (`coordination.k8s.io/v1` Lease): only the holder
/// of the lease writes. Optimistic concurrency on `resourceVersion` decides races;
/// a follower takes over once the holder stops renewing for `leaseDuration`.
public final class LeaderElector: Sendable {
    public struct Timing: Sendable {
        var leaseDuration: Double = 15
        var retryPeriod: Double = 2
        public init() {}
    }

    let client: KubeClient
    let namespace: String
    public let identity: String
    let timing: Timing
    let logger: Logger
    /// Monotonic deadline (seconds) until which this replica may act as leader.
    let leaderUntil = Locked<Double>(0)
    let stopped = Atomic<Bool>(false)
    /// False after a round that could not reach the API at all.
    let reachable = Atomic<Bool>(true)

    public init(client: KubeClient, namespace: String, identity: String, timing: Timing, logger: Logger) {
        self.client = client
        self.namespace = namespace
        self.identity = identity
        self.timing = timing
        self.logger = logger
    }

    /// True while this replica holds a lease it renewed within the lease duration.
    var isLeader: Bool { leaderUntil.withLock { $0 } > Self.monotonic() }

    static func monotonic() -> Double { Clock.monotonic().seconds }



    func leaseBody(resourceVersion: String?, transitions: Int, acquireTime: String) -> JSON {
        let now = Clock.rfc3339(Clock.wall())
        return .obj([
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": .obj(["name": .string(GuardNames.leaseName), "namespace": .string(namespace),
                              "resourceVersion": resourceVersion.map { .string($0) }]),
            "spec": .obj([
                "holderIdentity": .string(identity),
                "leaseDurationSeconds": .int(Int(timing.leaseDuration.rounded(.up))),
                "acquireTime": .string(acquireTime),
                "renewTime": .string(now),
                "leaseTransitions": .int(transitions),
            ]),
        ])
    }

    /// One round: acquire or renew. Returns whether this replica leads now.
    @discardableResult
    func tryAcquireOrRenew(_ client: KubeConnection) -> Bool {
        let started = Self.monotonic()
        do {
            let path = try KubePath.lease(GuardNames.leaseName, in: namespace)
            let lease: JSON
            do {
                lease = try client.call("GET", path)
            } catch let error where error.code == 404 {
                try client.call("POST", KubePath.leases(in: namespace),
                                body: leaseBody(resourceVersion: nil, transitions: 0, acquireTime: Clock.rfc3339(Clock.wall())))
                becameLeader(since: started, transition: true)
                return true
            }
            let spec = lease["spec"]
            let holder = spec?["holderIdentity"]?.stringValue ?? ""
            let renew = spec?["renewTime"]?.stringValue.flatMap(Clock.parseRFC3339)
            let duration = Double(spec?["leaseDurationSeconds"]?.intValue ?? 0)
            let expired = renew.map { Clock.wall() - $0 > max(duration, 1) } ?? true
            let transitions = spec?["leaseTransitions"]?.intValue ?? 0
            guard holder == identity || holder.isEmpty || expired else {
                leaderUntil.withLock { $0 = 0 }
                return false
            }
            let mine = holder == identity
            let acquire = mine ? (spec?["acquireTime"]?.stringValue ?? Clock.rfc3339(Clock.wall())) : Clock.rfc3339(Clock.wall())
            try client.call("PUT", path, body: leaseBody(resourceVersion: lease["metadata"]?["resourceVersion"]?.stringValue,
                                                         transitions: mine ? transitions : transitions + 1, acquireTime: acquire))
            becameLeader(since: started, transition: !mine)
            return true
        } catch {
            reachable.store(!(error.isTransient && error.code == nil), ordering: .relaxed)
            // 409: another replica won this round. Anything else: we cannot prove we
            // still hold the lease, so stop writing until a renewal succeeds.
            if error.code != 409 { logger.warn("lease round failed", [("error", error.description)]) }
            leaderUntil.withLock { $0 = 0 }
            return false
        }
    }

    func becameLeader(since started: Double, transition: Bool) {
        reachable.store(true, ordering: .relaxed)
        // Leadership counts from before the round trip, and ends a little before
        // the lease would expire for the others.
        let was = isLeader
        leaderUntil.withLock { $0 = started + timing.leaseDuration * 0.8 }
        if !was || transition { logger.info("provisioner lease acquired", [("identity", identity)]) }
    }

    /// Runs rounds every `retryPeriod` until `stop`.
    public func run() {
        let connection = client.connection()
        defer { connection.close() }
        while !stopped.load(ordering: .relaxed) {
            tryAcquireOrRenew(connection)
            var waited = 0.0
            while waited < timing.retryPeriod && !stopped.load(ordering: .relaxed) {
                usleep(50_000)
                waited += 0.05
            }
        }
    }

    public func stop() {
        stopped.store(true, ordering: .relaxed)
        leaderUntil.withLock { $0 = 0 }
    }
}
