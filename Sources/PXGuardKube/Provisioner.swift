#if canImport(Glibc)
import Glibc
#endif
public import PXGuardCore
public import PXGuardPlatform
import Synchronization

/// Keeps both guard policies present and canonical in every guarded namespace
/// (and the block policy in kube-system): on M1, when the namespace exists, and on
/// a periodic resync. Works beside the webhook on its own thread; admission only
/// ever calls `enqueue`, which never blocks.
public final class Provisioner: Sendable {
    public struct Settings: Sendable {
        public var resyncSeconds: Double = 300
        public var backoffBase: Double = 0.2
        public var backoffCap: Double = 30
        /// How long a namespace from M1 may take to appear before the queue gives
        /// up on it (the resync still covers it).
        public var notYetTimeout: Double = 300
        public var maxAttempts = 12
        public init() {}
    }

    struct Item {
        let namespace: String
        var notBefore: Double
        var attempt: Int
        let firstSeen: Double
    }

    let client: KubeClient
    let config: Config
    let policies: GuardPolicies
    let elector: LeaderElector?
    let settings: Settings
    let logger: Logger
    let queue = Locked<[Item]>([])
    let wake = Waker()
    let stopped = Atomic<Bool>(false)

    public let created = Atomic<Int>(0)
    public let repaired = Atomic<Int>(0)
    public let labelled = Atomic<Int>(0)
    public let failed = Atomic<Int>(0)
    public let resyncs = Atomic<Int>(0)
    let reachable = Atomic<Int>(1)

    public init(client: KubeClient, config: Config, elector: LeaderElector?, settings: Settings, logger: Logger) {
        self.client = client
        self.config = config
        self.policies = GuardPolicies(config: config)
        self.elector = elector
        self.settings = settings
        self.logger = logger
    }

    static func now() -> Double { Clock.monotonic().seconds }

    /// Queues a namespace for provisioning (deduplicated). Never blocks on I/O.
    public func enqueue(_ namespace: String) {
        let added = queue.withLock { items -> Bool in
            if items.contains(where: { $0.namespace == namespace }) { return false }
            items.append(Item(namespace: namespace, notBefore: 0, attempt: 0, firstSeen: Self.now()))
            return true
        }
        if added { wake.signal() }
    }

    public var queueDepth: Int { queue.withLock { $0.count } }

    /// Capped exponential backoff with jitter; at least what `Retry-After` asked.
    func backoff(attempt: Int, retryAfter: Double?) -> Double {
        let exponential = min(settings.backoffCap, settings.backoffBase * pow(2, Double(min(attempt, 20))))
        let jittered = exponential * Double.random(in: 0.5...1.0)
        return max(jittered, retryAfter ?? 0)
    }

    func takeDue() -> (Item?, Double) {
        queue.withLock { items in
            let now = Self.now()
            if let i = items.firstIndex(where: { $0.notBefore <= now }) { return (items.remove(at: i), 0) }
            return (nil, items.map { $0.notBefore - now }.min() ?? 1)
        }
    }

    func requeue(_ item: Item, after delay: Double) {
        var next = item
        next.attempt += 1
        next.notBefore = Self.now() + delay
        queue.withLock { $0.append(next) }
    }

    /// The worker loop: resync when due, then drain the queue. Only the lease
    /// holder writes.
    public func run() {
        var nextResync = 0.0
        while !stopped.load(ordering: .relaxed) {
            if let elector, !elector.isLeader {
                // A follower, or nobody can reach the API to win the lease.
                apiReachable(elector.reachable.load(ordering: .relaxed))
                wake.wait(seconds: 0.2)
                nextResync = 0  // a new leader starts with a full resync
                continue
            }
            let now = Self.now()
            if now >= nextResync {
                nextResync = now + (resync() ? settings.resyncSeconds : min(settings.resyncSeconds, 10))
            }
            let (item, wait) = takeDue()
            if let item {
                process(item)
            } else {
                wake.wait(seconds: min(max(wait, 0.01), max(0.01, nextResync - Self.now()), 1))
            }
        }
    }

    public func stop() {
        stopped.store(true, ordering: .relaxed)
        wake.signal()
        elector?.stop()
    }

    func process(_ item: Item) {
        do {
            try ensure(namespace: item.namespace)
            apiReachable(true)
        } catch {
            if error.code == 404 {
                // The namespace does not exist yet: at admission time it never does.
                if Self.now() - item.firstSeen < settings.notYetTimeout {
                    requeue(item, after: backoff(attempt: min(item.attempt, 4), retryAfter: nil))
                }
                return
            }
            failed.add(1, ordering: .relaxed)
            apiReachable(!(error.isTransient && error.code == nil))
            if item.attempt + 1 < settings.maxAttempts {
                requeue(item, after: backoff(attempt: item.attempt, retryAfter: error.retryAfter))
            } else {
                logger.error("provisioning gave up until the next resync", [("namespace", item.namespace), ("error", error.description)])
            }
        }
    }

    func apiReachable(_ ok: Bool) {
        let previous = reachable.exchange(ok ? 1 : 0, ordering: .relaxed)
        if previous == 1 && !ok {
            logger.error("Kubernetes API unreachable; provisioning paused, admission unaffected", [("host", client.endpoint.host)])
        } else if previous == 0 && ok {
            logger.info("Kubernetes API reachable again; provisioning resumed")
        }
    }

    static func policyPath(_ namespace: String, _ name: String? = nil) -> String {
        "/apis/networking.k8s.io/v1/namespaces/\(namespace)/networkpolicies" + (name.map { "/" + $0 } ?? "")
    }

    /// Whether `namespace` gets policies at all, and which.
    func policyNames(for namespace: String) -> [String] {
        if namespace == GuardNames.kubeSystem { return [GuardNames.blockPolicy] }
        return config.isGuarded(namespace: namespace) ? GuardPolicies.names(in: namespace) : []
    }

    /// Labels and provisions one namespace. Throws 404 when it does not exist yet.
    public func ensure(namespace: String) throws(KubeError) {
        let names = policyNames(for: namespace)
        guard !names.isEmpty else { return }  // exempt namespaces are never written to
        let object = try client.call("GET", "/api/v1/namespaces/\(namespace)")
        try ensure(namespaceObject: object, existing: nil)
    }

    func isTerminating(_ namespace: JSON) -> Bool {
        namespace["status"]?["phase"]?.stringValue == "Terminating" || namespace["metadata"]?["deletionTimestamp"] != nil
    }

    /// `existing`: the guard policies already known from a list, by name.
    func ensure(namespaceObject: JSON, existing: [String: JSON]?) throws(KubeError) {
        guard let namespace = namespaceObject["metadata"]?["name"]?.stringValue, !isTerminating(namespaceObject) else { return }
        let names = policyNames(for: namespace)
        guard !names.isEmpty else { return }
        if namespace != GuardNames.kubeSystem { try ensureLabels(namespaceObject, namespace) }
        for name in names {
            if let known = existing?[name], !drifted(known, name: name, namespace: namespace) { continue }
            try ensurePolicy(name: name, namespace: namespace)
        }
    }

    func ensureLabels(_ object: JSON, _ namespace: String) throws(KubeError) {
        let labels = object["metadata"]?["labels"]
        let annotations = object["metadata"]?["annotations"]
        guard labels?[GuardNames.guardedLabel]?.stringValue != "true"
            || annotations?[GuardNames.policiesAnnotation]?.stringValue != GuardNames.policiesAnnotationValue
        else { return }
        try client.call("PATCH", "/api/v1/namespaces/\(namespace)", body: .obj(["metadata": .obj([
            "labels": .obj([GuardNames.guardedLabel: "true"]),
            "annotations": .obj([GuardNames.policiesAnnotation: .string(GuardNames.policiesAnnotationValue)]),
        ])]), contentType: "application/merge-patch+json")
        labelled.add(1, ordering: .relaxed)
    }

    func drifted(_ policy: JSON, name: String, namespace: String) -> Bool {
        let labelled = policy["metadata"]?["labels"]?[GuardNames.managedByKey]?.stringValue == GuardNames.managedByValue
        return !labelled || !policies.isCanonical(spec: policy["spec"] ?? .object([]), name: name, namespace: namespace)
    }

    /// Creates the policy, or repairs it: `409 AlreadyExists` means "check and
    /// repair if drifted".
    func ensurePolicy(name: String, namespace: String) throws(KubeError) {
        let desired = policies.policy(name: name, namespace: namespace)!
        var current: JSON?
        do {
            current = try client.call("GET", Self.policyPath(namespace, name))
        } catch where error.code == 404 {
            do {
                try client.call("POST", Self.policyPath(namespace), body: desired)
                created.add(1, ordering: .relaxed)
                logger.info("guard policy created", [("namespace", namespace), ("name", name)])
                return
            } catch where error.code == 409 {
                current = try client.call("GET", Self.policyPath(namespace, name))
            }
        }
        guard let current, drifted(current, name: name, namespace: namespace) else { return }
        // Keep the object's other labels and annotations; restore spec and label.
        var metadata = current["metadata"] ?? .object([])
        let labels = (metadata["labels"] ?? .object([])).setting(GuardNames.managedByKey, .string(GuardNames.managedByValue))
        metadata = metadata.setting("labels", labels)
        let repairedPolicy = desired.setting("metadata", metadata)
        try client.call("PUT", Self.policyPath(namespace, name), body: repairedPolicy)
        repaired.add(1, ordering: .relaxed)
        logger.info("guard policy repaired", [("namespace", namespace), ("name", name)])
    }

    /// Lists every namespace and every pxguard-managed policy, and repairs what is
    /// missing or drifted. Returns false when the lists could not be read.
    @discardableResult
    public func resync() -> Bool {
        let namespaces: [JSON]
        let managed: [JSON]
        do {
            namespaces = try client.call("GET", "/api/v1/namespaces")["items"]?.arrayValue ?? []
            let selector = "app.kubernetes.io%2Fmanaged-by%3Dpxguard"
            managed = try client.call("GET", "/apis/networking.k8s.io/v1/networkpolicies?labelSelector=\(selector)")["items"]?.arrayValue ?? []
            apiReachable(true)
        } catch {
            failed.add(1, ordering: .relaxed)
            apiReachable(!(error.isTransient && error.code == nil))
            logger.warn("resync could not list namespaces and policies", [("error", error.description)])
            return false
        }
        var byNamespace: [String: [String: JSON]] = [:]
        for policy in managed {
            guard let ns = policy["metadata"]?["namespace"]?.stringValue, let name = policy["metadata"]?["name"]?.stringValue else { continue }
            byNamespace[ns, default: [:]][name] = policy
        }
        for namespace in namespaces {
            guard let name = namespace["metadata"]?["name"]?.stringValue else { continue }
            do {
                try ensure(namespaceObject: namespace, existing: byNamespace[name] ?? [:])
            } catch {
                failed.add(1, ordering: .relaxed)
                enqueue(name)  // retried with backoff
            }
        }
        resyncs.add(1, ordering: .relaxed)
        return true
    }

    /// Prometheus exposition of the provisioner's counters.
    public var metricsText: String {
        var out = "# HELP pxguard_provisioner_actions_total Provisioner writes and failed attempts.\n"
        out += "# TYPE pxguard_provisioner_actions_total counter\n"
        let actions = [("created", created.load(ordering: .relaxed)), ("repaired", repaired.load(ordering: .relaxed)),
                       ("labelled", labelled.load(ordering: .relaxed)), ("failed", failed.load(ordering: .relaxed))]
        for (action, value) in actions {
            out += "pxguard_provisioner_actions_total{action=\"\(action)\"} \(value)\n"
        }
        out += "# HELP pxguard_provisioner_resyncs_total Completed full resyncs.\n# TYPE pxguard_provisioner_resyncs_total counter\n"
        out += "pxguard_provisioner_resyncs_total \(resyncs.load(ordering: .relaxed))\n"
        out += "# HELP pxguard_provisioner_queue_depth Namespaces waiting to be provisioned.\n# TYPE pxguard_provisioner_queue_depth gauge\n"
        out += "pxguard_provisioner_queue_depth \(queueDepth)\n"
        out += "# HELP pxguard_provisioner_leader 1 while this replica holds the provisioner lease.\n# TYPE pxguard_provisioner_leader gauge\n"
        out += "pxguard_provisioner_leader \((elector?.isLeader ?? true) ? 1 : 0)\n"
        out += "# HELP pxguard_provisioner_api_reachable 0 while the Kubernetes API cannot be reached.\n# TYPE pxguard_provisioner_api_reachable gauge\n"
        out += "pxguard_provisioner_api_reachable \(reachable.load(ordering: .relaxed))\n"
        return out
    }
}
