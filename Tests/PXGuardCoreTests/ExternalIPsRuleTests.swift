import Testing
import Foundation
@testable import PXGuardCore

@Suite("R7 external IPs")
struct ExternalIPsRuleTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let label: String
        var operation = "CREATE"
        var namespace = "team-a"
        var user = "alice@example.com"
        var ips: [String]?
        var oldIPs: [String]? = nil
        var loadBalancerIP: String? = nil
        var oldLoadBalancerIP: String? = nil
        var config: Config = .default
        let allowed: Bool
        var message: String? = nil
        var testDescription: String { label }
    }

    /// A Service as the API server sends it after defaulting.
    static func service(_ namespace: String, _ ips: [String]?, loadBalancerIP: String? = nil) -> JSON {
        .obj([
            "apiVersion": "v1", "kind": "Service",
            "metadata": .obj(["name": "px-hijack", "namespace": .string(namespace), "uid": "4d4d4d4d-1111-4222-8333-444455556666"]),
            "spec": .obj([
                "type": loadBalancerIP == nil ? "ClusterIP" : "LoadBalancer", "clusterIP": "10.96.14.7", "clusterIPs": ["10.96.14.7"],
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None",
                "selector": .obj(["app": "evil"]),
                "ports": [.obj(["name": "px", "protocol": "TCP", "port": 9001, "targetPort": 9001])],
                "externalIPs": ips.map { .array($0.map { .string($0) }) },
                "loadBalancerIP": loadBalancerIP.map { .string($0) },
            ]),
            "status": .obj(["loadBalancer": .object([])]),
        ])
    }

    static let dualStack: Config = {
        var c = Config.default
        c.nodeCIDRs = [CIDR("70.0.0.0/16")!, CIDR("fd00:70::/64")!]
        return c
    }()

    static let cases: [Case] = [
        Case(label: "a node address as external IP (CVE-2020-8554)", ips: ["70.0.98.11"], allowed: false,
             message: "pxguard: externalIPs: Service team-a/px-hijack lists external IP 70.0.98.11, inside the node subnet 70.0.0.0/16"),
        Case(label: "the first and last address of the node subnet", ips: ["192.0.2.1", "70.0.255.255"], allowed: false),
        Case(label: "70.0.0.0 itself", ips: ["70.0.0.0"], allowed: false),
        Case(label: "leading zeros, read as decimal by older API servers", ips: ["070.000.098.011"], allowed: false),
        Case(label: "an IPv4-mapped IPv6 node address", ips: ["::ffff:70.0.98.11"], allowed: false),
        Case(label: "an IPv6 node address", ips: ["fd00:70::5"], config: dualStack, allowed: false,
             message: "inside the node subnet fd00:70::/64"),
        Case(label: "an external IP outside the node subnets", ips: ["192.0.2.10", "70.1.0.1", "69.255.255.255"], allowed: true),
        Case(label: "an IPv6 address outside the node subnets", ips: ["fd00:71::5"], config: dualStack, allowed: true),
        Case(label: "no external IPs", ips: nil, allowed: true),
        Case(label: "an empty list", ips: [], allowed: true),
        Case(label: "an exempt namespace", namespace: "portworx", ips: ["70.0.98.11"], allowed: true),
        Case(label: "UPDATE adding a node address", operation: "UPDATE", ips: ["70.0.98.11"], oldIPs: ["192.0.2.10"],
             allowed: false),
        Case(label: "UPDATE keeping a node address held from before pxguard (labels, finalizers)", operation: "UPDATE",
             ips: ["70.0.98.11"], oldIPs: ["70.0.98.11"], allowed: true),
        Case(label: "UPDATE swapping one node address for another", operation: "UPDATE", ips: ["70.0.98.12"],
             oldIPs: ["70.0.98.11"], allowed: false),
        Case(label: "UPDATE dropping the node address", operation: "UPDATE", ips: ["192.0.2.10"], oldIPs: ["70.0.98.11"],
             allowed: true),
        Case(label: "the server's service account is not exempt", user: Config.default.serviceAccount, ips: ["70.0.98.11"],
             allowed: false),
        // spec.loadBalancerIP: the other half of CVE-2020-8554 (load balancers that
        // honour it publish it in status, and kube-proxy captures it the same way).
        Case(label: "a node address as loadBalancerIP", ips: nil, loadBalancerIP: "70.0.98.11", allowed: false,
             message: "pxguard: externalIPs: Service team-a/px-hijack lists load balancer IP 70.0.98.11 (spec.loadBalancerIP), "
                + "inside the node subnet 70.0.0.0/16"),
        Case(label: "an IPv4-mapped node address as loadBalancerIP", ips: ["192.0.2.10"], loadBalancerIP: "::ffff:70.0.0.5",
             allowed: false, message: "spec.loadBalancerIP"),
        Case(label: "a loadBalancerIP outside the node subnets", ips: ["192.0.2.10"], loadBalancerIP: "192.0.2.20", allowed: true),
        Case(label: "an empty loadBalancerIP", ips: nil, loadBalancerIP: "", allowed: true),
        Case(label: "UPDATE setting loadBalancerIP to a node address", operation: "UPDATE", ips: nil, oldIPs: nil,
             loadBalancerIP: "70.0.98.11", oldLoadBalancerIP: "192.0.2.20", allowed: false),
        Case(label: "UPDATE keeping a loadBalancerIP held from before pxguard", operation: "UPDATE", ips: nil, oldIPs: nil,
             loadBalancerIP: "70.0.98.11", oldLoadBalancerIP: "70.0.98.11", allowed: true),
        Case(label: "a loadBalancerIP in an exempt namespace", namespace: "portworx", ips: nil, loadBalancerIP: "70.0.98.11",
             allowed: true),
        Case(label: "warn mode allows with a warning", ips: ["70.0.98.11"],
             config: { var c = Config.default; c.ruleModes[.externalIPs] = .warn; return c }(), allowed: true),
    ]

    @Test("R7: Service external IPs inside a node subnet are denied", arguments: cases)
    func table(_ c: Case) throws {
        let review = Review(kind: "Service", operation: c.operation, namespace: c.namespace, name: "px-hijack", user: c.user,
                            object: Self.service(c.namespace, c.ips, loadBalancerIP: c.loadBalancerIP),
                            oldObject: c.operation == "UPDATE" ? Self.service(c.namespace, c.oldIPs, loadBalancerIP: c.oldLoadBalancerIP) : nil)
        let v = try validate(review.bytes, AdmissionPolicy(config: c.config))
        #expect(v.allowed == c.allowed, "\(v.message ?? "allowed")")
        if !c.allowed {
            #expect(v.rule == .externalIPs)
            if let m = c.message { #expect(v.message?.contains(m) == true, "\(v.message ?? "")") }
        }
        if c.config.ruleModes[.externalIPs] == .warn { #expect(v.warnings.first?.hasPrefix("pxguard: externalIPs:") == true) }
    }

    @Test("R7: a Service in another API group or a DELETE is not judged")
    func otherKinds() throws {
        var r = Review(group: "example.com", kind: "Service", namespace: "team-a", object: Self.service("team-a", ["70.0.98.11"]))
        #expect(try validate(r.bytes).allowed)
        r = Review(kind: "Service", operation: "DELETE", namespace: "team-a", object: nil, oldObject: Self.service("team-a", ["70.0.98.11"]))
        #expect(try validate(r.bytes).allowed)
    }
}

extension ExternalIPsRuleTests {
    @Test("R7: an external IP written with JSON escapes is decoded before it is judged")
    func escaped() throws {
        let review = Review(kind: "Service", namespace: "team-a", name: "px-hijack", object: Self.service("team-a", ["70.0.98.11"]))
        let text = review.json.serialized.replacingOccurrences(of: "\"70.0.98.11\"", with: #""\u00370.0.98.11""#)
        #expect(text.contains(#"\u0037"#))
        let v = try validate(Array(text.utf8))
        #expect(!v.allowed)
        #expect(v.rule == .externalIPs)
    }
}

extension ExternalIPsRuleTests {
    @Test("R7: external IPs are read as kube-proxy reads them", arguments: [
        ("70.0.98.11", "70.0.98.11/32"), ("070.000.098.011", "70.0.98.11/32"), ("0.0.0.0", "0.0.0.0/32"),
        ("::ffff:70.0.98.11", "70.0.98.11/32"), ("fd00:70::5", "fd00:70::5/128"), ("FD00:70::5", "fd00:70::5/128"),
        ("70.0.98.11/32", "-"), ("70.0.98", "-"), ("256.0.0.1", "-"), ("1.2.3.4.5", "-"), ("", "-"), ("fd00::/64", "-"),
        ("70.0.98.11 ", "-"), ("x70.0.98.11", "-"),
    ])
    func addresses(_ text: String, _ expected: String) {
        let got = ExternalIPsRule.parseAddress(text).map { $0.cidrs.map(\.description).joined() } ?? "-"
        #expect(got == expected)
    }
}
