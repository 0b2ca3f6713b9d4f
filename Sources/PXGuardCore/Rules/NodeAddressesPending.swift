/// `nodeCIDRs: auto` before any node address is known (no Node listed yet, no
/// guard policy to take them from, none explicit): the rules that judge against
/// node addresses cannot judge, and allowing would open a bypass window. A request
/// they would judge is answered with a retry message under the rule's own name
/// and mode (so `warn` still only warns); everything else goes on as usual.
/// Seconds at a first start; never once a Node has been listed.
enum NodeAddressesPending {
    /// The rule that would judge `request` against node addresses, if any.
    static func rule(for request: AdmissionRequest, _ context: RuleContext) -> RuleID? {
        guard request.operation == .create || request.operation == .update, request.subResource.isEmpty else { return nil }
        let namespace = request.namespace
        if request.isNetworkPolicy {
            // Guard policies (R3 compares with specs made of node subnets) and any
            // other policy (R4 looks for reach into them), kube-system's block policy included.
            if context.isGuardPolicy(name: request.objectName, namespace: namespace) { return .guardPolicies }
            return context.config.isGuarded(namespace: namespace) ? .bypassPolicies : nil
        }
        guard context.config.isGuarded(namespace: namespace) else { return nil }
        if request.kind == "Service" && request.group.isEmpty { return .externalIPs }
        if (request.kind == "Endpoints" && request.group.isEmpty)
            || (request.kind == "EndpointSlice" && request.group == "discovery.k8s.io") {
            return .endpoints
        }
        return nil
    }

    static func message(_ rule: RuleID) -> String {
        "pxguard: \(rule.rawValue): the node addresses are not known yet (nodeCIDRs: auto; waiting for the first "
            + "list of Nodes). Retry in a few seconds."
    }
}
