import Testing
@testable import PXGuardCore

@Suite("nodeCIDRs: auto (blocks around node addresses)")
struct NodeBlocksTests {
    @Test("the block of nodePrefixLength around each address, merged: duplicates and blocks inside wider ones go")
    func blocks() {
        var prefix = Config.NodePrefixLength()
        #expect(NodeBlocks.around(["10.0.3.7", "10.0.3.200", "10.0.4.1", "fd00:1::5", "node-a"], prefix: prefix).map(\.description)
                == ["10.0.3.0/24", "10.0.4.0/24", "fd00:1::/64"])
        #expect(NodeBlocks.merge([CIDR("10.0.3.0/24")!, CIDR("10.0.0.0/16")!]).map(\.description) == ["10.0.0.0/16"])
        prefix.ipv4 = 20
        #expect(NodeBlocks.around(["10.0.3.7", "10.0.14.1", "192.168.0.0/16"], prefix: prefix).map(\.description)
                == ["10.0.0.0/20", "192.168.0.0/16"])
    }

    @Test("explicit CIDRs stay beside auto; before any address is known the config is pending")
    func config() {
        var c = Config.install
        #expect(c.nodeAddressesPending)
        #expect(!c.withNodeBlocks([CIDR("10.0.3.0/24")!]).nodeAddressesPending)
        c.explicitNodeCIDRs = [CIDR("192.168.0.0/24")!]
        c.nodeCIDRs = c.explicitNodeCIDRs
        #expect(!c.nodeAddressesPending)
        #expect(c.withNodeBlocks([CIDR("10.0.3.0/24")!]).nodeCIDRs.map(\.description) == ["10.0.3.0/24", "192.168.0.0/24"])
        #expect(Config.default.withNodeBlocks([CIDR("10.0.3.0/24")!]) == Config.default, "without auto, blocks change nothing")
        #expect(Config.install.document["nodeCIDRs"] == ["auto"])
    }

    @Test("the node subnets of an existing allow-api policy")
    func fromPolicies() {
        let spec = GuardPolicies(config: Config.install.withNodeBlocks([CIDR("10.9.0.0/24")!, CIDR("fd00::/64")!])).allowAPISpec
        #expect(NodeBlocks.fromAllowAPI(spec: spec).map(\.description) == ["10.9.0.0/24", "fd00::/64"])
    }

    @Test("pending: NetworkPolicy and Service writes in guarded namespaces get a retry denial under the rule's name and mode; pods are judged as usual")
    func pendingAdmission() throws {
        let policy = AdmissionPolicy(config: .install)
        let netpol = Review(group: "networking.k8s.io", kind: "NetworkPolicy", name: "x",
                            object: networkPolicy(name: "x", spec: .obj(["podSelector": .object([])])))
        let denied = try validate(netpol.bytes, policy)
        #expect(!denied.allowed && (denied.message ?? "").contains("bypassPolicies") && (denied.message ?? "").contains("Retry in a few seconds"))
        var warn = Config.install
        warn.mode = .warn
        #expect(try validate(netpol.bytes, AdmissionPolicy(config: warn)).allowed)
        let known = AdmissionPolicy(config: Config.install.withNodeBlocks([CIDR("10.0.0.0/24")!]))
        #expect(try validate(netpol.bytes, known).allowed)
    }

    @Test("pending: hand-written Endpoints and EndpointSlices in guarded namespaces get R8's retry denial; the endpoint controllers' do not")
    func pendingEndpoints() throws {
        let policy = AdmissionPolicy(config: .install)
        let endpoints = Review(kind: "Endpoints", namespace: "team-a", name: "svc",
                               object: .obj(["subsets": [.obj(["addresses": [.obj(["ip": "10.1.2.3"])],
                                                                "ports": [.obj(["port": 9001, "protocol": "TCP"])]])]]))
        let slice = Review(group: "discovery.k8s.io", kind: "EndpointSlice", namespace: "team-a", name: "svc-x",
                           object: .obj(["addressType": "IPv4", "endpoints": [.obj(["addresses": ["10.1.2.3"]])],
                                         "ports": [.obj(["port": 9001, "protocol": "TCP"])]]))
        for review in [endpoints, slice] {
            let v = try validate(review.bytes, policy)
            #expect(!v.allowed && v.rule == .endpoints && (v.message ?? "").contains("Retry in a few seconds"), "\(review.kind)")
            var controller = review
            controller.user = "system:serviceaccount:kube-system:endpointslice-controller"
            #expect(try validate(controller.bytes, policy).allowed, "\(review.kind) by the controller")
            var exempt = review
            exempt.namespace = "kube-system"
            #expect(try validate(exempt.bytes, policy).allowed, "\(review.kind) in an exempt namespace")
        }
        // Only what could reach a protected port waits: the API server's own `default/kubernetes`
        // endpoints (6443) and any endpoint off the protected ports go on.
        let apiserver = Review(kind: "Endpoints", operation: "UPDATE", namespace: "default", name: "kubernetes",
                               user: "system:apiserver", groups: ["system:masters"],
                               object: .obj(["subsets": [.obj(["addresses": [.obj(["ip": "10.0.0.5"])],
                                                               "ports": [.obj(["name": "https", "port": 6443, "protocol": "TCP"])]])]]),
                               oldObject: .obj(["subsets": [.obj(["addresses": [.obj(["ip": "10.0.0.4"])],
                                                                  "ports": [.obj(["name": "https", "port": 6443, "protocol": "TCP"])]])]]))
        #expect(try validate(apiserver.bytes, policy).allowed)
    }

    @Test("pending: a Service waits only when it names an address (it might be a node's); its node ports are judged at once")
    func pendingServices() throws {
        let policy = AdmissionPolicy(config: .install)
        func service(_ spec: JSON) -> Review {
            Review(kind: "Service", namespace: "team-a", name: "web", object: .obj(["spec": spec]))
        }
        let plain = service(.obj(["type": "ClusterIP", "ports": [.obj(["port": 443, "protocol": "TCP"])]]))
        #expect(try validate(plain.bytes, policy).allowed)
        let external = service(.obj(["ports": [.obj(["port": 443, "protocol": "TCP"])], "externalIPs": ["10.0.0.9"]]))
        let waiting = try validate(external.bytes, policy)
        #expect(!waiting.allowed && (waiting.message ?? "").contains("Retry in a few seconds"))
        let nodePort = service(.obj(["type": "NodePort", "ports": [.obj(["port": 443, "nodePort": 9001, "protocol": "TCP"])]]))
        let denied = try validate(nodePort.bytes, policy)
        #expect(!denied.allowed && !(denied.message ?? "").contains("Retry in a few seconds"), "\(denied.message ?? "")")
    }
}
