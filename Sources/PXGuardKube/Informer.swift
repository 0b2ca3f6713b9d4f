#if canImport(Glibc)
import Glibc
#endif
public import PXGuardCore
public import PXGuardPlatform
public import Synchronization

/// How an informer lists, watches and retries.
public struct InformerSettings: Sendable {
    /// Items per list page (each page is handed on, then dropped).
    public var pageSize = 500
    /// Asked of the server per watch; it ends the watch after about this long.
    var watchTimeoutSeconds = 300
    /// Upper bound of one blocking read (and of the watch connection's
    /// handshake), so that `stop` is seen within it.
    var pollSeconds = 5.0
    var backoffBase = 0.5
    var backoffCap = 30.0
    /// After failing this long without a good list or watch, the view is
    /// reported out of sync (R6 stops applying).
    var staleAfterSeconds = 60.0
    /// Bytes of kept fields per object; a field beyond it is marked over the
    /// budget (the object is still handed on). The API server stores objects
    /// of at most 1.5 MiB (etcd's default request limit; as JSON somewhat more),
    /// so every stored object is judged; only the one in flight is held.
    public var objectBudget = 3 << 20
    public init() {}
}


/// One Kubernetes object as an informer kept it: its identity, and the fields its
/// projection asked for (raw JSON within the per-object budget). Everything else
/// the object carried was skipped as it streamed past.
public struct KubeObject: Sendable {
    /// `metadata.name` (nil when absent or over the budget).
    public var name: String?
    /// `metadata.namespace` (nil for cluster-scoped objects).
    public var namespace: String?
    /// `metadata.resourceVersion`: where a watch resumes.
    public var resourceVersion: String?
    /// The projection's fields, indexed like its `fields`.
    public var fields: JSONCapture
    /// True when some field did not fit in the per-object budget: the projection
    /// judges the object from what did, or records it as not judged.
    public var isOverBudget: Bool { fields.isOverBudget }
}

/// What an informer keeps of each object: a small value decoded from a few
/// member paths (client-go's `TransformFunc`, applied before anything is
/// stored). An informer is generic over it, so a new watched resource is a new
/// projection, e.g. Pods keeping `spec.hostNetwork` and `spec.nodeName`.
public protocol KubeProjection: Sendable {
    /// Member paths to keep from each object (metadata.name, namespace and
    /// resourceVersion are always kept). E.g. `[["spec"], ["metadata", "labels", "k"]]`.
    static var fields: [[String]] { get }
    /// Builds the projection; `object.fields` is indexed like `fields`.
    init(_ object: KubeObject)
}

/// What the informer hands on from a list: pages arrive one at a time between
/// `begin` and `end`, so no list is ever held whole. A list cut short sends no
/// `end` (whatever was not seen must not read as deleted).
public enum ListPhase<P: Sendable>: Sendable {
    case begin
    case page([P])
    case end
}

/// The counters every informer keeps, whatever it projects (metrics, tests).
public final class InformerCounters: Sendable {
    /// Complete lists (the first one included).
    public let lists = Atomic<Int>(0)
    /// Lists again after `410 Gone`.
    let relists = Atomic<Int>(0)
    /// Watch requests sent.
    public let watches = Atomic<Int>(0)
    /// Lists or watches that failed and were retried after a backoff.
    let restarts = Atomic<Int>(0)
    /// ADDED, MODIFIED and DELETED events applied.
    public let events = Atomic<Int>(0)
    let bookmarks = Atomic<Int>(0)
    /// Objects with a kept field over the per-object budget (judged from what
    /// fit, or recorded as not judged by the projection's owner).
    public let overBudget = Atomic<Int>(0)
    init() {}
}

/// An informer whatever its projection: what the provisioner's loop and metrics need.
public protocol AnyInformer: Sendable {
    /// The resource's name in logs and metric labels (`namespaces`, ...).
    var name: String { get }
    /// Lists, watches, events, restarts, relists, bookmarks, objects over budget.
    var counters: InformerCounters { get }
    /// The list-then-watch loop, on the calling thread, until `stop`.
    func run()
    /// Ends `run` within about one poll period.
    func stop()
    /// Ends the current watch and lists again from scratch.
    func relist()
}

/// List-then-watch of one resource, the way client-go's reflector does it: a
/// paged list (`limit`/`continue`), then a watch from the list's resourceVersion
/// with bookmarks and `timeoutSeconds`; a watch that ends is resumed from the
/// last resourceVersion seen, a failure is retried with capped backoff and
/// jitter, and `410 Gone` (the version was compacted away) starts a fresh list.
/// Each page and event is decoded straight from the stream into `P`: memory is
/// set by what `P` keeps, never by what the objects carry, and no list has a
/// size limit a tenant could reach.
public final class Informer<P: Sendable>: AnyInformer {
    public typealias Settings = InformerSettings

    /// The watch event types handed on (bookmarks and errors are handled here).
    public enum EventType: String, Sendable { case added = "ADDED", modified = "MODIFIED", deleted = "DELETED" }

    let client: KubeClient
    let path: String
    /// `fieldSelector` of every list and watch (never a label selector: labels are
    /// tenants' to set, so they must not decide what pxguard sees).
    let fieldSelector: String?
    let settings: Settings
    let logger: Logger
    /// The resource's name in logs and metric labels.
    public let name: String
    let onList: @Sendable (ListPhase<P>) -> Void
    let onEvent: @Sendable (EventType, P) -> Void
    let onHealth: @Sendable (_ listed: Bool?, _ healthy: Bool) -> Void
    let onReachable: @Sendable (Bool) -> Void
    let stopped = Atomic<Bool>(false)
    /// Set by `relist`: the watch ends and a fresh list follows.
    let relistWanted = Atomic<Bool>(false)
    /// An item's paths: identity first, then the projection's.
    let itemPaths: JSONPaths
    /// A watch event's paths: its type, the object's paths, and a Status's fields.
    let eventPaths: JSONPaths
    /// Builds what is kept of one object as it streams past.
    let transform: @Sendable (KubeObject) -> P
    /// What this informer has done, for metrics and tests.
    public let counters = InformerCounters()

    /// An item's paths: identity first, then `fields`.
    static func itemPaths(_ fields: [[String]]) -> JSONPaths {
        JSONPaths([["metadata", "name"], ["metadata", "namespace"], ["metadata", "resourceVersion"]] + fields)
    }

    /// A watch event's paths: its type, the object's paths, and a Status's fields.
    static func eventPaths(_ items: JSONPaths) -> JSONPaths {
        JSONPaths([["type"], ["object", "code"], ["object", "reason"], ["object", "message"]]
            + items.paths.map { ["object"] + $0 })
    }

    static var listPaths: JSONPaths { JSONPaths([["metadata", "continue"], ["metadata", "resourceVersion"]]) }

    static func object(_ capture: JSONCapture) -> KubeObject {
        KubeObject(name: capture.string(0), namespace: capture.string(1), resourceVersion: capture.string(2),
                   fields: capture.slice(3..<capture.raw.count))
    }

    /// - Parameters:
    ///   - onList: a list in pages (replaces what was known once it ends).
    ///   - onEvent: one watch event.
    ///   - onHealth: a list completed (`listed`) and whether the resource is being
    ///     followed (`healthy` false once failing for `staleAfterSeconds`).
    ///   - fields: member paths kept of each object (besides name, namespace and
    ///     resourceVersion), within the per-object budget.
    ///   - transform: what is kept of one object, built as it streams past (e.g. the
    ///     audit's verdict on it): the captured fields are dropped right after.
    public init(name: String, client: KubeClient, path: String, fieldSelector: String? = nil, settings: Settings, logger: Logger,
                fields: [[String]], transform: @escaping @Sendable (KubeObject) -> P,
                onList: @escaping @Sendable (ListPhase<P>) -> Void, onEvent: @escaping @Sendable (EventType, P) -> Void,
                onHealth: @escaping @Sendable (_ listed: Bool?, _ healthy: Bool) -> Void,
                onReachable: @escaping @Sendable (Bool) -> Void = { _ in }) {
        itemPaths = Self.itemPaths(fields)
        eventPaths = Self.eventPaths(itemPaths)
        self.transform = transform
        self.onReachable = onReachable
        self.name = name
        self.client = client
        self.path = path
        self.fieldSelector = fieldSelector
        self.settings = settings
        self.logger = logger
        self.onList = onList
        self.onEvent = onEvent
        self.onHealth = onHealth
    }

    var isStopped: Bool { stopped.load(ordering: .relaxed) }

    /// Ends the current watch and lists again from scratch (a configuration
    /// reload that changes how objects are judged).
    public func relist() { relistWanted.store(true, ordering: .relaxed) }

    /// Ends `run` within about `pollSeconds`.
    public func stop() { stopped.store(true, ordering: .relaxed) }

    static func backoff(attempt: Int, base: Double, cap: Double, retryAfter: Double? = nil) -> Double {
        Retry.backoff(attempt: attempt, base: base, cap: cap, retryAfter: retryAfter)
    }

    func sleep(_ seconds: Double) {
        var left = seconds
        while left > 0 && !isStopped {
            usleep(UInt32(min(left, 0.05) * 1_000_000))
            left -= 0.05
        }
    }

    /// Counts and logs an object with a kept field over the budget.
    func noteOverBudget(_ object: KubeObject) {
        counters.overBudget.add(1, ordering: .relaxed)
        logger.warn("object has a field over the per-object budget; judged from the fields that fit",
                    [("resource", .text(name)), ("namespace", .text(object.namespace ?? "")), ("name", .text(object.name ?? "(not read)")),
                     ("budgetBytes", .integer(settings.objectBudget))])
    }

    /// One complete paged list, handed on page by page; returns its resourceVersion.
    func list(_ connection: KubeConnection) throws(KubeError) -> String {
        var token: String?
        var resourceVersion = ""
        let itemPaths = itemPaths, listPaths = Self.listPaths
        let budget = settings.objectBudget
        onList(.begin)
        repeat {
            var page: [P] = []
            let meta = try connection.stream(KubePath.query(path, [
                ("fieldSelector", fieldSelector), ("limit", String(settings.pageSize)), ("continue", token),
            ])) { reader in
                try reader.list(listPaths, arrayKey: "items", element: itemPaths, budget: budget) { capture in
                    let object = Self.object(capture)
                    if object.isOverBudget { noteOverBudget(object) }
                    page.append(transform(object))
                }
            }
            onList(.page(page))
            token = meta.string(0).flatMap { $0.isEmpty ? nil : $0 }
            resourceVersion = meta.string(1) ?? resourceVersion
        } while token != nil && !isStopped
        // A list cut short must not stand for the whole: it would read as deletes.
        guard !isStopped else { throw KubeError.transport("stopped while listing") }
        counters.lists.add(1, ordering: .relaxed)
        onList(.end)
        return resourceVersion
    }

    enum WatchOutcome { case ended(String), gone }

    /// Watches from `resourceVersion` until the server ends the watch: `.ended`
    /// with the last resourceVersion seen, or `.gone` on 410.
    func watch(_ connection: KubeConnection, from resourceVersion: String) throws(KubeError) -> WatchOutcome {
        var last = resourceVersion
        let target = KubePath.query(path, [
            ("fieldSelector", fieldSelector), ("watch", "1"), ("resourceVersion", resourceVersion),
            ("allowWatchBookmarks", "true"), ("timeoutSeconds", String(settings.watchTimeoutSeconds)),
        ])
        counters.watches.add(1, ordering: .relaxed)
        var gone = false
        var seen = false
        var failure: KubeError?
        let opened = {
            // The watch is live (200 and headers): the resource is being followed again.
            if !seen {
                seen = true
                self.onHealth(nil, true)
                self.onReachable(true)
            }
        }
        let handle: (JSONCapture) throws(KubeError) -> Void = { event throws(KubeError) in
            let type = event.string(0) ?? ""
            let object = Self.object(event.slice(4..<event.raw.count))
            switch type {
            case "ERROR":
                // A Status in the stream: 410 means our version is too old.
                let code = event.json(1)?.intValue ?? 0
                if code == 410 {
                    gone = true
                    return
                }
                failure = KubeError.status(code: code, reason: event.string(2) ?? "",
                                           message: event.string(3) ?? "watch error", retryAfter: nil)
                return
            case "BOOKMARK":
                self.counters.bookmarks.add(1, ordering: .relaxed)
            default:
                guard let kind = EventType(rawValue: type) else { return }
                if object.isOverBudget { self.noteOverBudget(object) }
                self.counters.events.add(1, ordering: .relaxed)
                self.onEvent(kind, self.transform(object))
            }
            if let rv = object.resourceVersion { last = rv }
        }
        do {
            try connection.watch(target, paths: eventPaths, budget: settings.objectBudget, pollSeconds: settings.pollSeconds,
                                 idleSeconds: Double(settings.watchTimeoutSeconds) + 30,
                                 shouldStop: { self.isStopped || gone || failure != nil || self.relistWanted.load(ordering: .relaxed) }, onOpen: opened, onEvent: handle)
        } catch {
            if error.code == 410 { return .gone }
            throw error
        }
        if gone { return .gone }
        if let failure { throw failure }
        return .ended(last)
    }

    /// The informer loop, until `stop`.
    public func run() {
        let connection = client.connection()
        var resourceVersion: String?
        var failures = 0
        var failingSince: Double?
        while !isStopped {
            if relistWanted.exchange(false, ordering: .relaxed) { resourceVersion = nil }
            do {
                if resourceVersion == nil {
                    resourceVersion = try list(connection)
                    onHealth(true, true)
                    onReachable(true)
                }
                let started = Clock.monotonic().seconds
                switch try watch(connection, from: resourceVersion!) {
                case .ended(let next):
                    // The server ended the watch (timeoutSeconds): resume from the last version.
                    // One that ends at once with nothing new (a proxy cutting it) is paced
                    // like a failure, so that it cannot spin (client-go's "very short watch").
                    if relistWanted.load(ordering: .relaxed) {
                        // Ended on purpose for a relist (configuration reload): no pacing.
                    } else if next == resourceVersion && Clock.monotonic().seconds - started < 1 {
                        sleep(Self.backoff(attempt: failures, base: settings.backoffBase, cap: settings.backoffCap))
                        failures += 1
                    } else {
                        failures = 0
                        failingSince = nil
                    }
                    resourceVersion = next
                case .gone:
                    counters.relists.add(1, ordering: .relaxed)
                    logger.info("watch expired (410 Gone); listing again", [("resource", name)])
                    resourceVersion = nil
                }
            } catch {
                let kubeError: KubeError? = error
                if kubeError?.code == 410 {
                    // An expired continue token or list version: list again from scratch.
                    counters.relists.add(1, ordering: .relaxed)
                    resourceVersion = nil
                    continue
                }
                counters.restarts.add(1, ordering: .relaxed)
                if kubeError?.isTransient == true && kubeError?.code == nil { onReachable(false) }
                let now = Clock.monotonic().seconds
                if failingSince == nil { failingSince = now }
                if now - failingSince! > settings.staleAfterSeconds { onHealth(nil, false) }
                if failures == 0 { logger.warn("watch failed; retrying with backoff", [("resource", name), ("error", "\(error)")]) }
                sleep(Self.backoff(attempt: failures, base: settings.backoffBase, cap: settings.backoffCap,
                                   retryAfter: kubeError?.retryAfter))
                failures += 1
            }
        }
        connection.close()
    }
}

extension Informer where P: KubeProjection {
    /// An informer that keeps `P` of each object (its `fields`, decoded by its `init`).
    public convenience init(name: String, client: KubeClient, path: String, fieldSelector: String? = nil, settings: Settings,
                            logger: Logger, onList: @escaping @Sendable (ListPhase<P>) -> Void,
                            onEvent: @escaping @Sendable (EventType, P) -> Void,
                            onHealth: @escaping @Sendable (_ listed: Bool?, _ healthy: Bool) -> Void,
                            onReachable: @escaping @Sendable (Bool) -> Void = { _ in }) {
        self.init(name: name, client: client, path: path, fieldSelector: fieldSelector, settings: settings, logger: logger,
                  fields: P.fields, transform: { P($0) }, onList: onList, onEvent: onEvent, onHealth: onHealth,
                  onReachable: onReachable)
    }
}

/// Retry pacing shared by the informers and the provisioner's workers.
enum Retry {
    /// Capped exponential backoff with full jitter in [½, 1] of the step.
    static func backoff(attempt: Int, base: Double, cap: Double, retryAfter: Double? = nil) -> Double {
        let step = min(cap, base * pow(2, Double(min(attempt, 20))))
        return max(step * Double.random(in: 0.5...1.0), retryAfter ?? 0)
    }
}

extension KubeProjection {
    /// The projection of an object already in memory (tests, offline commands
    /// reading `kubectl get -o json`): the same decoding as from a watch.
    public init(json: JSON, budget: Int = 1 << 20) throws {
        var bytes: [UInt8]? = []
        json.write(into: &bytes!)
        var reader = JSONStreamReader {
            defer { bytes = nil }
            return bytes.map { $0[...] }
        }
        let paths = JSONPaths([["metadata", "name"], ["metadata", "namespace"], ["metadata", "resourceVersion"]] + Self.fields)
        let capture = try reader.next(paths, budget: budget)
        self.init(KubeObject(name: capture.string(0), namespace: capture.string(1), resourceVersion: capture.string(2),
                             fields: capture.slice(3..<capture.raw.count)))
    }
}
