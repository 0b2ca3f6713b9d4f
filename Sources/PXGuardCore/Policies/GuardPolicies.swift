/// Fixed names of the guard: policy names, labels and annotations (SPEC
/// "Labels, annotations, names").
public enum GuardNames {
    public static let blockPolicy = "block-9001-for-non-system-users"
    public static let allowAPIPolicy = "allow-api"
    public static let managedByKey = "app.kubernetes.io/managed-by"
    public static let managedByValue = "pxguard"
    public static let guardedLabel = "pxguard.io/guarded"
    public static let policiesAnnotation = "pxguard.io/policies"
    public static let policiesAnnotationValue = "\(blockPolicy),\(allowAPIPolicy)"
    /// The Pod Security enforce level a namespace had before pxguard raised it (empty: none).
    public static let previousEnforceAnnotation = "pxguard.io/previous-enforce"
    public static let kubeSystem = "kube-system"
    static let namespaceController = "system:serviceaccount:kube-system:namespace-controller"
    static let garbageCollector = "system:serviceaccount:kube-system:generic-garbage-collector"
    public static let leaseName = "pxguard-provisioner"
}

/// The canonical guard policies rendered from a configuration, and the one place
/// that decides which of them belong in a namespace: rules R2/R3/R4/R6, the
/// provisioner and `render` all ask here. Rendered once per configuration; the
/// rules compare against the pre-normalised specs.
public struct GuardPolicies: Sendable {
    /// Spec of `kube-system/block-9001-for-non-system-users`.
    let kubeSystemBlockSpec: JSON
    /// Spec of `<ns>/block-9001-for-non-system-users`.
    let namespaceBlockSpec: JSON
    /// Spec of `<ns>/allow-api`.
    let allowAPISpec: JSON

    let normalizedKubeSystemBlock: JSON
    let normalizedNamespaceBlock: JSON
    let normalizedAllowAPI: JSON
    let exemptNamespaces: [String]
    /// The block policy's name (`guardPolicyNames.block`).
    public let blockName: String
    /// The allow-api policy's name (`guardPolicyNames.allowAPI`).
    public let allowAPIName: String

    /// Labels on kube-system pods that are system components and may keep egress.
    static let systemComponentSelectors: [(key: String, value: String)] = [
        ("name", "scheduler"),
        ("component", "stork"),
        ("tier", "control-plane"),
        ("k8s-app", "kube-controller-manager"),
        ("name", "portworx-pvc-controller"),
        ("tier", "px-web-console"),
    ]

    public init(config: Config) {
        exemptNamespaces = config.exemptNamespaces
        blockName = config.guardPolicyNames.block
        allowAPIName = config.guardPolicyNames.allowAPI
        let notSystem: [JSON] = Self.systemComponentSelectors.map { sel in
            .obj(["key": .string(sel.key), "operator": "NotIn", "values": [.string(sel.value)]])
        }
        let kubeSystemSelector: JSON = .obj(["matchExpressions": .array(notSystem)])
        switch config.policyStyle {
        case .seed:
            let outside = Self.outsideNodes(config.nodeCIDRs, alwaysIPv6: false)
            kubeSystemBlockSpec = .obj([
                "podSelector": kubeSystemSelector,
                "policyTypes": ["Egress"],
                "egress": [.obj([
                    "to": .array(outside),
                    "ports": [.obj(["protocol": "TCP", "port": 8099])],
                ])],
            ])
            namespaceBlockSpec = .obj([
                "podSelector": .object([]),
                "policyTypes": ["Egress"],
                "egress": [.obj(["to": .array(outside)])],
            ])
        case .ports:
            let egress = Self.everythingButProtected(nodeCIDRs: config.nodeCIDRs, protectedPorts: config.protectedPorts)
            kubeSystemBlockSpec = .obj([
                "podSelector": kubeSystemSelector,
                "policyTypes": ["Egress"],
                "egress": .array(egress),
            ])
            namespaceBlockSpec = .obj([
                "podSelector": .object([]),
                "policyTypes": ["Egress"],
                "egress": .array(egress),
            ])
        }
        allowAPISpec = .obj([
            "podSelector": .object([]),
            "policyTypes": ["Egress"],
            "egress": [.obj([
                "to": .array(config.nodeCIDRs.map { .obj(["ipBlock": .obj(["cidr": .string($0.description)])]) }),
                "ports": [.obj(["protocol": "TCP", "port": .int(config.apiServerPort)])],
            ])],
        ])
        normalizedKubeSystemBlock = kubeSystemBlockSpec.normalized
        normalizedNamespaceBlock = namespaceBlockSpec.normalized
        normalizedAllowAPI = allowAPISpec.normalized
    }

    /// `to` peers for every address outside the node subnets: `0.0.0.0/0` except the
    /// IPv4 ones, and `::/0` except the IPv6 ones (the seed adds `::/0` only when
    /// there are IPv6 node subnets; `ports` style always allows IPv6).
    static func outsideNodes(_ nodeCIDRs: [CIDR], alwaysIPv6: Bool) -> [JSON] {
        func exceptBlock(_ family: IPFamily) -> JSON {
            let nodes = nodeCIDRs.filter { $0.family == family }
            return .obj(["ipBlock": .obj([
                "cidr": .string(CIDR.all(family).description),
                "except": nodes.isEmpty ? nil : .array(nodes.map { .string($0.description) }),
            ])])
        }
        let hasV6 = nodeCIDRs.contains { $0.family == .v6 }
        return [exceptBlock(.v4)] + (hasV6 || alwaysIPv6 ? [exceptBlock(.v6)] : [])
    }

    /// The `ports` style egress: every destination outside the node subnets on every
    /// port, and the node subnets on the complement of the protected ranges.
    static func everythingButProtected(nodeCIDRs: [CIDR], protectedPorts: [PortRange]) -> [JSON] {
        var rules: [JSON] = [.obj(["to": .array(outsideNodes(nodeCIDRs, alwaysIPv6: true))])]
        let open = openPorts(protectedPorts)
        // With every port of every protocol protected there is nothing to open; an
        // empty `ports` list would mean "all ports", so the rule is left out.
        if !open.isEmpty && !nodeCIDRs.isEmpty {
            rules.append(.obj([
                "to": .array(nodeCIDRs.map { .obj(["ipBlock": .obj(["cidr": .string($0.description)])]) }),
                "ports": .array(open),
            ]))
        }
        return rules
    }

    /// NetworkPolicy `ports` entries for the complement of `protected`, per protocol:
    /// a protocol with nothing protected gets one entry without `port` (all its
    /// ports), the others `port`/`endPort` ranges around the protected ones.
    static func openPorts(_ protected: [PortRange]) -> [JSON] {
        var out: [JSON] = []
        for proto in TransportProtocol.allCases {
            let closed = protected.filter { $0.proto == proto }.sorted { $0.lower < $1.lower }
            guard !closed.isEmpty else {
                out.append(.obj(["protocol": .string(proto.rawValue)]))
                continue
            }
            var next = 1
            for range in closed {
                if range.lower > next { out.append(portEntry(proto, next, range.lower - 1)) }
                next = max(next, range.upper + 1)
            }
            if next <= 65535 { out.append(portEntry(proto, next, 65535)) }
        }
        return out
    }

    static func portEntry(_ proto: TransportProtocol, _ lower: Int, _ upper: Int) -> JSON {
        .obj(["protocol": .string(proto.rawValue), "port": .int(lower), "endPort": lower == upper ? nil : .int(upper)])
    }

    /// The names of the guard policies a guarded namespace holds (kube-system, which
    /// is exempt but guarded by its own block policy, holds only that one).
    public static func names(in namespace: String) -> [String] {
        namespace == GuardNames.kubeSystem
            ? [GuardNames.blockPolicy] : [GuardNames.blockPolicy, GuardNames.allowAPIPolicy]
    }

    /// The guard policies that belong in `namespace` under this configuration: the
    /// block policy in kube-system, both in every guarded namespace, none elsewhere.
    public func names(for namespace: String) -> [String] {
        if namespace == GuardNames.kubeSystem { return [blockName] }
        return exemptNamespaces.contains(namespace) ? [] : [blockName, allowAPIName]
    }

    /// True when `name` is a guard policy that belongs in `namespace`: the same
    /// answer as `names(for:)`, without building the list on the request path.
    public func isGuardPolicy(name: String, namespace: String) -> Bool {
        if namespace == GuardNames.kubeSystem { return name == blockName }
        guard name == blockName || name == allowAPIName else { return false }
        return !exemptNamespaces.contains(namespace)
    }

    /// The canonical spec for a policy name in a namespace, or nil when that name is
    /// not a guard policy there. Rendering asks for any namespace (`render policies
    /// --namespace`), so only the name and kube-system decide here.
    public func canonicalSpec(name: String, namespace: String) -> JSON? {
        if name == blockName { return namespace == GuardNames.kubeSystem ? kubeSystemBlockSpec : namespaceBlockSpec }
        if name == allowAPIName && namespace != GuardNames.kubeSystem { return allowAPISpec }
        return nil
    }

    /// True when `spec` means the same as the canonical spec for that policy.
    public func isCanonical(spec: JSON, name: String, namespace: String) -> Bool {
        let canonical: JSON
        if name == blockName {
            canonical = namespace == GuardNames.kubeSystem ? normalizedKubeSystemBlock : normalizedNamespaceBlock
        } else if name == allowAPIName && namespace != GuardNames.kubeSystem {
            canonical = normalizedAllowAPI
        } else {
            return false
        }
        return spec.normalized == canonical
    }

    /// A complete NetworkPolicy object for `name` in `namespace`.
    public func policy(name: String, namespace: String) -> JSON? {
        guard let spec = canonicalSpec(name: name, namespace: namespace) else { return nil }
        return .obj([
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": .obj([
                "name": .string(name),
                "namespace": .string(namespace),
                "labels": .obj([GuardNames.managedByKey: .string(GuardNames.managedByValue)]),
            ]),
            "spec": spec,
        ])
    }
}
