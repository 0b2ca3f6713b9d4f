import Testing
@testable import PXGuardCore

/// SPEC "Guard backends": with a cluster-scoped backend the protected set is
/// unreachable from every guarded pod whatever NetworkPolicies tenants add, and
/// nothing else a tenant allowed or denied changes. Checked against the independent
/// `BackendEvaluator` over random tenant policies, pods and destinations.
@Suite("Guard backends: Deny before NetworkPolicy, nothing widened")
struct GuardBackendTests {
    typealias D = EgressEvaluator.Destination
    typealias Source = BackendEvaluator.Source

    static let guarded = ["team-a", "team-b"]
    static let podCIDR = CIDR("10.244.0.0/16")!

    /// Pods that leave packets: tenants (one wearing a system-component label, which
    /// must exempt nothing outside kube-system), kube-system's add-ons and system
    /// components, and a pod in an exempt namespace.
    static let sources: [Source] = [
        Source(namespace: "team-a", labels: ["app": "db"], namespaceLabels: ["team": "a"]),
        Source(namespace: "team-a", labels: ["app": "web"], namespaceLabels: ["team": "a"]),
        Source(namespace: "team-b", labels: ["component": "stork"], namespaceLabels: ["team": "b"]),
        Source(namespace: "team-b", labels: ["tier": "control-plane", "app": "db"], namespaceLabels: ["team": "b"]),
        Source(namespace: "kube-system", labels: ["k8s-app": "kube-dns"]),
        Source(namespace: "kube-system", labels: ["component": "stork"]),
        Source(namespace: "kube-system", labels: ["tier": "control-plane", "component": "kube-apiserver"]),
        Source(namespace: "portworx", labels: ["name": "portworx"]),
    ]

    /// Whether the guard must cut `source` off the protected set.
    static func isGuarded(_ source: Source, _ config: Config) -> Bool {
        if source.namespace == GuardNames.kubeSystem {
            return !GuardPolicies.systemComponentSelectors.contains { source.labels[$0.key] == $0.value }
        }
        return config.isGuarded(namespace: source.namespace)
    }

    static let configs: [(String, Config)] = {
        var dual = Config.default
        dual.nodeCIDRs = [CIDR("70.0.0.0/16")!, CIDR("fd00:70::/64")!]
        dual.protectedPorts = [PortRange("9001-9022")!, PortRange("UDP/9002")!, PortRange("SCTP/9001-9005")!, PortRange("UDP/8000")!]
        return [("seed values", .default), ("dual stack, three protocols", dual)]
    }()

    /// A random tenant NetworkPolicy: selectors, isolation with or without rules,
    /// ipBlocks over and around the node subnets, pod and namespace peers, ports on
    /// and off the protected ranges and the API server port.
    static func randomPolicy(_ g: inout SeededGenerator, config: Config) -> JSON {
        func cidr() -> JSON {
            let node = config.nodeCIDRs.randomElement(using: &g)!
            switch g.next(6) {
            case 0: return .obj(["cidr": .string(node.description)])
            case 1: return .obj(["cidr": "0.0.0.0/0", "except": [.string(node.description)]])
            case 2: return .obj(["cidr": "0.0.0.0/0"])
            case 3: return .obj(["cidr": "10.0.0.0/8"])
            case 4: return .obj(["cidr": "::/0"])
            default: return .obj(["cidr": .string("\(node.description.split(separator: "/")[0])/\(node.family == .v4 ? 32 : 128)")])
            }
        }
        func peer() -> JSON {
            switch g.next(4) {
            case 0: return .obj(["podSelector": .obj(["matchLabels": .obj(["app": g.next(2) == 0 ? "db" : "web"])])])
            case 1: return .obj(["namespaceSelector": .obj(["matchLabels": .obj(["team": "b"])])])
            default: return .obj(["ipBlock": cidr()])
            }
        }
        func port() -> JSON {
            let proto: JSON = ["TCP", "UDP", "SCTP"][g.next(3)]
            switch g.next(5) {
            case 0: return .obj(["protocol": proto, "port": .int(config.apiServerPort)])
            case 1: return .obj(["protocol": proto, "port": 9001, "endPort": 9010])
            case 2: return .obj(["protocol": proto])
            case 3: return .obj(["protocol": proto, "port": 5432])
            default: return .obj(["protocol": proto, "port": .int(1 + g.next(65535))])
            }
        }
        var rules: [JSON] = []
        for _ in 0..<g.next(4) {
            var rule: [JSON.Member] = []
            if g.next(4) != 0 { rule.append(.init("to", .array((0..<(1 + g.next(2))).map { _ in peer() }))) }
            if g.next(3) != 0 { rule.append(.init("ports", .array((0..<(1 + g.next(2))).map { _ in port() }))) }
            rules.append(.object(rule))
        }
        let selector: JSON = g.next(3) == 0 ? .object([]) : .obj(["matchLabels": .obj(["app": g.next(2) == 0 ? "db" : "web"])])
        let types: JSON = g.next(5) == 0 ? ["Ingress"] : ["Egress"]
        return .obj(["podSelector": selector, "policyTypes": types, "egress": .array(rules)])
    }

    static func destinations(_ config: Config, _ g: inout SeededGenerator) -> [D] {
        var sampler = DestinationSampler(config: config, seed: g.next())
        let addresses = sampler.addresses(random: 3)
        let ports = sampler.ports(random: 3, extra: [config.apiServerPort, 5432, 53])
        var out: [D] = []
        for (family, address) in addresses {
            for port in ports {
                for proto in TransportProtocol.allCases { out.append(D(family: family, address: address, proto: proto, port: port)) }
            }
        }
        // Pods as destinations, for the selector peers.
        let pod = EgressEvaluator.Pod(namespace: "team-b", labels: ["app": "db"], namespaceLabels: ["team": "b"])
        for port in [5432, 9001, config.apiServerPort] {
            out.append(D(family: .v4, address: podCIDR.range.lower + 7, proto: .tcp, port: port, pod: pod))
        }
        return out
    }

    @Test("the protected set is unreachable from every guarded pod, and nothing else changes",
          arguments: GuardBackend.discoveryOrder.map(\.rawValue), [0, 1])
    func denyWithoutWidening(_ backendName: String, _ configIndex: Int) throws {
        let backend = try #require(GuardBackend(rawValue: backendName))
        let config = Self.configs[configIndex].1
        let objects = ClusterGuardPolicies(config: config, backend: backend).objects
        let protected = ProtectedSet(config: config)
        var g = SeededGenerator(seed: 0x9001 &+ UInt64(configIndex) &* 31 &+ UInt64(backendName.utf8.count))
        var checked = 0, cut = 0
        for _ in 0..<8 {
            // A random cluster: up to four tenant policies per namespace, kube-system's too.
            var policies: [(namespace: String, spec: JSON)] = []
            for namespace in Self.guarded + ["kube-system", "portworx"] {
                for _ in 0..<g.next(4) { policies.append((namespace, Self.randomPolicy(&g, config: config))) }
            }
            let model = BackendEvaluator(networkPolicies: policies, nodeCIDRs: config.nodeCIDRs)
            for d in Self.destinations(config, &g) {
                for source in Self.sources {
                    let tenantsSay = model.networkPolicyAllows(source, d)
                    let mustCut = Self.isGuarded(source, config) && d.pod == nil && protected.contains(d)
                    let actual: Bool
                    switch backend {
                    case .adminnetworkpolicy: actual = model.anpAllows(objects, source, d)
                    case .calico: actual = model.calicoAllows(objects, source, d)
                    default: actual = model.ciliumAllows(objects, source, d)
                    }
                    if actual != (tenantsSay && !mustCut) {
                        Issue.record("\(backend): \(source) -> \(d): got \(actual), tenants say \(tenantsSay), protected \(mustCut)\npolicies: \(policies.map { "\($0.namespace): \($0.spec.serialized)" })")
                        return
                    }
                    checked += 1
                    if mustCut && tenantsSay { cut += 1 }
                }
            }
        }
        // The sample must have exercised both halves: paths the guard cut, paths it left.
        #expect(checked > 5_000, "\(checked)")
        #expect(cut > 50, "\(cut)")
    }

    /// The oracle must be able to fail: each object broken in a way a careless renderer
    /// would, and the property no longer holds.
    @Test("a guard that is wrong in each of these ways is caught", arguments: [
        "cilium without enableDefaultDeny", "calico without the Pass", "anp with kube-system's selector on every namespace",
        "calico's Pass first", "calico with an empty nets list",
    ])
    func oracleCatchesBrokenGuards(_ label: String) throws {
        let config = Config.default
        var objects: [JSON]
        switch label {
        case "cilium without enableDefaultDeny":
            objects = ClusterGuardPolicies(config: config, backend: .cilium).objects.map { $0.setting("spec", $0["spec"]!.setting("enableDefaultDeny", .null)) }
        case "calico without the Pass":
            // And the Tier left at the API server's default action (Deny).
            objects = ClusterGuardPolicies(config: config, backend: .calico).objects.map { o in
                guard let egress = o["spec"]?["egress"]?.arrayValue else { return o.setting("spec", o["spec"]!.setting("defaultAction", .null)) }
                return o.setting("spec", o["spec"]!.setting("egress", .array(egress.filter { $0["action"] != "Pass" })))
            }
        case "calico with an empty nets list":
            // What nodeCIDRs: auto rendered before any node address was known: Calico reads
            // an empty list as any destination, so the ports were denied everywhere.
            var pending = config
            pending.nodeCIDRs = []
            objects = ClusterGuardPolicies(config: pending, backend: .calico).objects
        case "calico's Pass first":
            objects = ClusterGuardPolicies(config: config, backend: .calico).objects.map { o in
                guard let egress = o["spec"]?["egress"]?.arrayValue else { return o }
                return o.setting("spec", o["spec"]!.setting("egress", .array(egress.reversed())))
            }
        default:
            // Selecting by the seed's pod labels in every namespace: a tenant labels a pod stork.
            objects = ClusterGuardPolicies(config: config, backend: .adminnetworkpolicy).objects.map { o in
                guard o["metadata"]?["name"]?.stringValue == GuardNames.clusterBlockKubeSystem else { return o }
                let subject = o["spec"]!["subject"]!
                return o.setting("spec", o["spec"]!.setting("subject", .obj(["pods": subject["pods"]!.setting("namespaceSelector", .object([]))])))
            }.filter { $0["metadata"]?["name"]?.stringValue != GuardNames.clusterBlock }
        }
        let model = BackendEvaluator(networkPolicies: [], nodeCIDRs: config.nodeCIDRs)
        let protected = ProtectedSet(config: config)
        var g = SeededGenerator(seed: 7)
        var broken = false
        for d in Self.destinations(config, &g) {
            for source in Self.sources {
                let expected = !(Self.isGuarded(source, config) && d.pod == nil && protected.contains(d))
                let actual = label.hasPrefix("cilium") ? model.ciliumAllows(objects, source, d)
                    : label.hasPrefix("calico") ? model.calicoAllows(objects, source, d) : model.anpAllows(objects, source, d)
                if actual != expected { broken = true }
            }
        }
        #expect(broken, "the oracle did not notice: \(label)")
    }

    @Test("networkpolicy: the block policy widens a tenant's restricted pods (why the other backends exist)")
    func networkPolicyWidens() {
        let config = Config.default
        let restrict: JSON = .obj([
            "podSelector": .obj(["matchLabels": .obj(["app": "db"])]), "policyTypes": ["Egress"],
            "egress": [.obj(["to": [.obj(["ipBlock": .obj(["cidr": "10.0.0.0/8"])])], "ports": [.obj(["port": 5432])]])],
        ])
        let guardPolicies = GuardPolicies(config: config)
        let block = guardPolicies.canonicalSpec(name: GuardNames.blockPolicy, namespace: "team-a")!
        let db = Source(namespace: "team-a", labels: ["app": "db"])
        let internet = D(family: .v4, address: CIDR("93.184.216.34/32")!.network, proto: .tcp, port: 443)
        let alone = BackendEvaluator(networkPolicies: [("team-a", restrict)], nodeCIDRs: config.nodeCIDRs)
        let withBlock = BackendEvaluator(networkPolicies: [("team-a", restrict), ("team-a", block)], nodeCIDRs: config.nodeCIDRs)
        #expect(!alone.networkPolicyAllows(db, internet))
        #expect(withBlock.networkPolicyAllows(db, internet))
        // The cluster-scoped backends leave the tenant's restriction as it was.
        for backend in GuardBackend.discoveryOrder {
            let objects = ClusterGuardPolicies(config: config, backend: backend).objects
            let allowed = backend == .adminnetworkpolicy ? alone.anpAllows(objects, db, internet)
                : backend == .calico ? alone.calicoAllows(objects, db, internet) : alone.ciliumAllows(objects, db, internet)
            #expect(!allowed, "\(backend) widened the tenant's policy")
        }
    }

    @Test("auto resolves to the first served backend in the SPEC's order, else networkpolicy")
    func autoResolution() {
        #expect(GuardBackend.resolve(servedGroupVersions: []) == .networkpolicy)
        #expect(GuardBackend.resolve(servedGroupVersions: ["cilium.io/v2"]) == .cilium)
        #expect(GuardBackend.resolve(servedGroupVersions: ["cilium.io/v2", "projectcalico.org/v3"]) == .calico)
        #expect(GuardBackend.resolve(servedGroupVersions: ["cilium.io/v2", "policy.networking.k8s.io/v1alpha1"]) == .adminnetworkpolicy)
        // Calico's CRD group (crd.projectcalico.org/v1) is not the v3 API the backend writes.
        #expect(GuardBackend.resolve(servedGroupVersions: ["crd.projectcalico.org/v1"]) == .networkpolicy)
    }
}

/// What the audit reports with `guardBackend: networkpolicy` (its `guardWidens` note)
/// against the backend evaluator: the tenant egress policies the block policy widens.
@Suite("networkpolicy backend: the audit's widening note against the evaluator")
struct GuardWideningEvaluatorTests {
    @Test("a policy not reported gains nothing from the block policy; reported ones mostly do", arguments: [PolicyStyle.seed, .ports])
    func notReportedMeansNotWidened(_ style: PolicyStyle) throws {
        var config = Config.default
        config.policyStyle = style
        let block = GuardPolicies(config: config).canonicalSpec(name: GuardNames.blockPolicy, namespace: "team-a")!
        var g = SeededGenerator(seed: 2026)
        let destinations = GuardBackendTests.destinations(config, &g)
        var reported = 0, reportedAndWidened = 0, quiet = 0
        for i in 0..<300 {
            var spec = GuardBackendTests.randomPolicy(&g, config: config)
            // Some policies that allow everything, in the forms a tenant writes.
            if i % 10 == 0 { spec = spec.setting("egress", [.object([])]) }
            if i % 10 == 1 { spec = spec.setting("egress", [.obj(["to": [.obj(["ipBlock": .obj(["cidr": "0.0.0.0/0", "except": ["70.0.0.0/16"]])])]])]) }
            let record = try auditRecord(networkPolicy(name: "p", namespace: "team-a", spec: spec), AuditJudge(config: config))
            let widened = record.findings.contains { $0.check == .guardWidens }
            let alone = BackendEvaluator(networkPolicies: [("team-a", spec)], nodeCIDRs: config.nodeCIDRs)
            let guarded = BackendEvaluator(networkPolicies: [("team-a", spec), ("team-a", block)], nodeCIDRs: config.nodeCIDRs)
            let selected = GuardBackendTests.sources.filter { $0.namespace == "team-a" && EgressEvaluator().matches(spec["podSelector"]!, $0.labels) }
            let gained = EgressEvaluator().isolatesEgress(spec) && selected.contains { source in
                destinations.contains { d in guarded.networkPolicyAllows(source, d) && !alone.networkPolicyAllows(source, d) }
            }
            if widened {
                reported += 1
                if gained { reportedAndWidened += 1 }
            } else {
                quiet += 1
                #expect(!gained, "\(style): not reported but widened: \(spec.serialized)")
            }
        }
        #expect(quiet > 20 && reported > 100)
        #expect(Double(reportedAndWidened) >= 0.9 * Double(reported), "\(reportedAndWidened) of \(reported)")
    }
}
