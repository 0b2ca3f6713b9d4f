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
        guard let reach = analysis.firstReach(spec: spec) else { return nil }
        let nodes = context.config.nodeCIDRs.map(\.description).joined(separator: ", ")
        let ports = context.config.protectedPorts.map(\.description).joined(separator: ", ")
        return "pxguard: bypassPolicies: NetworkPolicy \(request.namespace)/\(name) \(reach), "
            + "which opens the Portworx API on the nodes to pods. Add the node subnets (\(nodes)) to the "
            + "ipBlock's except list, or limit the rule's ports to exclude \(ports)."
    }
}
