extension InstallBundle {
    /// The cluster-scoped backends this configuration may use: the one it names, or
    /// every candidate of discovery for `auto`.
    var candidateBackends: [GuardBackend] {
        switch config.guardBackend {
        case .auto: GuardBackend.discoveryOrder
        case .networkpolicy: []
        case let backend: [backend]
        }
    }

    /// R2/R3 for the cluster-scoped guard objects: their CREATE, UPDATE and DELETE reach
    /// `/validate` (the API server accepts rules for kinds it does not serve yet, so a
    /// CNI installed later is covered from its first object).
    var clusterGuardRules: [JSON] {
        var byGroup: [(group: String, resources: [String])] = []
        for backend in candidateBackends {
            for resource in backend.resources {
                if let i = byGroup.firstIndex(where: { $0.group == resource.group }) {
                    if !byGroup[i].resources.contains(resource.plural) { byGroup[i].resources.append(resource.plural) }
                } else {
                    byGroup.append((resource.group, [resource.plural]))
                }
            }
        }
        return byGroup.map { rule(["CREATE", "UPDATE", "DELETE"], $0.group, $0.resources, scope: "Cluster") }
    }

    /// What the provisioner needs on the cluster-scoped guard objects: read and watch
    /// them, create them (a create cannot be limited by name), and change or delete
    /// only its own by name.
    var clusterGuardPermissions: [JSON] {
        var rules: [JSON] = []
        for backend in candidateBackends {
            let objects = ClusterGuardPolicies(config: config, backend: backend)
            for resource in backend.resources {
                let names = objects.names(kind: resource.kind)
                rules.append(.obj(["apiGroups": [.string(resource.group)], "resources": [.string(resource.plural)],
                                   "verbs": ["get", "list", "watch", "create"]]))
                rules.append(.obj(["apiGroups": [.string(resource.group)], "resources": [.string(resource.plural)],
                                   "resourceNames": .array(names.map { .string($0) }), "verbs": ["update", "patch", "delete"]]))
            }
            if backend == .calico {
                // Calico authorises policies in a tier through `tier.<plural>` as well.
                let names = objects.names(kind: "GlobalNetworkPolicy")
                rules.append(.obj(["apiGroups": ["projectcalico.org"], "resources": ["tier.globalnetworkpolicies"],
                                   "verbs": ["get", "list", "watch", "create"]]))
                rules.append(.obj(["apiGroups": ["projectcalico.org"], "resources": ["tier.globalnetworkpolicies"],
                                   "resourceNames": .array(names.map { .string($0) }), "verbs": ["update", "patch", "delete"]]))
            }
        }
        // The network plugin check (SPEC: seed limitation 4) reads a few DaemonSets by name.
        rules.append(.obj(["apiGroups": ["apps"], "resources": ["daemonsets"],
                           "resourceNames": .array(Self.pluginDaemonSetNames.map { .string($0) }), "verbs": ["get"]]))
        return rules
    }

    /// Names of the DaemonSets that tell a network plugin apart (see `CNIAssessment`).
    static let pluginDaemonSetNames = ["kube-flannel-ds", "canal", "weave-net", "kube-router", "kube-network-policies"]
}
