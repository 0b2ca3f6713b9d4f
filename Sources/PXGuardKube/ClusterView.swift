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
        /// Canonical for the configuration before the last reload: while the
        /// provisioner rewrites policies to the new form, these count as in place for
        /// R6 (a configuration change never denies a pod by itself).
        var previousCanonical = false
        var canonical: Bool { drift == nil && labelled }
        /// In place for R6: canonical now, or canonical for the previous configuration.
        var inPlace: Bool { (drift == nil || previousCanonical) && labelled }
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
        /// `pxguard.io/previous-enforce` is present: the level before pxguard raised it is recorded.
        var previousRecorded = false
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
        /// The canonical policies of the configuration before the last reload, kept
        /// while some namespace still holds policies in that form (see `Policy.previousCanonical`).
        var previous: GuardPolicies?
        /// Namespaces whose guard pair was in place when `guardPolicyNames` changed: they
        /// count as in place for R6 until their pair under the new names is (or they go),
        /// so that a rename never denies pods while the new pairs are written.
        var inPlaceUnderOldNames: Set<String> = []
        /// The names guard pairs had before a rename: a DELETE of one takes its namespace
        /// out of `inPlaceUnderOldNames` (R2 no longer protects those names).
        var oldNames: Set<String> = []
        /// Node subnets found in the allow-api policies of the list under way (`nodeCIDRs: auto`).
        var listedNodeBlocks: [CIDR] = []
        /// Writes made and not yet seen on the watch, by "namespace/what": until
        /// then the provisioner does not repeat them (client-go's expectations).
        var expectations: [String: Double] = [:]
        var listed: (namespaces: Bool, policies: Bool) = (false, false)
        /// The list under way per kind, stamped on every entry it sees.
        var listGeneration: (namespaces: UInt32, policies: UInt32) = (0, 0)
        var healthy: (namespaces: Bool, policies: Bool) = (true, true)
    }

    let state: Locked<State>
    /// `nodeCIDRs: auto` before the first Node list: the node subnets the listed
    /// guard policies were written for (their allow-api `ipBlock`s, united), handed
    /// to whoever judges with them meanwhile.
    let policyNodeBlocks = Locked<(blocks: [CIDR]?, report: (@Sendable ([CIDR]) -> Void)?)>((nil, nil))
    let synced = Atomic<Bool>(false)
    let logger: Logger
    /// Namespace-to-guarded latency: bucket counts, sum and count.
    let latency = Locked<(buckets: [Int], sum: Double, count: Int)>(([Int](repeating: 0, count: latencyBuckets.count), 0, 0))
    static let latencyBuckets: [Double] = [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300]

    /// The Pod Security Admission label the provisioner keeps on guarded namespaces.
    public static let podSecurityLabel = "pod-security.kubernetes.io/enforce"

    public init(config: Config, logger: Logger) {
        PolicyProjection.watch(names: config.guardPolicyNames)
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
            return guarded(e) || s.inPlaceUnderOldNames.contains(namespace)
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
            s.inPlaceUnderOldNames.remove(name)
        } else {
            var ns = Namespace(guardedLabel: object.guardedLabel,
                               annotation: object.policiesAnnotation == s.config.guardPolicyNames.annotation,
                               podSecurity: object.podSecurity, terminating: object.terminating,
                               unguardedSince: e.namespace?.unguardedSince,
                               listed: listed == 0 ? e.namespace?.listed ?? 0 : listed, previousRecorded: object.previousRecorded)
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
        guard let name = object.guardName, let namespace = object.namespace else { return nil }
        let done: Double?? = state.withLock { s -> Double?? in
            // Names come from the configuration (`guardPolicyNames`).
            if deleted && s.oldNames.contains(name) { s.inPlaceUnderOldNames.remove(namespace) }
            guard name == s.policies.blockName || name == s.policies.allowAPIName else { return .none }
            return .some(apply(object, name, namespace, deleted: deleted, listed: 0, &s))
        }
        guard let done else { return nil }
        if let done { observe(latency: done) }
        return namespace
    }

    /// Returns the guarded latency when this made the namespace guarded.
    func apply(_ object: PolicyProjection, _ name: String, _ namespace: String, deleted: Bool, listed: UInt32, _ s: inout State) -> Double? {
        var e = s.entries[namespace] ?? Entry()
        let wasGuarded = guarded(e)
        let before = name == s.policies.blockName ? e.block : e.allowAPI
        var policy: Policy?
        if !deleted {
            var previousCanonical = false
            var drift: JSON? = PolicyProjection.unjudgedSpec
            if let spec = object.spec {
                let canonical = s.policies.isCanonical(spec: spec, name: name, namespace: namespace)
                drift = canonical ? nil : spec
                previousCanonical = !canonical && s.previous?.isCanonical(spec: spec, name: name, namespace: namespace) == true
            }
            policy = Policy(drift: drift, ownerReferences: object.ownerReferences, labelled: object.labelled,
                            listed: listed == 0 ? before?.listed ?? 0 : listed, previousCanonical: previousCanonical)
        }
        if name == s.policies.blockName { e.block = policy } else { e.allowAPI = policy }
        if guarded(e) { s.inPlaceUnderOldNames.remove(namespace) }
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

    func guarded(_ e: Entry) -> Bool { e.block?.inPlace == true && e.allowAPI?.inPlace == true }

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
                    s.inPlaceUnderOldNames.remove(name)
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
            state.withLock { s in
                s.listGeneration.policies = s.listGeneration.policies &+ 1 | 1
                s.listedNodeBlocks = []
                // A relist cannot tell which old pairs are still there: none counts any more.
                s.inPlaceUnderOldNames.removeAll()
            }
            return []
        case .page(let objects):
            var latencies: [Double] = []
            let touched: [String] = state.withLock { s in
                let generation = s.listGeneration.policies
                return objects.compactMap { object in
                    guard let name = object.guardName, let namespace = object.namespace,
                        name == s.policies.blockName || name == s.policies.allowAPIName
                    else { return nil }
                    if s.config.nodeCIDRsAuto, name == s.policies.allowAPIName, let spec = object.spec {
                        s.listedNodeBlocks += NodeBlocks.fromAllowAPI(spec: spec)
                    }
                    if let l = apply(object, name, namespace, deleted: false, listed: generation, &s) { latencies.append(l) }
                    return namespace
                }
            }
            latencies.forEach(observe)
            return touched
        case .end:
            notePolicyNodeBlocks(state.withLock { s in
                defer { s.listedNodeBlocks = [] }
                return s.listedNodeBlocks
            })
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

    /// Node subnets found in the listed allow-api policies, or nil when none was listed.
    public var nodeBlocksFromPolicies: [CIDR]? { policyNodeBlocks.withLock { $0.blocks } }

    /// Called with the node subnets found in each complete list of guard policies.
    public func onPolicyNodeBlocks(_ body: @escaping @Sendable ([CIDR]) -> Void) { policyNodeBlocks.withLock { $0.report = body } }

    func notePolicyNodeBlocks(_ found: [CIDR]) {
        guard !found.isEmpty else { return }
        let blocks = NodeBlocks.merge(found)
        let report = policyNodeBlocks.withLock { p in
            p.blocks = blocks
            return p.report
        }
        report?(blocks)
    }

    func observe(latency seconds: Double) {
        latency.withLock { l in
            if let i = Self.latencyBuckets.firstIndex(where: { seconds <= $0 }) { l.buckets[i] += 1 }
            l.sum += seconds
            l.count += 1
        }
    }

    // MARK: configuration

    /// The guard policies pxguard wrote, as the view holds them: under the configured
    /// names, where such a policy belongs, with pxguard's label (a site's own `allow-api`
    /// is not pxguard's to remove). Nil until both kinds were listed.
    func guardPolicyObjects() -> [(namespace: String, name: String)]? {
        state.withLock { s in
            guard s.listed.namespaces && s.listed.policies else { return nil }
            let names = s.config.guardPolicyNames
            return s.entries.flatMap { namespace, e -> [(namespace: String, name: String)] in
                [(names.block, e.block), (names.allowAPI, e.allowAPI)].compactMap { name, policy in
                    guard let policy, policy.labelled, s.policies.isGuardPolicy(name: name, namespace: namespace) else { return nil }
                    return (namespace, name)
                }
            }
        }
    }

    /// The configuration the view judges by.
    public var config: Config { state.withLock { $0.config } }
    /// The canonical guard policies of that configuration.
    public var policies: GuardPolicies { state.withLock { $0.policies } }

    /// Swaps in a new configuration: the canonical specs change, so every policy
    /// is judged again. Returns the namespaces that now need work.
    public func reload(_ config: Config) -> [String] {
        let fresh = GuardPolicies(config: config)
        PolicyProjection.watch(names: config.guardPolicyNames)
        return state.withLock { s in
            let old = s.policies
            s.config = config
            s.policies = fresh
            // Renamed guard policies are other objects: the view forgets the old names'
            // entries (the informer's next events bring the new names' in) and nothing
            // counts as in place by the old form.
            let renamed = old.blockName != fresh.blockName || old.allowAPIName != fresh.allowAPIName
            s.previous = renamed ? nil : old
            if renamed {
                s.inPlaceUnderOldNames.formUnion(s.entries.compactMap { guarded($1) ? $0 : nil })
                s.oldNames.formUnion([old.blockName, old.allowAPIName])
                s.oldNames.subtract([fresh.blockName, fresh.allowAPIName])
            }
            for (namespace, var e) in s.entries {
                func rejudge(_ p: Policy?, _ name: String, _ oldName: String) -> Policy? {
                    guard var p, !renamed else { return nil }
                    let spec = p.drift ?? old.canonicalSpec(name: oldName, namespace: namespace) ?? .object([])
                    let canonical = fresh.isCanonical(spec: spec, name: name, namespace: namespace)
                    p.drift = canonical ? nil : spec
                    p.previousCanonical = !canonical && old.isCanonical(spec: spec, name: oldName, namespace: namespace)
                    return p
                }
                e.block = rejudge(e.block, fresh.blockName, old.blockName)
                e.allowAPI = rejudge(e.allowAPI, fresh.allowAPIName, old.allowAPIName)
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
        /// Raising the Pod Security level: the level it had (empty when none), recorded
        /// in `pxguard.io/previous-enforce` unless already there.
        var previousEnforce: String?
        /// Guard policies in the previous configuration's form, to rewrite to the
        /// current one (the same write as a repair; paced and counted apart).
        var rewrite: [String] = []
        var isEmpty: Bool {
            labels.isEmpty && !annotate && create.isEmpty && repair.isEmpty && adopt.isEmpty && rewrite.isEmpty
        }
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
            // "podsecurity" pending: held back over running Pods it would reject (see Provisioner).
            if level != .none && PodSecurityLevel.rank(ofLabel: ns.podSecurity) < PodSecurityLevel.rank(ofLabel: level.rawValue)
                && !pending("podsecurity") {
                plan.labels[Self.podSecurityLabel] = level.rawValue
                // The first raise records what was there; a later one (podSecurity
                // raised again) keeps the level the namespace had before pxguard.
                if !ns.previousRecorded { plan.previousEnforce = ns.podSecurity ?? "" }
            }
        }
        // A cluster-scoped guard replaces the per-namespace policies: labels only. With
        // nodeCIDRs: auto and no node address known yet, a guard policy would block
        // nothing: none is written until the first Node list (R6 waits meanwhile).
        let provisionPolicies = !s.config.activeBackend.isClusterScoped && !s.config.nodeAddressesPending
        for name in names where provisionPolicies && !pending(name) {
            let p = name == s.policies.blockName ? e.block : e.allowAPI
            if let p {
                if !p.labelled {
                    plan.adopt.append(name)
                } else if p.previousCanonical && !p.ownerReferences {
                    plan.rewrite.append(name)
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
            // The previous form stops counting once no policy holds it any more.
            if s.previous != nil && Self.previousForm(s) == 0 { s.previous = nil }
            return s.entries.keys.filter { !plan($0, s, now: now).isEmpty }
        }
    }

    /// Guard policies still in the previous configuration's form (being rewritten).
    static func previousForm(_ s: State) -> Int {
        s.entries.values.reduce(0) { n, e in
            n + (e.block?.previousCanonical == true ? 1 : 0) + (e.allowAPI?.previousCanonical == true ? 1 : 0)
        }
    }

    // MARK: figures

    /// How much the view holds.
    public struct Counts: Sendable {
        public var namespaces = 0
        public var policies = 0
        /// Guarded, live namespaces without both policies in place (canonical, or
        /// canonical for the previous configuration while rewrites proceed).
        public var unguarded = 0
        /// Guard policies still in the previous configuration's form.
        public var rewritesPending = 0
    }

    /// Counted under the lock, in one pass (metrics scrapes).
    public var counts: Counts {
        state.withLock { s in
            var c = Counts()
            c.rewritesPending = Self.previousForm(s)
            for (name, e) in s.entries {
                c.policies += (e.block == nil ? 0 : 1) + (e.allowAPI == nil ? 0 : 1)
                guard let ns = e.namespace else { continue }
                c.namespaces += 1
                // With a cluster-scoped guard no namespace waits for policies of its own.
                if !ns.terminating && s.config.isGuarded(namespace: name) && name != GuardNames.kubeSystem && !guarded(e)
                    && !s.config.activeBackend.isClusterScoped {
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
        out += "# HELP pxguard_provisioner_rewrites_pending Guard policies still in the previous configuration's form (count as in place for R6 while rewritten).\n"
        out += "# TYPE pxguard_provisioner_rewrites_pending gauge\npxguard_provisioner_rewrites_pending \(c.rewritesPending)\n"
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
        ["metadata", "annotations", GuardNames.previousEnforceAnnotation],
    ]
    /// The namespace's name.
    public var name: String?
    var guardedLabel: Bool
    /// The `pxguard.io/policies` annotation (compared with the configured names by the view).
    var policiesAnnotation: String?
    /// The `pxguard.io/guarded` label's value as written (the audit quotes it).
    var guardedValue: String?
    var podSecurity: String?
    var terminating: Bool
    /// `pxguard.io/previous-enforce` is present (over the budget counts as present: never overwritten).
    var previousRecorded: Bool

    /// Fields over the budget read as "not as pxguard wants it" (the provisioner
    /// writes them again), never as absent-and-fine.
    public init(_ object: KubeObject) {
        name = object.name
        let f = object.fields
        guardedLabel = f.string(0) == "true"
        policiesAnnotation = f.overBudget[2] ? nil : f.string(2)
        guardedValue = f.overBudget[0] ? "(over the per-object budget)" : f.string(0)
        podSecurity = f.overBudget[1] ? nil : f.string(1)
        terminating = f.string(3) == "Terminating" || f.raw[4] != nil || f.overBudget[4]
        previousRecorded = f.raw[5] != nil || f.overBudget[5]
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

    /// Every guard name a view in this process was configured with (the defaults, and
    /// `guardPolicyNames`): the spec of a policy by any other name is skipped as it
    /// streams past. Only grows; the view still judges by its own configuration.
    static let watchedNames = Locked<Set<String>>([GuardNames.blockPolicy, GuardNames.allowAPIPolicy])

    static func watch(names: Config.GuardPolicyNames) {
        watchedNames.withLock { $0.formUnion([names.block, names.allowAPI]) }
    }

    public init(_ object: KubeObject) {
        namespace = object.namespace
        let f = object.fields
        guard let name = object.name, Self.watchedNames.withLock({ $0.contains(name) }) else {
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
