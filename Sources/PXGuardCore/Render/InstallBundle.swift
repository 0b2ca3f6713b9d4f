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
                 rules: [JSON], mutating: Bool = false) -> JSON {
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
            "reinvocationPolicy": mutating ? "Never" : nil,
        ])
    }

    var injectAnnotation: JSON? {
        // With cert-manager, its CA injector fills caBundle from the Certificate.
        caBundle == nil ? .obj(["cert-manager.io/inject-ca-from": .string("\(config.namespace)/\(config.serviceName)")]) : nil
    }

    /// The ValidatingWebhookConfiguration (R1–R5) and MutatingWebhookConfiguration (M1).
    public var webhooks: [JSON] {
        let validating: JSON = .obj([
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": .obj(["name": .string(config.serviceName), "labels": labels, "annotations": injectAnnotation]),
            "webhooks": [
                // R1: fail closed; a host-network pod admitted while the webhook is
                // down escapes the guard for its whole life.
                webhook("workloads.pxguard.io", path: "/validate", failurePolicy: "Fail", sideEffects: "None",
                        namespaceSelector: notExcluded, rules: [
                            rule(["CREATE", "UPDATE"], "", ["pods", "podtemplates", "replicationcontrollers"]),
                            rule(["CREATE", "UPDATE"], "apps", ["deployments", "replicasets", "statefulsets", "daemonsets"]),
                            rule(["CREATE", "UPDATE"], "batch", ["jobs", "cronjobs"]),
                        ]),
                // R2–R4: fail closed, and kube-system included (its block policy is
                // guarded). pxguard's own pods need no NetworkPolicy change to start.
                webhook("networkpolicies.pxguard.io", path: "/validate", failurePolicy: "Fail", sideEffects: "None",
                        namespaceSelector: nil, rules: [
                            rule(["CREATE", "UPDATE", "DELETE"], "networking.k8s.io", ["networkpolicies"]),
                        ]),
                // R5: fail closed for guarded namespaces only; exempt ones stay editable.
                webhook("namespaces.pxguard.io", path: "/validate", failurePolicy: "Fail", sideEffects: "None",
                        namespaceSelector: notExcluded, rules: [
                            rule(["UPDATE"], "", ["namespaces"], scope: "Cluster"),
                        ]),
            ],
        ])
        let mutating: JSON = .obj([
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": .obj(["name": .string(config.serviceName), "labels": labels, "annotations": injectAnnotation]),
            "webhooks": [
                // M1: fail open; the provisioner's resync labels and provisions any
                // namespace created while the webhook was down.
                webhook("namespaces.mutate.pxguard.io", path: "/mutate", failurePolicy: "Ignore", sideEffects: "NoneOnDryRun",
                        namespaceSelector: notExcluded, rules: [rule(["CREATE"], "", ["namespaces"], scope: "Cluster")],
                        mutating: true),
            ],
        ])
        return [validating, mutating]
    }

    /// The guard policies: kube-system's, and the pair for `namespace`.
    public func policies(namespace: String) -> [JSON] {
        let guardPolicies = GuardPolicies(config: config)
        var out = [guardPolicies.policy(name: GuardNames.blockPolicy, namespace: GuardNames.kubeSystem)!]
        if namespace != GuardNames.kubeSystem {
            out += GuardPolicies.names(in: namespace).compactMap { guardPolicies.policy(name: $0, namespace: namespace) }
        }
        return out
    }

    /// Everything needed to install pxguard.
    public func all(namespace: String, configYAML: String, firewallScript: String) -> [JSON] {
        let name = config.serviceName
        let ns: JSON = .obj(["apiVersion": "v1", "kind": "Namespace", "metadata": .obj([
            "name": .string(config.namespace),
            "labels": .obj(["app.kubernetes.io/name": "pxguard", "pod-security.kubernetes.io/enforce": "restricted"]),
        ])])
        let serviceAccount: JSON = .obj(["apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(name),
                                         "automountServiceAccountToken": true])
        // Least privilege: read and label namespaces, keep the guard policies (no
        // delete), and hold one named Lease in its own namespace.
        let clusterRole: JSON = .obj([
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": metadata(name, namespaced: false),
            "rules": [
                .obj(["apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch", "patch"]]),
                .obj(["apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
                      "verbs": ["get", "list", "watch", "create", "update", "patch"]]),
            ],
        ])
        let clusterBinding: JSON = .obj([
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": metadata(name, namespaced: false),
            "roleRef": .obj(["apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": .string(name)]),
            "subjects": [.obj(["kind": "ServiceAccount", "name": .string(name), "namespace": .string(config.namespace)])],
        ])
        let role: JSON = .obj([
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": metadata(name),
            "rules": [
                .obj(["apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]]),
                .obj(["apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                      "resourceNames": [.string(GuardNames.leaseName)], "verbs": ["get", "update"]]),
            ],
        ])
        let roleBinding: JSON = .obj([
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": metadata(name),
            "roleRef": .obj(["apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": .string(name)]),
            "subjects": [.obj(["kind": "ServiceAccount", "name": .string(name), "namespace": .string(config.namespace)])],
        ])
        let configMap: JSON = .obj(["apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata("\(name)-config"),
                                    "data": .obj(["config.yaml": .string(configYAML)])])
        let firewall: JSON = .obj(["apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata("\(name)-node-firewall"),
                                   "data": .obj(["node-iptables.sh": .string(firewallScript)])])
        let probe: (String, Int) -> JSON = { path, period in
            .obj(["httpGet": .obj(["path": .string(path), "port": "https", "scheme": "HTTPS"]),
                  "periodSeconds": .int(period), "timeoutSeconds": 2, "failureThreshold": 3])
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
                        "securityContext": .obj(["runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                                                 "seccompProfile": .obj(["type": "RuntimeDefault"])]),
                        "topologySpreadConstraints": [.obj([
                            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": .obj(["matchLabels": selectorLabels]),
                        ])],
                        "containers": [.obj([
                            "name": "pxguard",
                            "image": .string(config.image),
                            "args": ["serve", "--config", "/etc/pxguard/config/config.yaml", "--cert-dir", "/etc/pxguard/certs",
                                     "--listen", "0.0.0.0:8443", "--shutdown-grace", "20"],
                            "ports": [.obj(["name": "https", "containerPort": 8443, "protocol": "TCP"])],
                            "readinessProbe": probe("/readyz", 5),
                            "livenessProbe": probe("/healthz", 10),
                            "startupProbe": probe("/healthz", 1),
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
                            .obj(["name": "certs", "secret": .obj(["secretName": .string("\(name)-tls"), "defaultMode": 0o440])]),
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
            "spec": .obj(["minAvailable": 1, "selector": .obj(["matchLabels": selectorLabels])]),
        ])
        return [ns, serviceAccount, clusterRole, clusterBinding, role, roleBinding, configMap, firewall, deployment, service, pdb]
            + webhooks + policies(namespace: namespace)
    }
}
