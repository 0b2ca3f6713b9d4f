/// The compiled decision logic for one configuration: rules R1–R5, exemptions,
/// modes and mutation M1. A pure value: build once per config, share everywhere.
public struct AdmissionPolicy: Sendable {
    public let context: RuleContext
    let rules: [any AdmissionRule]
    let mutation = NamespaceMutation()

    public var config: Config { context.config }

    public init(config: Config) {
        context = RuleContext(config: config)
        rules = [
            HostNetworkRule(),
            GuardPolicyRule(),
            BypassPolicyRule(config: config),
            OptOutRule(),
        ]
    }

    /// The answer of `/validate`.
    public func validate(_ request: AdmissionRequest) -> Verdict {
        for rule in rules {
            if let message = rule.evaluate(request, context) {
                return verdict(rule: rule.id, message: message, request: request)
            }
        }
        return .allow
    }

    /// The result of `/mutate`: the answer, and the namespace to provision when the
    /// request creates a guarded namespace for real (not a dry run).
    public struct Mutation: Sendable {
        public var verdict: Verdict
        public var provisionNamespace: String?
    }

    /// The answer of `/mutate`.
    public func mutate(_ request: AdmissionRequest) -> Mutation {
        guard let patch = mutation.patch(for: request, config: config) else {
            return Mutation(verdict: .allow, provisionNamespace: nil)
        }
        var verdict = Verdict.allow
        verdict.patch = patch
        return Mutation(verdict: verdict, provisionNamespace: request.dryRun ? nil : request.objectName)
    }

    /// Why a request is exempt, or nil when it is not.
    public func exemption(for request: AdmissionRequest) -> String? {
        let username = request.username
        if username == config.serviceAccount { return "pxguard's own service account" }
        if config.exemptUsers.contains(username) { return "exempt user \(username)" }
        if !config.exemptGroups.isEmpty, let group = request.groups.first(where: config.exemptGroups.contains) {
            return "exempt group \(group)"
        }
        // Emptying a terminating namespace must never be refused, or it stays
        // stuck in Terminating.
        if request.operation == .delete
            && (username == GuardNames.namespaceController || username == GuardNames.garbageCollector)
        {
            return "namespace cleanup by \(username)"
        }
        return nil
    }

    /// Applies exemption and mode to a finding.
    func verdict(rule: RuleID, message: String, request: AdmissionRequest) -> Verdict {
        if exemption(for: request) != nil {
            var v = Verdict(allowed: true, rule: rule, decision: .exempt)
            v.auditAnnotations = [("rule", rule.rawValue), ("decision", Decision.exempt.rawValue)]
            return v
        }
        switch config.mode(for: rule) {
        case .enforce:
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
