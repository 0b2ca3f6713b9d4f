/// R4: in a guarded namespace no other NetworkPolicy may allow egress to a
/// protected address and port. Policies are additive: one allow rule anywhere
/// undoes the guard's block.
struct BypassPolicyRule: AdmissionRule {
    let id = RuleID.bypassPolicies
    let analysis: EgressAnalysis

    init(config: Config) {
        analysis = EgressAnalysis(nodeCIDRs: config.nodeCIDRs, protectedPorts: config.protectedPorts)
    }

    func evaluate(_ request: AdmissionRequest, _ context: RuleContext) -> String? {
        guard request.isNetworkPolicy, request.operation == .create || request.operation == .update,
            request.subResource.isEmpty,
            context.config.isGuarded(namespace: request.namespace),
            let spec = request.object?["spec"]
        else { return nil }
        let name = request.objectName
        // The guard policies themselves are judged by GuardPolicyRule.
        if context.isGuardPolicy(name: name, namespace: request.namespace) { return nil }
        // An UPDATE that leaves the spec as it was (a finalizer or label change) opens
        // nothing new; refusing it would wedge the cleanup of a policy created before
        // pxguard was installed.
        if request.operation == .update, let old = request.oldObject?["spec"], spec.tokensEqual(old) { return nil }
        guard let reach = analysis.firstReach(spec: spec) else { return nil }
        return "pxguard: bypassPolicies: NetworkPolicy \(request.namespace)/\(name): \(reach), "
            + "which opens the Portworx API on the nodes to pods. \(Self.fix(for: reach, config: context.config))"
    }

    /// A fix that fits the rule: an `except` only where the rule has an `ipBlock`
    /// (and only the node subnets of that block's family), and only the protected
    /// ranges the rule actually hits.
    static func fix(for reach: EgressAnalysis.RuleReach, config: Config) -> String {
        let rule = "egress rule \(reach.ruleIndex)"
        let destination: String
        switch reach.destinations {
        case .all:
            let outside = [IPFamily.v4, .v6].compactMap { family -> String? in
                let nodes = config.nodeCIDRs.filter { $0.family == family }
                guard !nodes.isEmpty else { return nil }
                return "cidr \(CIDR.all(family)) except [\(nodes.map(\.description).joined(separator: ", "))]"
            }
            destination = "Give \(rule) a `to` that leaves out the node subnets (an ipBlock with "
                + outside.joined(separator: " and ") + ")"
        case .ipBlocks(let reached, let families, let mapped):
            // An except counts only in its block's written family: IPv4-mapped form
            // for a mapped block.
            let nodes = config.nodeCIDRs.filter { c in
                families.contains(c.family) && reached.overlaps(IPRangeSet(c.range))
            }.map { mapped ? BypassRepair.mappedForm($0) : $0 }
            destination = "Add \(nodes.map(\.description).joined(separator: ", ")) to the except list of "
                + "the ipBlock in \(rule)"
        case .unparsable(let text):
            destination = "Fix the ipBlock cidr \"\(text)\" in \(rule) and keep the node subnets out of it"
        }
        let ports: String
        if reach.allPorts {
            ports = "list the ports it needs, leaving out \(reach.ports.map(\.description).joined(separator: ", "))"
        } else {
            var parts: [String] = []
            if !reach.ports.isEmpty {
                parts.append("change its ports so they leave out "
                    + reach.ports.prefix(4).map(\.description).joined(separator: ", "))
            }
            if let named = reach.namedPorts.first {
                let protos = Set(reach.namedPorts.map(\.proto))
                let protected = EgressAnalysis(nodeCIDRs: [], protectedPorts: config.protectedPorts).protectedPorts
                    .filter { protos.contains($0.proto) }
                parts.append("replace the named port \"\(named.name)\" with port numbers outside "
                    + protected.map(\.description).joined(separator: ", "))
            }
            ports = parts.joined(separator: " and ")
        }
        return "\(destination), or \(ports)."
    }
}
