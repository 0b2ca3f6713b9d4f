import PXGuardCore
public import PXGuardPlatform
public import Synchronization

/// Kubernetes Events for what pxguard changes in the cluster (and, for the audit,
/// what it finds), so that `kubectl describe` and `kubectl get events` show them.
/// Correlated the way client-go's `EventCorrelator` does, so that a repeating
/// cause is one Event with a rising `count`, never a flood:
/// - **dedup**: an event equal to one already sent (object, type, reason, message)
///   patches that Event's `count` and `lastTimestamp` instead of creating another;
/// - **aggregation**: more than `aggregateAfter` distinct messages with the same
///   object, type and reason within `aggregateWindowSeconds` are folded into one
///   Event whose message starts with "(combined from similar events): ";
/// - **spam filter**: a token bucket per object (`burst` events, then one every
///   `refillSeconds`); what it refuses is counted, not sent.
/// `record` never blocks on I/O: events go through a bounded queue to the sender
/// (`run`, on its own thread); a full queue drops and counts.
public final class EventRecorder: Sendable {
    /// Correlation and sending limits; the defaults are client-go's.
    public struct Settings: Sendable {
        /// Events per object before the spam filter refuses (client-go: 25).
        public var burst = 25
        /// One more event per object every this many seconds (client-go: 300).
        public var refillSeconds = 300.0
        /// Distinct messages per object and reason before they are combined (client-go: 10).
        public var aggregateAfter = 10
        /// The window in which distinct messages are counted towards `aggregateAfter`.
        public var aggregateWindowSeconds = 600.0
        /// Correlation entries kept (client-go: 4096); the oldest go first.
        public var cacheSize = 4096
        /// Events waiting for the sender at most.
        public var queueCapacity = 1000
        /// Attempts per event on transient errors.
        public var attempts = 3
        /// Wait before the first retry (it grows linearly with the attempt).
        public var retrySeconds = 0.5
        /// client-go's defaults.
        public init() {}
    }

    /// The object an Event is about (`involvedObject`).
    public struct ObjectReference: Sendable, Hashable {
        /// `v1`, `networking.k8s.io/v1`, ...
        public var apiVersion: String
        /// `Namespace`, `NetworkPolicy`, ...
        public var kind: String
        /// Empty for cluster-scoped objects.
        public var namespace: String
        /// The object's name.
        public var name: String
        /// The object's uid, when known (the audit knows it; it tells a recreated object apart).
        public var uid: String
        /// A reference to any object.
        public init(apiVersion: String, kind: String, namespace: String = "", name: String, uid: String = "") {
            self.apiVersion = apiVersion
            self.kind = kind
            self.namespace = namespace
            self.name = name
            self.uid = uid
        }

        /// A Namespace.
        public static func namespace(_ name: String) -> Self { Self(apiVersion: "v1", kind: "Namespace", name: name) }
        /// A NetworkPolicy.
        public static func networkPolicy(_ name: String, in namespace: String) -> Self {
            Self(apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", namespace: namespace, name: name)
        }

        /// Where its Events live: its own namespace, `default` for cluster-scoped
        /// objects (as client-go puts them).
        var eventNamespace: String { namespace.isEmpty ? "default" : namespace }
        var key: String { "\(apiVersion)/\(kind)/\(namespace)/\(name)/\(uid)" }
    }

    /// `type` of an Event.
    public enum EventType: String, Sendable { case normal = "Normal", warning = "Warning" }

    /// One request for the sender.
    struct Outgoing: Sendable {
        enum Action: Sendable { case create, bump }
        var action: Action
        var name: String
        var object: ObjectReference
        var type: EventType
        var reason: String
        var message: String
        var count: Int
        var first: Double
        var last: Double
    }

    /// A token bucket.
    struct Bucket {
        var tokens: Double
        var at: Double

        /// Refills by `perSecond` since the last take (up to `burst`) and takes one token if there is one.
        mutating func take(burst: Int, perSecond: Double, now: Double) -> Bool {
            tokens = min(Double(burst), tokens + max(0, now - at) * perSecond)
            at = now
            guard tokens >= 1 else { return false }
            tokens -= 1
            return true
        }
    }

    struct Correlation {
        /// Sent Events by object, type, reason and message.
        var sent: [String: (name: String, count: Int, first: Double)] = [:]
        var sentOrder: [String] = []
        /// Distinct messages per object, type and reason, and when the window began.
        var similar: [String: (messages: Set<String>, since: Double)] = [:]
        /// Spam filter buckets per object.
        var buckets: [String: Bucket] = [:]
        var queue: [Outgoing] = []
        var serial = 0
    }

    let client: KubeClient
    let component: String
    let instance: String
    let settings: Settings
    let logger: Logger
    /// Event names are `<object>.<hash of this and a serial>`: the pod name survives a
    /// container restart and the serial starts again, so a random part keeps a restarted
    /// process from reusing a name within an Event's hour (a 409 would lose the Event).
    let nameSalt: String
    let state = Locked(Correlation())
    let wake = Waker()
    let stopped = Atomic<Bool>(false)
    /// A clock for tests (seconds); the monotonic clock by default.
    let now: @Sendable () -> Double

    /// Events created.
    public let created = Atomic<Int>(0)
    /// Repeats folded into an existing Event (its `count` raised).
    public let aggregated = Atomic<Int>(0)
    /// Refused by the spam filter or a full queue.
    public let dropped = Atomic<Int>(0)
    /// Given up after `attempts` failures.
    public let failed = Atomic<Int>(0)

    /// - Parameters:
    ///   - component: `source.component` and `reportingComponent` (`pxguard`).
    ///   - instance: `reportingInstance` (the pod's name).
    public init(client: KubeClient, component: String = "pxguard", instance: String, settings: Settings = Settings(),
                logger: Logger, now: @escaping @Sendable () -> Double = { Clock.monotonic().seconds }) {
        self.client = client
        self.component = component
        self.instance = instance
        nameSalt = instance + "/" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        self.settings = settings
        self.logger = logger
        self.now = now
    }

    /// Records an Event about `object`; returns at once (the sender writes it).
    /// Returns false when the spam filter or the queue refused it.
    /// - Parameters:
    ///   - reason: CamelCase, as Kubernetes reasons are (`GuardPolicyTakeover`).
    ///   - message: what happened and what to do, for `kubectl describe`.
    @discardableResult
    public func record(_ object: ObjectReference, _ type: EventType, reason: String, message: String) -> Bool {
        let t = now()
        let queued = state.withLock { s -> Bool in
            // Spam filter first, as client-go's correlator: per object, whatever the reason.
            var bucket = s.buckets[object.key] ?? Bucket(tokens: Double(settings.burst), at: t)
            let allowed = bucket.take(burst: settings.burst, perSecond: 1 / settings.refillSeconds, now: t)
            s.buckets[object.key] = bucket
            if s.buckets.count > settings.cacheSize { s.buckets = s.buckets.filter { $0.key == object.key } }
            guard allowed else { return false }

            // Aggregation: many distinct messages for one cause become one Event.
            let similarKey = "\(object.key)|\(type.rawValue)|\(reason)"
            var group = s.similar[similarKey] ?? ([], t)
            if t - group.since > settings.aggregateWindowSeconds { group = ([], t) }
            group.messages.insert(message)
            s.similar[similarKey] = group
            if s.similar.count > settings.cacheSize { s.similar = [similarKey: group] }
            let text = group.messages.count > settings.aggregateAfter ? "(combined from similar events): " + message : message
            let dedupKey = group.messages.count > settings.aggregateAfter ? similarKey + "|combined" : similarKey + "|" + text

            // Dedup: the same Event again raises its count.
            var item = Outgoing(action: .create, name: "", object: object, type: type, reason: reason, message: text,
                                count: 1, first: t, last: t)
            if var seen = s.sent[dedupKey] {
                seen.count += 1
                s.sent[dedupKey] = seen
                item.action = .bump
                item.name = seen.name
                item.count = seen.count
                item.first = seen.first
            } else {
                s.serial += 1
                item.name = Self.eventName(object.name, serial: s.serial, salt: nameSalt)
                s.sent[dedupKey] = (item.name, 1, t)
                s.sentOrder.append(dedupKey)
                if s.sentOrder.count > settings.cacheSize {
                    let evicted = s.sentOrder.removeFirst()
                    s.sent[evicted] = nil
                }
            }
            guard s.queue.count < settings.queueCapacity else { return false }
            s.queue.append(item)
            return true
        }
        if queued { wake.signal() } else { dropped.add(1, ordering: .relaxed) }
        return queued
    }

    /// `<object>.<hex>` as client-go names them, unique per recorder.
    static func eventName(_ objectName: String, serial: Int, salt: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in salt.utf8 { hash = (hash ^ UInt64(b)) &* 0x100_0000_01b3 }
        let suffix = String(hash &+ UInt64(serial) &* 0x9E37_79B9_7F4A_7C15, radix: 16)
        // Names are at most 253 characters.
        return String(objectName.prefix(253 - suffix.count - 1)) + "." + suffix
    }

    /// Sends queued Events until `stop` (run it on its own thread).
    public func run() {
        let connection = client.connection()
        defer { connection.close() }
        while !stopped.load(ordering: .relaxed) {
            let next = state.withLock { s in s.queue.isEmpty ? nil : s.queue.removeFirst() }
            guard let next else {
                wake.wait(seconds: 0.5)
                continue
            }
            send(next, connection)
        }
    }

    /// Ends `run` (queued Events not yet sent are dropped).
    public func stop() {
        stopped.store(true, ordering: .relaxed)
        wake.signal()
    }

    /// Events waiting for the sender.
    var queueDepth: Int { state.withLock { $0.queue.count } }

    func body(_ e: Outgoing) -> JSON {
        let wallNow = Clock.wall()
        // Timestamps: wall time now, shifted by how long ago on the monotonic clock.
        let first = Clock.rfc3339(wallNow - (now() - e.first), fractionDigits: 0)
        let last = Clock.rfc3339(wallNow - (now() - e.last), fractionDigits: 0)
        let involved: JSON = .obj([
            "apiVersion": .string(e.object.apiVersion), "kind": .string(e.object.kind),
            "namespace": e.object.namespace.isEmpty ? nil : .string(e.object.namespace), "name": .string(e.object.name),
            "uid": e.object.uid.isEmpty ? nil : .string(e.object.uid),
        ])
        return .obj([
            "apiVersion": "v1", "kind": "Event",
            "metadata": .obj(["name": .string(e.name), "namespace": .string(e.object.eventNamespace)]),
            "involvedObject": involved,
            "type": .string(e.type.rawValue), "reason": .string(e.reason), "message": .string(String(e.message.prefix(1024))),
            "source": .obj(["component": .string(component)]),
            "reportingComponent": .string(component), "reportingInstance": .string(instance),
            "firstTimestamp": .string(first), "lastTimestamp": .string(last), "count": .int(e.count),
        ])
    }

    func send(_ e: Outgoing, _ connection: KubeConnection) {
        for attempt in 1...max(1, settings.attempts) {
            do {
                let collection = try KubePath.events(in: e.object.eventNamespace)
                switch e.action {
                case .create:
                    _ = try connection.call("POST", collection, body: body(e))
                    created.add(1, ordering: .relaxed)
                case .bump:
                    let patch: JSON = .obj(["count": .int(e.count), "lastTimestamp": body(e)["lastTimestamp"] ?? .null])
                    do {
                        _ = try connection.call("PATCH", collection + "/" + KubePath.percentEncoded(e.name), body: patch,
                                                contentType: "application/merge-patch+json")
                    } catch where error.code == 404 {
                        // Expired (Events live an hour) or never made: create it again.
                        _ = try connection.call("POST", collection, body: body(e))
                    }
                    aggregated.add(1, ordering: .relaxed)
                }
                return
            } catch {
                // 409: created meanwhile under the same name; nothing more to do.
                if error.code == 409 { return }
                if !error.isTransient || attempt == settings.attempts || stopped.load(ordering: .relaxed) {
                    failed.add(1, ordering: .relaxed)
                    logger.warn("event not recorded", [("reason", e.reason), ("object", e.object.key), ("error", error.description)])
                    return
                }
                wake.wait(seconds: settings.retrySeconds * Double(attempt))
            }
        }
    }

    /// Prometheus exposition of the recorder's counters.
    public var metricsText: String {
        var out = "# HELP pxguard_events_total Kubernetes Events by outcome (created, aggregated into an existing one, dropped by the spam filter or a full queue, failed).\n"
        out += "# TYPE pxguard_events_total counter\n"
        let outcomes = [("created", created.load(ordering: .relaxed)), ("aggregated", aggregated.load(ordering: .relaxed)),
                        ("dropped", dropped.load(ordering: .relaxed)), ("failed", failed.load(ordering: .relaxed))]
        for (outcome, value) in outcomes { out += "pxguard_events_total{outcome=\"\(outcome)\"} \(value)\n" }
        return out
    }
}

extension KubePath {
    /// The Pods of one namespace.
    static func pods(in namespace: String) throws(KubeError) -> String {
        "/api/v1/namespaces/\(try segment(namespace))/pods"
    }

    /// The core/v1 Events of one namespace.
    static func events(in namespace: String) throws(KubeError) -> String {
        "/api/v1/namespaces/\(try segment(namespace))/events"
    }
}
