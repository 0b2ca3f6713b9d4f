#if canImport(Glibc)
import Glibc
#endif
public import PXGuardCore
public import PXGuardPlatform
public import Synchronization

/// What the cluster serves, as far as the guard cares: the API groups (for `auto` and
/// for the CNI assessment) and the network plugins' DaemonSets.
public enum ClusterDiscovery {
    /// `group/version` of every API group version `GET /apis` lists.
    public static func servedGroupVersions(_ connection: KubeConnection) throws(KubeError) -> Set<String> {
        let list = try connection.call("GET", "/apis")
        var out: Set<String> = []
        for group in list["groups"]?.arrayValue ?? [] {
            for version in group["versions"]?.arrayValue ?? [] {
                if let gv = version["groupVersion"]?.stringValue { out.insert(gv) }
            }
        }
        return out
    }

    /// The DaemonSets whose presence says which plugin runs where API groups cannot (the
    /// others announce themselves by their API groups). Read one by one by name, so the
    /// RBAC grant is `get` on these names, never a list.
    public static let pluginDaemonSets: [(namespace: String, name: String)] = [
        ("kube-flannel", "kube-flannel-ds"), ("kube-system", "kube-flannel-ds"), ("kube-system", "canal"),
        ("kube-system", "weave-net"), ("kube-system", "kube-router"), ("kube-system", "kube-network-policies"),
    ]

    /// The names of `pluginDaemonSets` that exist; nil when none could be read (RBAC).
    public static func pluginDaemonSets(_ connection: KubeConnection) -> [String]? {
        var names: [String] = []
        var readAny = false
        for (namespace, name) in pluginDaemonSets {
            do {
                try connection.call("GET", "/apis/apps/v1/namespaces/\(namespace)/daemonsets/\(name)")
                readAny = true
                names.append(name)
            } catch {
                if error.code == 404 { readAny = true }
            }
        }
        return readAny ? names : nil
    }

    /// The backend `auto` stands for in this cluster, and the plugin assessment; on an
    /// unreachable API, the error (the caller decides what stands meanwhile).
    public static func resolve(_ client: KubeClient) -> Result<(backend: GuardBackend, cni: CNIAssessment), KubeError> {
        let connection = client.connection()
        defer { connection.close() }
        do {
            let served = try servedGroupVersions(connection)
            let groups = Set(served.map { String($0.split(separator: "/")[0]) })
            return .success((GuardBackend.resolve(servedGroupVersions: served),
                             CNIAssessment(groups: groups, daemonSets: pluginDaemonSets(connection))))
        } catch {
            return .failure(error)
        }
    }
}

/// Keeps the cluster-scoped guard objects of the backend in effect present and
/// canonical (SPEC "Guard backends"): an informer per kind (every object of the kind,
/// never selected by a label: only names are kept, and the kinds are cluster-scoped
/// and few) wakes it on any change, and every replica
/// watches while only the Lease holder writes. A repair reads the object and writes
/// it back whole: canonical spec, the managed-by label kept, owners removed.
///
/// Switching backends never leaves a moment without a guard: the new backend's
/// objects are written and read back first; only then are the old guard's removed
/// (the per-namespace NetworkPolicies, or the previous backend's objects). Switching
/// back to NetworkPolicy removes the cluster-scoped objects only once the watched
/// view shows both guard policies canonical in every guarded namespace.
public final class ClusterGuard: Sendable {
    public struct Settings: Sendable {
        /// Safety-net interval between checks when nothing happens.
        public var resyncSeconds: Double = 60
        var informer = InformerSettings()
        public init() {}
    }

    struct State {
        var config: Config
        var guardObjects: ClusterGuardPolicies
        /// What is still to be removed once the current guard is in place.
        var retire: [GuardBackend] = []
        var informers: [any AnyInformer] = []
        /// True once every object of the current backend was read back canonical.
        var inPlace = false
        /// True once a dry run said what it would write under this configuration.
        var previewed = false
    }

    let client: KubeClient
    let elector: LeaderElector?
    let settings: Settings
    let logger: Logger
    /// Events for what it writes (nil: none, in tests).
    let events: EventRecorder?
    /// The provisioner's view: whether the per-namespace NetworkPolicies are in place
    /// everywhere (nil: never wait for them).
    let view: ClusterView?
    let state: Locked<State>
    let wake = Waker()
    let stopped = Atomic<Bool>(false)

    public let created = Atomic<Int>(0)
    public let repaired = Atomic<Int>(0)
    public let retired = Atomic<Int>(0)
    public let failed = Atomic<Int>(0)
    /// Completed checks (all objects read back canonical).
    public let checks = Atomic<Int>(0)

    /// - Parameter config: with `guardBackend` already resolved (never `auto`).
    public init(client: KubeClient, config: Config, elector: LeaderElector?, settings: Settings, logger: Logger,
                view: ClusterView?, events: EventRecorder? = nil) {
        self.events = events
        self.client = client
        self.elector = elector
        self.settings = settings
        self.logger = logger
        self.view = view
        var initial = State(config: config, guardObjects: ClusterGuardPolicies(config: config))
        // Guard NetworkPolicies left from a run with the NetworkPolicy backend go once the objects are in place.
        if config.activeBackend.isClusterScoped { initial.retire = [.networkpolicy] }
        state = Locked(initial)
    }

    var isLeader: Bool { elector?.isLeader ?? true }

    /// Every guarded namespace holds both canonical guard policies and kube-system its
    /// block policy, as watched (writes in flight do not count), under a view that is
    /// itself on the NetworkPolicy backend (a view not yet reloaded wants no policies).
    var networkPoliciesInPlace: Bool {
        guard let view else { return true }
        guard view.hasListed, !view.config.activeBackend.isClusterScoped, view.counts.unguarded == 0 else { return false }
        return view.state.withLock { s in
            guard let kubeSystem = s.entries[GuardNames.kubeSystem], kubeSystem.namespace != nil else { return true }
            return kubeSystem.block?.canonical == true && kubeSystem.block?.ownerReferences == false
        }
    }

    /// The backend in effect.
    public var backend: GuardBackend { state.withLock { $0.config.activeBackend } }

    /// True once the current backend's objects were last read back canonical.
    public var isInPlace: Bool { state.withLock { $0.inPlace } }

    /// Starts watching the current backend's kinds and checks until `stop`, on the
    /// calling thread.
    public func run() {
        restartInformers()
        var nextCheck = 0.0
        while !stopped.load(ordering: .relaxed) {
            let now = Clock.monotonic().seconds
            if isLeader {
                if reconcile() {
                    nextCheck = now + settings.resyncSeconds
                } else {
                    nextCheck = now + 1  // a failed or pending step is retried soon
                }
            }
            wake.wait(seconds: max(0.05, min(nextCheck - now, 1)))
        }
        state.withLock { $0.informers }.forEach { $0.stop() }
    }

    /// Ends `run` (and the informers) within about a second.
    public func stop() {
        stopped.store(true, ordering: .relaxed)
        wake.signal()
    }

    /// A configuration reload (with `guardBackend` resolved): new canonical objects,
    /// and on a change of backend the old guard is queued for removal once the new
    /// one is in place.
    public func reload(_ config: Config) {
        let changed = state.withLock { s -> Bool in
            let old = s.config.activeBackend
            s.config = config
            s.guardObjects = ClusterGuardPolicies(config: config)
            s.inPlace = false
            s.previewed = false
            guard old != config.activeBackend else { return false }
            s.retire.removeAll { $0 == config.activeBackend }
            if !s.retire.contains(old) { s.retire.append(old) }
            return true
        }
        if changed {
            logger.info("guard backend switching; the old guard stays until the new one is in place",
                        [("backend", config.activeBackend.rawValue)])
            restartInformers()
        }
        wake.signal()
    }

    func restartInformers() {
        let (old, resources) = state.withLock { s in (s.informers, s.guardObjects.backend.resources) }
        old.forEach { $0.stop() }
        let fresh = resources.map { resource in
            Informer<GuardObjectName>(name: resource.plural, client: client, path: resource.collectionPath,
                                      settings: settings.informer, logger: logger,
                                      onList: { [wake] _ in wake.signal() }, onEvent: { [wake] _, _ in wake.signal() },
                                      onHealth: { _, _ in }) as any AnyInformer
        }
        state.withLock { $0.informers = fresh }
        guard !stopped.load(ordering: .relaxed) else { return }
        for informer in fresh { spawnThread(name: "pxguard-watch") { informer.run() } }
    }

    static func objectPath(_ resource: GuardBackend.Resource, _ name: String) -> String {
        // The guard's own names (constants, DNS subdomains) need no validation.
        resource.collectionPath + "/" + KubePath.percentEncoded(name)
    }

    /// One pass: the current objects present and canonical, then what is to be
    /// retired. True when everything is done.
    @discardableResult
    func reconcile() -> Bool {
        let (objects, retire, dryRun) = state.withLock { ($0.guardObjects, $0.retire, $0.config.provisioning.dryRun) }
        // Nothing to write yet, and the old guard stays: retried until the node addresses are known.
        guard !objects.pending else { return false }
        if dryRun {
            // A preview writes nothing, here as in the provisioner: said once per configuration.
            let first = state.withLock { s in defer { s.previewed = true }; return !s.previewed }
            if first {
                logger.info("dry run: would keep the cluster-wide guard objects and remove the old guard; writes nothing", [
                    ("backend", objects.backend.rawValue),
                    ("objects", objects.objects.compactMap { $0["metadata"]?["name"]?.stringValue }.joined(separator: ",")),
                    ("remove", retire.map(\.rawValue).joined(separator: ",")),
                ])
            }
            return true
        }
        let connection = client.connection()
        defer { connection.close() }
        do {
            for object in objects.objects { try ensure(object, objects, connection) }
        } catch {
            if failed.add(1, ordering: .relaxed).newValue % 30 == 1 {
                logger.warn("cluster guard write failed; retrying", [("backend", objects.backend.rawValue), ("error", error.description)])
            }
            return false
        }
        state.withLock { $0.inPlace = true }
        checks.add(1, ordering: .relaxed)
        var done = true
        for old in retire {
            if old == objects.backend { continue }
            if !objects.backend.isClusterScoped && !networkPoliciesInPlace {
                done = false  // back to NetworkPolicy: wait until every namespace holds its pair
                continue
            }
            do {
                guard try retireGuard(old, connection) else {
                    done = false  // the view has not listed the guard policies yet
                    continue
                }
                state.withLock { s in s.retire.removeAll { $0 == old } }
                logger.info("old guard removed; the new one was in place first",
                            [("removed", old.rawValue), ("backend", objects.backend.rawValue)])
            } catch {
                if failed.add(1, ordering: .relaxed).newValue % 30 == 1 {
                    logger.warn("removing the old guard failed; retrying", [("removed", old.rawValue), ("error", error.description)])
                }
                done = false
            }
        }
        return done
    }

    /// Reads one object and writes it back canonical when missing or drifted.
    func ensure(_ desired: JSON, _ objects: ClusterGuardPolicies, _ connection: KubeConnection) throws(KubeError) {
        let kind = desired["kind"]?.stringValue ?? ""
        let name = desired["metadata"]?["name"]?.stringValue ?? ""
        guard let resource = objects.backend.resources.first(where: { $0.kind == kind }) else { return }
        let path = Self.objectPath(resource, name)
        let current: JSON
        do {
            current = try connection.call("GET", path)
        } catch {
            guard error.code == 404 else { throw error }
            do {
                try connection.call("POST", resource.collectionPath, body: desired)
                created.add(1, ordering: .relaxed)
                logger.info("cluster guard object created", [("kind", kind), ("name", name)])
                events?.record(.init(apiVersion: resource.apiVersion, kind: kind, name: name), .normal, reason: "GuardObjectCreated",
                               message: "pxguard created the cluster-wide guard \(kind) \(name) (guardBackend \(objects.backend.rawValue))")
                return
            } catch {
                guard error.code == 409 else { throw error }
                current = try connection.call("GET", path)
            }
        }
        var metadata = current["metadata"] ?? .object([])
        let labelled = metadata["labels"]?[GuardNames.managedByKey]?.stringValue == GuardNames.managedByValue
        let owned = !(metadata["ownerReferences"]?.arrayValue ?? []).isEmpty
        if labelled && !owned && objects.isCanonical(spec: current["spec"] ?? .null, kind: kind, name: name) { return }
        let labels = (metadata["labels"] ?? .object([])).setting(GuardNames.managedByKey, .string(GuardNames.managedByValue))
        metadata = metadata.setting("labels", labels).setting("ownerReferences", .null)
        // PUT with the read resourceVersion: a concurrent writer gets a conflict, and the next pass reads again.
        try connection.call("PUT", path, body: desired.setting("metadata", metadata))
        repaired.add(1, ordering: .relaxed)
        logger.info("cluster guard object repaired", [("kind", kind), ("name", name)])
        events?.record(.init(apiVersion: resource.apiVersion, kind: kind, name: name), .warning, reason: "GuardObjectRepaired",
                       message: "pxguard restored the cluster-wide guard \(kind) \(name): "
                           + (labelled ? "" : "its managed-by label was missing; ") + (owned ? "it had an owner; " : "")
                           + "spec and metadata as rendered")
    }

    /// Removes what `old` wrote: the guard NetworkPolicies of every namespace, or the
    /// objects of a cluster-scoped backend (its policies before its Calico Tier).
    /// False when it cannot tell yet what to remove (the view has not listed).
    func retireGuard(_ old: GuardBackend, _ connection: KubeConnection) throws(KubeError) -> Bool {
        if old == .networkpolicy || old == .auto {
            // The guard policies the watched view holds, by their configured names: never a
            // list selected by the managed-by label, which tenants can set on their own.
            guard let view else { return true }
            guard let own = view.guardPolicyObjects() else { return false }
            for (namespace, name) in own {
                if try delete(KubePath.networkPolicy(name, in: namespace), connection) {
                    events?.record(.networkPolicy(name, in: namespace), .normal, reason: "GuardPolicyRemoved",
                                   message: "pxguard removed this guard policy: the cluster-wide guard (guardBackend) covers the namespace")
                }
            }
            return true
        }
        let config = state.withLock { $0.config }
        let objects = ClusterGuardPolicies(config: config, backend: old)
        for object in objects.objects.reversed() {
            guard let kind = object["kind"]?.stringValue, let name = object["metadata"]?["name"]?.stringValue,
                let resource = old.resources.first(where: { $0.kind == kind })
            else { continue }
            if try delete(Self.objectPath(resource, name), connection) {
                events?.record(.init(apiVersion: resource.apiVersion, kind: kind, name: name), .normal, reason: "GuardObjectRemoved",
                               message: "pxguard removed the old guard \(kind) \(name): the guard of guardBackend "
                                   + "\(state.withLock { $0.config.activeBackend.rawValue }) was in place first")
            }
        }
        return true
    }

    /// True when it removed the object; false when it was already gone.
    @discardableResult
    func delete(_ path: String, _ connection: KubeConnection) throws(KubeError) -> Bool {
        do {
            try connection.call("DELETE", path)
            retired.add(1, ordering: .relaxed)
            return true
        } catch {
            // Already gone, or a kind this cluster does not serve (a CNI removed): nothing left to remove.
            guard error.code == 404 else { throw error }
            return false
        }
    }

    /// Prometheus exposition: the backend in effect and the guard's writes.
    public var metricsText: String {
        let (backend, inPlace) = state.withLock { ($0.config.activeBackend, $0.inPlace) }
        var out = "# HELP pxguard_cluster_guard_in_place 1 once the cluster-scoped guard objects were read back canonical.\n"
        out += "# TYPE pxguard_cluster_guard_in_place gauge\n"
        out += "pxguard_cluster_guard_in_place{backend=\"\(backend.rawValue)\"} \(inPlace ? 1 : 0)\n"
        out += "# HELP pxguard_cluster_guard_actions_total Writes to the cluster-scoped guard objects.\n"
        out += "# TYPE pxguard_cluster_guard_actions_total counter\n"
        for (action, counter) in [("created", created.load(ordering: .relaxed)), ("repaired", repaired.load(ordering: .relaxed)),
                                 ("retired", retired.load(ordering: .relaxed)), ("failed", failed.load(ordering: .relaxed))] {
            out += "pxguard_cluster_guard_actions_total{action=\"\(action)\"} \(counter)\n"
        }
        return out
    }
}

/// What the keeper's informers keep of a guard object: its name only (any change
/// wakes a reconcile, which reads the object itself).
struct GuardObjectName: KubeProjection {
    static let fields: [[String]] = []
    let name: String?
    init(_ object: KubeObject) { name = object.name }
}
