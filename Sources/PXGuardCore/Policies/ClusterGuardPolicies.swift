extension GuardNames {
    /// The cluster-scoped guard object for every pod of every guarded namespace.
    public static let clusterBlock = "pxguard-block-protected-ports"
    /// The one for kube-system's pods but the seed's system components. Separate, so
    /// that the component labels exempt nothing outside kube-system.
    public static let clusterBlockKubeSystem = "pxguard-block-protected-ports-kube-system"
    /// Calico's Tier for pxguard's policies (its policies' names carry it as prefix).
    public static let calicoTier = "pxguard"
    /// The label every namespace carries with its own name (set by the API server,
    /// so nobody can forge it).
    static let namespaceNameLabel = "kubernetes.io/metadata.name"
}

/// The canonical guard objects of the cluster-scoped backends (SPEC "Guard backends"),
/// rendered from a configuration: one object for every pod of every guarded namespace
/// (exempt namespaces left out by namespace), one for kube-system's pods but the seed's
/// system components. Each denies the protected ports, per protocol, towards the nodes
/// and nothing else: the API server port and every other destination keep whatever the
/// tenants' NetworkPolicies say. Pure: rendered once per configuration.
public struct ClusterGuardPolicies: Sendable {
    /// The backend these objects are for (never `auto` or `networkpolicy` when
    /// `objects` is non-empty).
    public let backend: GuardBackend
    /// The objects in the order they must be written (Calico's Tier first).
    public let objects: [JSON]
    /// `canonicalForm` of each object's spec, by kind and name.
    let canonicalSpecs: [String: JSON]
    /// True when the objects need node addresses that are not known yet (Calico names
    /// the nodes by `nets`, and `nodeCIDRs: auto` has found none): they must not be
    /// written, since Calico reads an empty `nets` as any destination. The names stay
    /// known, so R2/R3 still protect objects of a previous run.
    public let pending: Bool

    /// Renders the objects of `config.activeBackend` (none for `networkpolicy`).
    public init(config: Config) {
        self.init(config: config, backend: config.activeBackend)
    }

    /// Renders the objects of `backend` for `config` (`render --guard-backend`, and the
    /// provisioner while it switches backends).
    public init(config: Config, backend: GuardBackend) {
        self.backend = backend
        pending = Self.isPending(backend: backend, config: config)
        var exempt = config.exemptNamespaces
        if !exempt.contains(GuardNames.kubeSystem) { exempt.append(GuardNames.kubeSystem) }
        let ports = Self.protectedByProtocol(config.protectedPorts)
        switch backend {
        case .adminnetworkpolicy:
            objects = Self.adminNetworkPolicies(exempt: exempt, ports: ports, priority: config.guardPriority)
        case .calico:
            objects = Self.calicoPolicies(exempt: exempt, ports: ports, nodeCIDRs: config.nodeCIDRs, order: config.guardPriority)
        case .cilium:
            objects = Self.ciliumPolicies(exempt: exempt, ports: ports)
        case .networkpolicy, .auto:
            objects = []
        }
        var specs: [String: JSON] = [:]
        for object in objects {
            let key = Self.key(kind: object["kind"]?.stringValue ?? "", name: object["metadata"]?["name"]?.stringValue ?? "")
            specs[key] = Self.canonicalForm(object["spec"] ?? .null)
        }
        canonicalSpecs = specs
    }

    /// `pending` without rendering: Calico names the nodes by address, and none is known.
    static func isPending(backend: GuardBackend, config: Config) -> Bool {
        backend == .calico && config.nodeCIDRs.isEmpty
    }

    /// True when the backend in effect is cluster-scoped and its guard can be written (not pending).
    static func coversEveryNamespace(_ config: Config) -> Bool {
        config.activeBackend.isClusterScoped && !isPending(backend: config.activeBackend, config: config)
    }

    static func key(kind: String, name: String) -> String { kind + "/" + name }

    /// The names of this backend's guard objects of `kind`.
    public func names(kind: String) -> [String] {
        objects.filter { $0["kind"]?.stringValue == kind }.compactMap { $0["metadata"]?["name"]?.stringValue }
    }

    /// True when `group`/`kind`/`name` is one of this backend's guard objects.
    public func isGuardObject(group: String, kind: String, name: String) -> Bool {
        backend.resources.contains { $0.group == group && $0.kind == kind } && canonicalSpecs[Self.key(kind: kind, name: name)] != nil
    }

    /// The canonical object of `kind` named `name`, if it is one of the guard's.
    public func object(kind: String, name: String) -> JSON? {
        objects.first { $0["kind"]?.stringValue == kind && $0["metadata"]?["name"]?.stringValue == name }
    }

    /// True when `spec` is the canonical spec of that guard object. Stricter than the
    /// NetworkPolicy comparison: an empty selector (`nodes: {}`) means "all" here and
    /// must not compare equal to a different empty peer, so only nulls are ignored.
    public func isCanonical(spec: JSON, kind: String, name: String) -> Bool {
        guard let canonical = canonicalSpecs[Self.key(kind: kind, name: name)] else { return false }
        return Self.canonicalForm(spec) == canonical
    }

    /// Object members sorted by key, null members dropped, numbers compared by value.
    public static func canonicalForm(_ value: JSON) -> JSON {
        switch value {
        case .array(let items):
            return .array(items.map(canonicalForm))
        case .object(let members):
            return .object(members.filter { $0.value != .null }.map { JSON.Member($0.key, canonicalForm($0.value)) }
                .sorted { $0.key < $1.key })
        case .number:
            if let i = value.intValue { return .int(i) }
            return value
        default:
            return value
        }
    }

    /// The protected ranges grouped by protocol (TCP, UDP, SCTP order), each sorted
    /// and merged where they touch.
    static func protectedByProtocol(_ ranges: [PortRange]) -> [(TransportProtocol, [(Int, Int)])] {
        var out: [(TransportProtocol, [(Int, Int)])] = []
        for proto in TransportProtocol.allCases {
            var merged: [(Int, Int)] = []
            for r in ranges.filter({ $0.proto == proto }).sorted(by: { $0.lower < $1.lower }) {
                if let last = merged.last, r.lower <= last.1 + 1 {
                    merged[merged.count - 1].1 = max(last.1, r.upper)
                } else {
                    merged.append((r.lower, r.upper))
                }
            }
            if !merged.isEmpty { out.append((proto, merged)) }
        }
        return out
    }

    static func metadata(_ name: String) -> JSON {
        .obj(["name": .string(name), "labels": .obj([GuardNames.managedByKey: .string(GuardNames.managedByValue)])])
    }

    static func chunks<T>(_ items: [T], of size: Int) -> [[T]] {
        stride(from: 0, to: items.count, by: size).map { Array(items[$0..<min($0 + size, items.count)]) }
    }

    static let ruleName = "deny-portworx-api-on-nodes"

    // MARK: AdminNetworkPolicy

    static func adminNetworkPolicies(exempt: [String], ports: [(TransportProtocol, [(Int, Int)])], priority: Int) -> [JSON] {
        // The CRD allows 100 ports per rule and 100 rules: a rule per 100 entries.
        var entries: [JSON] = []
        for (proto, ranges) in ports {
            for (lower, upper) in ranges {
                entries.append(lower == upper
                    ? .obj(["portNumber": .obj(["protocol": .string(proto.rawValue), "port": .int(lower)])])
                    : .obj(["portRange": .obj(["protocol": .string(proto.rawValue), "start": .int(lower), "end": .int(upper)])]))
            }
        }
        let egress: [JSON] = chunks(entries, of: 100).enumerated().map { index, part in
            .obj([
                "name": .string(index == 0 ? ruleName : "\(ruleName)-\(index + 1)"),
                "action": "Deny",
                "to": [.obj(["nodes": .object([])])],
                "ports": .array(part),
            ])
        }
        let tenants: JSON = .obj([
            "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
            "metadata": metadata(GuardNames.clusterBlock),
            "spec": .obj([
                "priority": .int(priority),
                "subject": .obj(["namespaces": .obj(["matchExpressions": [.obj([
                    "key": .string(GuardNames.namespaceNameLabel), "operator": "NotIn",
                    "values": .array(exempt.map { .string($0) }),
                ])]])]),
                "egress": .array(egress),
            ]),
        ])
        let kubeSystem: JSON = .obj([
            "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
            "metadata": metadata(GuardNames.clusterBlockKubeSystem),
            "spec": .obj([
                "priority": .int(priority),
                "subject": .obj(["pods": .obj([
                    "namespaceSelector": .obj(["matchLabels": .obj([GuardNames.namespaceNameLabel: .string(GuardNames.kubeSystem)])]),
                    "podSelector": .obj(["matchExpressions": .array(notSystemExpressions(keyPrefix: ""))]),
                ])]),
                "egress": .array(egress),
            ]),
        ])
        return [tenants, kubeSystem]
    }

    /// NotIn expressions for the seed's system-component labels, one per label.
    static func notSystemExpressions(keyPrefix: String) -> [JSON] {
        GuardPolicies.systemComponentSelectors.map { sel in
            .obj(["key": .string(keyPrefix + sel.key), "operator": "NotIn", "values": [.string(sel.value)]])
        }
    }

    // MARK: Calico

    /// A Calico selector string literal.
    static func calicoQuoted(_ text: String) -> String {
        var out = "'"
        for c in text {
            if c == "\\" || c == "'" { out.append("\\") }
            out.append(c)
        }
        return out + "'"
    }

    static func calicoPolicies(exempt: [String], ports: [(TransportProtocol, [(Int, Int)])], nodeCIDRs: [CIDR], order: Int) -> [JSON] {
        // Deny per protocol (Calico allows 50 ports per rule), then Pass: the tenants'
        // NetworkPolicies in the default tier still decide everything else.
        var egress: [JSON] = []
        for (proto, ranges) in ports {
            let entries: [JSON] = ranges.map { $0.0 == $0.1 ? .int($0.0) : .string("\($0.0):\($0.1)") }
            for part in chunks(entries, of: 50) {
                egress.append(.obj([
                    "action": "Deny", "protocol": .string(proto.rawValue),
                    "destination": .obj(["nets": .array(nodeCIDRs.map { .string($0.description) }), "ports": .array(part)]),
                ]))
            }
        }
        egress.append(.obj(["action": "Pass"]))
        let tier: JSON = .obj([
            "apiVersion": "projectcalico.org/v3", "kind": "Tier",
            "metadata": metadata(GuardNames.calicoTier),
            // Pass is also what a packet no rule matched gets (the policies end in Pass anyway;
            // the API server would otherwise store its default, Deny).
            "spec": .obj(["order": .int(order), "defaultAction": "Pass"]),
        ])
        let exemptSet = exempt.map(calicoQuoted).joined(separator: ", ")
        func policy(_ name: String, namespaceSelector: String, selector: String) -> JSON {
            .obj([
                "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
                "metadata": metadata("\(GuardNames.calicoTier).\(name.dropFirst("pxguard-".count))"),
                "spec": .obj([
                    "tier": .string(GuardNames.calicoTier),
                    "order": .int(order),
                    "namespaceSelector": .string(namespaceSelector),
                    "selector": .string(selector),
                    "types": ["Egress"],
                    "egress": .array(egress),
                ]),
            ])
        }
        // `k not in {…}` also matches pods without the label, as NotIn does.
        var byKey: [(String, [String])] = []
        for sel in GuardPolicies.systemComponentSelectors {
            if let i = byKey.firstIndex(where: { $0.0 == sel.key }) { byKey[i].1.append(sel.value) } else { byKey.append((sel.key, [sel.value])) }
        }
        let notSystem = byKey.map { "\($0.0) not in {\($0.1.map(calicoQuoted).joined(separator: ", "))}" }.joined(separator: " && ")
        return [
            tier,
            policy(GuardNames.clusterBlock, namespaceSelector: "projectcalico.org/name not in {\(exemptSet)}", selector: "all()"),
            policy(GuardNames.clusterBlockKubeSystem,
                   namespaceSelector: "projectcalico.org/name == \(calicoQuoted(GuardNames.kubeSystem))", selector: notSystem),
        ]
    }

    // MARK: Cilium

    static let ciliumNamespaceKey = "k8s:io.kubernetes.pod.namespace"

    static func ciliumPolicies(exempt: [String], ports: [(TransportProtocol, [(Int, Int)])]) -> [JSON] {
        var entries: [JSON] = []
        for (proto, ranges) in ports {
            for (lower, upper) in ranges {
                entries.append(.obj(["port": .string(String(lower)), "endPort": lower == upper ? nil : .int(upper),
                                     "protocol": .string(proto.rawValue)]))
            }
        }
        // Cilium takes at most 40 ports per PortRule.
        let deny: [JSON] = [.obj([
            "toEntities": ["host", "remote-node"],
            "toPorts": .array(chunks(entries, of: 40).map { .obj(["ports": .array($0)]) }),
        ])]
        func policy(_ name: String, selector: JSON, what: String) -> JSON {
            .obj([
                "apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy",
                "metadata": metadata(name),
                "spec": .obj([
                    "description": .string("pxguard: deny \(what) the Portworx API ports on every node; nothing else"),
                    "endpointSelector": selector,
                    // Only a deny: the selected pods keep every other path their own policies allow.
                    "enableDefaultDeny": .obj(["egress": false, "ingress": false]),
                    "egressDeny": .array(deny),
                ]),
            ])
        }
        let tenants: JSON = .obj(["matchExpressions": [
            // Pods only: the host's own endpoint carries no namespace label.
            .obj(["key": .string(ciliumNamespaceKey), "operator": "Exists"]),
            .obj(["key": .string(ciliumNamespaceKey), "operator": "NotIn", "values": .array(exempt.map { .string($0) })]),
        ]])
        let kubeSystem: JSON = .obj([
            "matchLabels": .obj([ciliumNamespaceKey: .string(GuardNames.kubeSystem)]),
            "matchExpressions": .array(notSystemExpressions(keyPrefix: "k8s:")),
        ])
        return [
            policy(GuardNames.clusterBlock, selector: tenants, what: "pods of guarded namespaces"),
            policy(GuardNames.clusterBlockKubeSystem, selector: kubeSystem, what: "kube-system pods but system components"),
        ]
    }
}
