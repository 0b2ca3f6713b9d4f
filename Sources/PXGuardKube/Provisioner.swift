#if canImport(Glibc)
import Glibc
#endif
public import PXGuardCore
public import PXGuardPlatform
public import Synchronization

/// Keeps both guard policies present and canonical in every guarded namespace (and
/// the block policy in kube-system), and the namespace's labels in place. It
/// watches namespaces and guard policies into a `ClusterView` (every replica does:
/// admission's R6 reads it) and reconciles from that view: an event queues its
/// namespace, a worker computes what the view says is missing and writes only
/// that. Only the Lease holder writes. The periodic resync is a walk of the view,
/// so in steady state it sends no request at all.
public final class Provisioner: Sendable {
    public struct Settings: Sendable {
        public var resyncSeconds: Double = 300
        var backoffBase: Double = 0.2
        var backoffCap: Double = 30
        /// Concurrent writers, each with its own connection.
        public var workers = 4
        /// Namespaces waiting at most; beyond it the queue overflows into a resync.
        var queueCapacity = 100_000
        /// How long a write not yet seen on the watch is not repeated.
        var expectationSeconds: Double = 10
        var informer = InformerSettings()
        public init() {}
    }

    let client: KubeClient
    public let view: ClusterView
    let elector: LeaderElector?
    let settings: Settings
    let logger: Logger
    let queue: Locked<WorkQueue>
    let wake = Waker()
    let tick = Waker()
    let stopped = Atomic<Bool>(false)
    public let informers: [any AnyInformer]

    public let created = Atomic<Int>(0)
    public let repaired = Atomic<Int>(0)
    public let labelled = Atomic<Int>(0)
    public let failed = Atomic<Int>(0)
    let resyncs = Atomic<Int>(0)
    /// Requests sent by the workers (writes and the GETs of conflict repair).
    public let requests = Atomic<Int>(0)
    let reachable = Atomic<Int>(1)

    /// - Parameter audit: when the audit is on, it is fed from these same Namespace and
    ///   NetworkPolicy watches (each policy judged as it streams past), so that no
    ///   second watch of either is opened.
    public init(client: KubeClient, view: ClusterView, elector: LeaderElector?, settings: Settings, logger: Logger,
                audit: ClusterAudit? = nil) {
        self.client = client
        self.view = view
        self.elector = elector
        self.settings = settings
        self.logger = logger
        queue = Locked(WorkQueue(capacity: settings.queueCapacity))
        let informerSettings = settings.informer
        // Every change to a namespace or a guard policy queues the namespace, on the
        // lease holder (a follower that takes over starts with a walk of its view).
        // The informers' callbacks reach back weakly: the provisioner owns them.
        struct Weak { weak var provisioner: Provisioner? }
        let box = Locked(Weak())
        let enqueue: @Sendable (String?) -> Void = { name in
            guard let name, let provisioner = box.withLock({ $0.provisioner }), provisioner.isLeader else { return }
            provisioner.enqueue(name)
        }
        let reach: @Sendable (Bool) -> Void = { ok in box.withLock { $0.provisioner }?.apiReachable(ok) }
        informers = [
            Informer<NamespaceProjection>(name: "namespaces", client: client, path: KubePath.namespaces,
                     settings: informerSettings, logger: logger,
                     onList: { phase in
                         view.list(phase).forEach(enqueue)
                         audit?.list(namespaces: phase)
                     },
                     onEvent: { type, object in
                         enqueue(view.applyNamespace(object, deleted: type == .deleted))
                         audit?.apply(namespace: object, deleted: type == .deleted)
                     },
                     onHealth: { listed, healthy in view.setHealth(.namespaces, listed: listed, healthy: healthy) },
                     onReachable: reach),
            // Every NetworkPolicy, unselected: a label selector would let any tenant who
            // can write a NetworkPolicy decide what the list holds (and how big it is).
            // Only the guard names are kept; the others cost a skip as they stream past.
            Informer<PolicyProjection>(name: "networkpolicies", client: client, path: KubePath.allNetworkPolicies,
                     settings: informerSettings, logger: logger,
                     fields: PolicyProjection.fields + (audit == nil ? [] : ClusterAudit.policyExtraFields),
                     transform: { object in
                         var p = PolicyProjection(object)
                         p.audit = audit?.judgePolicy(object)
                         return p
                     },
                     onList: { phase in
                         view.list(phase).forEach(enqueue)
                         audit?.list(policies: phase)
                     },
                     onEvent: { type, object in
                         enqueue(view.applyPolicy(object, deleted: type == .deleted))
                         audit?.apply(policy: object, deleted: type == .deleted)
                     },
                     onHealth: { listed, healthy in view.setHealth(.policies, listed: listed, healthy: healthy) },
                     onReachable: reach),
        ]
        box.withLock { $0.provisioner = self }
    }

    static func now() -> Double { Clock.monotonic().seconds }

    var isLeader: Bool { elector?.isLeader ?? true }

    /// Queues a namespace for reconciling (deduplicated, bounded). Never blocks on I/O.
    func enqueue(_ namespace: String) {
        if queue.withLock({ $0.add(namespace) }) { wake.signal() }
    }

    /// Namespaces waiting in the queue.
    var queueDepth: Int { queue.withLock { $0.count } }

    /// Capped exponential backoff with jitter; at least what `Retry-After` asked.
    func backoff(attempt: Int, retryAfter: Double?) -> Double {
        Retry.backoff(attempt: attempt, base: settings.backoffBase, cap: settings.backoffCap, retryAfter: retryAfter)
    }

    /// Queues every namespace the view says needs work. The safety net behind the
    /// watches; it reads only the view.
    @discardableResult
    func resync() -> Int {
        let names = view.namespacesNeedingWork()
        for name in names { enqueue(name) }
        resyncs.add(1, ordering: .relaxed)
        return names.count
    }

    /// A configuration reload: new canonical specs, and every guard policy that no
    /// longer matches them is rewritten.
    public func reload(_ config: Config) {
        let names = view.reload(config)
        // A follower only updates its view (R6 judges by the new specs); the leader writes.
        guard isLeader else { return }
        if !names.isEmpty { logger.info("configuration reload: rewriting guard policies", [("namespaces", .integer(names.count))]) }
        for name in names { enqueue(name) }
    }

    /// Starts the informers and the workers, and runs the resync timer on the
    /// calling thread until `stop`.
    public func run() {
        for informer in informers { spawnThread(name: "pxguard-watch") { informer.run() } }
        for _ in 0..<max(1, settings.workers) { spawnThread(name: "pxguard-provision") { [self] in work() } }
        var wasLeader = false
        var nextResync = 0.0
        while !stopped.load(ordering: .relaxed) {
            let leader = isLeader
            if !leader, let elector { apiReachable(elector.reachable.load(ordering: .relaxed)) }
            let now = Self.now()
            let overflowed = queue.withLock { $0.takeOverflow() }
            // A new leader, a due resync or a queue that dropped names: walk the view.
            if leader && view.isSynced && (!wasLeader || now >= nextResync || overflowed) {
                resync()
                nextResync = now + settings.resyncSeconds
                wasLeader = true
            }
            if !leader { wasLeader = false }
            tick.wait(seconds: 0.2)
        }
    }

    /// Gives up the lease if this replica holds it (SIGTERM, before the shutdown
    /// delay), so another replica writes within its next retry period. The
    /// informers keep running: admission's R6 still reads the view meanwhile.
    public func releaseLease() { elector?.release() }

    /// Lists NetworkPolicies again (the audit judges every policy anew after a
    /// configuration reload; a Namespace's audit state does not depend on the config).
    /// The view stays in sync meanwhile: a list replaces entries page by page.
    public func relistPolicies() { for informer in informers where informer.name == "networkpolicies" { informer.relist() } }

    /// Stops the informers, workers, timer and lease.
    public func stop() {
        stopped.store(true, ordering: .relaxed)
        for informer in informers { informer.stop() }
        wake.signal()
        tick.signal()
        elector?.stop()
    }

    func work() {
        let connection = client.connection()
        defer { connection.close() }
        while !stopped.load(ordering: .relaxed) {
            guard isLeader, view.hasListed else {
                wake.wait(seconds: 0.1)
                continue
            }
            let (name, wait) = queue.withLock { $0.take(now: Self.now()) }
            guard let name else {
                wake.wait(seconds: min(max(wait, 0.005), 0.5))
                continue
            }
            let retryAt = process(name, connection)
            queue.withLock { $0.done(name, retryAt: retryAt) }
            if retryAt != nil { wake.signal() }
        }
    }

    /// Reconciles one namespace; returns when to try again after a failure.
    func process(_ namespace: String, _ connection: KubeConnection) -> Double? {
        let plan = view.plan(for: namespace)
        guard !plan.isEmpty else {
            queue.withLock { $0.succeeded(namespace) }
            return nil
        }
        do {
            try apply(plan, to: namespace, connection)
            queue.withLock { $0.succeeded(namespace) }
            apiReachable(true)
            return nil
        } catch {
            if error.code == 404 { return nil }  // the namespace is gone; the watch will say so
            failed.add(1, ordering: .relaxed)
            if case .invalidName = error {
                // No retry can make such a name valid; the next event or resync tries again.
                logger.error("namespace name refused in a request path", [("error", error.description)])
                return nil
            }
            apiReachable(!(error.isTransient && error.code == nil))
            let attempt = queue.withLock { $0.failed(namespace) }
            if attempt == 1 || attempt % 10 == 0 {
                logger.warn("provisioning failed; retrying with backoff",
                            [("namespace", namespace), ("attempt", String(attempt)), ("error", error.description)])
            }
            return Self.now() + backoff(attempt: attempt - 1, retryAfter: error.retryAfter)
        }
    }

    /// Performs one plan. Each write is recorded as expected before it is sent, so
    /// that an event that arrives meanwhile does not repeat it.
    func apply(_ plan: ClusterView.Plan, to namespace: String, _ connection: KubeConnection) throws(KubeError) {
        let policies = view.policies
        if !plan.labels.isEmpty || plan.annotate {
            let labels: [JSON.Member] = plan.labels.sorted { $0.key < $1.key }.map { JSON.Member($0.key, .string($0.value)) }
            var metadata: [JSON.Member] = []
            if !labels.isEmpty { metadata.append(.init("labels", .object(labels))) }
            if plan.annotate {
                metadata.append(.init("annotations", .obj([GuardNames.policiesAnnotation: .string(GuardNames.policiesAnnotationValue)])))
            }
            view.expect(namespace, ["labels"], for: settings.expectationSeconds)
            do {
                try send(connection, "PATCH", KubePath.namespace(namespace), .obj(["metadata": .object(metadata)]),
                         "application/merge-patch+json")
            } catch {
                view.expect(namespace, ["labels"], for: 0)
                throw error
            }
            labelled.add(1, ordering: .relaxed)
        }
        for name in plan.create {
            guard let desired = policies.policy(name: name, namespace: namespace) else { continue }
            view.expect(namespace, [name], for: settings.expectationSeconds)
            do {
                try send(connection, "POST", KubePath.networkPolicies(in: namespace), desired)
                created.add(1, ordering: .relaxed)
            } catch {
                guard error.code == 409 else {
                    view.expect(namespace, [name], for: 0)
                    throw error
                }
                // AlreadyExists: created meanwhile, not yet seen on the watch. Check and repair.
                do {
                    try repairAfterConflict(name, namespace, desired, connection)
                } catch {
                    view.expect(namespace, [name], for: 0)
                    throw error
                }
            }
        }
        for name in plan.adopt {
            // A guard name without pxguard's label: someone else's object in the
            // guard's place. Read it and rewrite it canonical, labelled.
            guard let desired = policies.policy(name: name, namespace: namespace) else { continue }
            view.expect(namespace, [name], for: settings.expectationSeconds)
            do {
                try repairAfterConflict(name, namespace, desired, connection)
            } catch {
                view.expect(namespace, [name], for: 0)
                throw error
            }
        }
        for name in plan.repair {
            guard let spec = policies.canonicalSpec(name: name, namespace: namespace) else { continue }
            // Replace the spec whole and drop owners (an owner a user deletes would
            // have the garbage collector delete the guard); labels, annotations
            // and everything else stay as they are.
            let patch: JSON = [
                .obj(["op": "add", "path": "/spec", "value": spec]),
                .obj(["op": "add", "path": "/metadata/ownerReferences", "value": .array([])]),
            ]
            view.expect(namespace, [name], for: settings.expectationSeconds)
            do {
                try send(connection, "PATCH", KubePath.networkPolicy(name, in: namespace), patch, "application/json-patch+json")
            } catch {
                view.expect(namespace, [name], for: 0)
                throw error
            }
            repaired.add(1, ordering: .relaxed)
            logger.info("guard policy repaired", [("namespace", namespace), ("name", name)])
        }
    }

    @discardableResult
    func send(_ connection: KubeConnection, _ method: String, _ path: String, _ body: JSON? = nil,
              _ contentType: String = "application/json") throws(KubeError) -> JSON {
        requests.add(1, ordering: .relaxed)
        return try connection.call(method, path, body: body, contentType: contentType)
    }

    /// `409 AlreadyExists` on create (the view had not seen it yet), or a guard
    /// name without the managed-by label: read it and put it back in canonical
    /// form with the label, keeping its other labels and annotations.
    func repairAfterConflict(_ name: String, _ namespace: String, _ desired: JSON, _ connection: KubeConnection) throws(KubeError) {
        let path = try KubePath.networkPolicy(name, in: namespace)
        let current = try send(connection, "GET", path)
        var metadata = current["metadata"] ?? .object([])
        let labelled = metadata["labels"]?[GuardNames.managedByKey]?.stringValue == GuardNames.managedByValue
        let owned = metadata["ownerReferences"]?.arrayValue.map { !$0.isEmpty } ?? false
        if labelled && !owned && view.policies.isCanonical(spec: current["spec"] ?? .object([]), name: name, namespace: namespace) {
            return
        }
        let labels = (metadata["labels"] ?? .object([])).setting(GuardNames.managedByKey, .string(GuardNames.managedByValue))
        metadata = metadata.setting("labels", labels).setting("ownerReferences", .array([]))
        try send(connection, "PUT", path, desired.setting("metadata", metadata))
        repaired.add(1, ordering: .relaxed)
        logger.info("guard policy repaired", [("namespace", namespace), ("name", name)])
    }

    func apiReachable(_ ok: Bool) {
        let previous = reachable.exchange(ok ? 1 : 0, ordering: .relaxed)
        if previous == 1 && !ok {
            logger.error("Kubernetes API unreachable; provisioning paused, admission unaffected", [("host", client.endpoint.host)])
        } else if previous == 0 && ok {
            logger.info("Kubernetes API reachable again; provisioning resumed")
        }
    }

    /// Prometheus exposition of the provisioner's counters, its informers and view.
    public var metricsText: String {
        var out = "# HELP pxguard_provisioner_actions_total Provisioner writes and failed attempts.\n"
        out += "# TYPE pxguard_provisioner_actions_total counter\n"
        let actions = [("created", created.load(ordering: .relaxed)), ("repaired", repaired.load(ordering: .relaxed)),
                       ("labelled", labelled.load(ordering: .relaxed)), ("failed", failed.load(ordering: .relaxed))]
        for (action, value) in actions {
            out += "pxguard_provisioner_actions_total{action=\"\(action)\"} \(value)\n"
        }
        out += "# HELP pxguard_provisioner_resyncs_total Completed resyncs (walks of the watched view).\n# TYPE pxguard_provisioner_resyncs_total counter\n"
        out += "pxguard_provisioner_resyncs_total \(resyncs.load(ordering: .relaxed))\n"
        out += "# HELP pxguard_provisioner_queue_depth Namespaces waiting to be reconciled.\n# TYPE pxguard_provisioner_queue_depth gauge\n"
        out += "pxguard_provisioner_queue_depth \(queueDepth)\n"
        out += "# HELP pxguard_provisioner_leader 1 while this replica holds the provisioner lease.\n# TYPE pxguard_provisioner_leader gauge\n"
        out += "pxguard_provisioner_leader \(isLeader ? 1 : 0)\n"
        out += "# HELP pxguard_provisioner_api_reachable 0 while the Kubernetes API cannot be reached.\n# TYPE pxguard_provisioner_api_reachable gauge\n"
        out += "pxguard_provisioner_api_reachable \(reachable.load(ordering: .relaxed))\n"
        out += "# HELP pxguard_watch_restarts_total Watches restarted after a failure.\n# TYPE pxguard_watch_restarts_total counter\n"
        for i in informers { out += "pxguard_watch_restarts_total{resource=\"\(i.name)\"} \(i.counters.restarts.load(ordering: .relaxed))\n" }
        out += "# HELP pxguard_watch_relists_total Fresh lists after 410 Gone.\n# TYPE pxguard_watch_relists_total counter\n"
        for i in informers { out += "pxguard_watch_relists_total{resource=\"\(i.name)\"} \(i.counters.relists.load(ordering: .relaxed))\n" }
        out += "# HELP pxguard_watch_events_total Watch events applied to the view.\n# TYPE pxguard_watch_events_total counter\n"
        for i in informers { out += "pxguard_watch_events_total{resource=\"\(i.name)\"} \(i.counters.events.load(ordering: .relaxed))\n" }
        out += "# HELP pxguard_watch_objects_over_budget_total Objects with a kept field over the per-object budget (judged from what fit).\n"
        out += "# TYPE pxguard_watch_objects_over_budget_total counter\n"
        for i in informers { out += "pxguard_watch_objects_over_budget_total{resource=\"\(i.name)\"} \(i.counters.overBudget.load(ordering: .relaxed))\n" }
        return out + view.metricsText
    }
}
