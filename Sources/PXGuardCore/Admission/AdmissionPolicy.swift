/// The compiled decision logic for one configuration: rules R1–R8, exemptions,
/// modes and mutation M1. Immutable: built once per config and shared by reference
/// (handing it to a request is one retain, not a copy of the whole config).
public final class AdmissionPolicy: Sendable {
    public let context: RuleContext
    let hostNetwork = HostNetworkRule()
    let guardPolicy = GuardPolicyRule()
    let clusterGuard = ClusterGuardRule()
    let bypassPolicy: BypassPolicyRule
    let optOut = OptOutRule()
    let externalIPs: ExternalIPsRule
    let endpoints: EndpointsRule
    let unguardedNamespace = UnguardedNamespaceRule()
    let mutation = NamespaceMutation()
    let bypassRepair: BypassRepair
    /// With `nodeCIDRs: auto` before any node address is known: R7 and R8 as if every
    /// address were a node's, to tell the writes that must wait from those that need not.
    let pending: (context: RuleContext, externalIPs: ExternalIPsRule, endpoints: EndpointsRule)?

    public var config: Config { context.config }

    /// `view`: the watched cluster state R6 consults; nil where there is no API.
    public init(config: Config, view: (any GuardView)? = nil) {
        context = RuleContext(config: config, view: view)
        bypassPolicy = BypassPolicyRule(config: config)
        externalIPs = ExternalIPsRule(config: config)
        endpoints = EndpointsRule(config: config)
        bypassRepair = BypassRepair(config: config)
        if config.nodeAddressesPending {
            var everywhere = config
            everywhere.nodeCIDRs = [CIDR("0.0.0.0/0")!, CIDR("::/0")!]
            pending = (RuleContext(config: everywhere, view: nil), ExternalIPsRule(config: everywhere), EndpointsRule(config: everywhere))
        } else {
            pending = nil
        }
    }

    /// True when a write `NodeAddressesPending` names must wait for the node addresses:
    /// a Service or endpoints only when R7/R8 would deny it were its addresses a node's
    /// (and, for a Service, not already for a reason that needs none, such as a node port).
    func mustWaitForNodes(_ rule: RuleID, _ request: AdmissionRequest) -> Bool {
        guard let pending else { return true }
        switch rule {
        case .externalIPs:
            return pending.externalIPs.evaluate(request, pending.context) != nil && externalIPs.evaluate(request, context) == nil
        case .endpoints:
            return pending.endpoints.evaluate(request, pending.context) != nil
        default:
            return true
        }
    }

    /// The answer of `/validate`: every rule in SPEC order until one denies. A finding
    /// that allows (warn, audit, exempt) is kept and the next rules still run, so a
    /// rule in warn mode never hides a later rule's denial; the answer carries every
    /// finding's warning, and names the deciding one (the denial, else the first
    /// finding) under `rule`/`decision`, the others under their rule's name.
    /// The rules are called directly rather than through an array of existentials,
    /// so no rule or request is boxed or copied per review, and a request no rule
    /// has a finding for allocates nothing.
    public func validate(_ request: AdmissionRequest) -> Verdict {
        if config.nodeAddressesPending, let rule = NodeAddressesPending.rule(for: request, context), mustWaitForNodes(rule, request) {
            return verdict(rule: rule, message: NodeAddressesPending.message(rule), request: request)
        }
        var found: Verdict?
        _ = check(hostNetwork, request, &found) || check(guardPolicy, request, &found) || check(clusterGuard, request, &found)
            || check(bypassPolicy, request, &found) || check(optOut, request, &found)
            || check(unguardedNamespace, request, &found) || check(externalIPs, request, &found)
            || check(endpoints, request, &found)
        return found ?? .allow
    }

    /// Runs one rule and folds its finding into `found`; true when it denies (the
    /// rules after it need not run).
    @inline(__always) func check<Rule: AdmissionRule>(_ rule: Rule, _ request: AdmissionRequest, _ found: inout Verdict?) -> Bool {
        guard let message = rule.evaluate(request, context) else { return false }
        let next = verdict(rule: rule.id, message: message, request: request)
        found = found.map { Self.combine($0, next) } ?? next
        return !next.allowed
    }

    /// Two findings of one review as one answer. A denial decides; otherwise the
    /// earlier finding does. Warnings are kept in order; the finding that does not
    /// decide is recorded as an audit annotation `<rule>: <decision>` (keys must be
    /// unique, and `rule`/`decision` belong to the deciding one).
    static func combine(_ earlier: Verdict, _ later: Verdict) -> Verdict {
        var combined: Verdict
        if later.allowed {
            combined = earlier
            if let rule = later.rule { combined.auditAnnotations.append((rule.rawValue, later.decision.rawValue)) }
        } else {
            combined = later
            // The earlier answer's deciding finding, then the ones it had recorded.
            if let rule = earlier.rule { combined.auditAnnotations.append((rule.rawValue, earlier.decision.rawValue)) }
            combined.auditAnnotations += earlier.auditAnnotations.filter { $0.key != "rule" && $0.key != "decision" }
        }
        combined.warnings = earlier.warnings + later.warnings
        return combined
    }

    /// The result of `/mutate`: the answer only. M1 changes no server state; the
    /// provisioner's watch sees the namespace once it exists.
    public struct Mutation: Sendable {
        public var verdict: Verdict
    }

    /// The answer of `/mutate`.
    public func mutate(_ request: AdmissionRequest) -> Mutation {
        if let repaired = repair(request) { return Mutation(verdict: repaired) }
        guard let (patch, warning) = mutation.patch(for: request, config: config) else { return Mutation(verdict: .allow) }
        var verdict = Verdict.allow
        verdict.patch = patch
        if let warning { verdict.warnings = [Self.warning(warning)] }
        return Mutation(verdict: verdict)
    }

    /// R4 in repair mode: a NetworkPolicy that would be denied as a bypass is
    /// answered with the patch that leaves the protected set out, and a warning.
    /// Exempt requesters keep what they wrote; `/validate` judges the result.
    func repair(_ request: AdmissionRequest) -> Verdict? {
        guard config.mode(for: .bypassPolicies) == .repair, request.isNetworkPolicy,
            request.operation == .create || request.operation == .update, request.subResource.isEmpty,
            config.isGuarded(namespace: request.namespace),
            !context.isGuardPolicy(name: request.objectName, namespace: request.namespace),
            let spec = request.object?["spec"], exemption(for: request, rule: .bypassPolicies) == nil
        else { return nil }
        if request.operation == .update, let old = request.oldObject?["spec"], spec.tokensEqual(old) { return nil }
        switch bypassRepair.repair(spec: spec) {
        case nil:
            return nil
        case .repaired(let result):
            var v = Verdict(allowed: true, rule: .bypassPolicies, decision: .repair)
            v.patch = result.patch
            v.warnings = [Self.warning(bypassRepair.warning(namespace: request.namespace, name: request.objectName, result))]
            v.auditAnnotations = [("rule", RuleID.bypassPolicies.rawValue), ("decision", Decision.repair.rawValue)]
            return v
        case .tooLarge(let limit):
            // No patch: the policy reaches `/validate` as written and is denied there.
            var v = Verdict(allowed: true, rule: .bypassPolicies, decision: .warn)
            v.warnings = [Self.warning(bypassRepair.tooLargeWarning(namespace: request.namespace, name: request.objectName, limit: limit))]
            v.auditAnnotations = [("rule", RuleID.bypassPolicies.rawValue), ("decision", Decision.warn.rawValue)]
            return v
        }
    }

    /// The controller manager on its own credentials (`--use-service-account-credentials=false`).
    static let controllerManager = "system:kube-controller-manager"

    /// Identities that empty a namespace being deleted: their DELETEs (only) are
    /// always allowed. One list for the server and the registrations' `matchConditions`.
    static let cleanupIdentities = [GuardNames.namespaceController, GuardNames.garbageCollector, controllerManager]

    /// Identities that write Endpoints and EndpointSlices from Services' selectors:
    /// exempt from R8 (only). One list for the server and the registrations.
    static let endpointControllers = [
        "system:serviceaccount:kube-system:endpoint-controller",
        "system:serviceaccount:kube-system:endpointslice-controller",
        "system:serviceaccount:kube-system:endpointslicemirroring-controller",
        controllerManager,
    ]

    /// The rules the server's own service account is exempt from: what the
    /// provisioner writes (guard policies, namespace labels). Nothing else, so that
    /// its token is no cluster-wide bypass.
    static let serviceAccountRules: Set<RuleID> = [.guardPolicies, .optOut]

    /// Why a request is exempt from `rule`, or nil when it is not.
    func exemption(for request: AdmissionRequest, rule: RuleID) -> String? {
        let username = request.username
        if username == config.serviceAccount {
            return Self.serviceAccountRules.contains(rule) ? "pxguard's own service account" : nil
        }
        if config.exemptUsers.contains(username) { return "exempt user \(username)" }
        if !config.exemptGroups.isEmpty, let group = request.groups.first(where: config.exemptGroups.contains) {
            return "exempt group \(group)"
        }
        // Emptying a terminating namespace must never be refused, or it stays
        // stuck in Terminating.
        if request.operation == .delete && Self.cleanupIdentities.contains(username) {
            return "namespace cleanup by \(username)"
        }
        if rule == .endpoints && Self.endpointControllers.contains(username) { return "endpoint controller \(username)" }
        return nil
    }

    /// Applies exemption and mode to a finding.
    func verdict(rule: RuleID, message: String, request: AdmissionRequest) -> Verdict {
        if exemption(for: request, rule: rule) != nil {
            var v = Verdict(allowed: true, rule: rule, decision: .exempt)
            v.auditAnnotations = [("rule", rule.rawValue), ("decision", Decision.exempt.rawValue)]
            return v
        }
        switch config.mode(for: rule) {
        case .enforce, .repair:
            // In repair mode `/mutate` rewrites a bypass; one that arrives unrepaired is denied.
            var v = Verdict(allowed: false, message: message, rule: rule, decision: .deny)
            v.auditAnnotations = [("rule", rule.rawValue), ("decision", Decision.deny.rawValue)]
            return v
        case .warn:
            var v = Verdict(allowed: true, rule: rule, decision: .warn)
            v.warnings = [Self.warning(message)]
            v.auditAnnotations = [("rule", rule.rawValue), ("decision", Decision.warn.rawValue)]
            return v
        case .audit:
            var v = Verdict(allowed: true, rule: rule, decision: .audit)
            v.auditAnnotations = [("rule", rule.rawValue), ("decision", Decision.audit.rawValue)]
            return v
        }
    }

    /// A warning the API server will pass on: no control characters, under 256
    /// characters (longer ones are truncated by the API server anyway).
    static func warning(_ message: String) -> String {
        var out = ""
        var count = 0
        for scalar in message.unicodeScalars {
            if count == 250 { out += "…"; break }
            out.unicodeScalars.append(scalar.properties.generalCategory == .control ? " " : scalar)
            count += 1
        }
        return out
    }
}
