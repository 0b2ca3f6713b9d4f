/// Judges one object on arrival, as the API returns it (no AdmissionReview around
/// it), into the record an informer keeps. The findings come from the same rule
/// code admission runs, asked about a CREATE of the object by a non-exempt user:
/// R1 for running host-network Pods, R4 for NetworkPolicies, R7 for Services, R8
/// for Endpoints and EndpointSlices (see `endpointFindings`), and, with the
/// networkpolicy backend, the informational `guardWidens` finding.
///
/// Findings do not depend on the rules' modes: a rule in warn or audit mode still
/// leaves the hole open, and the audit is there to show it.
///
/// Built once per configuration, immutable, and shared by the informers' threads.
public struct AuditJudge: Sendable {
    /// The configuration the records are judged under.
    public let config: Config
    let context: RuleContext
    let hostNetwork = HostNetworkRule()
    let bypass: BypassPolicyRule
    let externalIPs: ExternalIPsRule
    let endpoints: EndpointsRule
    /// Nil when the guard backend is not `networkpolicy` (nothing is widened).
    let widening: GuardWidening?
    let bypassRepair: BypassRepair

    /// `reportsGuardWidening`: true for the networkpolicy guard backend, whose block
    /// policy widens tenants' egress policies (SPEC "Guard backends").
    public init(config: Config, reportsGuardWidening: Bool = true) {
        self.config = config
        context = RuleContext(config: config)
        bypass = BypassPolicyRule(config: config)
        externalIPs = ExternalIPsRule(config: config)
        endpoints = EndpointsRule(config: config)
        widening = reportsGuardWidening ? GuardWidening(config: config) : nil
        bypassRepair = BypassRepair(config: config)
    }

    /// What `audit.repairBypassPolicies` does to an existing bypass policy.
    public enum Repair: Sendable, Equatable {
        /// An RFC 6902 patch against the object (send it as `application/json-patch+json`)
        /// and the Warning Event's message saying what changed.
        case patch(jsonPatch: [UInt8], event: String)
        /// The rewrite needs more patch than R4's repair allows: left as it is; the
        /// Event says to fix it by hand.
        case tooLarge(event: String)
    }

    /// R4's repair for an existing NetworkPolicy (the whole object, as the API returns
    /// it), exactly as `/mutate` writes it in `bypassPolicies: {mode: repair}`: every
    /// offending egress rule rewritten to allow what it allowed, minus the node subnets
    /// on the protected ports. Nil when the policy is no bypass, is a guard policy, or
    /// lives in an exempt namespace.
    public func repairBypass(_ object: JSONValue) -> Repair? {
        let record = judge(object, as: .networkPolicy)
        guard record.findings.contains(where: { $0.check == .bypassPolicies }), let spec = object["spec"] else { return nil }
        switch bypassRepair.repair(spec: spec) {
        case nil:
            return nil
        case .repaired(let result):
            return .patch(jsonPatch: result.patch,
                          event: bypassRepair.warning(namespace: record.namespace, name: record.name, result))
        case .tooLarge(let limit):
            return .tooLarge(event: bypassRepair.tooLargeWarning(namespace: record.namespace, name: record.name, limit: limit))
        }
    }

    /// Judges `object`, whose kind is read from its `apiVersion` and `kind`; nil for
    /// kinds the audit does not judge (Namespaces, ConfigMaps...).
    public func judge(_ object: JSONValue) -> AuditRecord? {
        guard object.kind == .object, let kind = AuditKind(apiVersion: object["apiVersion"]?.string ?? "",
                                                           kind: object["kind"]?.string ?? "")
        else { return nil }
        return judge(object, as: kind)
    }

    /// Judges `object` as a `kind` (typed lists' items carry no `kind`). Always a
    /// record: an object that cannot be read is an `unjudged` finding. A record
    /// with an empty namespace could not be placed in any namespace.
    public func judge(_ object: JSONValue, as kind: AuditKind) -> AuditRecord {
        guard object.kind == .object else {
            return .unjudged(kind: kind, namespace: "", name: "(unnamed)", reason: "it is not a JSON object")
        }
        let metadata = object["metadata"]
        let namespace = metadata?["namespace"]?.string ?? ""
        let uid = metadata?["uid"]?.string ?? ""
        guard let name = metadata?["name"]?.string, !name.isEmpty else {
            return .unjudged(kind: kind, namespace: namespace, name: "(unnamed)", uid: uid, reason: "it has no metadata.name")
        }
        guard !namespace.isEmpty else {
            return .unjudged(kind: kind, namespace: "", name: name, uid: uid, reason: "it has no metadata.namespace")
        }
        var record = AuditRecord(kind: kind, namespace: namespace, name: name, uid: uid)
        switch kind {
        case .networkPolicy: judgeNetworkPolicy(object, metadata, &record)
        case .pod: judgePod(object, &record)
        case .service: judgeService(object, metadata, &record)
        case .endpoints, .endpointSlice: judgeEndpoints(object, &record)
        }
        record.findings.sort { $0.check < $1.check }
        return record
    }

    /// The AdmissionRequest the API server would send for creating `object` as a
    /// user who is not exempt: the rules see exactly what admission would.
    func creation(of object: JSONValue, _ record: AuditRecord) -> AdmissionRequest {
        AdmissionRequest(auditing: object, group: record.kind.group, kind: record.kind.rawValue,
                         namespace: record.namespace, name: record.name)
    }

    func unjudged(_ record: inout AuditRecord, _ reason: String) {
        record.findings.append(AuditRecord.unjudged(kind: record.kind, namespace: record.namespace, name: record.name,
                                                    reason: reason).findings[0])
    }

    /// R4, or the guard policy's state for a guard name; then the widening note.
    func judgeNetworkPolicy(_ object: JSONValue, _ metadata: JSONValue?, _ record: inout AuditRecord) {
        let spec = object["spec"]
        let managedBy = metadata?["labels"]?[dynamic: GuardNames.managedByKey]
        let owners = metadata?["ownerReferences"]
        var digest = FNV1a()
        digest.add(managedBy)
        digest.add(spec)
        digest.add(owners)
        record.digest = digest.value
        guard let spec, spec.kind == .object else {
            unjudged(&record, "it has no spec object")
            return
        }
        if context.isGuardPolicy(name: record.name, namespace: record.namespace) {
            // Judged against the canonical spec, as R3 judges a CREATE; R4 stands aside.
            guard let canonical = context.policies.normalizedCanonical(name: record.name, namespace: record.namespace),
                spec.equalsNormalized(canonical)
            else {
                record.guardPolicy = .drifted
                return
            }
            // An owner makes the guard policy the garbage collector's to delete (its DELETE is
            // always allowed): not in place, as R3 and the provisioner's repair see it.
            var owned = false
            owners?.forEachElement { _, _ in owned = true }
            if owned {
                record.guardPolicy = .drifted
                return
            }
            record.guardPolicy = managedBy?.stringEquals("pxguard") == true ? .canonical : .unlabelled
            return
        }
        if let message = bypass.evaluate(creation(of: object, record), context) {
            record.findings.append(AuditFinding(check: .bypassPolicies, message: message))
        }
        if let widening, config.isGuarded(namespace: record.namespace),
            let note = widening.note(spec: spec, namespace: record.namespace, name: record.name)
        {
            record.findings.append(AuditFinding(check: .guardWidens, message: note))
        }
    }

    /// R1 for a Pod that runs (or is about to): a Pod that has finished holds no
    /// host network any more.
    func judgePod(_ object: JSONValue, _ record: inout AuditRecord) {
        let spec = object["spec"]
        let phase = object.path("status", "phase")
        var digest = FNV1a()
        digest.add(spec?["hostNetwork"])
        digest.add(phase)
        record.digest = digest.value
        guard let spec, spec.kind == .object else {
            unjudged(&record, "it has no spec object")
            return
        }
        if phase?.stringEquals("Succeeded") == true || phase?.stringEquals("Failed") == true { return }
        if let message = hostNetwork.evaluate(creation(of: object, record), context) {
            record.findings.append(AuditFinding(check: .hostNetwork, message: message))
        }
    }

    /// R7.
    func judgeService(_ object: JSONValue, _ metadata: JSONValue?, _ record: inout AuditRecord) {
        let spec = object["spec"]
        var digest = FNV1a()
        digest.add(spec)
        // R7 reads load balancer annotations too (where they are configured).
        digest.add(metadata?["annotations"])
        record.digest = digest.value
        guard let spec, spec.kind == .object else {
            unjudged(&record, "it has no spec object")
            return
        }
        if let message = externalIPs.evaluate(creation(of: object, record), context) {
            record.findings.append(AuditFinding(check: .externalIPs, message: message))
        }
    }

    /// R8 for Endpoints (`subsets`) and EndpointSlices (`addressType`, `endpoints`,
    /// `ports`).
    func judgeEndpoints(_ object: JSONValue, _ record: inout AuditRecord) {
        var digest = FNV1a()
        if record.kind == .endpoints {
            digest.add(object["subsets"])
        } else {
            digest.add(object["addressType"])
            digest.add(object["endpoints"])
            digest.add(object["ports"])
        }
        record.digest = digest.value
        record.findings += endpointFindings(object, record)
    }

    /// R8: the CREATE a non-exempt user who is not an endpoint controller would send.
    func endpointFindings(_ object: JSONValue, _ record: AuditRecord) -> [AuditFinding] {
        endpoints.evaluate(creation(of: object, record), context).map { [AuditFinding(check: .endpoints, message: $0)] } ?? []
    }
}

extension AdmissionRequest {
    /// A CREATE of `object` by a user who is exempt from nothing: what the audit
    /// asks the rules about an object that already exists.
    init(auditing object: JSONValue, group: String, kind: String, namespace: String, name: String) {
        version = .v1
        uid = "pxguard-audit"
        self.group = group
        self.kind = kind
        subResource = ""
        self.name = name
        self.namespace = namespace
        operation = .create
        userInfo = nil
        self.object = object
        oldObject = nil
        dryRun = false
    }
}

extension GuardPolicies {
    /// The normalised canonical spec for a guard policy name in a namespace, or nil
    /// when the name is not a guard policy there.
    func normalizedCanonical(name: String, namespace: String) -> JSON? {
        switch name {
        case GuardNames.blockPolicy:
            return namespace == GuardNames.kubeSystem ? normalizedKubeSystemBlock : normalizedNamespaceBlock
        case GuardNames.allowAPIPolicy where namespace != GuardNames.kubeSystem:
            return normalizedAllowAPI
        default:
            return nil
        }
    }
}
