import Testing
@testable import PXGuardCore

/// The oracle itself, on cases worked out by hand from the API reference.
@Suite("Egress evaluator (test oracle)")
struct EgressEvaluatorTests {
    typealias D = EgressEvaluator.Destination

    static func v4(_ text: String, _ port: Int, _ proto: TransportProtocol = .tcp, pod: EgressEvaluator.Pod? = nil) -> D {
        let c = CIDR(text + "/32")!
        return D(family: .v4, address: c.network, proto: proto, port: port, pod: pod)
    }

    static func v6(_ text: String, _ port: Int, _ proto: TransportProtocol = .tcp) -> D {
        let c = CIDR(text + "/128")!
        return D(family: .v6, address: c.network, proto: proto, port: port)
    }

    static func spec(_ egress: JSON?, types: JSON? = ["Egress"]) -> JSON {
        .obj(["podSelector": .object([]), "policyTypes": types, "egress": egress])
    }

    struct Case: CustomTestStringConvertible, Sendable {
        let label: String
        let spec: JSON
        let destination: D
        let allowed: Bool
        var testDescription: String { label }
    }

    static let web = EgressEvaluator.Pod(namespace: "default", labels: ["app": "web"], namespaceLabels: ["team": "a"],
                                         namedPorts: ["http": (.tcp, 8080)])

    static let cases: [Case] = [
        Case(label: "egress [{}] allows everything", spec: spec([.object([])]), destination: v4("70.0.0.1", 9001), allowed: true),
        Case(label: "a null rule reads as {}", spec: spec([.null]), destination: v6("2001:db8::1", 22, .udp), allowed: true),
        Case(label: "Egress with no rules allows nothing", spec: spec([]), destination: v4("1.1.1.1", 53), allowed: false),
        Case(label: "policyTypes absent, egress present: egress applies", spec: spec([.object([])], types: nil),
             destination: v4("1.1.1.1", 53), allowed: true),
        Case(label: "policyTypes Ingress only: egress rules are inert", spec: spec([.object([])], types: ["Ingress"]),
             destination: v4("1.1.1.1", 53), allowed: false),
        Case(label: "policyTypes absent, egress empty: no egress isolation", spec: spec([], types: nil),
             destination: v4("1.1.1.1", 53), allowed: false),
        Case(label: "ipBlock inside the cidr", spec: spec([.obj(["to": [.obj(["ipBlock": .obj(["cidr": "10.0.0.0/8"])])]])]),
             destination: v4("10.255.255.255", 80), allowed: true),
        Case(label: "ipBlock just outside the cidr", spec: spec([.obj(["to": [.obj(["ipBlock": .obj(["cidr": "10.0.0.0/8"])])]])]),
             destination: v4("11.0.0.0", 80), allowed: false),
        Case(label: "ipBlock except carves a hole",
             spec: spec([.obj(["to": [.obj(["ipBlock": .obj(["cidr": "0.0.0.0/0", "except": ["70.0.0.0/16"]])])]])]),
             destination: v4("70.0.200.1", 80), allowed: false),
        Case(label: "an IPv4 block never matches IPv6",
             spec: spec([.obj(["to": [.obj(["ipBlock": .obj(["cidr": "0.0.0.0/0"])])]])]),
             destination: v6("::1", 80), allowed: false),
        Case(label: "a mapped block is its IPv4 block",
             spec: spec([.obj(["to": [.obj(["ipBlock": .obj(["cidr": "::ffff:70.0.0.0/112"])])]])]),
             destination: v4("70.0.3.4", 80), allowed: true),
        Case(label: "port range with endPort includes both ends",
             spec: spec([.obj(["ports": [.obj(["port": 9000, "endPort": 9022])]])]),
             destination: v4("70.0.0.1", 9022), allowed: true),
        Case(label: "port range with endPort stops there",
             spec: spec([.obj(["ports": [.obj(["port": 9000, "endPort": 9022])]])]),
             destination: v4("70.0.0.1", 9023), allowed: false),
        Case(label: "protocol defaults to TCP", spec: spec([.obj(["ports": [.obj(["port": 53])]])]),
             destination: v4("1.1.1.1", 53, .udp), allowed: false),
        Case(label: "protocol without port is every port of it", spec: spec([.obj(["ports": [.obj(["protocol": "UDP"])]])]),
             destination: v4("1.1.1.1", 65535, .udp), allowed: true),
        Case(label: "named port resolves against the destination pod",
             spec: spec([.obj(["ports": [.obj(["port": "http"])]])]),
             destination: v4("10.1.0.5", 8080, pod: web), allowed: true),
        Case(label: "named port never resolves for a non-pod address",
             spec: spec([.obj(["ports": [.obj(["port": "http"])]])]),
             destination: v4("70.0.0.5", 8080), allowed: false),
        Case(label: "podSelector peer selects pods in the policy's namespace",
             spec: spec([.obj(["to": [.obj(["podSelector": .obj(["matchLabels": .obj(["app": "web"])])])]])]),
             destination: v4("10.1.0.5", 1, pod: web), allowed: true),
        Case(label: "podSelector peer does not select node addresses",
             spec: spec([.obj(["to": [.obj(["podSelector": .object([])])]])]),
             destination: v4("70.0.0.5", 9001), allowed: false),
        Case(label: "namespaceSelector NotIn excludes",
             spec: spec([.obj(["to": [.obj(["namespaceSelector": .obj(["matchExpressions": [
                 .obj(["key": "team", "operator": "NotIn", "values": ["a"]])]])])]])]),
             destination: v4("10.1.0.5", 1, pod: web), allowed: false),
    ]

    @Test("the evaluator agrees with hand-worked cases", arguments: cases)
    func handWorked(_ c: Case) {
        #expect(EgressEvaluator().allows(c.spec, c.destination) == c.allowed, "\(c.destination)")
    }
}

@Suite("The guard policies: seed and ports styles")
struct GuardPolicyStyleTests {
    static func config(_ style: PolicyStyle, nodes: [String] = ["70.0.0.0/16"], ports: [String] = ["9001-9022"]) -> Config {
        var config = Config.default
        config.policyStyle = style
        config.nodeCIDRs = nodes.map { CIDR($0)! }
        config.protectedPorts = ports.map { PortRange($0)! }
        return config
    }

    @Test("ports is the default; seed style stays available and renders the seed's block policy")
    func seedUnchanged() {
        #expect(Config.default.policyStyle == .ports)
        let spec = GuardPolicies(config: Self.config(.seed)).namespaceBlockSpec
        #expect(spec.serialized == #"{"podSelector":{},"policyTypes":["Egress"],"egress":[{"to":[{"ipBlock":{"cidr":"0.0.0.0/0","except":["70.0.0.0/16"]}}]}]}"#)
    }

    @Test("ports style: the node subnets stay open on the complement of the protected ranges, per protocol")
    func portsShape() {
        let spec = GuardPolicies(config: Self.config(.ports)).namespaceBlockSpec
        #expect(spec.serialized == #"{"podSelector":{},"policyTypes":["Egress"],"egress":["#
            + #"{"to":[{"ipBlock":{"cidr":"0.0.0.0/0","except":["70.0.0.0/16"]}},{"ipBlock":{"cidr":"::/0"}}]},"#
            + #"{"to":[{"ipBlock":{"cidr":"70.0.0.0/16"}}],"ports":[{"protocol":"TCP","port":1,"endPort":9000},"#
            + #"{"protocol":"TCP","port":9023,"endPort":65535},{"protocol":"UDP"},{"protocol":"SCTP"}]}]}"#)
    }

    @Test("ports style: kube-system keeps its selector; allow-api is the seed's")
    func portsKubeSystem() {
        let seed = GuardPolicies(config: Self.config(.seed))
        let ports = GuardPolicies(config: Self.config(.ports))
        #expect(ports.kubeSystemBlockSpec["podSelector"] == seed.kubeSystemBlockSpec["podSelector"])
        #expect(ports.kubeSystemBlockSpec["egress"] == ports.namespaceBlockSpec["egress"])
        #expect(ports.allowAPISpec == seed.allowAPISpec)
    }

    static let portsConfigs: [Config] = [
        config(.ports),
        config(.ports, nodes: ["70.0.0.0/16", "10.9.0.0/24", "fd00:70::/64"],
               ports: ["9001-9022", "UDP/9002", "SCTP/9001-9005", "1-10", "65000-65535", "9010-9030"]),
        config(.ports, nodes: ["fd00:70::/48"], ports: ["UDP/1-65535", "9001"]),
        // Everything protected: the node rule is left out (an empty `ports` would mean all).
        config(.ports, nodes: ["70.0.0.0/16"], ports: ["1-65535", "UDP/1-65535", "SCTP/1-65535"]),
    ]

    @Test("ports style blocks exactly node subnets × protected ports (oracle, sampled destinations)",
          arguments: portsConfigs.indices)
    func portsExact(_ index: Int) {
        let config = Self.portsConfigs[index]
        let policies = GuardPolicies(config: config)
        let protected = ProtectedSet(config: config)
        var sampler = DestinationSampler(config: config, seed: 0x5eed + UInt64(index))
        let addresses = sampler.addresses(random: 40)
        let ports = sampler.ports(random: 20)
        let evaluator = EgressEvaluator()
        var checked = 0
        for (family, address) in addresses {
            for port in ports {
                for proto in TransportProtocol.allCases {
                    let d = EgressEvaluator.Destination(family: family, address: address, proto: proto, port: port)
                    for spec in [policies.namespaceBlockSpec, policies.kubeSystemBlockSpec] {
                        #expect(evaluator.allows(spec, d) == !protected.contains(d), "\(d)")
                    }
                    checked += 1
                }
            }
        }
        #expect(checked > 5000)
    }

    @Test("seed style (oracle): the block policy cuts every path to the nodes")
    func seedBlocksAllNodePorts() {
        let config = Self.config(.seed)
        let block = GuardPolicies(config: config).namespaceBlockSpec
        let d = EgressEvaluator.Destination(family: .v4, address: config.nodeCIDRs[0].range.lower, proto: .udp, port: 53)
        #expect(!EgressEvaluator().allows(block, d))
    }

    @Test("ports style: R4's analysis finds no reach in the block policies themselves", arguments: portsConfigs.indices)
    func portsPassR4(_ index: Int) throws {
        let config = Self.portsConfigs[index]
        let policies = GuardPolicies(config: config)
        let review = Review(group: "networking.k8s.io", kind: "NetworkPolicy", name: "copy-of-block",
                            object: networkPolicy(name: "copy-of-block", spec: policies.namespaceBlockSpec))
        #expect(try validate(review.bytes, AdmissionPolicy(config: config)).allowed)
    }

    @Test("ports style: a drifted block policy is refused by R3 against the ports spec")
    func portsCanonicalForR3() throws {
        let config = Self.config(.ports)
        let policy = AdmissionPolicy(config: config)
        let policies = GuardPolicies(config: config)
        let managed: JSON = .obj([GuardNames.managedByKey: "pxguard"])
        func create(_ spec: JSON) -> Review {
            Review(group: "networking.k8s.io", kind: "NetworkPolicy", name: GuardNames.blockPolicy,
                   object: networkPolicy(name: GuardNames.blockPolicy, labels: managed, spec: spec))
        }
        #expect(try validate(create(policies.namespaceBlockSpec).bytes, policy).allowed)
        let seedSpec = GuardPolicies(config: Self.config(.seed)).namespaceBlockSpec
        #expect(try validate(create(seedSpec).bytes, policy).allowed == false)
    }

    @Test("which guard policies belong where: one answer for every caller",
          arguments: [("default", [GuardNames.blockPolicy, GuardNames.allowAPIPolicy]),
                      ("kube-system", [GuardNames.blockPolicy]), ("portworx", []), ("pxguard-system", [])])
    func names(_ namespace: String, _ expected: [String]) {
        let policies = GuardPolicies(config: .default)
        #expect(policies.names(for: namespace) == expected)
        for name in [GuardNames.blockPolicy, GuardNames.allowAPIPolicy, "other"] {
            #expect(policies.isGuardPolicy(name: name, namespace: namespace) == expected.contains(name))
            #expect(RuleContext(config: .default).isGuardPolicy(name: name, namespace: namespace) == expected.contains(name))
        }
    }
}
