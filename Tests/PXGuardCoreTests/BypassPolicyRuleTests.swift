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
        // An except written in the other family than its cidr: some CNIs read a mapped
        // prefix as IPv4, others keep it IPv6 and leave the nodes reachable. It removes
        // nothing, as an unparsable except.
        Case(label: "an IPv4-mapped except under an IPv4 cidr removes nothing",
             spec: egress([rule(to: [block("0.0.0.0/0", except: ["::ffff:70.0.0.0/112"])])]), denied: true,
             message: "egress rule 0 allows 70.0.0.0/16 on TCP/9001-9022"),
        Case(label: "::ffff:0.0.0.0/96 as the except of 0.0.0.0/0 removes nothing",
             spec: egress([rule(to: [block("0.0.0.0/0", except: ["::ffff:0.0.0.0/96"])], ports: [port(9001)])]), denied: true,
             message: "allows 70.0.0.0/16 on TCP/9001"),
        Case(label: "an IPv4 except under an IPv4-mapped cidr removes nothing",
             spec: egress([rule(to: [block("::ffff:0.0.0.0/96", except: ["70.0.0.0/16"])], ports: [port(9001)])]), denied: true,
             message: "Add ::ffff:4600:0/112 to the except list"),
        Case(label: "an IPv4-mapped except under an IPv4-mapped cidr removes its block",
             spec: egress([rule(to: [block("::ffff:0.0.0.0/96", except: ["::ffff:70.0.0.0/112"])])]), denied: false),
        Case(label: "a mapped except next to the IPv4 one: the IPv4 one keeps the nodes out",
             spec: egress([rule(to: [block("0.0.0.0/0", except: ["::ffff:70.0.0.0/112", "70.0.0.0/16"])])]), denied: false),
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
        // The API server's defaulting: a null protocol is TCP, a null rule, peer or
        // port entry reads as {} and `to: null` as absent (all destinations).
        Case(label: "protocol: null is TCP",
             spec: egress([rule(to: nodes, ports: [.object([.init("protocol", .null), .init("port", 9001)])])]), denied: true,
             message: "allows 70.0.0.0/16 on TCP/9001,"),
        Case(label: "egress: [null] allows everything", spec: egress([.null]), denied: true,
             message: "egress rule 0 allows 70.0.0.0/16 on TCP/9001-9022"),
        Case(label: "a null rule after a safe one is rule 1",
             spec: egress([rule(to: [block("10.0.0.0/8")]), .null]), denied: true, message: "egress rule 1 allows"),
        Case(label: "to: null is every destination",
             spec: egress([.object([.init("to", .null), .init("ports", [port(9001)])])]), denied: true),
        Case(label: "to: [null] reads as an empty peer: every destination", spec: egress([rule(to: [.null], ports: [port(9001)])]),
             denied: true),
        Case(label: "ports: [null] is every TCP port", spec: egress([rule(to: nodes, ports: [.null])]), denied: true,
             message: "on TCP/9001-9022"),
        Case(label: "endPort: null is the single port",
             spec: egress([rule(to: nodes, ports: [.object([.init("port", 9000), .init("endPort", .null)])])]), denied: false),
        Case(label: "port: null with protocol null is every TCP port",
             spec: egress([rule(to: nodes, ports: [.object([.init("protocol", .null), .init("port", .null)])])]), denied: true),
        Case(label: "policyTypes: [null] with egress present: egress not listed",
             spec: egress([rule(to: nodes)], types: [.null]), denied: false),
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

@Suite("R4 updates and messages")
struct BypassPolicyUpdateTests {
    typealias B = BypassPolicyRuleTests
    static let bypass = B.egress([B.rule()])
    static let safe = B.egress([B.rule(to: [B.block("10.0.0.0/8")])])

    struct UpdateCase: CustomTestStringConvertible, Sendable {
        let label: String
        let old: JSON
        let new: JSON
        let allowed: Bool
        var testDescription: String { label }
    }

    static func policy(_ spec: JSON, finalizers: [String] = [], labels: JSON? = nil, deleting: Bool = false) -> JSON {
        .obj([
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": .obj([
                "name": "legacy-allow-all", "namespace": "default", "uid": "7b1f9a0e-1111-4222-8333-444455556666",
                "resourceVersion": "81723", "generation": 1, "creationTimestamp": "2025-01-10T08:00:00Z",
                "labels": labels, "finalizers": finalizers.isEmpty ? nil : .array(finalizers.map { .string($0) }),
                "deletionTimestamp": deleting ? "2026-12-01T10:00:00Z" : nil,
            ]),
            "spec": spec,
        ])
    }

    static let cases: [UpdateCase] = [
        UpdateCase(label: "a permissive policy from before pxguard: removing its finalizer while it is deleted",
                   old: policy(bypass, finalizers: ["example.com/cleanup"], deleting: true),
                   new: policy(bypass, deleting: true), allowed: true),
        UpdateCase(label: "a permissive policy from before pxguard: changing a label",
                   old: policy(bypass, labels: .obj(["team": "a"])), new: policy(bypass, labels: .obj(["team": "b"])), allowed: true),
        UpdateCase(label: "the same spec with its members written in another order is judged on its own",
                   old: policy(bypass), new: policy(.obj(["egress": [.object([])], "policyTypes": ["Egress"], "podSelector": .object([])])),
                   allowed: false),
        UpdateCase(label: "a permissive policy made more permissive",
                   old: policy(B.egress([B.rule(ports: [B.port(9001)])])), new: policy(bypass), allowed: false),
        UpdateCase(label: "one character of a CIDR changed", old: policy(B.egress([B.rule(to: [B.block("70.0.0.0/16")])])),
                   new: policy(B.egress([B.rule(to: [B.block("70.0.0.0/15")])])), allowed: false),
        UpdateCase(label: "a safe policy turned into a bypass", old: policy(safe), new: policy(bypass), allowed: false),
        UpdateCase(label: "a bypass made safe", old: policy(bypass), new: policy(safe), allowed: true),
        UpdateCase(label: "setting a deletionTimestamp while changing the spec",
                   old: policy(safe), new: policy(bypass, deleting: true), allowed: false),
    ]

    @Test("R4: an UPDATE that keeps the spec is allowed; one that changes it is judged", arguments: cases)
    func updates(_ c: UpdateCase) throws {
        let review = Review(group: "networking.k8s.io", kind: "NetworkPolicy", operation: "UPDATE",
                            name: "legacy-allow-all", object: c.new, oldObject: c.old)
        let v = try validate(review.bytes)
        #expect(v.allowed == c.allowed, "\(v.message ?? "allowed")")
    }

    @Test("R4: the spec comparison ignores whitespace between tokens, never inside strings")
    func whitespace() throws {
        func equal(_ a: String, _ b: String) throws -> Bool {
            let doc = Array("[\(a),\(b)]".utf8)
            return try JSONDocument.parse(doc) { root in
                let e = root.elements
                return e[0].tokensEqual(e[1])
            }
        }
        #expect(try equal(#"{"a": [1, "x y"]}"#, #"{ "a":[1,"x y"] }"#))
        #expect(try !equal(#"{"a":"x y"}"#, #"{"a":"xy"}"#))
        #expect(try !equal(#"{"a":"x\"y"}"#, #"{"a":"x\\y"}"#))
        #expect(try !equal(#"{"a":1}"#, #"{"a":1,"b":2}"#))
        #expect(try !equal(#"[1]"#, #"[10]"#))
    }

    struct MessageCase: CustomTestStringConvertible, Sendable {
        let label: String
        let spec: JSON
        let contains: [String]
        let excludes: [String]
        var testDescription: String { label }
    }

    static let dualStack: Config = {
        var c = Config.default
        c.nodeCIDRs = [CIDR("70.0.0.0/16")!, CIDR("fd00:70::/64")!]
        c.protectedPorts = [PortRange("9001-9022")!, PortRange("UDP/9002")!]
        return c
    }()

    static let messages: [MessageCase] = [
        MessageCase(label: "an IPv4 ipBlock: except the IPv4 node subnet only",
                    spec: B.egress([B.rule(to: [B.block("0.0.0.0/0")], ports: [B.port(9001)])]),
                    contains: ["egress rule 0 allows 70.0.0.0/16 on TCP/9001,",
                               "Add 70.0.0.0/16 to the except list of the ipBlock in egress rule 0",
                               "change its ports so they leave out TCP/9001."],
                    excludes: ["fd00", "UDP", "9022"]),
        MessageCase(label: "an IPv6 ipBlock: except the IPv6 node subnet only",
                    spec: B.egress([B.rule(to: [B.block("::/0")], ports: [B.port(8000, end: 9005)])]),
                    contains: ["allows fd00:70::/64 on TCP/9001-9005", "Add fd00:70::/64 to the except list",
                               "leave out TCP/9001-9005."],
                    excludes: ["70.0.0.0/16", "9022", "UDP"]),
        MessageCase(label: "no ipBlock: no except advice, a `to` that leaves the nodes out",
                    spec: B.egress([B.rule(ports: [B.port(9002, proto: "UDP")])]),
                    contains: ["allows 70.0.0.0/16, fd00:70::/64 on UDP/9002", "Give egress rule 0 a `to`",
                               "cidr 0.0.0.0/0 except [70.0.0.0/16]", "cidr ::/0 except [fd00:70::/64]",
                               "leave out UDP/9002."],
                    excludes: ["to the except list", "TCP"]),
        MessageCase(label: "no ports: every protected range named",
                    spec: B.egress([B.rule(to: [B.block("70.0.1.0/24")])]),
                    contains: ["egress rule 0 allows 70.0.1.0/24 on TCP/9001-9022, UDP/9002",
                               "list the ports it needs, leaving out TCP/9001-9022, UDP/9002"],
                    excludes: ["fd00"]),
        MessageCase(label: "a named port: numbers outside the protected ranges of its protocol",
                    spec: B.egress([B.rule(to: [B.block("70.0.0.0/16")], ports: [B.port("px-api")])]),
                    contains: ["named port \"px-api\"", "replace the named port \"px-api\" with port numbers outside TCP/9001-9022"],
                    excludes: ["UDP"]),
        MessageCase(label: "an unparsable cidr", spec: B.egress([B.rule(to: [B.block("70.0.0.0/33")])]),
                    contains: ["ipBlock cidr 70.0.0.0/33 cannot be parsed", "Fix the ipBlock cidr \"70.0.0.0/33\""],
                    excludes: []),
    ]

    @Test("R4: the message names the rule, the overlap and a fix that fits the rule", arguments: messages)
    func message(_ c: MessageCase) throws {
        let review = Review(group: "networking.k8s.io", kind: "NetworkPolicy", object: networkPolicy(spec: c.spec))
        let v = try validate(review.bytes, AdmissionPolicy(config: Self.dualStack))
        let m = try #require(v.message)
        for s in c.contains { #expect(m.contains(s), "missing \(s) in \(m)") }
        for s in c.excludes { #expect(!m.contains(s), "unexpected \(s) in \(m)") }
    }
}
