import Foundation
@testable import PXGuardCore

/// The egress evaluator extended to the cluster-scoped guard backends, written from
/// each project's documentation rather than from pxguard's renderers: it reads the
/// rendered objects field by field and decides, for one source pod and one
/// destination, what the whole stack decides.
///
/// - AdminNetworkPolicy (KEP-2091): ANPs whose `subject` selects the pod, by ascending
///   `priority`, rules in order; the first rule whose peers and ports match decides:
///   Deny drops, Allow accepts, Pass hands over to NetworkPolicy. No match: NetworkPolicy.
/// - Calico: tiers by ascending `order`; in a tier, the policies that select the pod
///   (`namespaceSelector` and `selector`, `types` holding Egress) by `order`, rules in
///   order; Allow and Deny decide, Pass goes to the next tier. A tier with a policy that
///   selects the pod but no rule that matched applies its `defaultAction` (Deny unless
///   it says Pass).
///   Kubernetes NetworkPolicies live in the `default` tier, which comes after any tier
///   with an order and behaves as NetworkPolicy; with nothing selecting, the profile allows.
/// - Cilium: a matching `egressDeny` drops whatever any allow says; otherwise the
///   endpoint is in default deny for egress if some policy with egress rules selects
///   it and does not set `enableDefaultDeny.egress: false`, and the allows decide.
struct BackendEvaluator {
    /// The pod a packet leaves.
    struct Source: CustomStringConvertible {
        var namespace: String
        var labels: [String: String]
        /// Namespace labels; `kubernetes.io/metadata.name` is added by the model.
        var namespaceLabels: [String: String] = [:]

        var allNamespaceLabels: [String: String] {
            namespaceLabels.merging(["kubernetes.io/metadata.name": namespace]) { $1 }
        }
        var description: String { "\(namespace)/\(labels)" }
    }

    /// Tenant NetworkPolicies: namespace and spec.
    var networkPolicies: [(namespace: String, spec: JSON)]
    /// Node addresses: what the ANP `nodes` peer and Cilium's host/remote-node
    /// entities select.
    var nodeCIDRs: [CIDR]

    func isNode(_ d: EgressEvaluator.Destination) -> Bool {
        nodeCIDRs.contains { $0.family == d.family && $0.range.lower <= d.address && d.address <= $0.range.upper }
    }

    /// The NetworkPolicy layer: not isolated for egress, or some selecting policy allows.
    func networkPolicyAllows(_ source: Source, _ d: EgressEvaluator.Destination) -> Bool {
        var isolated = false
        for (namespace, spec) in networkPolicies where namespace == source.namespace {
            let evaluator = EgressEvaluator(policyNamespace: namespace)
            guard evaluator.isolatesEgress(spec), evaluator.matches(spec["podSelector"] ?? .object([]), source.labels) else { continue }
            isolated = true
            if evaluator.allows(spec, d) { return true }
        }
        return !isolated
    }

    static var labels: EgressEvaluator { EgressEvaluator(policyNamespace: "") }

    // MARK: AdminNetworkPolicy

    enum Action { case allow, deny, pass }

    func anpAllows(_ objects: [JSON], _ source: Source, _ d: EgressEvaluator.Destination) -> Bool {
        let applicable = objects.filter { $0["kind"]?.stringValue == "AdminNetworkPolicy" && anpSelects($0["spec"]?["subject"], source) }
            .sorted { ($0["spec"]?["priority"]?.intValue ?? 0) < ($1["spec"]?["priority"]?.intValue ?? 0) }
        for policy in applicable {
            for rule in policy["spec"]?["egress"]?.arrayValue ?? [] {
                guard anpPeersMatch(rule["to"], d), anpPortsMatch(rule["ports"], d) else { continue }
                switch rule["action"]?.stringValue {
                case "Deny": return false
                case "Allow": return true
                default: return networkPolicyAllows(source, d)  // Pass
                }
            }
        }
        return networkPolicyAllows(source, d)
    }

    func anpSelects(_ subject: JSON?, _ source: Source) -> Bool {
        if let namespaces = subject?["namespaces"] { return Self.labels.matches(namespaces, source.allNamespaceLabels) }
        if let pods = subject?["pods"] {
            return Self.labels.matches(pods["namespaceSelector"] ?? .object([]), source.allNamespaceLabels)
                && Self.labels.matches(pods["podSelector"] ?? .object([]), source.labels)
        }
        return false
    }

    func anpPeersMatch(_ to: JSON?, _ d: EgressEvaluator.Destination) -> Bool {
        (to?.arrayValue ?? []).contains { peer in
            // Nodes carry no labels in this model: only an empty selector selects them.
            if let nodes = peer["nodes"] { return isNode(d) && nodes == .object([]) }
            if let networks = peer["networks"]?.arrayValue {
                return networks.contains { n in
                    guard let c = n.stringValue.flatMap(CIDR.init) else { return false }
                    return c.family == d.family && c.range.lower <= d.address && d.address <= c.range.upper
                }
            }
            guard let pod = d.pod else { return false }
            if let namespaces = peer["namespaces"] {
                return Self.labels.matches(namespaces, pod.namespaceLabels)
            }
            if let pods = peer["pods"] {
                return Self.labels.matches(pods["namespaceSelector"] ?? .object([]), pod.namespaceLabels)
                    && Self.labels.matches(pods["podSelector"] ?? .object([]), pod.labels)
            }
            return false
        }
    }

    func anpPortsMatch(_ ports: JSON?, _ d: EgressEvaluator.Destination) -> Bool {
        guard let entries = ports?.arrayValue else { return true }
        return entries.contains { entry in
            if let n = entry["portNumber"] {
                return (n["protocol"]?.stringValue ?? "TCP") == d.proto.rawValue && n["port"]?.intValue == d.port
            }
            if let r = entry["portRange"], let start = r["start"]?.intValue, let end = r["end"]?.intValue {
                return (r["protocol"]?.stringValue ?? "TCP") == d.proto.rawValue && start <= d.port && d.port <= end
            }
            return false
        }
    }

    // MARK: Calico

    func calicoAllows(_ objects: [JSON], _ source: Source, _ d: EgressEvaluator.Destination) -> Bool {
        let tiers = objects.filter { $0["kind"]?.stringValue == "Tier" }
            .sorted { ($0["spec"]?["order"]?.intValue ?? Int.max) < ($1["spec"]?["order"]?.intValue ?? Int.max) }
        let policies = objects.filter { $0["kind"]?.stringValue == "GlobalNetworkPolicy" }
        var calicoNamespaceLabels = source.allNamespaceLabels
        calicoNamespaceLabels["projectcalico.org/name"] = source.namespace
        tierLoop: for tier in tiers {
            let name = tier["metadata"]?["name"]?.stringValue ?? ""
            let selecting = policies.filter { p in
                let spec = p["spec"] ?? .null
                return (spec["tier"]?.stringValue ?? "default") == name
                    && (spec["types"]?.arrayValue ?? []).contains("Egress")
                    && Self.calicoSelector(spec["namespaceSelector"]?.stringValue ?? "all()", calicoNamespaceLabels)
                    && Self.calicoSelector(spec["selector"]?.stringValue ?? "all()", source.labels)
            }.sorted { ($0["spec"]?["order"]?.intValue ?? Int.max) < ($1["spec"]?["order"]?.intValue ?? Int.max) }
            guard !selecting.isEmpty else { continue }
            for policy in selecting {
                for rule in policy["spec"]?["egress"]?.arrayValue ?? [] where calicoRuleMatches(rule, d) {
                    switch rule["action"]?.stringValue {
                    case "Allow": return true
                    case "Deny": return false
                    case "Pass": continue tierLoop
                    default: continue  // Log
                    }
                }
            }
            // End of tier: the tier's defaultAction (Deny unless it says Pass).
            if tier["spec"]?["defaultAction"]?.stringValue == "Pass" { continue tierLoop }
            return false
        }
        return networkPolicyAllows(source, d)  // default tier, then the profile
    }

    func calicoRuleMatches(_ rule: JSON, _ d: EgressEvaluator.Destination) -> Bool {
        if let proto = rule["protocol"]?.stringValue, proto != d.proto.rawValue { return false }
        let destination = rule["destination"] ?? .object([])
        // An empty list is Calico's "not specified": any destination.
        if let nets = destination["nets"]?.arrayValue, !nets.isEmpty {
            let hit = nets.contains { n in
                guard let c = n.stringValue.flatMap(CIDR.init) else { return false }
                return c.family == d.family && c.range.lower <= d.address && d.address <= c.range.upper
            }
            if !hit { return false }
        }
        if let ports = destination["ports"]?.arrayValue, !ports.isEmpty {
            let hit = ports.contains { p in
                if let n = p.intValue { return n == d.port }
                let bounds = (p.stringValue ?? "").split(separator: ":").compactMap { Int($0) }
                return bounds.count == 2 && bounds[0] <= d.port && d.port <= bounds[1]
            }
            if !hit { return false }
        }
        return true
    }

    /// Calico's selector language, the part pxguard writes: `all()`, and terms joined
    /// by `&&`: `k == 'v'`, `k != 'v'`, `k in {…}`, `k not in {…}`, `has(k)`, `!has(k)`.
    /// `!=` and `not in` match a resource without the label. Anything else fails the test.
    static func calicoSelector(_ text: String, _ labels: [String: String]) -> Bool {
        for raw in text.split(separator: "&&", omittingEmptySubsequences: false) {
            let term = raw.trimmingCharacters(in: .whitespaces)
            if term == "all()" { continue }
            if term.hasPrefix("has(") || term.hasPrefix("!has(") {
                let key = String(term.drop { $0 != "(" }.dropFirst().dropLast())
                if (labels[key] != nil) != term.hasPrefix("has(") { return false }
                continue
            }
            let values = quotedValues(term)
            if let r = term.range(of: " not in ") {
                if let v = labels[String(term[..<r.lowerBound])], values.contains(v) { return false }
            } else if let r = term.range(of: " in ") {
                guard let v = labels[String(term[..<r.lowerBound])], values.contains(v) else { return false }
            } else if let r = term.range(of: " != ") {
                if let v = labels[String(term[..<r.lowerBound])], values.contains(v) { return false }
            } else if let r = term.range(of: " == ") {
                guard let v = labels[String(term[..<r.lowerBound])], values.contains(v) else { return false }
            } else {
                fatalError("selector term the model does not know: \(term)")
            }
        }
        return true
    }

    /// The quoted strings of a term, `'…'` or `"…"`, backslash escapes undone.
    static func quotedValues(_ term: String) -> [String] {
        var out: [String] = []
        var current: String?
        var quote: Character = "'"
        var escaped = false
        for c in term {
            if var s = current {
                if escaped { s.append(c); escaped = false; current = s; continue }
                if c == "\\" { escaped = true; continue }
                if c == quote { out.append(s); current = nil; continue }
                s.append(c)
                current = s
            } else if c == "'" || c == "\"" {
                quote = c
                current = ""
            }
        }
        return out
    }

    // MARK: Cilium

    func ciliumAllows(_ objects: [JSON], _ source: Source, _ d: EgressEvaluator.Destination) -> Bool {
        let selecting = objects.filter {
            $0["kind"]?.stringValue == "CiliumClusterwideNetworkPolicy" && ciliumSelects($0["spec"]?["endpointSelector"], source)
        }
        for policy in selecting {
            for rule in policy["spec"]?["egressDeny"]?.arrayValue ?? [] where ciliumDenyMatches(rule, d) { return false }
        }
        // Default deny, unless every selecting policy with egress rules opts out of it.
        let defaultDeny = selecting.contains { p in
            let spec = p["spec"] ?? .null
            let hasEgress = !(spec["egress"]?.arrayValue ?? []).isEmpty || !(spec["egressDeny"]?.arrayValue ?? []).isEmpty
            return hasEgress && spec["enableDefaultDeny"]?["egress"] != .bool(false)
        }
        // The CCNPs hold no allow rules: under default deny only NetworkPolicy allows remain.
        if defaultDeny {
            let allowedByPolicy = networkPolicies.contains { ns, spec in
                ns == source.namespace && EgressEvaluator(policyNamespace: ns).allows(spec, d)
                    && Self.labels.matches(spec["podSelector"] ?? .object([]), source.labels)
            }
            return allowedByPolicy
        }
        return networkPolicyAllows(source, d)
    }

    /// Cilium label keys: `k8s:io.kubernetes.pod.namespace` is the namespace; `k8s:x`
    /// and `x` are the pod label x.
    func ciliumSelects(_ selector: JSON?, _ source: Source) -> Bool {
        guard let selector else { return false }
        var labels: [String: String] = [:]
        for (k, v) in source.labels { labels["k8s:" + k] = v }
        labels["k8s:io.kubernetes.pod.namespace"] = source.namespace
        func key(_ k: String) -> String { k.hasPrefix("k8s:") ? k : "k8s:" + k }
        var rewritten: [JSON.Member] = []
        if let match = selector["matchLabels"]?.members {
            rewritten.append(.init("matchLabels", .object(match.map { JSON.Member(key($0.key), $0.value) })))
        }
        if let expressions = selector["matchExpressions"]?.arrayValue {
            rewritten.append(.init("matchExpressions", .array(expressions.map { $0.setting("key", .string(key($0["key"]?.stringValue ?? ""))) })))
        }
        return Self.labels.matches(.object(rewritten), labels)
    }

    func ciliumDenyMatches(_ rule: JSON, _ d: EgressEvaluator.Destination) -> Bool {
        let entities = (rule["toEntities"]?.arrayValue ?? []).compactMap(\.stringValue)
        guard isNode(d) && (entities.contains("host") || entities.contains("remote-node")) || entities.contains("all") else { return false }
        guard let toPorts = rule["toPorts"]?.arrayValue else { return true }
        return toPorts.contains { portRule in
            (portRule["ports"]?.arrayValue ?? []).contains { p in
                let proto = p["protocol"]?.stringValue ?? "ANY"
                guard proto == "ANY" || proto == d.proto.rawValue, let port = p["port"]?.stringValue.flatMap({ Int($0) }) else { return false }
                let end = p["endPort"]?.intValue ?? port
                return port <= d.port && d.port <= max(port, end)
            }
        }
    }
}
