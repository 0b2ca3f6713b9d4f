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
    public static let kubeSystem = "kube-system"
    public static let namespaceController = "system:serviceaccount:kube-system:namespace-controller"
    public static let garbageCollector = "system:serviceaccount:kube-system:generic-garbage-collector"
    public static let leaseName = "pxguard-provisioner"
}

/// The canonical guard policies rendered from a configuration. Rendered once per
/// configuration; the rules compare against the pre-normalised specs.
public struct GuardPolicies: Sendable {
    /// Spec of `kube-system/block-9001-for-non-system-users`.
    public let kubeSystemBlockSpec: JSON
    /// Spec of `<ns>/block-9001-for-non-system-users`.
    public let namespaceBlockSpec: JSON
    /// Spec of `<ns>/allow-api`.
    public let allowAPISpec: JSON

    let normalizedKubeSystemBlock: JSON
    let normalizedNamespaceBlock: JSON
    let normalizedAllowAPI: JSON

    /// Labels on kube-system pods that are system components and may keep egress.
    public static let systemComponentSelectors: [(key: String, value: String)] = [
        ("name", "scheduler"),
        ("component", "stork"),
        ("tier", "control-plane"),
        ("k8s-app", "kube-controller-manager"),
        ("name", "portworx-pvc-controller"),
        ("tier", "px-web-console"),
    ]

    public init(config: Config) {
        let v4 = config.nodeCIDRs.filter { $0.family == .v4 }
        let v6 = config.nodeCIDRs.filter { $0.family == .v6 }
        func exceptBlock(_ family: IPFamily, _ nodes: [CIDR]) -> JSON {
            .obj(["ipBlock": .obj([
                "cidr": .string(CIDR.all(family).description),
                "except": nodes.isEmpty ? nil : .array(nodes.map { .string($0.description) }),
            ])])
        }
        var outside: [JSON] = [exceptBlock(.v4, v4)]
        if !v6.isEmpty { outside.append(exceptBlock(.v6, v6)) }

        let notSystem: [JSON] = Self.systemComponentSelectors.map { sel in
            .obj(["key": .string(sel.key), "operator": "NotIn", "values": [.string(sel.value)]])
        }
        kubeSystemBlockSpec = .obj([
            "podSelector": .obj(["matchExpressions": .array(notSystem)]),
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

    /// The names of the guard policies that belong in `namespace` (kube-system keeps
    /// only the block policy).
    public static func names(in namespace: String) -> [String] {
        namespace == GuardNames.kubeSystem
            ? [GuardNames.blockPolicy] : [GuardNames.blockPolicy, GuardNames.allowAPIPolicy]
    }

    /// The canonical spec for a policy name in a namespace, or nil when that name is
    /// not a guard policy there.
    public func canonicalSpec(name: String, namespace: String) -> JSON? {
        switch name {
        case GuardNames.blockPolicy:
            return namespace == GuardNames.kubeSystem ? kubeSystemBlockSpec : namespaceBlockSpec
        case GuardNames.allowAPIPolicy where namespace != GuardNames.kubeSystem:
            return allowAPISpec
        default:
            return nil
        }
    }

    /// True when `spec` means the same as the canonical spec for that policy.
    public func isCanonical(spec: JSON, name: String, namespace: String) -> Bool {
        let canonical: JSON
        switch name {
        case GuardNames.blockPolicy:
            canonical = namespace == GuardNames.kubeSystem ? normalizedKubeSystemBlock : normalizedNamespaceBlock
        case GuardNames.allowAPIPolicy: canonical = normalizedAllowAPI
        default: return false
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
