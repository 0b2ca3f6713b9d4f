import Testing
@testable import PXGuardCore

/// Issue 23, findings 2–5: objects that already run on the host network, node ports
/// and load-balancer addresses by annotation (R7), hand-written endpoints (R8).
/// Every object is shaped as the API server sends it (defaulted, server-set metadata).
@Suite("R1 legacy host-network objects: what runs may not change")
struct HostNetworkLegacyTests {
    static func pod(image: String = "nginx:1.27", initImage: String? = nil, ephemeral: [String] = [],
                    hostNetwork: Bool = true, owner: Bool = false) -> JSON {
        .obj([
            "apiVersion": "v1", "kind": "Pod",
            "metadata": .obj(["name": "legacy", "namespace": "team-a", "uid": "7a7a7a7a-1111-4222-8333-444455556666",
                              "resourceVersion": "91", "labels": .obj(["app": "legacy"]),
                              "ownerReferences": owner ? [.obj(["apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "legacy-5d",
                                                                "uid": "1b1b1b1b-1111-4222-8333-444455556666",
                                                                "controller": true])] : nil]),
            "spec": .obj([
                "hostNetwork": .bool(hostNetwork), "dnsPolicy": "ClusterFirstWithHostNet", "restartPolicy": "Always",
                "containers": [.obj(["name": "web", "image": .string(image), "imagePullPolicy": "IfNotPresent",
                                     "ports": [.obj(["containerPort": 8080, "hostPort": 8080, "protocol": "TCP"])]])],
                "initContainers": initImage.map { [.obj(["name": "init", "image": .string($0)])] },
                "ephemeralContainers": ephemeral.isEmpty ? nil
                    : .array(ephemeral.map { .obj(["name": .string($0), "image": "busybox:1.36", "stdin": true, "tty": true]) }),
            ]),
            "status": .obj(["phase": "Running"]),
        ])
    }

    static func deployment(replicas: Int = 2, image: String = "nginx:1.27", hostNetwork: Bool = true,
                           restartedAt: String? = nil) -> JSON {
        .obj([
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": .obj(["name": "legacy", "namespace": "team-a", "generation": 3]),
            "spec": .obj([
                "replicas": .int(replicas), "selector": .obj(["matchLabels": .obj(["app": "legacy"])]),
                "template": .obj([
                    "metadata": .obj(["labels": .obj(["app": "legacy"]),
                                      "annotations": restartedAt.map { .obj(["kubectl.kubernetes.io/restartedAt": .string($0)]) }]),
                    "spec": .obj(["hostNetwork": .bool(hostNetwork),
                                  "containers": [.obj(["name": "web", "image": .string(image)])]]),
                ]),
            ]),
        ])
    }

    struct Case: CustomTestStringConvertible, Sendable {
        let label: String
        var kind = "Pod"
        var group = ""
        var subResource: String? = nil
        let old: JSON
        let new: JSON
        let allowed: Bool
        var message: String? = nil
        var testDescription: String { label }
    }

    static let cases: [Case] = [
        Case(label: "a Pod's container image changed", old: pod(), new: pod(image: "evil:latest"), allowed: false,
             message: "changing the image of container \"web\" of Pod team-a/legacy is not allowed"),
        Case(label: "an init container image changed", old: pod(initImage: "busybox:1.36"), new: pod(initImage: "evil:1"),
             allowed: false, message: "init container \"init\""),
        Case(label: "an ephemeral container added through pods/ephemeralcontainers (kubectl debug)",
             subResource: "ephemeralcontainers", old: pod(), new: pod(ephemeral: ["debugger-x7k"]), allowed: false,
             message: "adding ephemeral container \"debugger-x7k\""),
        Case(label: "a second ephemeral container added", subResource: "ephemeralcontainers", old: pod(ephemeral: ["a"]),
             new: pod(ephemeral: ["a", "b"]), allowed: false),
        Case(label: "labels changed, images kept", old: pod(), new: pod().setting("metadata", pod()["metadata"]!
            .setting("labels", .obj(["app": "legacy", "x": "y"]))), allowed: true),
        Case(label: "a status update of a legacy pod", subResource: "status", old: pod(), new: pod(), allowed: true),
        Case(label: "an ephemeral container on a pod without host network", subResource: "ephemeralcontainers",
             old: pod(hostNetwork: false), new: pod(ephemeral: ["dbg"], hostNetwork: false), allowed: true),
        Case(label: "a legacy Deployment scaled down", kind: "Deployment", group: "apps", old: deployment(replicas: 3),
             new: deployment(replicas: 1), allowed: true),
        Case(label: "a legacy Deployment scaled up (its pods are denied; the scale itself is not)", kind: "Deployment",
             group: "apps", old: deployment(replicas: 1), new: deployment(replicas: 4), allowed: true),
        Case(label: "a legacy Deployment's image changed", kind: "Deployment", group: "apps", old: deployment(),
             new: deployment(image: "evil:latest"), allowed: false,
             message: "changing the pod template of Deployment team-a/legacy is not allowed while it keeps spec.template.spec.hostNetwork: true"),
        Case(label: "a legacy Deployment moved off the host network", kind: "Deployment", group: "apps", old: deployment(),
             new: deployment(image: "nginx:1.28", hostNetwork: false), allowed: true),
        Case(label: "kubectl rollout restart changes template metadata only", kind: "Deployment", group: "apps",
             old: deployment(), new: deployment(restartedAt: "2026-12-07T02:00:00Z"), allowed: true),
    ]

    @Test("R1: legacy host-network Pods and workloads", arguments: cases)
    func table(_ c: Case) throws {
        let review = Review(group: c.group, kind: c.kind, operation: "UPDATE", namespace: "team-a", name: "legacy",
                            object: c.new, oldObject: c.old, subResource: c.subResource)
        let v = try validate(review.bytes)
        #expect(v.allowed == c.allowed, "\(v.message ?? "allowed")")
        if !c.allowed {
            #expect(v.rule == .hostNetwork)
            if let m = c.message { #expect(v.message?.contains(m) == true, "\(v.message ?? "")") }
        }
    }

    @Test("R1: a pod of a legacy workload says why scaling up is denied")
    func ownedPodMessage() throws {
        let v = try validate(Review(operation: "CREATE", namespace: "team-a", name: "legacy", object: Self.pod(owner: true)).bytes)
        #expect(!v.allowed)
        #expect(v.message?.contains("scaling it up or rolling it out makes pods that are denied") == true)
    }
}

@Suite("R7: node ports, load-balancer annotations, load balancers on node addresses")
struct ServicePortsTests {
    static func service(type: String = "NodePort", ports: [JSON], annotations: JSON? = nil) -> JSON {
        .obj([
            "apiVersion": "v1", "kind": "Service",
            "metadata": .obj(["name": "px", "namespace": "team-a", "uid": "4d4d4d4d-1111-4222-8333-444455556666",
                              "annotations": annotations]),
            "spec": .obj([
                "type": .string(type), "clusterIP": "10.96.14.7", "clusterIPs": ["10.96.14.7"], "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None", "externalTrafficPolicy": "Cluster",
                "selector": .obj(["app": "x"]), "ports": .array(ports),
            ]),
            "status": .obj(["loadBalancer": .object([])]),
        ])
    }

    static func port(_ port: Int, nodePort: Int? = nil, proto: String = "TCP") -> JSON {
        .obj(["name": .string("p\(port)"), "protocol": .string(proto), "port": .int(port), "targetPort": .int(port),
              "nodePort": nodePort.map { .int($0) }])
    }

    static let nodeIPs: Config = { var c = Config.default; c.loadBalancerUsesNodeIPs = true; return c }()
    static let udp: Config = {
        var c = Config.default
        c.protectedPorts = [PortRange("9001-9022")!, PortRange("UDP/9002")!]
        return c
    }()

    struct Case: CustomTestStringConvertible, Sendable {
        let label: String
        var old: JSON? = nil
        let new: JSON
        var config: Config = .default
        let allowed: Bool
        var message: String? = nil
        var testDescription: String { label }
    }

    static let cases: [Case] = [
        Case(label: "nodePort 9001 (CVE-2020-8554 class; whatever the node-port range)",
             new: service(ports: [port(80, nodePort: 9001)]), allowed: false,
             message: "asks for nodePort TCP/9001 (spec.ports[0].nodePort), inside the protected range TCP/9001-9022"),
        Case(label: "nodePort 9022, second entry", new: service(ports: [port(80, nodePort: 30080), port(81, nodePort: 9022)]),
             allowed: false, message: "spec.ports[1].nodePort"),
        Case(label: "nodePort 30080", new: service(ports: [port(80, nodePort: 30080)]), allowed: true),
        Case(label: "UDP nodePort 9001 when only TCP is protected", new: service(ports: [port(53, nodePort: 9001, proto: "UDP")]),
             allowed: true),
        Case(label: "UDP nodePort 9002 when UDP/9002 is protected", new: service(ports: [port(53, nodePort: 9002, proto: "UDP")]),
             config: udp, allowed: false),
        Case(label: "an UPDATE keeping nodePort 9001 from before pxguard", old: service(ports: [port(80, nodePort: 9001)]),
             new: service(ports: [port(80, nodePort: 9001), port(81, nodePort: 30081)]), allowed: true),
        Case(label: "an UPDATE moving a nodePort onto 9005", old: service(ports: [port(80, nodePort: 9001)]),
             new: service(ports: [port(80, nodePort: 9005)]), allowed: false),
        Case(label: "MetalLB annotation with a node address", new: service(type: "LoadBalancer", ports: [port(80, nodePort: 31000)],
             annotations: .obj(["metallb.universe.tf/loadBalancerIPs": "70.0.98.12"])), allowed: false,
             message: "load balancer IP 70.0.98.12 (annotation metallb.universe.tf/loadBalancerIPs)"),
        Case(label: "Cilium annotation, second of a comma-separated list with spaces",
             new: service(type: "LoadBalancer", ports: [port(80, nodePort: 31000)],
                          annotations: .obj(["lbipam.cilium.io/ips": "192.0.2.10, 70.0.1.1"])), allowed: false,
             message: "70.0.1.1"),
        // The review of 2026-12-07: MetalLB and Cilium trim with Go's strings.TrimSpace (every
        // Unicode space, a YAML block scalar's newline among them).
        Case(label: "MetalLB annotation from a YAML block scalar (trailing newline)",
             new: service(type: "LoadBalancer", ports: [port(80, nodePort: 31000)],
                          annotations: .obj(["metallb.universe.tf/loadBalancerIPs": "70.0.1.2\n"])), allowed: false, message: "70.0.1.2"),
        Case(label: "Cilium annotation, newline after the comma",
             new: service(type: "LoadBalancer", ports: [port(80, nodePort: 31000)],
                          annotations: .obj(["lbipam.cilium.io/ips": "1.2.3.4,\n70.0.1.2"])), allowed: false, message: "70.0.1.2"),
        Case(label: "annotation with CR, VT, FF, NEL and NBSP around the address",
             new: service(type: "LoadBalancer", ports: [port(80, nodePort: 31000)],
                          annotations: .obj(["metallb.io/loadBalancerIPs": "\r\u{0B}\u{0C}\u{85}\u{A0}70.0.1.2\u{A0}"])), allowed: false),
        Case(label: "a JSON-array annotation (Calico LB IPAM's form, when configured)",
             new: service(type: "LoadBalancer", ports: [port(80, nodePort: 31000)],
                          annotations: .obj(["metallb.io/loadBalancerIPs": "[\"192.0.2.1\", \"70.0.1.2\"]"])), allowed: false,
             message: "70.0.1.2"),
        Case(label: "healthCheckNodePort 9001 (kube-proxy binds it on every node)",
             new: service(type: "LoadBalancer", ports: [port(80, nodePort: 31000)]).setting("spec",
                 service(type: "LoadBalancer", ports: [port(80, nodePort: 31000)])["spec"]!.setting("externalTrafficPolicy", "Local")
                     .setting("healthCheckNodePort", 9001)), allowed: false, message: "healthCheckNodePort"),
        Case(label: "an UPDATE keeping healthCheckNodePort 9001 from before pxguard",
             old: service(type: "LoadBalancer", ports: [port(80, nodePort: 31000)]).setting("spec",
                 service(type: "LoadBalancer", ports: [port(80, nodePort: 31000)])["spec"]!.setting("healthCheckNodePort", 9001)),
             new: service(type: "LoadBalancer", ports: [port(80, nodePort: 31000)]).setting("spec",
                 service(type: "LoadBalancer", ports: [port(80, nodePort: 31000)])["spec"]!.setting("healthCheckNodePort", 9001)),
             allowed: true),
        Case(label: "kube-vip annotation outside the node subnets", new: service(type: "LoadBalancer", ports: [port(80, nodePort: 31000)],
             annotations: .obj(["kube-vip.io/loadbalancerIPs": "192.0.2.10"])), allowed: true),
        Case(label: "an UPDATE keeping an annotated node address", old: service(type: "LoadBalancer", ports: [port(80, nodePort: 31000)],
             annotations: .obj(["metallb.io/loadBalancerIPs": "70.0.98.12"])),
             new: service(type: "LoadBalancer", ports: [port(80, nodePort: 31000)],
                          annotations: .obj(["metallb.io/loadBalancerIPs": "70.0.98.12", "team": "a"])), allowed: true),
        Case(label: "loadBalancerUsesNodeIPs: a LoadBalancer on port 9001", new: service(type: "LoadBalancer",
             ports: [port(9001, nodePort: 31000)]), config: nodeIPs, allowed: false,
             message: "is a LoadBalancer with port TCP/9001 (spec.ports[0].port)"),
        Case(label: "loadBalancerUsesNodeIPs off: a LoadBalancer on port 9001", new: service(type: "LoadBalancer",
             ports: [port(9001, nodePort: 31000)]), allowed: true),
        Case(label: "loadBalancerUsesNodeIPs: a ClusterIP Service on 9001", new: service(type: "ClusterIP", ports: [port(9001)]),
             config: nodeIPs, allowed: true),
        Case(label: "loadBalancerUsesNodeIPs: an UPDATE of a LoadBalancer that already held 9001",
             old: service(type: "LoadBalancer", ports: [port(9001, nodePort: 31000)]),
             new: service(type: "LoadBalancer", ports: [port(9001, nodePort: 31000)], annotations: .obj(["a": "b"])),
             config: nodeIPs, allowed: true),
        Case(label: "loadBalancerUsesNodeIPs: a NodePort on 9001 turned into a LoadBalancer",
             old: service(type: "NodePort", ports: [port(9001, nodePort: 31000)]),
             new: service(type: "LoadBalancer", ports: [port(9001, nodePort: 31000)]), config: nodeIPs, allowed: false),
    ]

    @Test("R7: node ports, annotations and load balancers on node addresses", arguments: cases)
    func table(_ c: Case) throws {
        let review = Review(kind: "Service", operation: c.old == nil ? "CREATE" : "UPDATE", namespace: "team-a", name: "px",
                            object: c.new, oldObject: c.old)
        let v = try validate(review.bytes, AdmissionPolicy(config: c.config))
        #expect(v.allowed == c.allowed, "\(v.message ?? "allowed")")
        if !c.allowed {
            #expect(v.rule == .externalIPs)
            if let m = c.message { #expect(v.message?.contains(m) == true, "\(v.message ?? "")") }
        }
    }

    @Test("R7: loadBalancerIPAnnotations is configurable (an empty list reads none)")
    func annotationsConfig() throws {
        var config = Config.default
        config.loadBalancerIPAnnotations = ["example.com/vip"]
        let mine = Self.service(type: "LoadBalancer", ports: [Self.port(80, nodePort: 31000)],
                                annotations: .obj(["example.com/vip": "70.0.0.9"]))
        let metallb = Self.service(type: "LoadBalancer", ports: [Self.port(80, nodePort: 31000)],
                                   annotations: .obj(["metallb.universe.tf/loadBalancerIPs": "70.0.0.9"]))
        let policy = AdmissionPolicy(config: config)
        #expect(try !validate(Review(kind: "Service", namespace: "team-a", name: "px", object: mine).bytes, policy).allowed)
        #expect(try validate(Review(kind: "Service", namespace: "team-a", name: "px", object: metallb).bytes, policy).allowed)
    }
}

@Suite("R8 endpoints: hand-written Endpoints and EndpointSlices on node addresses (CVE-2021-25740)")
struct EndpointsRuleTests {
    static func endpoints(ready: [String] = [], notReady: [String] = [], ports: [JSON]) -> JSON {
        .obj([
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": .obj(["name": "px", "namespace": "team-a", "uid": "6e6e6e6e-1111-4222-8333-444455556666",
                              "resourceVersion": "12"]),
            "subsets": [.obj([
                "addresses": ready.isEmpty ? nil : .array(ready.map { .obj(["ip": .string($0)]) }),
                "notReadyAddresses": notReady.isEmpty ? nil : .array(notReady.map { .obj(["ip": .string($0)]) }),
                "ports": .array(ports),
            ])],
        ])
    }

    static func slice(_ addresses: [String], type addressType: String = "IPv4", ports: JSON?) -> JSON {
        .obj([
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": .obj(["name": "px-abc12", "namespace": "team-a", "generateName": "px-",
                              "labels": .obj(["kubernetes.io/service-name": "px"])]),
            "addressType": .string(addressType),
            "endpoints": .array(addresses.map { .obj(["addresses": [.string($0)], "conditions": .obj(["ready": true])]) }),
            "ports": ports,
        ])
    }

    static func p(_ port: Int?, _ proto: String? = "TCP") -> JSON {
        .obj(["name": "px", "port": port.map { .int($0) } ?? .null, "protocol": proto.map { .string($0) }])
    }

    static let dualStack: Config = {
        var c = Config.default
        c.nodeCIDRs = [CIDR("70.0.0.0/16")!, CIDR("fd00:70::/64")!]
        return c
    }()

    struct Case: CustomTestStringConvertible, Sendable {
        let label: String
        var kind = "Endpoints"
        var old: JSON? = nil
        let new: JSON
        var user = "alice@example.com"
        var config: Config = dualStack
        let allowed: Bool
        var message: String? = nil
        var testDescription: String { label }
    }

    static let cases: [Case] = [
        Case(label: "Endpoints to a node on 9001", new: endpoints(ready: ["70.0.98.11"], ports: [p(9001)]), allowed: false,
             message: "pxguard: endpoints: Endpoints team-a/px points at 70.0.98.11 (subsets[0].addresses[0].ip) on TCP/9001"),
        Case(label: "a not-ready address counts", new: endpoints(notReady: ["70.0.98.11"], ports: [p(9005)]), allowed: false,
             message: "subsets[0].notReadyAddresses[0].ip"),
        Case(label: "a node on 8080 only", new: endpoints(ready: ["70.0.98.11"], ports: [p(8080)]), allowed: true),
        Case(label: "a pod address on 9001", new: endpoints(ready: ["10.244.1.7"], ports: [p(9001)]), allowed: true),
        Case(label: "Endpoints port without protocol is TCP", new: endpoints(ready: ["70.0.98.11"], ports: [p(9001, nil)]),
             allowed: false),
        Case(label: "UDP 9001 when only TCP is protected", new: endpoints(ready: ["70.0.98.11"], ports: [p(9001, "UDP")]),
             allowed: true),
        Case(label: "the endpoints controller writes what the Service selects", new: endpoints(ready: ["70.0.98.11"], ports: [p(9001)]),
             user: "system:serviceaccount:kube-system:endpoint-controller", allowed: true),
        Case(label: "an UPDATE that keeps the subsets (from before pxguard)",
             old: endpoints(ready: ["70.0.98.11"], ports: [p(9001)]),
             new: endpoints(ready: ["70.0.98.11"], ports: [p(9001)]).setting("metadata", .obj(["name": "px", "labels": .obj(["a": "b"])])),
             allowed: true),
        Case(label: "an UPDATE adding a node address", old: endpoints(ready: ["10.244.1.7"], ports: [p(9001)]),
             new: endpoints(ready: ["10.244.1.7", "70.0.98.11"], ports: [p(9001)]), allowed: false),
        Case(label: "an EndpointSlice to a node on 9001", kind: "EndpointSlice", new: slice(["70.0.98.11"], ports: [p(9001)]),
             allowed: false, message: "EndpointSlice team-a/px points at 70.0.98.11 (endpoints[0].addresses[0]) on TCP/9001"),
        Case(label: "a null EndpointSlice port is every port", kind: "EndpointSlice", new: slice(["70.0.98.11"], ports: [p(nil)]),
             allowed: false, message: "every port"),
        Case(label: "a null EndpointSlice ports entry reads as {}", kind: "EndpointSlice",
             new: slice(["70.0.98.11"], ports: [.null]), allowed: false),
        Case(label: "an EndpointSlice with no ports exposes none", kind: "EndpointSlice", new: slice(["70.0.98.11"], ports: nil),
             allowed: true),
        Case(label: "an IPv6 slice to a node", kind: "EndpointSlice", new: slice(["fd00:70::11"], type: "IPv6", ports: [p(9001)]),
             allowed: false),
        Case(label: "an FQDN slice is not judged", kind: "EndpointSlice", new: slice(["node1.example.com"], type: "FQDN", ports: [p(9001)]),
             allowed: true),
        Case(label: "the EndpointSlice mirroring controller", kind: "EndpointSlice", new: slice(["70.0.98.11"], ports: [p(9001)]),
             user: "system:serviceaccount:kube-system:endpointslicemirroring-controller", allowed: true),
        Case(label: "an exempt namespace", kind: "EndpointSlice", new: slice(["70.0.98.11"], ports: [p(9001)]).setting(
            "metadata", .obj(["name": "x", "namespace": "portworx"])), allowed: true),
    ]

    @Test("R8: Endpoints and EndpointSlices as the API server sends them", arguments: cases)
    func table(_ c: Case) throws {
        let namespace = c.label == "an exempt namespace" ? "portworx" : "team-a"
        let review = Review(group: c.kind == "EndpointSlice" ? "discovery.k8s.io" : "", kind: c.kind,
                            operation: c.old == nil ? "CREATE" : "UPDATE", namespace: namespace, name: "px", user: c.user,
                            object: c.new, oldObject: c.old)
        let v = try validate(review.bytes, AdmissionPolicy(config: c.config))
        #expect(v.allowed == c.allowed, "\(v.message ?? "allowed")")
        if !c.allowed {
            #expect(v.rule == .endpoints)
            if let m = c.message { #expect(v.message?.contains(m) == true, "\(v.message ?? "")") }
        }
    }

    @Test("R8: the endpoint controllers are exempt from R8 only; the controller manager's Pods stay judged")
    func controllersExemptFromR8Only() throws {
        let cm = "system:kube-controller-manager"
        let pod = Review(operation: "CREATE", namespace: "team-a", name: "x", user: cm,
                         object: HostNetworkLegacyTests.pod(hostNetwork: true))
        #expect(try !validate(pod.bytes).allowed)
        var warn = Config.default
        warn.ruleModes[.endpoints] = .warn
        let r = Review(kind: "Endpoints", namespace: "team-a", name: "px",
                       object: Self.endpoints(ready: ["70.0.98.11"], ports: [Self.p(9001)]))
        let v = try validate(r.bytes, AdmissionPolicy(config: warn))
        #expect(v.allowed && v.decision == .warn)
    }
}

/// R7 and R8 read addresses as kube-proxy does (k8s.io/utils/net ParseIPSloppy):
/// IPv4 with leading zeros is decimal (Go's net.ParseIP rejects them since Go 1.17,
/// but Kubernetes keeps reading stored legacy values the old way, so pxguard
/// denies them as the addresses kube-proxy would program), IPv4-mapped IPv6 is
/// the IPv4 address, IPv6 in any spelling.
@Suite("R7/R8 address forms as kube-proxy reads them")
struct AddressFormTests {
    static let cases: [(String, Bool)] = [
        ("70.0.98.11", true), ("70.0.0.0", true), ("70.0.255.255", true), ("70.1.0.0", false), ("69.255.255.255", false),
        ("070.000.098.011", true), ("0070.0.98.11", true), ("070.0.98.011", true), ("007.0.98.11", false),
        ("::ffff:70.0.98.11", true), ("::ffff:4600:620b", true), ("0:0:0:0:0:ffff:70.0.98.11", true), ("::ffff:10.0.0.1", false),
        ("fd00:70::11", true), ("FD00:0070:0000:0000:0000:0000:0000:0011", true), ("fd00:70:0:1::11", false),
        ("::70.0.98.11", false), ("70.0.98", false), ("70.0.98.256", false), ("", false), ("node-1", false),
        // The review of 2026-12-07: ParseIPSloppy strips leading zeros after a colon too.
        ("::ffff:070.0.98.11", true), ("::FFFF:070.000.098.011", true), ("fd00:70::070.0.0.5", true), ("fd00:70::0.0.0.05", true),
        ("::ffff:010.0.0.1", false),
    ]

    static let config: Config = {
        var c = Config.default
        c.nodeCIDRs = [CIDR("70.0.0.0/16")!, CIDR("fd00:70::/64")!]
        return c
    }()

    @Test("an external IP, a load-balancer annotation, an Endpoints address and an EndpointSlice address, each form",
          arguments: cases)
    func forms(_ address: String, _ node: Bool) throws {
        let policy = AdmissionPolicy(config: Self.config)
        let external = Review(kind: "Service", namespace: "team-a", name: "s", object: .obj([
            "metadata": .obj(["name": "s"]), "spec": .obj(["type": "ClusterIP", "externalIPs": [.string(address)]])]))
        let annotated = Review(kind: "Service", namespace: "team-a", name: "s", object: .obj([
            "metadata": .obj(["name": "s", "annotations": .obj(["metallb.io/loadBalancerIPs": .string(address)])]),
            "spec": .obj(["type": "LoadBalancer"])]))
        let endpoints = Review(kind: "Endpoints", namespace: "team-a", name: "e",
                               object: EndpointsRuleTests.endpoints(ready: [address], ports: [EndpointsRuleTests.p(9001)]))
        let slice = Review(group: "discovery.k8s.io", kind: "EndpointSlice", namespace: "team-a", name: "e",
                           object: EndpointsRuleTests.slice([address], type: address.contains(":") ? "IPv6" : "IPv4",
                                                            ports: [EndpointsRuleTests.p(9001)]))
        for (what, review) in [("externalIPs", external), ("annotation", annotated), ("Endpoints", endpoints), ("EndpointSlice", slice)] {
            let v = try validate(review.bytes, policy)
            #expect(v.allowed == !node, "\(what) \(address): \(v.message ?? "allowed")")
        }
    }
}
