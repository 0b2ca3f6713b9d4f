import Testing
@testable import PXGuardCore

@Suite("R4 bypass policies")
struct BypassPolicyRuleTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let label: String
        let spec: JSON
        let denied: Bool
        var message: String? = nil
        var testDescription: String { label }
    }

    static func egress(_ rules: [JSON], types: JSON? = ["Egress"]) -> JSON {
        .obj(["podSelector": .object([]), "policyTypes": types, "egress": .array(rules)])
    }
    static func rule(to: JSON? = nil, ports: JSON? = nil) -> JSON { .obj(["to": to, "ports": ports]) }
    static func block(_ cidr: String, except: [String] = []) -> JSON {
        .obj(["ipBlock": .obj(["cidr": .string(cidr), "except": except.isEmpty ? nil : .array(except.map { .string($0) })])])
    }
    static func port(_ p: JSON, end: Int? = nil, proto: String? = nil) -> JSON {
        .obj(["protocol": proto.map { .string($0) }, "port": p, "endPort": end.map { .int($0) }])
    }
    static let nodes: JSON = [block("70.0.0.0/16")]

    static let cases: [Case] = [
        // Destinations. NetworkPolicy reference: an empty or missing `to` matches all destinations.
        Case(label: "no to, no ports: everything is allowed", spec: egress([rule()]), denied: true,
             message: "egress rule 0 allows 70.0.0.0/16 on TCP/9001-9022"),
        Case(label: "empty to and empty ports mean all", spec: egress([rule(to: .array([]), ports: .array([]))]), denied: true),
        Case(label: "0.0.0.0/0 on 9001", spec: egress([rule(to: [block("0.0.0.0/0")], ports: [port(9001)])]), denied: true,
             message: "allows 70.0.0.0/16 on TCP/9001"),
        Case(label: "0.0.0.0/0 except the node subnet", spec: egress([rule(to: [block("0.0.0.0/0", except: ["70.0.0.0/16"])])]),
             denied: false),
        Case(label: "except that leaves half the node subnet", spec: egress([rule(to: [block("0.0.0.0/0", except: ["70.0.0.0/17"])])]),
             denied: true, message: "70.0.128.0/17"),
        Case(label: "carve-out that leaves one address",
             spec: egress([rule(to: [block("70.0.0.0/30", except: ["70.0.0.0/31", "70.0.0.2/32"])], ports: [port(9010)])]),
             denied: true, message: "70.0.0.3/32 on TCP/9010"),
        Case(label: "CIDR written with host bits set", spec: egress([rule(to: [block("70.0.5.5/16")], ports: [port(9001)])]),
             denied: true, message: "70.0.0.0/16"),
        Case(label: "a single node address", spec: egress([rule(to: [block("70.0.98.11/32")])]), denied: true),
        Case(label: "unrelated subnet", spec: egress([rule(to: [block("10.0.0.0/8")])]), denied: false),
        Case(label: "adjacent subnet 70.1.0.0/16", spec: egress([rule(to: [block("70.1.0.0/16")])]), denied: false),
        Case(label: "IPv6 peer against IPv4 node subnets", spec: egress([rule(to: [block("::/0")])]), denied: false),
        Case(label: "IPv4-mapped IPv6 block reaching the node subnet",
             spec: egress([rule(to: [block("::ffff:70.0.0.0/112")], ports: [port(9001)])]), denied: true),
        Case(label: "podSelector peer selects pods, not nodes",
             spec: egress([rule(to: [.obj(["podSelector": .object([])])])]), denied: false),
        Case(label: "namespaceSelector peer selects pods, not nodes",
             spec: egress([rule(to: [.obj(["namespaceSelector": .object([])])], ports: [port(9001)])]), denied: false),
        Case(label: "a second rule is the offending one",
             spec: egress([rule(to: [block("10.0.0.0/8")]), rule(to: nodes, ports: [port(9022)])]), denied: true,
             message: "egress rule 1 allows 70.0.0.0/16 on TCP/9022"),
        // Ports, boundaries of TCP 9001-9022.
        Case(label: "port 9000 (one below)", spec: egress([rule(to: nodes, ports: [port(9000)])]), denied: false),
        Case(label: "port 9001 (first)", spec: egress([rule(to: nodes, ports: [port(9001)])]), denied: true),
        Case(label: "port 9022 (last)", spec: egress([rule(to: nodes, ports: [port(9022)])]), denied: true),
        Case(label: "port 9023 (one above)", spec: egress([rule(to: nodes, ports: [port(9023)])]), denied: false),
        Case(label: "range 8000-9000 ends one below", spec: egress([rule(to: nodes, ports: [port(8000, end: 9000)])]), denied: false),
        Case(label: "range 8000-9001 reaches the first", spec: egress([rule(to: nodes, ports: [port(8000, end: 9001)])]),
             denied: true, message: "TCP/9001"),
        Case(label: "range 9022-9100 reaches the last", spec: egress([rule(to: nodes, ports: [port(9022, end: 9100)])]),
             denied: true, message: "TCP/9022"),
        Case(label: "range 9023-9100 starts one above", spec: egress([rule(to: nodes, ports: [port(9023, end: 9100)])]), denied: false),
        Case(label: "range covering everything", spec: egress([rule(to: nodes, ports: [port(1, end: 65535)])]), denied: true,
             message: "TCP/9001-9022"),
        Case(label: "UDP 9001 is not the protected TCP", spec: egress([rule(to: nodes, ports: [port(9001, proto: "UDP")])]), denied: false),
        Case(label: "SCTP 9001 is not the protected TCP", spec: egress([rule(to: nodes, ports: [port(9001, proto: "SCTP")])]), denied: false),
        Case(label: "protocol absent defaults to TCP", spec: egress([rule(to: nodes, ports: [port(9005)])]), denied: true),
        Case(label: "TCP with no port means every TCP port", spec: egress([rule(to: nodes, ports: [.obj(["protocol": "TCP"])])]),
             denied: true),
        Case(label: "named port cannot be resolved against an ipBlock", spec: egress([rule(to: nodes, ports: [port("px-api")])]),
             denied: true, message: "named port \"px-api\""),
        // policyTypes. Defaulting: Egress only when policyTypes is absent and egress is non-empty.
        Case(label: "policyTypes absent, egress present", spec: egress([rule(to: nodes)], types: nil), denied: true),
        Case(label: "policyTypes Ingress only: egress rules are inert", spec: egress([rule(to: nodes)], types: ["Ingress"]),
             denied: false),
        Case(label: "Egress with no rules denies all egress", spec: egress([]), denied: false),
        Case(label: "ingress rules never open egress",
             spec: .obj(["podSelector": .object([]), "ingress": [.obj(["from": [block("70.0.0.0/16")]])]]), denied: false),
    ]

    @Test("R4 corpus", arguments: cases)
    func corpus(_ c: Case) throws {
        let review = Review(group: "networking.k8s.io", kind: "NetworkPolicy", name: "sneaky",
                            object: networkPolicy(name: "sneaky", spec: c.spec))
        let v = try validate(review.bytes)
        #expect(v.allowed == !c.denied, "\(v.message ?? "allowed")")
        if c.denied {
            #expect(v.rule == .bypassPolicies)
            #expect(v.message?.hasPrefix("pxguard: bypassPolicies:") == true)
            if let m = c.message { #expect(v.message?.contains(m) == true, "\(v.message ?? "")") }
        }
    }

    @Test("R4: UPDATE is judged on the new object, and exempt namespaces are skipped")
    func updateAndNamespaces() throws {
        let bad = networkPolicy(name: "sneaky", spec: Self.egress([Self.rule()]))
        let good = networkPolicy(name: "sneaky", spec: Self.egress([Self.rule(to: [Self.block("10.0.0.0/8")])]))
        let update = Review(group: "networking.k8s.io", kind: "NetworkPolicy", operation: "UPDATE", object: bad, oldObject: good)
        #expect(try validate(update.bytes).allowed == false)
        let exempt = Review(group: "networking.k8s.io", kind: "NetworkPolicy", namespace: "portworx", object: bad)
        #expect(try validate(exempt.bytes).allowed)
    }

    @Test("R4: IPv6 node subnets are protected too")
    func ipv6Nodes() throws {
        var config = Config.default
        config.nodeCIDRs = [CIDR("70.0.0.0/16")!, CIDR("fd00:70::/64")!]
        let policy = AdmissionPolicy(config: config)
        let v6 = networkPolicy(spec: Self.egress([Self.rule(to: [Self.block("::/0", except: ["fd00:70::/65"])])]))
        let v = try validate(Review(group: "networking.k8s.io", kind: "NetworkPolicy", object: v6).bytes, policy)
        #expect(!v.allowed)
        #expect(v.message?.contains("fd00:70:0:0:8000::/65") == true, "\(v.message ?? "")")
    }

    @Test("R4: contract fixtures E5 and E6 are not bypasses of 70.0.0.0/16")
    func fixtures() throws {
        #expect(try validate(fixture("netpol-except-e5")).allowed)
        #expect(try validate(fixture("netpol-update-e6")).allowed)
        #expect(try validate(fixture("netpol-delete-e7")).allowed)
    }

    @Test("modes: warn allows with a clean short warning, audit records the rule")
    func modes() throws {
        var config = Config.default
        config.ruleModes[.bypassPolicies] = .warn
        config.ruleModes[.hostNetwork] = .audit
        let policy = AdmissionPolicy(config: config)
        let review = Review(group: "networking.k8s.io", kind: "NetworkPolicy", object: networkPolicy(spec: Self.egress([Self.rule()])))
        let warned = try validate(review.bytes, policy)
        #expect(warned.allowed)
        #expect(warned.warnings.count == 1)
        #expect(warned.warnings[0].count < 256)
        #expect(warned.warnings[0].unicodeScalars.allSatisfy { $0.properties.generalCategory != .control })
        let audited = try validate(Review(object: pod(hostNetwork: true)).bytes, policy)
        #expect(audited.allowed)
        #expect(audited.warnings.isEmpty)
        #expect(audited.auditAnnotations.map(\.key) == ["rule", "decision"])
        #expect(audited.auditAnnotations.map(\.value) == ["hostNetwork", "audit"])
    }
}

@Suite("R4 at scale")
struct BypassPolicyScaleTests {
    /// 70.0.0.0/16 minus 40,000 single-address excepts in shuffled order and a few
    /// wider ones: the answer is known by construction.
    static func bigExcept(leaving hole: Bool) -> JSON {
        var rng = SeededGenerator(seed: 40_000)
        var excepts: [String] = []
        for i in 0..<40_000 where !(hole && i == 19_719) {
            excepts.append("70.0.\(i >> 8).\(i & 255)/32")
        }
        for i in stride(from: excepts.count - 1, to: 0, by: -1) { excepts.swapAt(i, rng.next(i + 1)) }
        excepts += ["70.0.156.64/26", "70.0.156.128/25", "70.0.157.0/24", "70.0.158.0/23", "70.0.160.0/19", "70.0.192.0/18"]
        let block = BypassPolicyRuleTests.block("70.0.0.0/16", except: excepts)
        return BypassPolicyRuleTests.egress([BypassPolicyRuleTests.rule(to: [block], ports: [BypassPolicyRuleTests.port(9001)])])
    }

    @Test("R4: a 40,000-except block that covers the node subnet is allowed; one address left is found")
    func fortyThousandExcepts() throws {
        let covered = Review(group: "networking.k8s.io", kind: "NetworkPolicy", object: networkPolicy(spec: Self.bigExcept(leaving: false)))
        #expect(try validate(covered.bytes).allowed)
        let leaky = Review(group: "networking.k8s.io", kind: "NetworkPolicy", object: networkPolicy(spec: Self.bigExcept(leaving: true)))
        let v = try validate(leaky.bytes)
        #expect(!v.allowed)
        // 19,719 = 77 * 256 + 7
        #expect(v.message?.contains("egress rule 0 allows 70.0.77.7/32 on TCP/9001") == true, "\(v.message ?? "")")
    }
}
