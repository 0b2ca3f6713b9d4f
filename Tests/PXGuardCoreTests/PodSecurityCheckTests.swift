import Testing
@testable import PXGuardCore

@Suite("Pod Security levels over running Pods (what PSA would reject)")
struct PodSecurityCheckTests {
    static func pod(_ spec: JSON, annotations: JSON? = nil) -> JSON {
        .obj(["metadata": .obj(["name": "p", "annotations": annotations]), "spec": spec])
    }
    static let plain: JSON = .obj(["containers": [.obj(["name": "c", "image": "busybox"])]])
    static let hardened: JSON = .obj([
        "securityContext": .obj(["runAsNonRoot": true, "seccompProfile": .obj(["type": "RuntimeDefault"])]),
        "containers": [.obj(["name": "c", "image": "busybox", "securityContext": .obj([
            "allowPrivilegeEscalation": false, "capabilities": .obj(["drop": ["ALL"]]),
        ])])],
        "volumes": [.obj(["name": "v", "configMap": .obj(["name": "x"])])],
    ])

    @Test("baseline rejects the host namespaces, privileged containers, hostPath, hostPorts, extra capabilities, unsafe sysctls",
          arguments: [
            (JSON.obj(["hostNetwork": true, "containers": [.obj(["name": "c"])]]), "hostNetwork=true"),
            (JSON.obj(["hostPID": true, "containers": [.obj(["name": "c"])]]), "hostPID=true"),
            (JSON.obj(["containers": [.obj(["name": "c", "securityContext": .obj(["privileged": true])])]]), "privileged container c"),
            (JSON.obj(["containers": [.obj(["name": "c"])], "volumes": [.obj(["name": "root", "hostPath": .obj(["path": "/"])])]]), "hostPath volume root"),
            (JSON.obj(["containers": [.obj(["name": "c", "ports": [.obj(["containerPort": 9100, "hostPort": 9100])]])]]), "hostPort in c"),
            (JSON.obj(["containers": [.obj(["name": "c", "securityContext": .obj(["capabilities": .obj(["add": ["NET_ADMIN"]])])])]]), "capability NET_ADMIN in c"),
            (JSON.obj(["securityContext": .obj(["sysctls": [.obj(["name": "net.core.somaxconn", "value": "1"])]]), "containers": [.obj(["name": "c"])]]), "sysctl net.core.somaxconn"),
            (JSON.obj(["initContainers": [.obj(["name": "i", "securityContext": .obj(["privileged": true])])], "containers": [.obj(["name": "c"])]]), "privileged container i"),
          ] as [(JSON, String)])
    func baseline(_ spec: JSON, _ reason: String) {
        #expect(PodSecurityCheck.violations(Self.pod(spec), level: "baseline").contains(reason))
        #expect(PodSecurityCheck.violations(Self.pod(spec), level: "privileged").isEmpty)
    }

    @Test("a plain pod passes baseline and fails restricted; a hardened one passes both; the level label orders as PSA does")
    func levels() {
        #expect(PodSecurityCheck.violations(Self.pod(Self.plain), level: "baseline").isEmpty)
        let restricted = PodSecurityCheck.violations(Self.pod(Self.plain), level: "restricted")
        #expect(restricted.contains("allowPrivilegeEscalation not false in c") && restricted.contains("runAsNonRoot not true in c"))
        #expect(PodSecurityCheck.violations(Self.pod(Self.hardened), level: "restricted").isEmpty)
        #expect(PodSecurityCheck.violations(Self.pod(Self.plain, annotations: .obj([
            "container.apparmor.security.beta.kubernetes.io/c": "unconfined"])), level: "baseline") == ["AppArmor unconfined"])
    }
}
