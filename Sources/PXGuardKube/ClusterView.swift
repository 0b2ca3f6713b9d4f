public import PXGuardCore
public import PXGuardPlatform
import Synchronization

/// The server's watched picture of the cluster: every namespace and every guard
/// policy, in compact form, fed by the informers. Shared by the provisioner
/// (which reconciles from it, so a resync costs no API call) and by admission
/// (R6 asks it whether a namespace is guarded yet).
public final class ClusterView: GuardView, Sendable {
    /// A guard policy as last seen. `drift` is nil while the spec is canonical for
    /// the current configuration; otherwise it holds the spec seen, so that a
    /// configuration reload can judge it again.
    struct Policy {
        var drift: JSON?
        var ownerReferences: Bool
        /// Carries `app.kubernetes.io/managed-by: pxguard` (one without it is
        /// someone else's until pxguard takes it over).
        var labelled = true
        /// The list that last saw it (a relist drops what it did not see).
        var listed: UInt32 = 0
        var canonical: Bool { drift == nil && labelled }
    }

    /// What the provisioner needs of a namespace, nothing more.
    struct Namespace {
        var guardedLabel: Bool
        var annotation: Bool
        /// `pod-security.kubernetes.io/enforce`, as written.
        var podSecurity: String?
        var terminating: Bool
        /// Monotonic time it was first seen unguarded (for the latency histogram).
        var unguardedSince: Double?
        /// The list that last saw it (a relist drops what it did not see).
        var listed: UInt32 = 0
    }

    struct Entry {
        var namespace: Namespace?
        var block: Policy?
        var allowAPI: Policy?
        var isEmpty: Bool { namespace == nil && block == nil && allowAPI == nil }
    }

    struct State {
        var entries: [String: Entry] = [:]
        var config: Config
        var policies: GuardPolicies
        /// Writes made and not yet seen on the watch, by "namespace/what": until
        /// then the provisioner does not repeat them (client-go's expectations).
        var expectations: [String: Double] = [:]
        var listed: (namespaces: Bool, policies: Bool) = (false, false)
        /// The list under way per kind, stamped on every entry it sees.
        var listGeneration: (namespaces: UInt32, policies: UInt32) = (0, 0)
        var healthy: (namespaces: Bool, policies: Bool) = (true, true)
    }

    let state: Locked<State>
    let synced = Atomic<Bool>(false)
    let logger: Logger
    /// Namespace-to-guarded latency: bucket counts, sum and count.
    let latency = Locked<(buckets: [Int], sum: Double, count: Int)>(([Int](repeating: 0, count: latencyBuckets.count), 0, 0))
    static let latencyBuckets: [Double] = [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300]

    /// The Pod Security Admission label the provisioner keeps on guarded namespaces.
    public static let podSecurityLabel = "pod-security.kubernetes.io/enforce"

    public init(config: Config, logger: Logger) {
        state = Locked(State(config: config, policies: GuardPolicies(config: config)))
        self.logger = logger
    }

    static func now() -> Double { Clock.monotonic().seconds }

    // MARK: GuardView

    public var isSynced: Bool { synced.load(ordering: .acquiring) }

    /// True once both namespaces and guard policies have been listed: before that,
    /// a namespace without policies in the view may only be one whose policies
    /// are not listed yet, and writing would be guesswork.
    var hasListed: Bool { state.withLock { $0.listed.namespaces && $0.listed.policies } }

    public func namespaceHasCanonicalPolicies(_ namespace: String) -> Bool {
        state.withLock { s in
            guard let e = s.entries[namespace] else { return false }
            return e.block?.canonical == true && e.allowAPI?.canonical == true
        }
    }

    // MARK: feeding from informers

    /// The two watched resources.
    public enum Kind: Sendable { case namespaces, policies }

    /// Marks a resource listed (or its watch healthy again) or failing for long
    /// enough that the view cannot be trusted; R6 applies only while both are good.
    func setHealth(_ kind: Kind, listed: Bool? = nil, healthy: Bool) {
        let (now, before) = state.withLock { s -> (Bool, Bool) in
            let before = s.listed.namespaces && s.listed.policies && s.healthy.namespaces && s.healthy.policies
            switch kind {
            case .namespaces:
                if let listed { s.listed.namespaces = s.listed.namespaces || listed }
                s.healthy.namespaces = healthy
            case .policies:
                if let listed { s.listed.policies = s.listed.policies || listed }
                s.healthy.policies = healthy
            }
            return (s.listed.namespaces && s.listed.policies && s.healthy.namespaces && s.healthy.policies, before)
        }
        synced.store(now, ordering: .releasing)
        if now && !before {
            logger.info("cluster view in sync; R6 unguardedNamespace applies")
        } else if !now && before {
            logger.warn("cluster view out of sync (watch failing); R6 unguardedNamespace allows until it recovers")
        }
    }

    /// Applies a namespace ADDED/MODIFIED (`deleted` false) or DELETED event and
    /// returns the namespace name to reconcile.
    func applyNamespace(_ object: NamespaceProjection, deleted: Bool) -> String? {
        guard let name = object.name else { return nil }
        state.withLock { s in apply(object, name: name, deleted: deleted, listed: 0, &s) }
        return name
    }

    func apply(_ object: NamespaceProjection, name: String, deleted: Bool, listed: UInt32, _ s: inout State) {
        var e = s.entries[name] ?? Entry()
        if deleted {
            e.namespace = nil
        } else {
            var ns = Namespace(guardedLabel: object.guardedLabel, annotation: object.annotation, podSecurity: object.podSecurity,
                               terminating: object.terminating, unguardedSince: e.namespace?.unguardedSince,
                               listed: listed == 0 ? e.namespace?.listed ?? 0 : listed)
            if ns.unguardedSince == nil && !guarded(e) { ns.unguardedSince = Self.now() }
            e.namespace = ns
        }
        s.expectations[name + "/labels"] = nil
        s.entries[name] = e.isEmpty ? nil : e
    }

    /// Applies a NetworkPolicy event; only the guard names in a namespace matter
    /// here (every NetworkPolicy is watched, so that no label a tenant can set
    /// decides what the view sees). Returns the namespace to reconcile.
    func applyPolicy(_ object: PolicyProjection, deleted: Bool) -> String? {
        guard let guardName = object.guardName, let namespace = object.namespace else { return nil }
        let done: Double? = state.withLock { s in apply(object, guardName, namespace, deleted: deleted, listed: 0, &s) }
        if let done { observe(latency: done) }
        return namespace
    }

    /// Returns the guarded latency when this made the namespace guarded.
    func apply(_ object: PolicyProjection, _ name: String, _ namespace: String, deleted: Bool, listed: UInt32, _ s: inout State) -> Double? {
        var e = s.entries[namespace] ?? Entry()
        let wasGuarded = guarded(e)
        let before = name == GuardNames.blockPolicy ? e.block : e.allowAPI
        var policy: Policy?
        if !deleted {
            let drift: JSON? = switch object.spec {
            case .some(let spec): s.policies.isCanonical(spec: spec, name: name, namespace: namespace) ? nil : spec
            case .none: PolicyProjection.unjudgedSpec
            }
            policy = Policy(drift: drift, ownerReferences: object.ownerReferences, labelled: object.labelled,
                            listed: listed == 0 ? before?.listed ?? 0 : listed)
        }
        if name == GuardNames.blockPolicy { e.block = policy } else { e.allowAPI = policy }
        s.expectations[namespace + "/" + name] = nil
        var latency: Double?
        if !wasGuarded && guarded(e), let since = e.namespace?.unguardedSince {
            latency = Self.now() - since
            e.namespace?.unguardedSince = nil
        } else if wasGuarded && !guarded(e) && e.namespace != nil {
            e.namespace?.unguardedSince = Self.now()
        }
        s.entries[namespace] = e.isEmpty ? nil : e
        return latency
    }

    func guarded(_ e: Entry) -> Bool { e.block?.canonical == true && e.allowAPI?.canonical == true }

    /// A list of namespaces, page by page: each page is applied as it comes, and
    /// at the end what the list did not see is dropped (deleted while we were not
    /// watching). Returns the namespaces whose entry changed or vanished.
    func list(_ phase: ListPhase<NamespaceProjection>) -> [String] {
        switch phase {
        case .begin:
            state.withLock { s in s.listGeneration.namespaces = s.listGeneration.namespaces &+ 1 | 1 }
            return []
        case .page(let objects):
            return state.withLock { s in
                let generation = s.listGeneration.namespaces
                return objects.compactMap { object in
                    guard let name = object.name else { return nil }
                    apply(object, name: name, deleted: false, listed: generation, &s)
                    return name
                }
            }
        case .end:
            return state.withLock { s in
                let generation = s.listGeneration.namespaces
                var gone: [String] = []
                for (name, var e) in s.entries where e.namespace != nil && e.namespace?.listed != generation {
                    e.namespace = nil
                    gone.append(name)
                    s.entries[name] = e.isEmpty ? nil : e
                }
                return gone
            }
        }
    }

    /// A list of NetworkPolicies, page by page (see the namespace list).
    func list(_ phase: ListPhase<PolicyProjection>) -> [String] {
        switch phase {
        case .begin:
            state.withLock { s in s.listGeneration.policies = s.listGeneration.policies &+ 1 | 1 }
            return []
        case .page(let objects):
            var latencies: [Double] = []
            let touched: [String] = state.withLock { s in
                let generation = s.listGeneration.policies
                return objects.compactMap { object in
                    guard let name = object.guardName, let namespace = object.namespace else { return nil }
                    if let l = apply(object, name, namespace, deleted: false, listed: generation, &s) { latencies.append(l) }
                    return namespace
                }
            }
            latencies.forEach(observe)
            return touched
        case .end:
            return state.withLock { s in
                let generation = s.listGeneration.policies
                var gone: [String] = []
                for (name, var e) in s.entries {
                    var changed = false
                    if let b = e.block, b.listed != generation { e.block = nil; changed = true }
                    if let a = e.allowAPI, a.listed != generation { e.allowAPI = nil; changed = true }
                    guard changed else { continue }
                    gone.append(name)
                    s.entries[name] = e.isEmpty ? nil : e
                }
                return gone
            }
        }
    }

    func observe(latency seconds: Double) {
        latency.withLock { l in
            if let i = Self.latencyBuckets.firstIndex(where: { seconds <= $0 }) { l.buckets[i] += 1 }
            l.sum += seconds
            l.count += 1
        }
    }

    // MARK: configuration

    /// The configuration the view judges by.
    public var config: Config { state.withLock { $0.config } }
    /// The canonical guard policies of that configuration.
    public var policies: GuardPolicies { state.withLock { $0.policies } }

    /// Swaps in a new configuration: the canonical specs change, so every policy
    /// is judged again. Returns the namespaces that now need work.
    public func reload(_ config: Config) -> [String] {
        let fresh = GuardPolicies(config: config)
        return state.withLock { s in
            let old = s.policies
            s.config = config
            s.policies = fresh
            for (namespace, var e) in s.entries {
                func rejudge(_ p: Policy?, _ name: String) -> Policy? {
                    guard var p else { return nil }
                    let spec = p.drift ?? old.canonicalSpec(name: name, namespace: namespace) ?? .object([])
                    p.drift = fresh.isCanonical(spec: spec, name: name, namespace: namespace) ? nil : spec
                    return p
                }
                e.block = rejudge(e.block, GuardNames.blockPolicy)
                e.allowAPI = rejudge(e.allowAPI, GuardNames.allowAPIPolicy)
                s.entries[namespace] = e
            }
            s.expectations.removeAll()
            return s.entries.keys.filter { needsWork($0, s) }
        }
    }

    // MARK: what to do

    /// The work one namespace needs, computed from the view alone.
    struct Plan: Sendable, Equatable {
        /// Labels to set on the namespace (merge patch), empty when none.
        var labels: [String: String] = [:]
        var annotate = false
        /// Guard policies to create.
        var create: [String] = []
        /// Guard policies to rewrite to canonical (spec replaced, owners removed).
        var repair: [String] = []
        /// Guard-named policies without pxguard's label: read, then rewritten
        /// canonical with the label (other labels and annotations kept).
        var adopt: [String] = []
        var isEmpty: Bool { labels.isEmpty && !annotate && create.isEmpty && repair.isEmpty && adopt.isEmpty }
    }

    func plan(_ namespace: String, _ s: State, now: Double) -> Plan {
        var plan = Plan()
        guard let e = s.entries[namespace], let ns = e.namespace, !ns.terminating else { return plan }
        // kube-system is exempt but keeps its block policy; other exempt namespaces get nothing.
        let names = s.policies.names(for: namespace)
        guard !names.isEmpty else { return plan }
        func pending(_ what: String) -> Bool { (s.expectations[namespace + "/" + what] ?? 0) > now }
        if namespace != GuardNames.kubeSystem && !pending("labels") {
            if !ns.guardedLabel { plan.labels[GuardNames.guardedLabel] = "true" }
            plan.annotate = !ns.annotation
            let level = s.config.podSecurity
            if level != .none && PodSecurityLevel.rank(ofLabel: ns.podSecurity) < PodSecurityLevel.rank(ofLabel: level.rawValue) {
                plan.labels[Self.podSecurityLabel] = level.rawValue
            }
        }
        for name in names where !pending(name) {
            let p = name == GuardNames.blockPolicy ? e.block : e.allowAPI
            if let p {
                if !p.labelled {
                    plan.adopt.append(name)
                } else if !p.canonical || p.ownerReferences {
                    plan.repair.append(name)
                }
            } else {
                plan.create.append(name)
            }
        }
        return plan
    }

    func needsWork(_ namespace: String, _ s: State) -> Bool { !plan(namespace, s, now: 0).isEmpty }

    /// The plan for one namespace, skipping writes already made and not yet seen.
    func plan(for namespace: String) -> Plan {
        state.withLock { s in plan(namespace, s, now: Self.now()) }
    }

    /// Records writes just made, so that they are not repeated until the watch
    /// shows them or `seconds` pass.
    public func expect(_ namespace: String, _ what: [String], for seconds: Double) {
        let until = Self.now() + seconds
        state.withLock { s in for w in what { s.expectations[namespace + "/" + w] = until } }
    }

    /// Namespaces that need work, by the view alone: the periodic resync.
    func namespacesNeedingWork() -> [String] {
        state.withLock { s in
            let now = Self.now()
            s.expectations = s.expectations.filter { $0.value > now }
            return s.entries.keys.filter { !plan($0, s, now: now).isEmpty }
        }
    }

    // MARK: figures

    /// How much the view holds.
    public struct Counts: Sendable {
        public var namespaces = 0
        public var policies = 0
        /// Guarded, live namespaces without both canonical policies.
        public var unguarded = 0
    }

    /// Counted under the lock, in one pass (metrics scrapes).
    public var counts: Counts {
        state.withLock { s in
            var c = Counts()
            for (name, e) in s.entries {
                c.policies += (e.block == nil ? 0 : 1) + (e.allowAPI == nil ? 0 : 1)
                guard let ns = e.namespace else { continue }
                c.namespaces += 1
                if !ns.terminating && s.config.isGuarded(namespace: name) && name != GuardNames.kubeSystem && !guarded(e) {
                    c.unguarded += 1
                }
            }
            return c
        }
    }

    /// Prometheus exposition of the view's gauges and latency histogram.
    public var metricsText: String {
        let c = counts
        var out = "# HELP pxguard_unguarded_namespaces Guarded namespaces without both canonical guard policies (as watched).\n"
        out += "# TYPE pxguard_unguarded_namespaces gauge\npxguard_unguarded_namespaces \(c.unguarded)\n"
        out += "# HELP pxguard_view_objects Objects held in the watched view.\n# TYPE pxguard_view_objects gauge\n"
        out += "pxguard_view_objects{kind=\"namespace\"} \(c.namespaces)\npxguard_view_objects{kind=\"policy\"} \(c.policies)\n"
        out += "# HELP pxguard_view_synced 1 while the watched view is in sync (R6 applies).\n# TYPE pxguard_view_synced gauge\n"
        out += "pxguard_view_synced \(isSynced ? 1 : 0)\n"
        let l = latency.withLock { $0 }
        out += "# HELP pxguard_namespace_guarded_seconds Time from a namespace being seen unguarded to both guard policies canonical.\n"
        out += "# TYPE pxguard_namespace_guarded_seconds histogram\n"
        var cumulative = 0
        for (i, bound) in Self.latencyBuckets.enumerated() {
            cumulative += l.buckets[i]
            out += "pxguard_namespace_guarded_seconds_bucket{le=\"\(bound)\"} \(cumulative)\n"
        }
        out += "pxguard_namespace_guarded_seconds_bucket{le=\"+Inf\"} \(l.count)\n"
        out += "pxguard_namespace_guarded_seconds_sum \(l.sum)\npxguard_namespace_guarded_seconds_count \(l.count)\n"
        return out
    }
}

/// What the view keeps of a Namespace: the two labels and the annotation pxguard
/// manages and whether it is going away. Nothing else of it is ever stored.
public struct NamespaceProjection: KubeProjection {
    /// The guarded and Pod Security labels, the policies annotation, phase, deletion.
    public static let fields: [[String]] = [
        ["metadata", "labels", GuardNames.guardedLabel], ["metadata", "labels", ClusterView.podSecurityLabel],
        ["metadata", "annotations", GuardNames.policiesAnnotation], ["status", "phase"], ["metadata", "deletionTimestamp"],
    ]
    /// The namespace's name.
    public var name: String?
    var guardedLabel: Bool
    /// The `pxguard.io/guarded` label's value as written (the audit quotes it).
    var guardedValue: String?
    var annotation: Bool
    var podSecurity: String?
    var terminating: Bool

    /// Fields over the budget read as "not as pxguard wants it" (the provisioner
    /// writes them again), never as absent-and-fine.
    public init(_ object: KubeObject) {
        name = object.name
        let f = object.fields
        guardedLabel = f.string(0) == "true"
        guardedValue = f.overBudget[0] ? "(over the per-object budget)" : f.string(0)
        annotation = f.string(2) == GuardNames.policiesAnnotationValue
        podSecurity = f.overBudget[1] ? nil : f.string(1)
        terminating = f.string(3) == "Terminating" || f.raw[4] != nil || f.overBudget[4]
    }
}

/// What the view keeps of a NetworkPolicy: nothing unless it has a guard name;
/// then its spec (judged against the canonical one, and dropped when it is), its
/// owners, and whether it carries pxguard's label.
public struct PolicyProjection: KubeProjection {
    /// The spec, the owners and pxguard's managed-by label.
    public static let fields: [[String]] = [["spec"], ["metadata", "ownerReferences"], ["metadata", "labels", GuardNames.managedByKey]]
    /// Stands for a spec over the per-object budget: no configuration makes it
    /// canonical, so the guard policy is repaired rather than trusted.
    static let unjudgedSpec: JSON = .string("spec over the per-object budget: not judged")
    /// The policy's namespace.
    public var namespace: String?
    /// The guard name, or nil for every other NetworkPolicy.
    var guardName: String?
    /// The spec; nil when it was over the budget.
    var spec: JSON?
    var ownerReferences: Bool
    var labelled: Bool
    /// The audit's record of this policy (any name), when the audit taps the watch.
    var audit: AuditRecord?

    public init(_ object: KubeObject) {
        namespace = object.namespace
        let f = object.fields
        guard let name = object.name, name == GuardNames.blockPolicy || name == GuardNames.allowAPIPolicy else {
            guardName = nil
            ownerReferences = false
            labelled = false
            return
        }
        guardName = name
        spec = f.overBudget[0] ? nil : f.json(0) ?? .object([])
        ownerReferences = f.overBudget[1] || (f.json(1)?.arrayValue.map { !$0.isEmpty } ?? false)
        labelled = f.string(2) == GuardNames.managedByValue
    }
}
