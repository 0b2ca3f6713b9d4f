/// Renders the webhook registrations and the complete install bundle from a
/// configuration. Every choice here is explained in the README ("Deploy").
public struct InstallBundle: Sendable {
    public let config: Config
    /// Base64 of the PEM CA bundle for `clientConfig.caBundle`, when known.
    public let caBundle: String?

    public init(config: Config, caBundlePEM: [UInt8]?) {
        self.config = config
        caBundle = caBundlePEM.map { Base64.encode($0) }
    }

    var labels: JSON { .obj(["app.kubernetes.io/name": "pxguard", GuardNames.managedByKey: "pxguard"]) }
    var selectorLabels: JSON { .obj(["app.kubernetes.io/name": "pxguard"]) }

    func metadata(_ name: String, namespaced: Bool = true, annotations: JSON? = nil) -> JSON {
        .obj(["name": .string(name), "namespace": namespaced ? .string(config.namespace) : nil,
              "labels": labels, "annotations": annotations])
    }

    /// Namespaces the webhooks never intercept: the exempt ones, and always the
    /// server's own namespace and kube-system (a webhook that must approve its own
    /// pods' replacements can deadlock the cluster).
    var excludedNamespaces: [String] {
        var names = config.exemptNamespaces
        for n in [GuardNames.kubeSystem, config.namespace] where !names.contains(n) { names.append(n) }
        return names
    }

    var notExcluded: JSON {
        .obj(["matchExpressions": [.obj([
            "key": "kubernetes.io/metadata.name", "operator": "NotIn",
            "values": .array(excludedNamespaces.map { .string($0) }),
        ])]])
    }

    func clientConfig(path: String) -> JSON {
        .obj([
            "service": .obj(["namespace": .string(config.namespace), "name": .string(config.serviceName),
                             "path": .string(path), "port": 443]),
            "caBundle": caBundle.map { .string($0) },
        ])
    }

    func rule(_ operations: [String], _ group: String, _ resources: [String], scope: String = "Namespaced") -> JSON {
        .obj(["operations": .array(operations.map { .string($0) }), "apiGroups": [.string(group)], "apiVersions": ["*"],
              "resources": .array(resources.map { .string($0) }), "scope": .string(scope)])
    }

    func webhook(_ name: String, path: String, failurePolicy: String, sideEffects: String, namespaceSelector: JSON?,
                 rules: [JSON], mutating: Bool = false, extraConditions: [JSON] = []) -> JSON {
        .obj([
            "name": .string(name),
            "admissionReviewVersions": ["v1", "v1beta1"],
            "clientConfig": clientConfig(path: path),
            "failurePolicy": .string(failurePolicy),
            "matchPolicy": "Equivalent",
            "sideEffects": .string(sideEffects),
            "timeoutSeconds": 5,
            "namespaceSelector": namespaceSelector,
            "rules": .array(rules),
            "matchConditions": .array(matchConditions + extraConditions),
            "reinvocationPolicy": mutating ? "Never" : nil,
        ])
    }

    /// Identities that empty a namespace being deleted; their DELETEs are always
    /// allowed (SPEC "Admission rules"), so the API server need not ask. The
    /// server's own list, so that the two cannot drift.
    public static var cleanupIdentities: [String] { AdmissionPolicy.cleanupIdentities }

    /// A CEL string literal: single quotes, with backslash and quote escaped.
    static func cel(_ text: String) -> String {
        var out = "'"
        for c in text.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "'": out += "\\'"
            case _ where c.value < 0x20 || c.value == 0x7F:
                // Control characters as CEL \u escapes, so a name cannot end the literal's line.
                let hex = String(c.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "'"
    }

    static func cel(_ list: [String]) -> String { "[" + list.map { cel($0) }.joined(separator: ", ") + "]" }

    static func condition(_ name: String, _ expression: String) -> JSON {
        .obj(["name": .string(name), "expression": .string(expression)])
    }

    /// `matchConditions` every webhook carries: requests the server would allow
    /// anyway (exempt users and groups, cleanup DELETEs) are left to the API server, so
    /// break-glass and namespace cleanup work while pxguard is unreachable. Plain CEL
    /// over `request.userInfo` and `request.operation` (no Kubernetes extension
    /// functions), so any CEL evaluator can check them. The server keeps its own
    /// exemption checks for API servers older than 1.30.
    var matchConditions: [JSON] {
        var out: [JSON] = []
        if !config.exemptUsers.isEmpty {
            out.append(Self.condition("not-exempt-user", "!(request.userInfo.username in \(Self.cel(config.exemptUsers)))"))
        }
        if !config.exemptGroups.isEmpty {
            out.append(Self.condition("not-exempt-group", "!(has(request.userInfo.groups) && "
                + "request.userInfo.groups.exists(g, g in \(Self.cel(config.exemptGroups))))"))
        }
        out.append(Self.condition("not-namespace-cleanup", "!(request.operation == 'DELETE' && "
            + "request.userInfo.username in \(Self.cel(Self.cleanupIdentities)))"))
        return out
    }

    /// Exempt namespace names that do not exist yet must not be claimable (R5):
    /// CREATE of a namespace with such a name goes to the webhook. The server's own
    /// namespace is left out: it exists while pxguard serves, and listing it would
    /// block reinstalling after an uninstall that left the registrations behind.
    var claimableNames: [String] {
        var names: [String] = []
        for name in config.exemptNamespaces + [GuardNames.kubeSystem] where name != config.namespace && !names.contains(name) {
            names.append(name)
        }
        return names
    }

    /// M1's `matchCondition` in place of a `namespaceSelector`: true for every
    /// namespace but the excluded names, and true (never an error, which would skip
    /// the webhook under `failurePolicy: Ignore`) when the name is not given yet.
    var namespaceNotExcluded: JSON {
        Self.condition("not-excluded-namespace", "!has(object.metadata.name) || object.metadata.name == '' || "
            + "!(object.metadata.name in \(Self.cel(excludedNamespaces)))")
    }

    var webhookLabels: JSON {
        .obj(["app.kubernetes.io/name": "pxguard", GuardNames.managedByKey: "pxguard", "app.kubernetes.io/component": "webhook"])
    }

    /// The ValidatingWebhookConfiguration (R1–R8) and MutatingWebhookConfiguration
    /// (M1, and R4's repair when `bypassPolicies` is in `repair` mode). Without a CA
    /// bundle the registrations carry none: `scripts/install.sh` renders them with
    /// `--ca-bundle`, and the cert-manager overlay has its CA injector fill it.
    public var webhooks: [JSON] {
        var validatingHooks: [JSON] = [
            // R1 and R6: fail closed; a host-network pod admitted while the webhook is
            // down escapes the guard for its whole life.
            webhook("workloads.pxguard.io", path: "/validate", failurePolicy: "Fail", sideEffects: "None",
                    namespaceSelector: notExcluded, rules: [
                        rule(["CREATE", "UPDATE"], "", ["pods", "podtemplates", "replicationcontrollers"]),
                        // R1: kubectl debug adds containers to a running (host-network) pod.
                        rule(["UPDATE"], "", ["pods/ephemeralcontainers"]),
                        rule(["CREATE", "UPDATE"], "apps", ["deployments", "replicasets", "statefulsets", "daemonsets"]),
                        rule(["CREATE", "UPDATE"], "batch", ["jobs", "cronjobs"]),
                    ]),
            // R2–R4: fail closed, and kube-system included (its block policy is
            // guarded). pxguard's own pods need no NetworkPolicy change to start.
            webhook("networkpolicies.pxguard.io", path: "/validate", failurePolicy: "Fail", sideEffects: "None",
                    namespaceSelector: nil, rules: [
                        rule(["CREATE", "UPDATE", "DELETE"], "networking.k8s.io", ["networkpolicies"]),
                    ] + clusterGuardRules),
            // R5: label changes through any subresource (status and finalize updates
            // save labels too), and CREATE judged as stored: whatever skipped M1 is
            // denied here. Guarded namespaces only, exempt ones stay editable. A
            // validating webhook may select on kubernetes.io/metadata.name: it sees
            // the label as stored, generated names included.
            webhook("namespaces.pxguard.io", path: "/validate", failurePolicy: "Fail", sideEffects: "None",
                    namespaceSelector: notExcluded, rules: [
                        rule(["CREATE"], "", ["namespaces"], scope: "Cluster"),
                        rule(["UPDATE"], "", ["namespaces", "namespaces/status", "namespaces/finalize"], scope: "Cluster"),
                    ]),
            // R7: Services whose externalIPs would capture node addresses.
            webhook("services.pxguard.io", path: "/validate", failurePolicy: "Fail", sideEffects: "None",
                    namespaceSelector: notExcluded, rules: [rule(["CREATE", "UPDATE"], "", ["services"])]),
            // R8: hand-written endpoints on node addresses; the endpoint controllers'
            // writes stay at the API server (the server's own list).
            webhook("endpoints.pxguard.io", path: "/validate", failurePolicy: "Fail", sideEffects: "None",
                    namespaceSelector: notExcluded, rules: [
                        rule(["CREATE", "UPDATE"], "", ["endpoints"]),
                        rule(["CREATE", "UPDATE"], "discovery.k8s.io", ["endpointslices"]),
                    ],
                    extraConditions: [Self.condition("not-endpoint-controller",
                        "!(request.userInfo.username in \(Self.cel(AdmissionPolicy.endpointControllers)))")]),
        ]
        let names = claimableNames
        if !names.isEmpty {
            // R5: claims of exempt names. A namespace's own metadata.name label matches
            // on CREATE, so only these names reach the webhook; system:masters may.
            validatingHooks.append(webhook(
                "namespace-names.pxguard.io", path: "/validate", failurePolicy: "Fail", sideEffects: "None",
                namespaceSelector: .obj(["matchExpressions": [.obj([
                    "key": "kubernetes.io/metadata.name", "operator": "In", "values": .array(names.map { .string($0) }),
                ])]]),
                rules: [rule(["CREATE"], "", ["namespaces"], scope: "Cluster")],
                extraConditions: [Self.condition("not-system-masters", "!(has(request.userInfo.groups) && "
                    + "'system:masters' in request.userInfo.groups)")]))
        }
        let validating: JSON = .obj([
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": .obj(["name": .string(config.serviceName), "labels": webhookLabels]),
            "webhooks": .array(validatingHooks),
        ])
        var mutatingHooks: [JSON] = [
            // M1: fail open; the provisioner labels and provisions any namespace
            // created while the webhook was down. No namespaceSelector: on a
            // generateName CREATE the API server sets kubernetes.io/metadata.name
            // only after the mutating webhooks ran, so the requester controls it.
            webhook("namespaces.mutate.pxguard.io", path: "/mutate", failurePolicy: "Ignore", sideEffects: "NoneOnDryRun",
                    namespaceSelector: nil, rules: [rule(["CREATE"], "", ["namespaces"], scope: "Cluster")],
                    mutating: true, extraConditions: [namespaceNotExcluded]),
        ]
        if config.mode(for: .bypassPolicies) == .repair {
            // R4 repair: fail open, since /validate still denies an unrepaired bypass.
            mutatingHooks.append(webhook(
                "networkpolicies.mutate.pxguard.io", path: "/mutate", failurePolicy: "Ignore", sideEffects: "None",
                namespaceSelector: notExcluded,
                rules: [rule(["CREATE", "UPDATE"], "networking.k8s.io", ["networkpolicies"])], mutating: true))
        }
        let mutating: JSON = .obj([
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": .obj(["name": .string(config.serviceName), "labels": webhookLabels]),
            "webhooks": .array(mutatingHooks),
        ])
        return [validating, mutating]
    }

    /// The guard policies: kube-system's, and the pair for `namespace`.
    public func policies(namespace: String) -> [JSON] {
        // A cluster-scoped backend's few objects replace every namespace's policies.
        if config.activeBackend.isClusterScoped {
            let objects = ClusterGuardPolicies(config: config)
            return objects.pending ? [] : objects.objects
        }
        // Without node addresses (`auto`, none known) a guard policy would block nothing.
        if config.nodeAddressesPending { return [] }
        let guardPolicies = GuardPolicies(config: config)
        let kubeSystem = guardPolicies.names(for: GuardNames.kubeSystem).map { (GuardNames.kubeSystem, $0) }
        let own = namespace == GuardNames.kubeSystem ? [] : [guardPolicies.blockName, guardPolicies.allowAPIName].map { (namespace, $0) }
        return (kubeSystem + own).compactMap { guardPolicies.policy(name: $1, namespace: $0) }
    }

    /// Managed registrations (`manageWebhooks`): read and update pxguard's own two
    /// registrations, by name; never create (a create cannot be limited by name).
    var managedRegistrationRules: [JSON] {
        guard config.manageWebhooks else { return [] }
        return [.obj(["apiGroups": ["admissionregistration.k8s.io"],
                      "resources": ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"],
                      "resourceNames": [.string(config.serviceName)], "verbs": ["get", "update"]])]
    }

    /// Self-managed certificates: the Secret `<serviceName>-tls` in pxguard's namespace,
    /// read and updated by name; created once when missing (not limitable by name, and
    /// confined to the namespace by the Role).
    var selfManagedCertificateRules: [JSON] {
        guard config.certificates.selfManaged else { return [] }
        return [.obj(["apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]]),
                .obj(["apiGroups": [""], "resources": ["secrets"], "resourceNames": [.string("\(config.serviceName)-tls")],
                      "verbs": ["get", "update"]])]
    }

    /// The audit (`audit.enabled`): list and watch what it judges (Pods only with
    /// host network, by field selector, but RBAC cannot say so), create Events and
    /// patch them (aggregation), find which report CRD is served (discovery needs no
    /// RBAC), and write its report objects in either format (whichever is served).
    /// `audit.repairBypassPolicies` adds get and patch on every NetworkPolicy (the
    /// repair rewrites tenants' bypass policies); nothing else is ever changed.
    var auditRules: [JSON] {
        guard config.audit.enabled else { return [] }
        var rules: [JSON] = [
            .obj(["apiGroups": [""], "resources": ["pods", "services", "endpoints"], "verbs": ["list", "watch"]]),
            .obj(["apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]]),
        ]
        // Events (the audit's findings) are granted with the provisioner's own Events, always.
        for format in AuditReportFormat.allCases {
            rules.append(.obj(["apiGroups": [.string(format.group)], "resources": [.string(format.resource)],
                               "verbs": ["get", "list", "create", "update", "delete"]]))
        }
        if config.audit.repairBypassPolicies {
            rules.append(.obj(["apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["patch"]]))
        }
        return rules
    }

    /// Everything needed to install pxguard.
    /// `firewallScript` nil (node addresses unknown: `nodeCIDRs: auto` without
    /// `--nodes`) leaves the node firewall ConfigMap out; the guard policies are left
    /// out then too (`policies` is empty), and the provisioner writes them.
    public func all(namespace: String, configYAML: String, firewallScript: String?) -> [JSON] {
        let name = config.serviceName
        let ns: JSON = .obj(["apiVersion": "v1", "kind": "Namespace", "metadata": .obj([
            "name": .string(config.namespace),
            "labels": .obj(["app.kubernetes.io/name": "pxguard", "pod-security.kubernetes.io/enforce": "restricted"]),
        ])])
        // The Priority admission plugin admits system-cluster-critical pods outside
        // kube-system only where a quota covers that class (as Gatekeeper ships).
        let quota: JSON = .obj([
            "apiVersion": "v1", "kind": "ResourceQuota", "metadata": metadata("\(name)-critical-pods"),
            "spec": .obj([
                "hard": .obj(["pods": "100"]),
                "scopeSelector": .obj(["matchExpressions": [.obj([
                    "operator": "In", "scopeName": "PriorityClass", "values": ["system-cluster-critical"],
                ])]]),
            ]),
        ])
        let serviceAccount: JSON = .obj(["apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(name),
                                         "automountServiceAccountToken": true])
        // Least privilege: read and label namespaces, create NetworkPolicies (a
        // create cannot be limited by name), change or delete only the two guard
        // policies, and hold one named Lease in its own namespace.
        var clusterRules: [JSON] = [
            .obj(["apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch", "patch"]]),
            .obj(["apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
                  "verbs": ["get", "list", "watch", "create"]]),
            .obj(["apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
                  "resourceNames": [.string(config.guardPolicyNames.block), .string(config.guardPolicyNames.allowAPI)],
                  "verbs": ["update", "patch", "delete"]]),
            // Events for every change the provisioner makes (takeovers, Pod Security raises).
            .obj(["apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]]),
        ]
        // nodeCIDRs: auto watches Nodes for their addresses.
        if config.nodeCIDRsAuto { clusterRules.append(.obj(["apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"]])) }
        // Before raising a namespace's Pod Security level, its running Pods are read.
        // (The audit's list and watch of Pods covers it when the audit is on.)
        if config.podSecurity != .none && !config.audit.enabled {
            clusterRules.append(.obj(["apiGroups": [""], "resources": ["pods"], "verbs": ["list"]]))
        }
        clusterRules += managedRegistrationRules
        clusterRules += auditRules
        let clusterRole: JSON = .obj([
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": metadata(name, namespaced: false),
            "rules": .array(clusterRules + clusterGuardPermissions),
        ])
        let clusterBinding: JSON = .obj([
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": metadata(name, namespaced: false),
            "roleRef": .obj(["apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": .string(name)]),
            "subjects": [.obj(["kind": "ServiceAccount", "name": .string(name), "namespace": .string(config.namespace)])],
        ])
        let role: JSON = .obj([
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": metadata(name),
            "rules": .array([
                .obj(["apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]]),
                .obj(["apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                      "resourceNames": [.string(GuardNames.leaseName)], "verbs": ["get", "update"]]),
            ] + selfManagedCertificateRules),
        ])
        let roleBinding: JSON = .obj([
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": metadata(name),
            "roleRef": .obj(["apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": .string(name)]),
            "subjects": [.obj(["kind": "ServiceAccount", "name": .string(name), "namespace": .string(config.namespace)])],
        ])
        let configMap: JSON = .obj(["apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata("\(name)-config"),
                                    "data": .obj(["config.yaml": .string(configYAML)])])
        let firewall: JSON = .obj(["apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata("\(name)-node-firewall"),
                                   "data": .obj(["node-iptables.sh": .string(firewallScript ?? "")])])
        // The kubelet probes the pod IP over HTTPS without verifying the certificate;
        // the named port resolves to the container's 8443.
        let probe: (String, Int, Int) -> JSON = { path, period, failures in
            .obj(["httpGet": .obj(["path": .string(path), "port": "https", "scheme": "HTTPS"]),
                  "periodSeconds": .int(period), "timeoutSeconds": 2, "failureThreshold": .int(failures)])
        }
        let deployment: JSON = .obj([
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata(name),
            "spec": .obj([
                "replicas": .int(config.replicas),
                "selector": .obj(["matchLabels": selectorLabels]),
                "strategy": .obj(["type": "RollingUpdate", "rollingUpdate": .obj(["maxUnavailable": 0, "maxSurge": 1])]),
                "template": .obj([
                    "metadata": .obj(["labels": labels]),
                    "spec": .obj([
                        "serviceAccountName": .string(name),
                        "priorityClassName": "system-cluster-critical",
                        "terminationGracePeriodSeconds": 30,
                        // fsGroup: the kubelet writes secret files as root; with an fsGroup
                        // they are group-owned by it, so user 65532 can read the key that
                        // defaultMode 0440 keeps from everyone else.
                        "securityContext": .obj(["runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                                                 "fsGroup": 65532,
                                                 "seccompProfile": .obj(["type": "RuntimeDefault"])]),
                        "nodeSelector": .obj(["kubernetes.io/os": "linux"]),
                        "topologySpreadConstraints": [.obj([
                            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": .obj(["matchLabels": selectorLabels]),
                        ])],
                        "containers": [.obj([
                            "name": "pxguard",
                            "image": .string(config.image),
                            // A versioned tag: a loaded or cached image is used as is.
                            "imagePullPolicy": "IfNotPresent",
                            "args": ["serve", "--config", "/etc/pxguard/config/config.yaml", "--cert-dir", "/etc/pxguard/certs",
                                     "--listen", "0.0.0.0:8443", "--shutdown-delay", "5", "--shutdown-grace", "20"],
                            "ports": [.obj(["name": "https", "containerPort": 8443, "protocol": "TCP"])],
                            "readinessProbe": probe("/readyz", 5, 3),
                            "livenessProbe": probe("/healthz", 10, 3),
                            // Up to 30 s to load config and certificates before liveness counts.
                            "startupProbe": probe("/healthz", 1, 30),
                            "resources": .obj(["requests": .obj(["cpu": "100m", "memory": "32Mi"]),
                                               "limits": .obj(["memory": "128Mi"])]),
                            "securityContext": .obj(["allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                                     "capabilities": .obj(["drop": ["ALL"]])]),
                            "volumeMounts": [
                                .obj(["name": "certs", "mountPath": "/etc/pxguard/certs", "readOnly": true]),
                                .obj(["name": "config", "mountPath": "/etc/pxguard/config", "readOnly": true]),
                            ],
                        ])],
                        "volumes": [
                            // Optional when pxguard makes the Secret itself: the pods start, the first
                            // one creates it, and the kubelet projects it into the volume.
                            .obj(["name": "certs", "secret": .obj(["secretName": .string("\(name)-tls"), "defaultMode": 0o440,
                                                                  "optional": config.certificates.selfManaged ? true : nil])]),
                            .obj(["name": "config", "configMap": .obj(["name": .string("\(name)-config")])]),
                        ],
                    ]),
                ]),
            ]),
        ])
        let service: JSON = .obj([
            "apiVersion": "v1", "kind": "Service", "metadata": metadata(name),
            "spec": .obj(["selector": selectorLabels,
                          "ports": [.obj(["name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"])]]),
        ])
        let pdb: JSON = .obj([
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": metadata(name),
            // With one replica, minAvailable: 1 would block every node drain: allow the one pod to move.
            "spec": config.replicas > 1 ? .obj(["minAvailable": 1, "selector": .obj(["matchLabels": selectorLabels])])
                : .obj(["maxUnavailable": 1, "selector": .obj(["matchLabels": selectorLabels])]),
        ])
        var objects = [ns, quota, serviceAccount, clusterRole, clusterBinding, role, roleBinding, configMap]
        if firewallScript != nil { objects.append(firewall) }
        objects += [deployment, service, pdb]
        if !config.apiServerCIDRs.isEmpty {
            // Only the API servers may open connections to the webhook port. The
            // kubelet's probes come from the pod's own node, which common CNIs
            // (Calico, Cilium) always admit; a Prometheus scraping /metrics needs a
            // policy of its own.
            objects.append(.obj([
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": .obj([
                    // Not labelled managed-by: the provisioner's watch of guard policies ignores it.
                    "name": .string("\(name)-webhook-ingress"), "namespace": .string(config.namespace),
                    "labels": .obj(["app.kubernetes.io/name": "pxguard"]),
                ]),
                "spec": .obj([
                    "podSelector": .obj(["matchLabels": selectorLabels]),
                    "policyTypes": ["Ingress"],
                    "ingress": [.obj([
                        "from": .array(config.apiServerCIDRs.map { .obj(["ipBlock": .obj(["cidr": .string($0.description)])]) }),
                        "ports": [.obj(["protocol": "TCP", "port": 8443])],
                    ])],
                ]),
            ]))
        }
        return objects + webhooks + policies(namespace: namespace)
    }
}
