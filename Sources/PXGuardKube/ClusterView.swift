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
        /// Canonical for the configuration before the last reload: while the
        /// provisioner rewrites policies to the new form, these count as in place for
        /// R6 (a configuration change never denies a pod by itself).
        var previousCanonical = false
        var canonical: Bool { drift == nil }
        /// In place for R6: canonical now, or canonical for the previous configuration.
        var inPlace: Bool { drift == nil || previousCanonical }
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
        /// Writes made and not yet seen on the watch, by "namespace/what": until
        /// then the provisioner does not repeat them (client-go's expectations).
        var expectations: [String: Double] = [:]
        var listed: (namespaces: Bool, policies: Bool) = (false, false)
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
            return e.block?.inPlace == true && e.allowAPI?.inPlace == true
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

    static func name(_ object: JSON) -> String? { object["metadata"]?["name"]?.stringValue }

    func decodeNamespace(_ object: JSON, previous: Namespace?, annotation: String) -> Namespace {
        let meta = object["metadata"]
        let labels = meta?["labels"]
        let annotations = meta?["annotations"]
        let terminating = object["status"]?["phase"]?.stringValue == "Terminating" || meta?["deletionTimestamp"] != nil
        return Namespace(guardedLabel: labels?[GuardNames.guardedLabel]?.stringValue == "true",
                         annotation: annotations?[GuardNames.policiesAnnotation]?.stringValue == annotation,
                         podSecurity: labels?[Self.podSecurityLabel]?.stringValue, terminating: terminating,
                         unguardedSince: previous?.unguardedSince,
                         previousRecorded: annotations?[GuardNames.previousEnforceAnnotation]?.stringValue != nil)
    }

    func decodePolicy(_ object: JSON, name: String, namespace: String, _ s: State) -> Policy {
        let spec = object["spec"] ?? .object([])
        let owners = object["metadata"]?["ownerReferences"]?.arrayValue.map { !$0.isEmpty } ?? false
        let canonical = s.policies.isCanonical(spec: spec, name: name, namespace: namespace)
        return Policy(drift: canonical ? nil : spec, ownerReferences: owners,
                      previousCanonical: !canonical && s.previous?.isCanonical(spec: spec, name: name, namespace: namespace) == true)
    }

    /// Applies a namespace ADDED/MODIFIED (`deleted` false) or DELETED event and
    /// returns the namespace name to reconcile.
    func applyNamespace(_ object: JSON, deleted: Bool) -> String? {
        guard let name = Self.name(object) else { return nil }
        state.withLock { s in
            var e = s.entries[name] ?? Entry()
            if deleted {
                e.namespace = nil
            } else {
                var ns = decodeNamespace(object, previous: e.namespace, annotation: s.config.guardPolicyNames.annotation)
                if ns.unguardedSince == nil && !guarded(e) { ns.unguardedSince = Self.now() }
                e.namespace = ns
            }
            s.expectations[name + "/labels"] = nil
            s.entries[name] = e.isEmpty ? nil : e
        }
        return name
    }

    /// Applies a guard-policy event (objects that carry the managed-by label;
    /// other names are not pxguard's and are ignored).
    func applyPolicy(_ object: JSON, deleted: Bool) -> String? {
        guard let name = Self.name(object), let namespace = object["metadata"]?["namespace"]?.stringValue else { return nil }
        let done: Double?? = state.withLock { s -> Double?? in
            // Names come from the configuration (`guardPolicyNames`).
            guard name == s.policies.blockName || name == s.policies.allowAPIName else { return .none }
            var e = s.entries[namespace] ?? Entry()
            let wasGuarded = guarded(e)
            let policy = deleted ? nil : decodePolicy(object, name: name, namespace: namespace, s)
            if name == s.policies.blockName { e.block = policy } else { e.allowAPI = policy }
            s.expectations[namespace + "/" + name] = nil
            var latency: Double?
            if !wasGuarded && guarded(e), let since = e.namespace?.unguardedSince {
                latency = Self.now() - since
                e.namespace?.unguardedSince = nil
            } else if wasGuarded && !guarded(e) && e.namespace != nil {
                e.namespace?.unguardedSince = Self.now()
            }
            s.entries[namespace] = e.isEmpty ? nil : e
            return .some(latency)
        }
        guard let done else { return nil }
        if let done { observe(latency: done) }
        return namespace
    }

    func guarded(_ e: Entry) -> Bool { e.block?.inPlace == true && e.allowAPI?.inPlace == true }

    /// Replaces everything known of one kind with a fresh list (after start or
    /// `410 Gone`); returns the namespaces whose entry changed or vanished.
    public func replace(_ kind: Kind, with objects: [JSON]) -> [String] {
        if kind == .policies { notePolicyNodeBlocks(objects) }
        var seen = Set<String>()
        var touched: [String] = []
        for object in objects {
            let ns = kind == .namespaces ? applyNamespace(object, deleted: false) : applyPolicy(object, deleted: false)
            if let ns {
                if kind == .namespaces { seen.insert(ns) } else { seen.insert(ns + "/" + (Self.name(object) ?? "")) }
                touched.append(ns)
            }
        }
        // What the list no longer holds was deleted while we were not watching.
        let gone: [String] = state.withLock { s in
            var gone: [String] = []
            let (block, allowAPI) = (s.policies.blockName, s.policies.allowAPIName)
            for (name, var e) in s.entries {
                switch kind {
                case .namespaces:
                    if e.namespace != nil && !seen.contains(name) { e.namespace = nil; gone.append(name) }
                case .policies:
                    if e.block != nil && !seen.contains(name + "/" + block) { e.block = nil; gone.append(name) }
                    if e.allowAPI != nil && !seen.contains(name + "/" + allowAPI) { e.allowAPI = nil; gone.append(name) }
                }
                s.entries[name] = e.isEmpty ? nil : e
            }
            return gone
        }
        return touched + gone
    }

    /// Node subnets found in the listed allow-api policies, or nil when none was listed.
    public var nodeBlocksFromPolicies: [CIDR]? { policyNodeBlocks.withLock { $0.blocks } }

    /// Called with the node subnets found in each complete list of guard policies.
    public func onPolicyNodeBlocks(_ body: @escaping @Sendable ([CIDR]) -> Void) { policyNodeBlocks.withLock { $0.report = body } }

    func notePolicyNodeBlocks(_ objects: [JSON]) {
        let (auto, allowAPI) = state.withLock { ($0.config.nodeCIDRsAuto, $0.policies.allowAPIName) }
        guard auto else { return }
        let found = objects.filter { Self.name($0) == allowAPI }.flatMap { NodeBlocks.fromAllowAPI(spec: $0["spec"] ?? .null) }
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
            // Renamed guard policies are other objects: the view forgets the old names'
            // entries (the informer's next events bring the new names' in) and nothing
            // counts as in place by the old form.
            let renamed = old.blockName != fresh.blockName || old.allowAPIName != fresh.allowAPIName
            s.previous = renamed ? nil : old
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
        /// Raising the Pod Security level: the level it had (empty when none), recorded
        /// in `pxguard.io/previous-enforce` unless already there.
        var previousEnforce: String?
        /// Guard policies in the previous configuration's form, to rewrite to the
        /// current one (the same write as a repair; paced and counted apart).
        var rewrite: [String] = []
        var isEmpty: Bool { labels.isEmpty && !annotate && create.isEmpty && repair.isEmpty && rewrite.isEmpty }
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
        // With nodeCIDRs: auto and no node address known yet, a guard policy would block
        // nothing: none is written until the first Node list (R6 waits meanwhile).
        for name in names where !pending(name) && !s.config.nodeAddressesPending {
            let p = name == s.policies.blockName ? e.block : e.allowAPI
            if let p {
                if p.previousCanonical && !p.ownerReferences {
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
