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
    /// Events for every change made to the cluster (nil: log lines only).
    let events: EventRecorder?
    let pacer: WritePacer
    /// Woken only by `stop`, so that a paced write waits out its slot.
    let paceWaker = Waker()
    /// Namespaces holding policies in the previous configuration's form, in arrival
    /// order, for the rewrite lane (`rewriteLoop`): one thread rewrites them at
    /// `provisioning.writesPerSecond`, so that the workers stay free for new
    /// namespaces and repairs (R6 waits on those, not on rewrites).
    let rewriteQueue = Locked<(order: [String], head: Int, queued: Set<String>)>(([], 0, []))
    let rewriteWake = Waker()

    public let created = Atomic<Int>(0)
    public let repaired = Atomic<Int>(0)
    public let labelled = Atomic<Int>(0)
    public let failed = Atomic<Int>(0)
    /// Guard policies rewritten from the previous configuration's form to the current one.
    public let rewritten = Atomic<Int>(0)
    /// NetworkPolicies with a guard name that pxguard did not manage, replaced (with a Warning Event).
    public let takenOver = Atomic<Int>(0)
    /// Writes a dry run reported instead of sending.
    public let previewed = Atomic<Int>(0)
    /// Pod Security raises held back because running Pods would be rejected.
    public let heldBack = Atomic<Int>(0)
    let resyncs = Atomic<Int>(0)
    /// Requests sent by the workers (writes and the GETs of conflict repair).
    public let requests = Atomic<Int>(0)
    let reachable = Atomic<Int>(1)

    /// - Parameter audit: when the audit is on, it is fed from these same Namespace and
    ///   NetworkPolicy watches (each policy judged as it streams past), so that no
    ///   second watch of either is opened.
    public init(client: KubeClient, view: ClusterView, elector: LeaderElector?, settings: Settings, logger: Logger,
                events: EventRecorder? = nil, audit: ClusterAudit? = nil) {
        self.events = events
        pacer = WritePacer(rate: view.config.provisioning.writesPerSecond)
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
        pacer.setRate(config.provisioning.writesPerSecond)
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
        spawnThread(name: "pxguard-rewrite") { [self] in rewriteLoop() }
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
        paceWaker.signal()
        rewriteWake.signal()
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
        var plan = view.plan(for: namespace)
        // Rewrites go to their own paced lane (a dry run only reports them, at once).
        if !plan.rewrite.isEmpty && !view.config.provisioning.dryRun {
            queueRewrite(namespace)
            plan.rewrite = []
        }
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
        let config = view.config
        let policies = view.policies
        var plan = plan
        try holdBackPodSecurity(&plan, namespace, config, connection)
        if config.provisioning.dryRun { return try preview(plan, namespace, config, connection) }
        if !plan.labels.isEmpty || plan.annotate || plan.previousEnforce != nil {
            view.expect(namespace, ["labels"], for: settings.expectationSeconds)
            do {
                try send(connection, "PATCH", KubePath.namespace(namespace), Self.namespacePatch(plan, config),
                         "application/merge-patch+json")
            } catch {
                view.expect(namespace, ["labels"], for: 0)
                throw error
            }
            labelled.add(1, ordering: .relaxed)
            let raised = plan.labels.keys.sorted().map { "\($0)=\(plan.labels[$0]!)" }.joined(separator: ", ")
            if let level = plan.labels[ClusterView.podSecurityLabel] {
                let before = plan.previousEnforce.map { $0.isEmpty ? "none" : $0 } ?? "a level recorded earlier"
                let message = "pxguard raised the Pod Security enforce level from \(before) to \(level); the previous level is in the annotation \(GuardNames.previousEnforceAnnotation), restored by uninstalling (see README \"Uninstall\")"
                logger.info("namespace Pod Security level raised", [("namespace", namespace), ("from", before), ("to", level)])
                events?.record(.namespace(namespace), .normal, reason: "PodSecurityRaised", message: message)
            } else if !raised.isEmpty {
                events?.record(.namespace(namespace), .normal, reason: "GuardLabelled", message: "pxguard set \(raised)")
            }
        }
        for name in plan.create {
            guard let desired = policies.policy(name: name, namespace: namespace) else { continue }
            view.expect(namespace, [name], for: settings.expectationSeconds)
            do {
                try send(connection, "POST", KubePath.networkPolicies(in: namespace), desired)
                created.add(1, ordering: .relaxed)
                events?.record(.networkPolicy(name, in: namespace), .normal, reason: "GuardPolicyCreated",
                               message: "pxguard created guard policy \(name)")
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
        for name in plan.repair + plan.rewrite {
            guard let spec = policies.canonicalSpec(name: name, namespace: namespace) else { continue }
            let rewrite = plan.rewrite.contains(name)
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
            if rewrite {
                rewritten.add(1, ordering: .relaxed)
                events?.record(.networkPolicy(name, in: namespace), .normal, reason: "GuardPolicyRewritten",
                               message: "pxguard rewrote guard policy \(name) to the form of the current configuration")
            } else {
                repaired.add(1, ordering: .relaxed)
                logger.info("guard policy repaired", [("namespace", namespace), ("name", name)])
                events?.record(.networkPolicy(name, in: namespace), .warning, reason: "GuardPolicyRepaired",
                               message: "pxguard restored guard policy \(name) to its canonical spec (it was changed or owned)")
            }
        }
    }

    /// Hands a namespace to the rewrite lane (once while it waits there).
    func queueRewrite(_ namespace: String) {
        let added = rewriteQueue.withLock { q -> Bool in
            guard q.queued.insert(namespace).inserted else { return false }
            q.order.append(namespace)
            return true
        }
        if added { rewriteWake.signal() }
    }

    /// Namespaces waiting in the rewrite lane.
    var rewriteDepth: Int { rewriteQueue.withLock { $0.queued.count } }

    /// The rewrite lane: takes the namespaces in order and rewrites their policies
    /// one paced write at a time. A failed write sends the namespace to the back of
    /// the lane (the pace bounds the retries).
    func rewriteLoop() {
        let connection = client.connection()
        defer { connection.close() }
        while !stopped.load(ordering: .relaxed) {
            guard isLeader, view.hasListed else {
                rewriteWake.wait(seconds: 0.1)
                continue
            }
            let next = rewriteQueue.withLock { q -> String? in
                guard q.head < q.order.count else { return nil }
                let name = q.order[q.head]
                q.head += 1
                q.queued.remove(name)
                if q.head > 1024 && q.head * 2 > q.order.count {
                    q.order.removeFirst(q.head)
                    q.head = 0
                }
                return name
            }
            guard let namespace = next else {
                rewriteWake.wait(seconds: 0.5)
                continue
            }
            for name in view.plan(for: namespace).rewrite {
                guard pacer.acquire(waker: paceWaker, stopped: { stopped.load(ordering: .relaxed) }) else { return }
                var one = ClusterView.Plan()
                one.rewrite = [name]
                do {
                    try apply(one, to: namespace, connection)
                } catch {
                    if error.code == 404 { break }
                    let count = failed.add(1, ordering: .relaxed).newValue
                    if count % 100 == 1 {
                        logger.warn("guard policy rewrite failed; retrying after the others",
                                    [("namespace", namespace), ("name", name), ("error", error.description)])
                    }
                    queueRewrite(namespace)
                    break
                }
            }
        }
    }

    /// Never raises the Pod Security level over running Pods the new level would
    /// reject (calico-system, node exporters): reads the namespace's Pods (paged),
    /// and when any would be rejected takes the raise out of the plan and reports
    /// them (warn log line, Warning Event `PodSecurityNotRaised`), again at most once
    /// per `resyncSeconds` while they run.
    func holdBackPodSecurity(_ plan: inout ClusterView.Plan, _ namespace: String, _ config: Config,
                             _ connection: KubeConnection) throws(KubeError) {
        guard let level = plan.labels[ClusterView.podSecurityLabel] else { return }
        var blocking: [String] = []
        var next: String?
        repeat {
            let page = try send(connection, "GET", KubePath.query(try KubePath.pods(in: namespace), [("limit", "500"), ("continue", next)]))
            for pod in page["items"]?.arrayValue ?? [] {
                let phase = pod["status"]?["phase"]?.stringValue
                guard phase != "Succeeded" && phase != "Failed" else { continue }
                let reasons = PodSecurityCheck.violations(pod, level: level)
                if !reasons.isEmpty, blocking.count < 5 {
                    blocking.append("\(pod["metadata"]?["name"]?.stringValue ?? "?") (\(reasons.prefix(3).joined(separator: ", ")))")
                } else if !reasons.isEmpty {
                    blocking.append("…")
                    break
                }
            }
            next = page["metadata"]?["continue"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
        } while next != nil && blocking.count < 6
        guard !blocking.isEmpty else { return }
        plan.labels[ClusterView.podSecurityLabel] = nil
        plan.previousEnforce = nil
        view.expect(namespace, ["podsecurity"], for: settings.resyncSeconds)
        heldBack.add(1, ordering: .relaxed)
        let pods = blocking.joined(separator: "; ")
        logger.warn("Pod Security level not raised: running Pods would be rejected by it",
                    [("namespace", namespace), ("level", level), ("pods", pods)])
        events?.record(.namespace(namespace), .warning, reason: "PodSecurityNotRaised",
                       message: "pxguard did not raise pod-security.kubernetes.io/enforce to \(level): running Pods would be rejected: \(pods). Fix or move them (or exempt the namespace), and pxguard raises the level at its next resync")
    }

    /// The namespace merge patch of a plan: labels, the policies annotation, and the
    /// previous Pod Security level when raising it.
    static func namespacePatch(_ plan: ClusterView.Plan, _ config: Config) -> JSON {
        let labels: [JSON.Member] = plan.labels.sorted { $0.key < $1.key }.map { JSON.Member($0.key, .string($0.value)) }
        var annotations: [JSON.Member] = []
        if plan.annotate { annotations.append(.init(GuardNames.policiesAnnotation, .string(config.guardPolicyNames.annotation))) }
        if let previous = plan.previousEnforce { annotations.append(.init(GuardNames.previousEnforceAnnotation, .string(previous))) }
        var metadata: [JSON.Member] = []
        if !labels.isEmpty { metadata.append(.init("labels", .object(labels))) }
        if !annotations.isEmpty { metadata.append(.init("annotations", .object(annotations))) }
        return .obj(["metadata": .object(metadata)])
    }

    /// `provisioning.dryRun`: says what `apply` would write, one log line per write
    /// (a NetworkPolicy that a create would take over is read to say so), and writes
    /// nothing. The same writes are reported again after `resyncSeconds` at most.
    func preview(_ plan: ClusterView.Plan, _ namespace: String, _ config: Config, _ connection: KubeConnection) throws(KubeError) {
        var what: [String] = []
        if !plan.labels.isEmpty || plan.annotate || plan.previousEnforce != nil {
            what.append("labels")
            previewed.add(1, ordering: .relaxed)
            logger.info("dry run: would patch namespace", [("namespace", namespace),
                                                             ("patch", Self.namespacePatch(plan, config).serialized)])
        }
        for name in plan.create {
            what.append(name)
            previewed.add(1, ordering: .relaxed)
            do {
                let existing = try send(connection, "GET", KubePath.networkPolicy(name, in: namespace))
                logger.warn("dry run: would replace a NetworkPolicy that pxguard does not manage (set guardPolicyNames to avoid it)",
                            [("namespace", namespace), ("name", name), ("spec", (existing["spec"] ?? .null).serialized)])
            } catch where error.code == 404 {
                logger.info("dry run: would create guard policy", [("namespace", namespace), ("name", name)])
            }
        }
        for name in plan.adopt {
            what.append(name)
            previewed.add(1, ordering: .relaxed)
            logger.warn("dry run: would replace a NetworkPolicy that pxguard does not manage (set guardPolicyNames to avoid it)",
                        [("namespace", namespace), ("name", name)])
        }
        for name in plan.repair + plan.rewrite {
            what.append(name)
            previewed.add(1, ordering: .relaxed)
            logger.info(plan.rewrite.contains(name) ? "dry run: would rewrite guard policy to the current configuration"
                                                    : "dry run: would repair guard policy", [("namespace", namespace), ("name", name)])
        }
        view.expect(namespace, what, for: Double(config.provisioning.resyncSeconds))
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
        if !labelled {
            // A site's own policy under a guard name: never replaced silently.
            let replaced = (current["spec"] ?? .null).serialized
            logger.warn("replacing a NetworkPolicy that pxguard did not manage: it carries a guard policy name (set guardPolicyNames to use other names)",
                        [("namespace", namespace), ("name", name), ("replacedSpec", replaced)])
            takenOver.add(1, ordering: .relaxed)
            events?.record(.networkPolicy(name, in: namespace), .warning, reason: "GuardPolicyTakeover",
                           message: "pxguard replaced NetworkPolicy \(namespace)/\(name), which it did not manage, with its guard policy of that name; the replaced spec was \(String(replaced.prefix(600))). To keep a policy of your own under this name, set guardPolicyNames in pxguard's configuration")
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
                       ("labelled", labelled.load(ordering: .relaxed)), ("failed", failed.load(ordering: .relaxed)),
                       ("rewritten", rewritten.load(ordering: .relaxed)), ("takenOver", takenOver.load(ordering: .relaxed)),
                       ("previewed", previewed.load(ordering: .relaxed)), ("podSecurityHeldBack", heldBack.load(ordering: .relaxed))]
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
        out += "# HELP pxguard_provisioner_paced_writes_total Rewrites that waited for a slot at provisioning.writesPerSecond.\n"
        out += "# TYPE pxguard_provisioner_paced_writes_total counter\npxguard_provisioner_paced_writes_total \(pacer.paced.load(ordering: .relaxed))\n"
        out += "# HELP pxguard_provisioner_rewrite_queue_depth Namespaces waiting in the paced rewrite lane.\n"
        out += "# TYPE pxguard_provisioner_rewrite_queue_depth gauge\npxguard_provisioner_rewrite_queue_depth \(rewriteDepth)\n"
        if let events { out += events.metricsText }
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
