#if canImport(Glibc)
import Glibc
#endif
public import PXGuardCore
public import PXGuardPlatform
public import Synchronization

/// List-then-watch of one resource, the way client-go's reflector does it: a
/// paged list (`limit`/`continue`), then a watch from the list's resourceVersion
/// with bookmarks and `timeoutSeconds`; a watch that ends is resumed from the
/// last resourceVersion seen, a failure is retried with capped backoff and
/// jitter, and `410 Gone` (the version was compacted away) starts a fresh list.
public final class Informer: Sendable {
    public struct Settings: Sendable {
        /// Items per list page.
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
        public init() {}
    }

    /// The watch event types handed on (bookmarks and errors are handled here).
    public enum EventType: String, Sendable { case added = "ADDED", modified = "MODIFIED", deleted = "DELETED" }

    let client: KubeClient
    let path: String
    let labelSelector: String?
    let settings: Settings
    let logger: Logger
    let name: String
    let onList: @Sendable ([JSON]) -> Void
    let onEvent: @Sendable (EventType, JSON) -> Void
    let onHealth: @Sendable (_ listed: Bool?, _ healthy: Bool) -> Void
    let onReachable: @Sendable (Bool) -> Void
    let stopped = Atomic<Bool>(false)

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

    /// - Parameters:
    ///   - onList: every object of a complete list (replaces what was known).
    ///   - onEvent: one watch event.
    ///   - onHealth: a list completed (`listed`) and whether the resource is being
    ///     followed (`healthy` false once failing for `staleAfterSeconds`).
    public init(name: String, client: KubeClient, path: String, labelSelector: String?, settings: Settings, logger: Logger,
                onList: @escaping @Sendable ([JSON]) -> Void, onEvent: @escaping @Sendable (EventType, JSON) -> Void,
                onHealth: @escaping @Sendable (_ listed: Bool?, _ healthy: Bool) -> Void,
                onReachable: @escaping @Sendable (Bool) -> Void = { _ in }) {
        self.onReachable = onReachable
        self.name = name
        self.client = client
        self.path = path
        self.labelSelector = labelSelector
        self.settings = settings
        self.logger = logger
        self.onList = onList
        self.onEvent = onEvent
        self.onHealth = onHealth
    }

    var isStopped: Bool { stopped.load(ordering: .relaxed) }

    /// Ends `run` within about `pollSeconds`.
    public func stop() { stopped.store(true, ordering: .relaxed) }

    /// Capped exponential backoff with full jitter in [½, 1] of the step.
    static func backoff(attempt: Int, base: Double, cap: Double, retryAfter: Double? = nil) -> Double {
        let step = min(cap, base * pow(2, Double(min(attempt, 20))))
        return max(step * Double.random(in: 0.5...1.0), retryAfter ?? 0)
    }

    func sleep(_ seconds: Double) {
        var left = seconds
        while left > 0 && !isStopped {
            usleep(UInt32(min(left, 0.05) * 1_000_000))
            left -= 0.05
        }
    }

    /// One complete paged list; returns its resourceVersion.
    func list(_ connection: KubeConnection) throws(KubeError) -> String {
        var items: [JSON] = []
        var token: String?
        var resourceVersion = ""
        repeat {
            let page = try connection.call("GET", KubePath.query(path, [
                ("labelSelector", labelSelector), ("limit", String(settings.pageSize)), ("continue", token),
            ]))
            items += page["items"]?.arrayValue ?? []
            token = page["metadata"]?["continue"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
            resourceVersion = page["metadata"]?["resourceVersion"]?.stringValue ?? resourceVersion
        } while token != nil && !isStopped
        // A list cut short must not stand for the whole: it would read as deletes.
        guard !isStopped else { throw KubeError.transport("stopped while listing") }
        lists.add(1, ordering: .relaxed)
        onList(items)
        return resourceVersion
    }

    enum WatchOutcome { case ended(String), gone }

    /// Watches from `resourceVersion` until the server ends the watch: `.ended`
    /// with the last resourceVersion seen, or `.gone` on 410.
    func watch(_ connection: KubeConnection, from resourceVersion: String) throws(KubeError) -> WatchOutcome {
        var last = resourceVersion
        let target = KubePath.query(path, [
            ("labelSelector", labelSelector), ("watch", "1"), ("resourceVersion", resourceVersion),
            ("allowWatchBookmarks", "true"), ("timeoutSeconds", String(settings.watchTimeoutSeconds)),
        ])
        watches.add(1, ordering: .relaxed)
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
        let handle: (JSON) throws(KubeError) -> Void = { event throws(KubeError) in
            let type = event["type"]?.stringValue ?? ""
            let object = event["object"] ?? .null
            switch type {
            case "ERROR":
                // A Status in the stream: 410 means our version is too old.
                let code = object["code"]?.intValue ?? 0
                if code == 410 {
                    gone = true
                    return
                }
                failure = KubeError.status(code: code, reason: object["reason"]?.stringValue ?? "",
                                           message: object["message"]?.stringValue ?? "watch error", retryAfter: nil)
                return
            case "BOOKMARK":
                self.bookmarks.add(1, ordering: .relaxed)
            default:
                guard let kind = EventType(rawValue: type) else { return }
                self.events.add(1, ordering: .relaxed)
                self.onEvent(kind, object)
            }
            if let rv = object["metadata"]?["resourceVersion"]?.stringValue { last = rv }
        }
        do {
            try connection.watch(target, pollSeconds: settings.pollSeconds, idleSeconds: Double(settings.watchTimeoutSeconds) + 30,
                                 shouldStop: { self.isStopped || gone || failure != nil }, onOpen: opened, onEvent: handle)
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
                    if next == resourceVersion && Clock.monotonic().seconds - started < 1 {
                        sleep(Self.backoff(attempt: failures, base: settings.backoffBase, cap: settings.backoffCap))
                        failures += 1
                    } else {
                        failures = 0
                        failingSince = nil
                    }
                    resourceVersion = next
                case .gone:
                    relists.add(1, ordering: .relaxed)
                    logger.info("watch expired (410 Gone); listing again", [("resource", name)])
                    resourceVersion = nil
                }
            } catch {
                let kubeError: KubeError? = error
                if kubeError?.code == 410 {
                    // An expired continue token or list version: list again from scratch.
                    relists.add(1, ordering: .relaxed)
                    resourceVersion = nil
                    continue
                }
                restarts.add(1, ordering: .relaxed)
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
