/// The verdict for one guarded namespace (SPEC "Audit: what already exists").
public struct AuditVerdict: Sendable, Hashable {
    /// One finding, about an object (nil: about the namespace itself).
    public struct Finding: Sendable, Hashable {
        public var object: AuditObject?
        public var check: AuditCheck
        public var message: String

        public init(object: AuditObject?, check: AuditCheck, message: String) {
            self.object = object
            self.check = check
            self.message = message
        }
    }

    public var namespace: String
    /// What makes the namespace exposed; empty when it is protected.
    public var findings: [Finding]
    /// Informational findings (`guardWidens`): reported, never exposing.
    public var notes: [Finding]

    /// True when some finding exposes the namespace.
    public var exposed: Bool { !findings.isEmpty }
}

/// The audit's verdict as a pure function of what the informers keep: the
/// namespaces' state and the per-object records. The server recomputes one
/// namespace's verdict when one of its records or its Namespace changes; the
/// offline `pxguard audit` computes all of them at once.
public enum Audit {
    /// The verdict for `namespace`, or nil when it is exempt (not judged).
    ///
    /// Protected when both guard policies are in place, canonical and labelled (unless a
    /// cluster-scoped backend's guard covers every namespace), the
    /// `pxguard.io/guarded` label is `"true"`, the Pod Security enforce level is at
    /// least `podSecurity`, and no record has an exposing finding. `state` nil means
    /// the Namespace object was not seen: its labels cannot be judged, which is a
    /// finding. `records` are that namespace's records (others are ignored).
    public static func verdict<Records: Sequence<AuditRecord>>(
        namespace: String, state: AuditNamespace?, records: Records, config: Config
    ) -> AuditVerdict? {
        guard config.isGuarded(namespace: namespace) else { return nil }
        var findings: [AuditVerdict.Finding] = []
        var notes: [AuditVerdict.Finding] = []
        var guardPolicies: [String: AuditRecord] = [:]
        for record in records where record.namespace == namespace {
            if record.guardPolicy != nil { guardPolicies[record.name] = record }
            for finding in record.findings {
                let f = AuditVerdict.Finding(object: record.object, check: finding.check, message: finding.message)
                if finding.check.exposes { findings.append(f) } else { notes.append(f) }
            }
        }
        // A cluster-scoped backend has no guard policy per namespace; its objects are the
        // cluster guard's (`pxguard_cluster_guard_in_place`). One that cannot be written yet
        // (Calico without node addresses) guards nothing: the per-namespace check stands.
        if !ClusterGuardPolicies.coversEveryNamespace(config) {
            for name in GuardPolicies.names(in: namespace) {
                findings += guardPolicyFindings(name: name, namespace: namespace, record: guardPolicies[name])
            }
        }
        findings += namespaceFindings(namespace: namespace, state: state, config: config)
        return AuditVerdict(namespace: namespace, findings: ordered(findings), notes: ordered(notes))
    }

    /// Verdicts for every guarded namespace that `namespaces` lists or a record
    /// names, sorted by namespace. Records with an empty namespace are not placed
    /// (the caller reports them).
    public static func verdicts(namespaces: [AuditNamespace], records: [AuditRecord], config: Config) -> [AuditVerdict] {
        var states: [String: AuditNamespace] = [:]
        for n in namespaces { states[n.name] = n }
        var byNamespace: [String: [AuditRecord]] = [:]
        for record in records where !record.namespace.isEmpty { byNamespace[record.namespace, default: []].append(record) }
        let names = Set(states.keys).union(byNamespace.keys).sorted()
        return names.compactMap { name in
            verdict(namespace: name, state: states[name], records: byNamespace[name] ?? [], config: config)
        }
    }

    /// Findings by check (SPEC order), then object kind and name; the namespace's own
    /// findings in the order they were made.
    static func ordered(_ findings: [AuditVerdict.Finding]) -> [AuditVerdict.Finding] {
        findings.enumerated().sorted { x, y in
            let (a, b) = (x.element, y.element)
            if a.check != b.check { return a.check < b.check }
            let ka = a.object.map { AuditKind.allCases.firstIndex(of: $0.kind)! } ?? -1
            let kb = b.object.map { AuditKind.allCases.firstIndex(of: $0.kind)! } ?? -1
            if ka != kb { return ka < kb }
            if let na = a.object?.name, let nb = b.object?.name, na != nb { return na < nb }
            return x.offset < y.offset
        }.map(\.element)
    }

    /// A guard policy that is missing, drifted or unlabelled.
    static func guardPolicyFindings(name: String, namespace: String, record: AuditRecord?) -> [AuditVerdict.Finding] {
        let fix = "The provisioner restores it within seconds when provisioning is on; otherwise apply "
            + "`pxguard render policies --namespace \(namespace)`."
        guard let record, let state = record.guardPolicy else {
            let why = name == GuardNames.blockPolicy
                ? "so nothing keeps its pods from the Portworx API"
                : "one of the two guard policies every guarded namespace holds"
            return [AuditVerdict.Finding(
                object: nil, check: .guardPolicies,
                message: "pxguard: guardPolicies: namespace \(namespace) has no NetworkPolicy \(name), \(why). \(fix)")]
        }
        let what: String
        switch state {
        case .canonical: return []
        case .drifted: what = "differs from the canonical spec pxguard renders for this configuration"
        case .unlabelled: what = "lacks the label \(GuardNames.managedByKey): \(GuardNames.managedByValue)"
        }
        return [AuditVerdict.Finding(
            object: record.object, check: .guardPolicies,
            message: "pxguard: guardPolicies: NetworkPolicy \(namespace)/\(name) \(what), so the guard may have a hole. \(fix)")]
    }

    /// The namespace's own labels: `pxguard.io/guarded` and the Pod Security level.
    static func namespaceFindings(namespace: String, state: AuditNamespace?, config: Config) -> [AuditVerdict.Finding] {
        guard let state else {
            return [AuditVerdict.Finding(
                object: nil, check: .unjudged,
                message: "pxguard: audit: the Namespace \(namespace) was not seen (it holds objects, but its labels "
                    + "were not in the input), so its labels could not be judged. Include namespaces: "
                    + "kubectl get namespaces,networkpolicies,pods,services,endpoints,endpointslices -A -o json.")]
        }
        var out: [AuditVerdict.Finding] = []
        if state.guardedLabel != "true" {
            let now = state.guardedLabel.map { "is \"\($0)\"" } ?? "is missing"
            out.append(AuditVerdict.Finding(
                object: nil, check: .optOut,
                message: "pxguard: optOut: namespace \(namespace): the label \(GuardNames.guardedLabel) \(now); "
                    + "guarded namespaces carry \(GuardNames.guardedLabel)=\"true\". The provisioner sets it when "
                    + "provisioning is on; otherwise run kubectl label namespace \(namespace) "
                    + "\(GuardNames.guardedLabel)=true --overwrite."))
        }
        if config.podSecurity != .none,
            PodSecurityLevel.rank(ofLabel: state.podSecurityEnforce) < PodSecurityLevel.rank(ofLabel: config.podSecurity.rawValue)
        {
            let label = NamespaceMutation.podSecurityLabel
            let now = state.podSecurityEnforce.map { "is \"\($0)\"" } ?? "is missing"
            out.append(AuditVerdict.Finding(
                object: nil, check: .optOut,
                message: "pxguard: optOut: namespace \(namespace): the label \(label) \(now), below the configured "
                    + "podSecurity \(config.podSecurity.rawValue): privileged and hostPID pods reach the Portworx API "
                    + "around every NetworkPolicy. Move its privileged workloads out, then run kubectl label namespace "
                    + "\(namespace) \(label)=\(config.podSecurity.rawValue) --overwrite."))
        }
        return out
    }
}

/// What `/metrics` says of the audit: counts only, never a per-namespace label.
public struct AuditSummary: Sendable, Hashable {
    public var guardedNamespaces = 0
    public var exposedNamespaces = 0
    /// Findings by check over every guarded namespace (informational ones included).
    public var findings: [AuditCheck: Int] = [:]

    public init() {}

    /// The summary of `verdicts`.
    public init<Verdicts: Sequence<AuditVerdict>>(_ verdicts: Verdicts) {
        for v in verdicts { add(v) }
    }

    /// Counts one more namespace's verdict (the wiring adds and removes as verdicts change).
    public mutating func add(_ verdict: AuditVerdict, times sign: Int = 1) {
        guardedNamespaces += sign
        if verdict.exposed { exposedNamespaces += sign }
        for f in verdict.findings + verdict.notes { findings[f.check, default: 0] += sign }
    }

    /// The Prometheus text exposition of the summary: every rule listed, zero or not.
    public var prometheusText: String {
        var out = "# HELP pxguard_audit_guarded_namespaces Guarded namespaces the audit judges.\n"
            + "# TYPE pxguard_audit_guarded_namespaces gauge\n"
            + "pxguard_audit_guarded_namespaces \(guardedNamespaces)\n"
            + "# HELP pxguard_audit_exposed_namespaces Guarded namespaces with at least one exposing finding.\n"
            + "# TYPE pxguard_audit_exposed_namespaces gauge\n"
            + "pxguard_audit_exposed_namespaces \(exposedNamespaces)\n"
            + "# HELP pxguard_audit_findings Audit findings by rule (guardWidens is informational).\n"
            + "# TYPE pxguard_audit_findings gauge\n"
        for check in AuditCheck.allCases {
            out += "pxguard_audit_findings{rule=\"\(check.rawValue)\"} \(findings[check] ?? 0)\n"
        }
        return out
    }
}
