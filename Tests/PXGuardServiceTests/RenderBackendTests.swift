import Testing
@testable import PXGuardCore
@testable import PXGuardService

@Suite("render --guard-backend")
struct RenderBackendTests {
    @Test("policies: the backend's cluster-scoped objects replace the NetworkPolicies", arguments: GuardBackend.discoveryOrder)
    func clusterObjects(_ backend: GuardBackend) throws {
        // Calico names the nodes by address: with the bundle's nodeCIDRs: auto it needs --nodes
        // (an empty `nets` would be any destination), and renders nothing without.
        let nodes = backend == .calico ? "70.0.98.11" : nil
        let out = try renderCommand(configPath: nil, caBundle: nil, nodes: nodes, namespace: "default", what: "policies",
                                    guardBackend: backend.rawValue)
        if backend == .calico {
            #expect(out.contains("- 70.0.98.0/24"))
            let none = try renderCommand(configPath: nil, caBundle: nil, nodes: nil, namespace: "default", what: "policies",
                                         guardBackend: backend.rawValue)
            #expect(!none.contains("kind: GlobalNetworkPolicy") && !none.contains("nets: []"))
        }
        for resource in backend.resources {
            #expect(out.contains("apiVersion: \(resource.apiVersion)\nkind: \(resource.kind)\n"))
        }
        #expect(!out.contains("kind: NetworkPolicy"))
        #expect(out.contains("block-protected-ports-kube-system"))
    }

    @Test("all: the ConfigMap carries the backend, the registration its kinds, and no other backend's")
    func bundle() throws {
        let out = try renderCommand(configPath: nil, caBundle: nil, nodes: nil, namespace: "default", what: "all", guardBackend: "calico")
        #expect(out.contains("guardBackend: calico"))
        #expect(out.contains("tier.globalnetworkpolicies"))
        #expect(!out.contains("cilium.io") && !out.contains("adminnetworkpolicies"))
        let plain = try renderCommand(configPath: nil, caBundle: nil, nodes: nil, namespace: "default", what: "all",
                                      guardBackend: "networkpolicy")
        #expect(!plain.contains("projectcalico.org") && !plain.contains("cilium.io") && !plain.contains("policy.networking.k8s.io"))
    }

    @Test("auto renders the NetworkPolicies offline; an unknown name is refused with the choices")
    func autoAndBad() throws {
        let out = try renderCommand(configPath: nil, caBundle: nil, nodes: "70.0.98.11", namespace: "default", what: "policies",
                                    guardBackend: "auto")
        #expect(out.contains("kind: NetworkPolicy"))
        #expect(throws: CommandError.self) {
            try renderCommand(configPath: nil, caBundle: nil, nodes: nil, namespace: "default", what: "policies", guardBackend: "antrea")
        }
    }
}
