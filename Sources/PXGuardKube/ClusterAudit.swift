#if canImport(Glibc)
import Glibc
#endif
public import PXGuardCore
public import PXGuardPlatform
public import Synchronization

/// What an audit informer hands on for one object: its identity and its record (the
/// verdict on it and a digest), judged as it streamed past. Never the object. Only
/// records with a finding (or a guard policy's state) are kept.
public struct AuditItem: Sendable {
    /// `metadata.namespace`.
    public var namespace: String?
    /// `metadata.name`.
    public var name: String?
    /// The judged record.
    public var record: AuditRecord
}

/// The audit kept current from watches (SPEC "Audit: what already exists"): per
/// guarded namespace its state and one record per audited object, and the verdict
/// recomputed whenever one of them changes. Every replica keeps it (metrics); the
/// Lease holder's `AuditWriter` turns verdict changes into reports and Events.
///
/// The informers on Pods (`spec.hostNetwork=true` only), Services, Endpoints and
/// EndpointSlices are its own; Namespaces and NetworkPolicies come from the
/// provisioner's watches (`Provisioner` taps them), so no second NetworkPolicy watch.
public final class ClusterAudit: Sendable {
    struct Key: Hashable {
        var kind: AuditKind
        var name: String
    }

    struct Kept {
        var record: AuditRecord
        /// The list that last saw it (a relist drops what it did not see).
        var listed: UInt32
    }

    struct Space {
        var state: AuditNamespace?
        var stateListed: UInt32 = 0
        var records: [Key: Kept] = [:]
        var verdict: AuditVerdict?
        var isEmpty: Bool { state == nil && records.isEmpty }
    }

    struct State {
        var config: Config
        var judge: AuditJudge
        var spaces: [String: Space] = [:]
        /// The list under way per kind (nil: namespaces).
        var generation: [AuditKind?: UInt32] = [:]
        /// Kinds (nil: namespaces) listed at least once.
        var listed: Set<AuditKind?> = []
        var summary = AuditSummary()
        /// Namespaces whose verdict changed since the writer last took them.
        var changed: Set<String> = []
    }

    let state: Locked<State>
    let logger: Logger
    /// Signalled when a verdict changes (the writer waits on it).
    let changedSignal = Waker()
    /// This audit's own informers (Pods, Services, Endpoints, EndpointSlices).
    public let informers: [any AnyInformer]
    /// Objects judged (list items and watch events), for metrics and tests.
    public let judged = Atomic<Int>(0)

    /// The kinds the audit's own informers watch, and their paths.
    static let watched: [(AuditKind, String, String?)] = [
        (.pod, "/api/v1/pods", "spec.hostNetwork=true"),
        (.service, "/api/v1/services", nil),
        (.endpoints, "/api/v1/endpoints", nil),
        (.endpointSlice, "/apis/discovery.k8s.io/v1/endpointslices", nil),
    ]

    /// - Parameter settings: the informers' settings (page size, per-object budget).
    public init(client: KubeClient, config: Config, settings: InformerSettings = InformerSettings(), logger: Logger) {
        state = Locked(State(config: config, judge: AuditJudge(config: config, reportsGuardWidening: config.activeBackend == .networkpolicy)))
        self.logger = logger
        struct Weak { weak var audit: ClusterAudit? }
        let box = Locked(Weak())
        var informers: [any AnyInformer] = []
        for (kind, path, selector) in Self.watched {
            let fields = Self.fields(kind)
            informers.append(Informer<AuditItem>(
                name: "audit-" + path.split(separator: "/").last!, client: client, path: path, fieldSelector: selector,
                settings: settings, logger: logger, fields: fields,
                transform: { object in
                    let judge = box.withLock { $0.audit }?.judge ?? AuditJudge(config: config)
                    return AuditItem(namespace: object.namespace, name: object.name,
                                     record: Self.record(kind, object, offset: 0, judge: judge, budget: settings.objectBudget))
                },
                onList: { phase in box.withLock { $0.audit }?.list(kind, phase) },
                onEvent: { type, item in box.withLock { $0.audit }?.apply(kind, item, deleted: type == .deleted) },
                onHealth: { _, _ in }))
        }
        self.informers = informers
        box.withLock { $0.audit = self }
    }

    /// The judge for the current configuration.
    var judge: AuditJudge { state.withLock { $0.judge } }

    /// The configuration the audit judges under.
    public var config: Config { state.withLock { $0.config } }

    // MARK: judging raw captures

    /// Member paths an audit informer keeps of each object of `kind`, only for as
    /// long as it takes to judge it.
    static func fields(_ kind: AuditKind) -> [[String]] {
        let common: [[String]] = [["metadata", "uid"]]
        switch kind {
        case .pod: return common + [["spec", "hostNetwork"], ["status", "phase"]]
        case .service: return common + [["spec"], ["metadata", "annotations"]]
        case .endpoints: return common + [["subsets"]]
        case .endpointSlice: return common + [["addressType"], ["endpoints"], ["ports"]]
        case .networkPolicy: return common + [["spec"], ["metadata", "labels", GuardNames.managedByKey], ["metadata", "ownerReferences"]]
        }
    }

    /// Paths the provisioner's NetworkPolicy informer keeps beyond `PolicyProjection`'s
    /// (spec, owners, managed-by label): the uid.
    public static let policyExtraFields: [[String]] = [["metadata", "uid"]]

    /// Judges one captured object: rebuilds the few members the judge reads into a
    /// small JSON object and judges that. A field over the per-object budget makes
    /// the record an `unjudged` finding, never a skipped object.
    static func record(_ kind: AuditKind, _ object: KubeObject, offset: Int, judge: AuditJudge, budget: Int) -> AuditRecord {
        let f = object.fields
        let name = object.name ?? "(unnamed)", namespace = object.namespace ?? ""
        func raw(_ i: Int) -> [UInt8]? { f.raw[offset + i] }
        let uid = f.string(offset) ?? ""
        if object.isOverBudget {
            return .unjudged(kind: kind, namespace: namespace, name: name, uid: uid,
                             reason: "the fields the audit reads are over the per-object budget of \(budget) bytes")
        }
        var out: [UInt8] = Array("{\"metadata\":{\"name\":".utf8)
        out += Array(JSON.string(name).serialized.utf8)
        if let ns = object.namespace {
            out += Array(",\"namespace\":".utf8) + Array(JSON.string(ns).serialized.utf8)
        }
        if let u = raw(0) { out += Array(",\"uid\":".utf8) + u }
        func member(_ key: String, _ value: [UInt8]?) {
            guard let value else { return }
            out += Array(",\"\(key)\":".utf8) + value
        }
        switch kind {
        case .pod:
            out += Array("}".utf8)
            out += Array(",\"spec\":{".utf8)
            if let h = raw(1) { out += Array("\"hostNetwork\":".utf8) + h }
            out += Array("}".utf8)
            if let p = raw(2) { out += Array(",\"status\":{\"phase\":".utf8) + p + [0x7D] }
        case .service:
            member("annotations", raw(2))
            out += Array("}".utf8)
            member("spec", raw(1))
        case .endpoints:
            out += Array("}".utf8)
            member("subsets", raw(1))
        case .endpointSlice:
            out += Array("}".utf8)
            member("addressType", raw(1))
            member("endpoints", raw(2))
            member("ports", raw(3))
        case .networkPolicy:
            // `offset` places the uid; spec and label are PolicyProjection's fields 0 and 2
            // when shared, 1 and 2 (after the uid) in `fields(.networkPolicy)`.
            let spec = offset == 0 ? raw(1) : f.raw[0]
            let label = offset == 0 ? raw(2) : f.raw[2]
            // Owners: PolicyProjection's field 1 when shared, the last of `fields(.networkPolicy)` otherwise.
            let owners = offset == 0 ? raw(3) : f.raw[1]
            if let label { out += Array(",\"labels\":{\(JSON.string(GuardNames.managedByKey).serialized):".utf8) + label + [0x7D] }
            member("ownerReferences", owners)
            out += Array("}".utf8)
            member("spec", spec)
        }
        out += Array("}".utf8)
        do {
            return try JSONDocument.parse(out) { view in judge.judge(view, as: kind) }
        } catch {
            return .unjudged(kind: kind, namespace: namespace, name: name, uid: uid, reason: "it could not be read (\(error))")
        }
    }

    /// The record of a NetworkPolicy as the provisioner's informer captured it
    /// (`PolicyProjection.fields + policyExtraFields`).
    public func judgePolicy(_ object: KubeObject) -> AuditRecord {
        Self.record(.networkPolicy, object, offset: PolicyProjection.fields.count, judge: judge, budget: 1 << 20)
    }

    // MARK: feeding

    /// One watch event of an audited kind.
    func apply(_ kind: AuditKind, _ item: AuditItem, deleted: Bool) {
        guard let namespace = item.namespace, let name = item.name else { return }
        judged.add(1, ordering: .relaxed)
        state.withLock { s in
            var space = s.spaces[namespace] ?? Space()
            let key = Key(kind: kind, name: name)
            if deleted || !item.record.matters {
                guard space.records.removeValue(forKey: key) != nil else { return }
            } else {
                if let kept = space.records[key], kept.record == item.record { return }
                space.records[key] = Kept(record: item.record, listed: space.records[key]?.listed ?? 0)
            }
            s.spaces[namespace] = space
            recompute(namespace, &s)
        }
        changedSignal.signal()
    }

    /// A list of an audited kind, page by page; at its end what it did not see is dropped.
    func list(_ kind: AuditKind, _ phase: ListPhase<AuditItem>) {
        switch phase {
        case .begin:
            state.withLock { s in s.generation[kind] = (s.generation[kind] ?? 0) &+ 1 | 1 }
        case .page(let items):
            judged.add(items.count, ordering: .relaxed)
            state.withLock { s in
                let generation = s.generation[kind] ?? 1
                var touched: Set<String> = []
                for item in items {
                    guard let namespace = item.namespace, let name = item.name else { continue }
                    let key = Key(kind: kind, name: name)
                    guard item.record.matters else {
                        // Nothing the verdict reads: not kept (one that was is dropped).
                        if s.spaces[namespace]?.records.removeValue(forKey: key) != nil { touched.insert(namespace) }
                        continue
                    }
                    var space = s.spaces[namespace] ?? Space()
                    if space.records[key]?.record != item.record { touched.insert(namespace) }
                    space.records[key] = Kept(record: item.record, listed: generation)
                    s.spaces[namespace] = space
                }
                for namespace in touched { recompute(namespace, &s) }
            }
        case .end:
            state.withLock { s in
                let generation = s.generation[kind] ?? 1
                for (namespace, var space) in s.spaces {
                    let before = space.records.count
                    space.records = space.records.filter { $0.key.kind != kind || $0.value.listed == generation }
                    guard space.records.count != before else { continue }
                    s.spaces[namespace] = space
                    recompute(namespace, &s)
                }
                if s.listed.insert(kind).inserted { logger.info("audit: listed", [("kind", .text(kind.rawValue))]) }
            }
        }
        changedSignal.signal()
    }

    /// The provisioner's NetworkPolicy informer, tapped: its list pages and events.
    func list(policies phase: ListPhase<PolicyProjection>) {
        switch phase {
        case .begin: list(.networkPolicy, .begin)
        case .end: list(.networkPolicy, .end)
        case .page(let objects):
            list(.networkPolicy, .page(objects.compactMap { p in
                p.audit.map { AuditItem(namespace: p.namespace, name: $0.name, record: $0) }
            }))
        }
    }

    func apply(policy p: PolicyProjection, deleted: Bool) {
        guard let record = p.audit else { return }
        apply(.networkPolicy, AuditItem(namespace: p.namespace, name: record.name, record: record), deleted: deleted)
    }

    /// The provisioner's Namespace informer, tapped.
    func apply(namespace object: NamespaceProjection, deleted: Bool) {
        guard let name = object.name else { return }
        state.withLock { s in
            var space = s.spaces[name] ?? Space()
            let next = deleted ? nil : object.auditState
            guard space.state != next || deleted else { return }
            space.state = next
            s.spaces[name] = space
            recompute(name, &s)
        }
        changedSignal.signal()
    }

    func list(namespaces phase: ListPhase<NamespaceProjection>) {
        state.withLock { s in
            switch phase {
            case .begin:
                s.generation[nil] = (s.generation[nil] ?? 0) &+ 1 | 1
            case .page(let objects):
                let generation = s.generation[nil] ?? 1
                for object in objects {
                    guard let name = object.name else { continue }
                    var space = s.spaces[name] ?? Space()
                    let next = object.auditState
                    let changed = space.state != next
                    space.state = next
                    space.stateListed = generation
                    s.spaces[name] = space
                    if changed { recompute(name, &s) }
                }
            case .end:
                let generation = s.generation[nil] ?? 1
                for (name, var space) in s.spaces where space.state != nil && space.stateListed != generation {
                    space.state = nil
                    s.spaces[name] = space
                }
                // Namespaces listed: what holds objects but no Namespace is gone (no verdict).
                s.listed.insert(nil)
                for (name, space) in s.spaces where space.state == nil { recompute(name, &s) }
            }
        }
        changedSignal.signal()
    }

    /// Recomputes one namespace's verdict; keeps the summary and the changed set.
    func recompute(_ namespace: String, _ s: inout State) {
        guard var space = s.spaces[namespace] else { return }
        // A namespace that is gone has no verdict: once Namespaces are listed, objects
        // without their Namespace are the remains of a deletion (their DELETED events follow).
        let gone = space.isEmpty || (space.state == nil && s.listed.contains(nil))
        let next: AuditVerdict? = gone ? nil
            : Audit.verdict(namespace: namespace, state: space.state, records: space.records.values.lazy.map(\.record),
                            config: s.config)
        if next == space.verdict {
            if space.isEmpty { s.spaces[namespace] = nil }
            return
        }
        if let old = space.verdict { s.summary.add(old, times: -1) }
        if let next { s.summary.add(next) }
        space.verdict = next
        s.spaces[namespace] = space.isEmpty ? nil : space
        s.changed.insert(namespace)
    }

    // MARK: reading

    /// True once Namespaces and every audited kind have been listed.
    public var isSynced: Bool {
        state.withLock { s in s.listed.contains(nil) && AuditKind.allCases.allSatisfy { s.listed.contains($0) } }
    }

    /// The current verdict for `namespace` (nil: exempt, or nothing known).
    public func verdict(_ namespace: String) -> AuditVerdict? { state.withLock { $0.spaces[namespace]?.verdict } }

    /// Counts for `/metrics`.
    public var summary: AuditSummary { state.withLock { $0.summary } }

    /// Namespaces whose verdict changed since the last call, with their verdicts (nil:
    /// no verdict any more: protected namespaces have one that is not exposed).
    func takeChanged(all: Bool = false) -> [(String, AuditVerdict?)] {
        state.withLock { s in
            let names = all ? Set(s.spaces.keys).union(s.changed) : s.changed
            s.changed.removeAll()
            return names.sorted().map { ($0, s.spaces[$0]?.verdict) }
        }
    }

    /// Marks namespaces to be taken again (a write that failed is retried).
    func markChanged(_ namespaces: [String]) {
        guard !namespaces.isEmpty else { return }
        state.withLock { s in s.changed.formUnion(namespaces) }
    }

    /// The audit's gauges: the summary, whether it is in sync, objects judged.
    public var metricsText: String {
        var out = summary.prometheusText
        out += "# HELP pxguard_audit_synced 1 once every audited kind has been listed.\n# TYPE pxguard_audit_synced gauge\n"
        out += "pxguard_audit_synced \(isSynced ? 1 : 0)\n"
        out += "# HELP pxguard_audit_objects_judged_total Objects judged (list items and watch events).\n"
        out += "# TYPE pxguard_audit_objects_judged_total counter\npxguard_audit_objects_judged_total \(judged.load(ordering: .relaxed))\n"
        return out
    }

    // MARK: configuration

    /// A configuration reload: a new judge; the caller relists (`relistOwnOnly`, and the
    /// provisioner's watches) so every object is judged again under it (records keep
    /// no object to judge again).
    public func reload(_ config: Config) {
        state.withLock { s in
            s.config = config
            s.judge = AuditJudge(config: config, reportsGuardWidening: config.activeBackend == .networkpolicy)
            for name in Array(s.spaces.keys) { recompute(name, &s) }
        }
        changedSignal.signal()
    }

    /// Lists the audit's own kinds again (Pods, Services, Endpoints, EndpointSlices).
    public func relistOwnOnly() { for informer in informers { informer.relist() } }

    /// Runs the audit's own informers, each on a thread of its own (until `stop`).
    public func start() {
        for informer in informers { spawnThread(name: "pxguard-watch") { informer.run() } }
    }

    /// Stops the informers.
    public func stop() {
        for informer in informers { informer.stop() }
        changedSignal.signal()
    }
}

extension AuditRecord {
    /// False for an object with no finding that is no guard policy: the verdict does
    /// not read it, so nothing of it is kept (most objects of a cluster). Its next
    /// event is judged afresh; a DELETED event for it changes nothing.
    var matters: Bool { !findings.isEmpty || guardPolicy != nil }
}

extension NamespaceProjection {
    /// What the audit verdict reads of the namespace.
    var auditState: AuditNamespace? {
        name.map { AuditNamespace(name: $0, guardedLabel: guardedValue, podSecurityEnforce: podSecurity) }
    }
}
