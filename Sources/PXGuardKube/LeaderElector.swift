#if canImport(Glibc)
import Glibc
#endif
import PXGuardCore
public import PXGuardPlatform
import Synchronization

/// Lease-based leader election (`coordination.k8s.io/v1` Lease): only the holder
/// of the lease writes. Optimistic concurrency on `resourceVersion` decides races.
/// Expiry is judged as client-go's `leaderelection` does, on observed time: a
/// follower takes over once the record has not changed for `leaseDuration` on
/// this process's monotonic clock, counted from when it last saw it change. The
/// holder's `renewTime` is written for people, never compared with our clock, so
/// replicas whose wall clocks disagree neither block nor displace each other.
/// On shutdown the holder releases the lease (client-go's `ReleaseOnCancel`).
public final class LeaderElector: Sendable {
    public struct Timing: Sendable {
        var leaseDuration: Double = 15
        var retryPeriod: Double = 2
        /// Each wait is `retryPeriod` times a random factor in [1, 1 + jitter]
        /// (client-go's `wait.Jitter`), so replicas do not retry in lockstep.
        var jitter: Double = 0.2
        public init() {}
    }

    /// The Lease spec as last read, and when this process saw it change (monotonic).
    struct Observed: Equatable {
        var holder: String
        var renewTime: String
        var acquireTime: String
        var transitions: Int
        var durationSeconds: Int
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
    /// The record last seen and the monotonic time it was first seen as such.
    let observed = Locked<(record: Observed?, at: Double)>((nil, 0))
    /// Held for a whole round and for the release, so a renewal in flight cannot
    /// overwrite the release (or the release race a renewal): the value counts rounds.
    let rounds = Mutex<Int>(0)
    let waker = Waker()

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

    func leaseBody(resourceVersion: String?, holder: String, durationSeconds: Int, transitions: Int, acquireTime: String) -> JSON {
        let now = Clock.rfc3339(Clock.wall())
        return .obj([
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": .obj(["name": .string(GuardNames.leaseName), "namespace": .string(namespace),
                              "resourceVersion": resourceVersion.map { .string($0) }]),
            "spec": .obj([
                "holderIdentity": .string(holder),
                "leaseDurationSeconds": .int(durationSeconds),
                "acquireTime": .string(acquireTime),
                "renewTime": .string(now),
                "leaseTransitions": .int(transitions),
            ]),
        ])
    }

    var durationSeconds: Int { Int(timing.leaseDuration.rounded(.up)) }

    static func record(of lease: JSON) -> Observed {
        let spec = lease["spec"]
        return Observed(holder: spec?["holderIdentity"]?.stringValue ?? "", renewTime: spec?["renewTime"]?.stringValue ?? "",
                        acquireTime: spec?["acquireTime"]?.stringValue ?? "", transitions: spec?["leaseTransitions"]?.intValue ?? 0,
                        durationSeconds: spec?["leaseDurationSeconds"]?.intValue ?? 0)
    }

    /// Notes the record just read; returns the monotonic time it was first seen as it is.
    func observe(_ record: Observed, now: Double) -> Double {
        observed.withLock { o in
            if o.record != record { o = (record, now) }
            return o.at
        }
    }

    /// One round: acquire or renew. Returns whether this replica leads now.
    @discardableResult
    func tryAcquireOrRenew(_ client: KubeConnection) -> Bool {
        rounds.withLock { count in
            count += 1
            guard !stopped.load(ordering: .relaxed) else { return false }
            return round(client)
        }
    }

    func round(_ client: KubeConnection) -> Bool {
        let started = Self.monotonic()
        do {
            let path = try KubePath.lease(GuardNames.leaseName, in: namespace)
            let lease: JSON
            do {
                lease = try client.call("GET", path)
            } catch let error where error.code == 404 {
                let now = Clock.rfc3339(Clock.wall())
                try client.call("POST", KubePath.leases(in: namespace),
                                body: leaseBody(resourceVersion: nil, holder: identity, durationSeconds: durationSeconds,
                                                transitions: 0, acquireTime: now))
                becameLeader(since: started, transition: true)
                return true
            }
            let record = Self.record(of: lease)
            let seenSince = observe(record, now: started)
            // An empty holder is a released lease (client-go's release): free at once.
            // Otherwise another holder's lease runs until its record has stood unchanged
            // for its duration, timed from when we saw it change.
            let expired = started - seenSince > Double(max(record.durationSeconds, 1))
            guard record.holder == identity || record.holder.isEmpty || expired else {
                leaderUntil.withLock { $0 = 0 }
                return false
            }
            let mine = record.holder == identity
            let acquire = mine && !record.acquireTime.isEmpty ? record.acquireTime : Clock.rfc3339(Clock.wall())
            let written = try client.call("PUT", path, body: leaseBody(
                resourceVersion: lease["metadata"]?["resourceVersion"]?.stringValue, holder: identity,
                durationSeconds: durationSeconds, transitions: mine ? record.transitions : record.transitions + 1, acquireTime: acquire))
            _ = observe(Self.record(of: written), now: started)
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

    /// Runs rounds every `retryPeriod` (with jitter) until `stop` or `release`.
    public func run() {
        let connection = client.connection()
        defer { connection.close() }
        while !stopped.load(ordering: .relaxed) {
            tryAcquireOrRenew(connection)
            let wait = timing.retryPeriod * Double.random(in: 1...(1 + max(timing.jitter, 0)))
            let deadline = Self.monotonic() + wait
            while !stopped.load(ordering: .relaxed), case let left = deadline - Self.monotonic(), left > 0 {
                waker.wait(seconds: left)
            }
        }
    }

    /// Stops the rounds; this replica stops acting as leader at once.
    public func stop() {
        stopped.store(true, ordering: .relaxed)
        leaderUntil.withLock { $0 = 0 }
        waker.signal()
    }

    /// Stops the rounds and, if this replica holds the lease, gives it up as
    /// client-go's `ReleaseOnCancel` does: holder cleared, duration 1 s, so that
    /// another replica takes over on its next round instead of after the whole
    /// lease duration. Returns whether a release was written.
    @discardableResult
    public func release() -> Bool {
        stop()
        return rounds.withLock { _ -> Bool in
            let connection = client.connection()
            defer { connection.close() }
            do {
                let path = try KubePath.lease(GuardNames.leaseName, in: namespace)
                let lease = try connection.call("GET", path)
                let record = Self.record(of: lease)
                guard record.holder == identity else { return false }
                let now = Clock.rfc3339(Clock.wall())
                try connection.call("PUT", path, body: leaseBody(
                    resourceVersion: lease["metadata"]?["resourceVersion"]?.stringValue, holder: "", durationSeconds: 1,
                    transitions: record.transitions, acquireTime: now))
                logger.info("provisioner lease released", [("identity", identity)])
                return true
            } catch {
                logger.warn("lease release failed; another replica takes over when it expires", [("error", "\(error)")])
                return false
            }
        }
    }
}
