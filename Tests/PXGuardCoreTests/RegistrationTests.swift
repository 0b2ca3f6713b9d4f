import Testing
@testable import PXGuardCore

/// The API server's side of a webhook registration: which webhooks a request is sent
/// to, by `rules` (operations, API group, resource and subresource, scope) and
/// `namespaceSelector` (the namespace's labels; for a Namespace, its own). The
/// `matchConditions` are CEL and are evaluated by scripts/check-bundle.py with an
/// independent CEL implementation.
struct APIServerRequest {
    var operation: String
    var group = ""
    var resource: String
    var subresource = ""
    /// Namespace of the object, or the Namespace's own name for cluster-scoped namespaces.
    var namespace: String
    var clusterScoped = false

    /// `kubernetes.io/metadata.name` is set by the API server on every namespace.
    var namespaceLabels: [String: String] { ["kubernetes.io/metadata.name": namespace] }

    func matches(_ rule: JSON) -> Bool {
        func has(_ key: String, _ value: String) -> Bool {
            (rule[key]?.arrayValue ?? []).contains { $0.stringValue == value || $0.stringValue == "*" }
        }
        let resourceName = subresource.isEmpty ? resource : resource + "/" + subresource
        let scope = rule["scope"]?.stringValue ?? "*"
        return has("operations", operation) && has("apiGroups", group)
            && (rule["resources"]?.arrayValue ?? []).contains { $0.stringValue == resourceName || $0.stringValue == "*"
                || (subresource.isEmpty ? false : $0.stringValue == resource + "/*") }
            && (scope == "*" || scope == (clusterScoped ? "Cluster" : "Namespaced"))
    }

    func selected(by selector: JSON?) -> Bool {
        guard let selector, case .object = selector else { return true }
        let labels = namespaceLabels
        for expression in selector["matchExpressions"]?.arrayValue ?? [] {
            let key = expression["key"]?.stringValue ?? ""
            let values = (expression["values"]?.arrayValue ?? []).compactMap(\.stringValue)
            switch expression["operator"]?.stringValue {
            case "In": if !(labels[key].map(values.contains) ?? false) { return false }
            case "NotIn": if labels[key].map(values.contains) ?? false { return false }
            case "Exists": if labels[key] == nil { return false }
            case "DoesNotExist": if labels[key] != nil { return false }
            default: return false
            }
        }
        return true
    }

    /// Names of the webhooks (validating and mutating) this request is sent to.
    func sentTo(_ registrations: [JSON]) -> [String] {
        registrations.flatMap { $0["webhooks"]?.arrayValue ?? [] }.filter { webhook in
            (webhook["rules"]?.arrayValue ?? []).contains(where: matches) && selected(by: webhook["namespaceSelector"])
        }.compactMap { $0["name"]?.stringValue }
    }
}

@Suite("Webhook registrations: each rule's requests reach pxguard")
struct RegistrationTests {
    let registrations = InstallBundle(config: .default, caBundlePEM: nil).webhooks

    func sent(_ request: APIServerRequest) -> [String] { request.sentTo(registrations) }

    @Test("R1/R6 hostNetwork and unguarded namespace: pods and every workload kind, CREATE and UPDATE, guarded namespaces only")
    func workloads() {
        for (group, resource) in [("", "pods"), ("", "podtemplates"), ("", "replicationcontrollers"), ("apps", "deployments"),
                                  ("apps", "replicasets"), ("apps", "statefulsets"), ("apps", "daemonsets"),
                                  ("batch", "jobs"), ("batch", "cronjobs")] {
            for operation in ["CREATE", "UPDATE"] {
                #expect(sent(.init(operation: operation, group: group, resource: resource, namespace: "team-a"))
                        == ["workloads.pxguard.io"], "\(operation) \(group)/\(resource)")
            }
            #expect(sent(.init(operation: "CREATE", group: group, resource: resource, namespace: "kube-system")).isEmpty)
            #expect(sent(.init(operation: "CREATE", group: group, resource: resource, namespace: "pxguard-system")).isEmpty)
        }
    }

    @Test("R2/R3/R4 guard policies and bypasses: NetworkPolicy CREATE, UPDATE, DELETE in every namespace, kube-system included")
    func networkPolicies() {
        for operation in ["CREATE", "UPDATE", "DELETE"] {
            for namespace in ["team-a", "kube-system"] {
                #expect(sent(.init(operation: operation, group: "networking.k8s.io", resource: "networkpolicies",
                                   namespace: namespace)) == ["networkpolicies.pxguard.io"], "\(operation) in \(namespace)")
            }
        }
    }

    @Test("R4 repair: the mutating webhook receives NetworkPolicy CREATE and UPDATE only in repair mode")
    func repair() {
        var config = Config.default
        let request = APIServerRequest(operation: "UPDATE", group: "networking.k8s.io", resource: "networkpolicies", namespace: "team-a")
        #expect(!request.sentTo(InstallBundle(config: config, caBundlePEM: nil).webhooks).contains("networkpolicies.mutate.pxguard.io"))
        config.ruleModes[.bypassPolicies] = .repair
        let hooks = InstallBundle(config: config, caBundlePEM: nil).webhooks
        for operation in ["CREATE", "UPDATE"] {
            var r = request
            r.operation = operation
            #expect(r.sentTo(hooks) == ["networkpolicies.pxguard.io", "networkpolicies.mutate.pxguard.io"])
        }
        var delete = request
        delete.operation = "DELETE"
        #expect(delete.sentTo(hooks) == ["networkpolicies.pxguard.io"])
        var exempt = request
        exempt.namespace = "portworx"
        #expect(exempt.sentTo(hooks) == ["networkpolicies.pxguard.io"])
    }

    @Test("R5 opt-out: Namespace UPDATE through the object, namespaces/status and namespaces/finalize")
    func optOut() {
        for subresource in ["", "status", "finalize"] {
            #expect(sent(.init(operation: "UPDATE", resource: "namespaces", subresource: subresource, namespace: "team-a",
                               clusterScoped: true)) == ["namespaces.pxguard.io"], "subresource \(subresource)")
        }
        #expect(sent(.init(operation: "UPDATE", resource: "namespaces", namespace: "portworx", clusterScoped: true)).isEmpty)
    }

    @Test("R5 exempt names: CREATE of a namespace named like an exempt one is sent; other names to R5's CREATE check and M1")
    func exemptNameClaims() throws {
        let m1 = try #require(MatchConditionTests.webhook("namespaces.mutate.pxguard.io"))
        for name in ["portworx", "kube-public", "kube-node-lease", "kube-system"] {
            // M1 has no namespaceSelector; its matchCondition leaves exempt names out.
            #expect(sent(.init(operation: "CREATE", resource: "namespaces", namespace: name, clusterScoped: true))
                    == ["namespace-names.pxguard.io", "namespaces.mutate.pxguard.io"], "\(name)")
            #expect(try MatchConditionTests.sent(m1, object: .obj(["metadata": .obj(["name": .string(name)])])) == false)
        }
        #expect(sent(.init(operation: "CREATE", resource: "namespaces", namespace: "team-a", clusterScoped: true))
                == ["namespaces.pxguard.io", "namespaces.mutate.pxguard.io"])
        let names = registrations[0]["webhooks"]?.arrayValue?.first { $0["name"]?.stringValue == "namespace-names.pxguard.io" }
        #expect(names?["matchConditions"]?.serialized.contains("system:masters") == true)
    }

    @Test("R7 external IPs: Service CREATE and UPDATE in guarded namespaces")
    func services() {
        for operation in ["CREATE", "UPDATE"] {
            #expect(sent(.init(operation: operation, resource: "services", namespace: "team-a")) == ["services.pxguard.io"])
        }
        #expect(sent(.init(operation: "DELETE", resource: "services", namespace: "team-a")).isEmpty)
        #expect(sent(.init(operation: "CREATE", resource: "services", namespace: "kube-system")).isEmpty)
    }

    @Test("R1: pods/ephemeralcontainers UPDATE (kubectl debug) is sent; R8: Endpoints and EndpointSlices CREATE and UPDATE")
    func ephemeralAndEndpoints() {
        #expect(sent(.init(operation: "UPDATE", resource: "pods", subresource: "ephemeralcontainers", namespace: "team-a"))
                == ["workloads.pxguard.io"])
        #expect(sent(.init(operation: "UPDATE", resource: "pods", subresource: "status", namespace: "team-a")).isEmpty)
        for operation in ["CREATE", "UPDATE"] {
            #expect(sent(.init(operation: operation, resource: "endpoints", namespace: "team-a")) == ["endpoints.pxguard.io"])
            #expect(sent(.init(operation: operation, group: "discovery.k8s.io", resource: "endpointslices", namespace: "team-a"))
                    == ["endpoints.pxguard.io"])
        }
        #expect(sent(.init(operation: "DELETE", resource: "endpoints", namespace: "team-a")).isEmpty)
        #expect(sent(.init(operation: "CREATE", resource: "endpoints", namespace: "kube-system")).isEmpty)
    }

    @Test("matchConditions on every webhook: exempt users and groups from the config, the cleanup identities on DELETE")
    func matchConditions() {
        var config = Config.default
        config.exemptUsers = ["break-glass", "o'brien"]
        config.exemptGroups = ["platform-admins"]
        config.ruleModes[.bypassPolicies] = .repair
        let hooks = InstallBundle(config: config, caBundlePEM: nil).webhooks.flatMap { $0["webhooks"]?.arrayValue ?? [] }
        #expect(hooks.count == 8)
        for hook in hooks {
            let conditions = hook["matchConditions"]?.arrayValue ?? []
            let expressions = conditions.compactMap { $0["expression"]?.stringValue }
            #expect(expressions.contains("!(request.userInfo.username in ['break-glass', 'o\\'brien'])"))
            #expect(expressions.contains("!(has(request.userInfo.groups) && request.userInfo.groups.exists(g, g in ['platform-admins']))"))
            #expect(expressions.contains { $0.hasPrefix("!(request.operation == 'DELETE' && ")
                && $0.contains("'system:serviceaccount:kube-system:namespace-controller'")
                && $0.contains("'system:serviceaccount:kube-system:generic-garbage-collector'")
                && $0.contains("'system:kube-controller-manager'") })
            // The server's own account is exempt from some rules only: never a blanket bypass.
            #expect(!expressions.contains { $0.contains(config.serviceAccount) })
        }
        let plain = registrations.flatMap { $0["webhooks"]?.arrayValue ?? [] }
        let twoConditions = ["namespace-names.pxguard.io", "namespaces.mutate.pxguard.io", "endpoints.pxguard.io"]
        #expect(plain.allSatisfy { ($0["matchConditions"]?.arrayValue ?? []).count == (twoConditions.contains($0["name"]?.stringValue ?? "") ? 2 : 1) })
    }
}

@Suite("Install bundle")
struct InstallBundleTests {
    func objects(_ config: Config = .default) -> [JSON] {
        InstallBundle(config: config, caBundlePEM: nil).all(namespace: "default", configYAML: "", firewallScript: "")
    }

    func find(_ kind: String, in list: [JSON]) -> [JSON] { list.filter { $0["kind"]?.stringValue == kind } }

    @Test("RBAC: update, patch and delete of NetworkPolicies only by the guard policies' names; no wildcards")
    func rbac() {
        let rules = find("ClusterRole", in: objects()).first?["rules"]?.arrayValue ?? []
        let policyRules = rules.filter { $0["resources"]?.serialized == "[\"networkpolicies\"]" }
        for rule in policyRules {
            let verbs = Set((rule["verbs"]?.arrayValue ?? []).compactMap(\.stringValue))
            if !verbs.isDisjoint(with: ["update", "patch", "delete"]) {
                #expect(rule["resourceNames"]?.serialized == "[\"block-9001-for-non-system-users\",\"allow-api\"]")
            } else {
                #expect(verbs == ["get", "list", "watch", "create"])
            }
        }
        #expect(policyRules.count == 2)
        #expect(!rules.contains { $0.serialized.contains("\"*\"") })
        let namespaces = rules.first { $0["resources"]?.serialized == "[\"namespaces\"]" }
        #expect(namespaces?["verbs"]?.serialized == "[\"get\",\"list\",\"watch\",\"patch\"]")
    }

    @Test("Deployment: versioned image pulled IfNotPresent, fsGroup for the mounted secret, linux nodes, critical-pod quota")
    func deployment() throws {
        let list = objects()
        let pod = try #require(find("Deployment", in: list).first?["spec"]?["template"]?["spec"])
        let container = try #require(pod["containers"]?.arrayValue?.first)
        #expect(container["image"]?.stringValue == "pxguard:" + BuildInfo.version)
        #expect(container["imagePullPolicy"]?.stringValue == "IfNotPresent")
        #expect(pod["securityContext"]?["fsGroup"]?.intValue == pod["securityContext"]?["runAsGroup"]?.intValue)
        #expect(pod["nodeSelector"]?["kubernetes.io/os"]?.stringValue == "linux")
        let priority = try #require(pod["priorityClassName"]?.stringValue)
        let quota = try #require(find("ResourceQuota", in: list).first)
        #expect(quota["spec"]?["scopeSelector"]?.serialized.contains("\"" + priority + "\"") == true)
        // The quota must exist before the pods it admits.
        let index = { (kind: String) in list.firstIndex { $0["kind"]?.stringValue == kind } ?? -1 }
        #expect(index("ResourceQuota") < index("Deployment"))
    }

    @Test("without a CA bundle the registrations carry neither caBundle nor a cert-manager annotation (the overlay adds it)")
    func noHalfConfiguration() {
        for registration in InstallBundle(config: .default, caBundlePEM: nil).webhooks {
            #expect(registration["metadata"]?["annotations"] == nil)
            #expect(!registration.serialized.contains("caBundle"))
        }
    }
}
