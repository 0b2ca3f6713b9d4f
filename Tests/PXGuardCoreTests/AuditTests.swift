import Foundation
import Testing
@testable import PXGuardCore

/// Judges one object as the audit does (the object as the API returns it).
func auditRecord(_ object: JSON, _ judge: AuditJudge = AuditJudge(config: .default)) throws -> AuditRecord {
    try #require(try JSONDocument.parse(Array(object.serialized.utf8)) { judge.judge($0) })
}

/// The message admission gives for creating `object` as a non-exempt user.
func admissionMessage(_ object: JSON, kind: String, group: String = "", config: Config = .default) throws -> String? {
    let meta = object["metadata"]!
    let review = Review(group: group, kind: kind, namespace: meta["namespace"]!.stringValue!,
                        name: meta["name"]!.stringValue!, object: object)
    return try validate(review.bytes, AdmissionPolicy(config: config)).message
}

/// The default (seed style) guard policies of `namespace`, as the API returns them.
func guardPolicyObjects(_ namespace: String, config: Config = .default, labelled: Bool = true) -> [JSON] {
    let policies = GuardPolicies(config: config)
    return GuardPolicies.names(in: namespace).map { name in
        var p = policies.policy(name: name, namespace: namespace)!
        if !labelled { p = p.setting("metadata", .obj(["name": .string(name), "namespace": .string(namespace)])) }
        return p
    }
}

func service(_ namespace: String, name: String = "svc", externalIPs: [String]? = nil, loadBalancerIP: String? = nil) -> JSON {
    .obj([
        "apiVersion": "v1", "kind": "Service",
        "metadata": .obj(["name": .string(name), "namespace": .string(namespace), "uid": "u-svc"]),
        "spec": .obj([
            "type": "ClusterIP", "clusterIP": "10.96.0.9",
            "ports": [.obj(["protocol": "TCP", "port": 443, "targetPort": 8443])],
            "externalIPs": externalIPs.map { .array($0.map { .string($0) }) },
            "loadBalancerIP": loadBalancerIP.map { .string($0) },
        ]),
    ])
}

func runningPod(_ namespace: String, name: String = "p", hostNetwork: Bool, phase: String = "Running", image: String = "busybox") -> JSON {
    .obj([
        "apiVersion": "v1", "kind": "Pod",
        "metadata": .obj(["name": .string(name), "namespace": .string(namespace), "uid": "u-pod"]),
        "spec": .obj(["hostNetwork": .bool(hostNetwork), "containers": [.obj(["name": "c", "image": .string(image)])]]),
        "status": .obj(["phase": .string(phase)]),
    ])
}

let openToNodes: JSON = .obj([
    "podSelector": .object([]), "policyTypes": ["Egress"],
    "egress": [.obj(["to": [.obj(["ipBlock": .obj(["cidr": "70.0.0.0/16"])])], "ports": [.obj(["protocol": "TCP", "port": 9001])]])],
])
let databaseOnly: JSON = .obj([
    "podSelector": .obj(["matchLabels": .obj(["app": "db"])]), "policyTypes": ["Egress"],
    "egress": [.obj(["to": [.obj(["ipBlock": .obj(["cidr": "10.0.0.0/8"])])], "ports": [.obj(["protocol": "TCP", "port": 5432])]])],
])

@Suite("Audit: judging one object on arrival")
struct AuditJudgeTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let label: String
        let object: JSON
        let kind: String
        var group = ""
        /// The checks the record must hold, in order.
        let checks: [AuditCheck]
        var testDescription: String { label }
    }

    static let cases: [Case] = [
        Case(label: "R4: a policy that opens TCP 9001 on the node subnet is a bypass",
             object: networkPolicy(name: "open", namespace: "team-a", spec: openToNodes), kind: "NetworkPolicy",
             group: "networking.k8s.io", checks: [.bypassPolicies, .guardWidens]),
        Case(label: "R4: egress to 10.0.0.0/8 on 5432 opens nothing (but the guard widens it)",
             object: networkPolicy(name: "db", namespace: "team-a", spec: databaseOnly), kind: "NetworkPolicy",
             group: "networking.k8s.io", checks: [.guardWidens]),
        Case(label: "R4: an ingress-only policy is neither a bypass nor widened",
             object: networkPolicy(name: "in", namespace: "team-a", spec: .obj(["podSelector": .object([]), "policyTypes": ["Ingress"]])),
             kind: "NetworkPolicy", group: "networking.k8s.io", checks: []),
        Case(label: "R4: a bypass in an exempt namespace is not a finding",
             object: networkPolicy(name: "open", namespace: "kube-system", spec: openToNodes), kind: "NetworkPolicy",
             group: "networking.k8s.io", checks: []),
        Case(label: "R1: a running host-network Pod", object: runningPod("team-a", hostNetwork: true), kind: "Pod",
             checks: [.hostNetwork]),
        Case(label: "R1: a pending host-network Pod is about to run", object: runningPod("team-a", hostNetwork: true, phase: "Pending"),
             kind: "Pod", checks: [.hostNetwork]),
        Case(label: "R1: a host-network Pod that has finished holds nothing",
             object: runningPod("team-a", hostNetwork: true, phase: "Succeeded"), kind: "Pod", checks: []),
        Case(label: "R1: a host-network Pod that failed holds nothing",
             object: runningPod("team-a", hostNetwork: true, phase: "Failed"), kind: "Pod", checks: []),
        Case(label: "R1: a Pod on the pod network", object: runningPod("team-a", hostNetwork: false), kind: "Pod", checks: []),
        Case(label: "R7: an external IP inside the node subnet", object: service("team-a", externalIPs: ["70.0.3.4"]),
             kind: "Service", checks: [.externalIPs]),
        Case(label: "R7: a loadBalancerIP inside the node subnet", object: service("team-a", loadBalancerIP: "70.0.0.9"),
             kind: "Service", checks: [.externalIPs]),
        Case(label: "R7: an external IP outside the node subnets", object: service("team-a", externalIPs: ["192.0.2.10"]),
             kind: "Service", checks: []),
    ]

    @Test("each rule's finding is the rule's own admission message", arguments: cases)
    func table(_ c: Case) throws {
        let record = try auditRecord(c.object)
        #expect(record.findings.map(\.check) == c.checks)
        #expect(record.namespace == c.object["metadata"]!["namespace"]!.stringValue!)
        for finding in record.findings where finding.check != .guardWidens {
            // What admission says of creating the same object now, as a non-exempt user.
            #expect(try finding.message == admissionMessage(c.object, kind: c.kind, group: c.group))
        }
    }

    @Test("a finding does not depend on the rule's mode: warn leaves the hole open")
    func modeIndependent() throws {
        var config = Config.default
        config.ruleModes = [.bypassPolicies: .warn, .hostNetwork: .audit]
        let judge = AuditJudge(config: config)
        #expect(try auditRecord(networkPolicy(name: "open", namespace: "team-a", spec: openToNodes), judge).findings.map(\.check) == [.bypassPolicies, .guardWidens])
        #expect(try auditRecord(runningPod("team-a", hostNetwork: true), judge).findings.map(\.check) == [.hostNetwork])
    }

    @Test("guard policies: canonical and labelled, drifted, unlabelled; R4 stands aside for them")
    func guardPolicyState() throws {
        let objects = guardPolicyObjects("team-a")
        for o in objects {
            let r = try auditRecord(o)
            #expect(r.guardPolicy == .canonical)
            #expect(r.findings.isEmpty)
        }
        // The allow-api policy opens the node subnet on 6443 only; a drifted block policy
        // that opens 9001 is judged as drifted, not as a bypass: R3 owns guard names.
        let drifted = networkPolicy(name: GuardNames.blockPolicy, namespace: "team-a",
                                    labels: .obj([GuardNames.managedByKey: "pxguard"]), spec: openToNodes)
        #expect(try auditRecord(drifted).guardPolicy == .drifted)
        #expect(try auditRecord(guardPolicyObjects("team-a", labelled: false)[0]).guardPolicy == .unlabelled)
        // An owner (the review of 2026-12-07): deleting it has the garbage collector, whose
        // DELETE is always allowed, remove the guard policy: not in place.
        var owned = guardPolicyObjects("team-a")[0]
        owned = owned.setting("metadata", owned["metadata"]!.setting("ownerReferences", [.obj([
            "apiVersion": "v1", "kind": "ConfigMap", "name": "mine", "uid": "0d0d0d0d-0000-4000-8000-000000000001"])]))
        #expect(try auditRecord(owned).guardPolicy == .drifted)
        // A guard name where no guard policy belongs is any other policy.
        let elsewhere = networkPolicy(name: GuardNames.allowAPIPolicy, namespace: "kube-system", spec: openToNodes)
        #expect(try auditRecord(elsewhere).guardPolicy == nil)
    }

    @Test("an object that cannot be judged is a finding, never skipped")
    func unjudged() throws {
        let noSpec: JSON = .obj(["apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                 "metadata": .obj(["name": "x", "namespace": "team-a"])])
        #expect(try auditRecord(noSpec).findings.map(\.check) == [.unjudged])
        let specNotObject: JSON = .obj(["apiVersion": "v1", "kind": "Service",
                                        "metadata": .obj(["name": "x", "namespace": "team-a"]), "spec": "nope"])
        #expect(try auditRecord(specNotObject).findings.map(\.check) == [.unjudged])
        let noName: JSON = .obj(["apiVersion": "v1", "kind": "Pod", "metadata": .obj(["namespace": "team-a"]),
                                 "spec": .obj(["hostNetwork": true])])
        let r = try auditRecord(noName)
        #expect(r.findings.map(\.check) == [.unjudged])
        #expect(r.namespace == "team-a")
        // Kinds the audit does not read are not records at all.
        #expect(try JSONDocument.parse(Array(#"{"apiVersion":"v1","kind":"ConfigMap"}"#.utf8)) { AuditJudge(config: .default).judge($0) } == nil)
        // The informer's way to record what it could not decode (too large, too deep).
        let big = AuditRecord.unjudged(kind: .networkPolicy, namespace: "team-a", name: "huge", reason: "it is over 3 MiB")
        #expect(big.findings.count == 1 && big.findings[0].message.contains("it is over 3 MiB"))
    }

    @Test("the digest covers what the judgment reads, and nothing a tenant adds beside it")
    func digest() throws {
        let base = networkPolicy(name: "db", namespace: "team-a", spec: databaseOnly)
        let annotated = base.setting("metadata", base["metadata"]!.setting("annotations", .obj(["note": .string(String(repeating: "x", count: 4096))])))
        #expect(try auditRecord(base).digest == auditRecord(annotated).digest)
        #expect(try auditRecord(base).digest != auditRecord(networkPolicy(name: "db", namespace: "team-a", spec: openToNodes)).digest)
        // A Pod's images do not change its verdict; its phase does.
        #expect(try auditRecord(runningPod("team-a", hostNetwork: true, image: "a")).digest
                == auditRecord(runningPod("team-a", hostNetwork: true, image: "b")).digest)
        #expect(try auditRecord(runningPod("team-a", hostNetwork: true)).digest
                != auditRecord(runningPod("team-a", hostNetwork: true, phase: "Succeeded")).digest)
    }

    @Test("repairBypassPolicies: R4's repair of an existing policy; applied, the policy is no bypass and allows what it did elsewhere")
    func repair() throws {
        let judge = AuditJudge(config: .default)
        let spec: JSON = .obj(["podSelector": .object([]), "policyTypes": ["Egress"],
                               "egress": [.obj(["to": [.obj(["ipBlock": .obj(["cidr": "0.0.0.0/0"])])]])]])
        let policy = networkPolicy(name: "wide", namespace: "team-a", spec: spec)
        let answer = try JSONDocument.parse(Array(policy.serialized.utf8)) { judge.repairBypass($0) }
        guard case .patch(let patch, let event)? = answer else {
            Issue.record("no patch: \(String(describing: answer))")
            return
        }
        #expect(event.contains("repaired NetworkPolicy team-a/wide"))
        let repaired = try JSONPatchApplier.apply(try JSON(parsing: patch), to: policy)
        // No bypass left, and still everything off the nodes (else the seed block would widen it).
        // (The seed style's block allows IPv4 only; the ports style's also IPv6, which this IPv4 policy never allowed.)
        var seed = Config.default
        seed.policyStyle = .seed
        #expect(try auditRecord(repaired, AuditJudge(config: seed)).findings.isEmpty)
        // Nothing to repair: no bypass, a guard policy, an exempt namespace.
        for object in [networkPolicy(name: "db", namespace: "team-a", spec: databaseOnly),
                       networkPolicy(name: "wide", namespace: "kube-system", spec: spec)] + guardPolicyObjects("team-a") {
            #expect(try JSONDocument.parse(Array(object.serialized.utf8)) { judge.repairBypass($0) } == nil)
        }
    }

    @Test("Endpoints and EndpointSlices are kept with identity and digest (R8 judges them where it exists)")
    func endpoints() throws {
        func endpoints(_ ip: String) -> JSON {
            .obj(["apiVersion": "v1", "kind": "Endpoints", "metadata": .obj(["name": "e", "namespace": "team-a", "uid": "u-e"]),
                  "subsets": [.obj(["addresses": [.obj(["ip": .string(ip)])], "ports": [.obj(["port": 9001])]])]])
        }
        let a = try auditRecord(endpoints("70.0.0.1")), b = try auditRecord(endpoints("10.1.1.1"))
        #expect(a.kind == .endpoints && a.name == "e" && a.uid == "u-e")
        #expect(a.digest != b.digest)
        let slice: JSON = .obj(["apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                                "metadata": .obj(["name": "s", "namespace": "team-a"]), "addressType": "IPv4",
                                "endpoints": [.obj(["addresses": ["70.0.0.1"]])], "ports": .null])
        #expect(try auditRecord(slice).kind == .endpointSlice)
    }
}

@Suite("Audit: what the guard widens (networkpolicy backend)")
struct GuardWideningTests {
    static func spec(_ egress: [JSON], types: [JSON] = ["Egress"]) -> JSON {
        .obj(["podSelector": .object([]), "policyTypes": .array(types), "egress": .array(egress)])
    }
    static func rule(to: [String]? = nil, ports: [JSON]? = nil) -> JSON {
        .obj(["to": to.map { .array($0.map { .obj(["ipBlock": .obj(["cidr": .string($0)])]) }) }, "ports": ports.map { .array($0) }])
    }

    struct Case: CustomTestStringConvertible, Sendable {
        let label: String
        let spec: JSON
        var style: PolicyStyle = .seed
        let widened: Bool
        var testDescription: String { label }
    }

    static let cases: [Case] = [
        Case(label: "deny all egress: widened", spec: spec([]), widened: true),
        Case(label: "only 10.0.0.0/8 on 5432: widened", spec: databaseOnly, widened: true),
        Case(label: "everything on every port: nothing to widen", spec: spec([rule()]), widened: false),
        Case(label: "seed: 0.0.0.0/0 on every port is all the seed block allows",
             spec: spec([rule(to: ["0.0.0.0/0"])]), widened: false),
        Case(label: "ports style: 0.0.0.0/0 except the nodes leaves the nodes' other ports to the guard",
             spec: spec([.obj(["to": [.obj(["ipBlock": .obj(["cidr": "0.0.0.0/0", "except": ["70.0.0.0/16"]])])]]),
                         rule(to: ["::/0"])]), style: .ports, widened: true),
        Case(label: "ports style: outside the nodes plus the nodes outside 9001-9022, in two rules, covers the guard",
             spec: spec([.obj(["to": [.obj(["ipBlock": .obj(["cidr": "0.0.0.0/0", "except": ["70.0.0.0/16"]])]),
                                      .obj(["ipBlock": .obj(["cidr": "::/0"])])]]),
                         rule(to: ["70.0.0.0/16"], ports: [.obj(["port": 1, "endPort": 9000]), .obj(["port": 9023, "endPort": 65535]),
                                                           .obj(["protocol": "UDP"]), .obj(["protocol": "SCTP"])])]),
             style: .ports, widened: false),
        Case(label: "ports style: the same without SCTP is widened (SCTP to the nodes)",
             spec: spec([.obj(["to": [.obj(["ipBlock": .obj(["cidr": "0.0.0.0/0", "except": ["70.0.0.0/16"]])]),
                                      .obj(["ipBlock": .obj(["cidr": "::/0"])])]]),
                         rule(to: ["70.0.0.0/16"], ports: [.obj(["port": 1, "endPort": 9000]), .obj(["port": 9023, "endPort": 65535]),
                                                           .obj(["protocol": "UDP"])])]),
             style: .ports, widened: true),
        Case(label: "every port but TCP 5432 everywhere, 5432 only to 10.0.0.0/8 (a bound met twice): widened",
             spec: spec([rule(to: ["0.0.0.0/0"], ports: [.obj(["port": 1, "endPort": 5431]), .obj(["port": 5433, "endPort": 65535]),
                                                         .obj(["protocol": "UDP"]), .obj(["protocol": "SCTP"])]),
                         rule(to: ["10.0.0.0/8"], ports: [.obj(["port": 5432])])]), widened: true),
        Case(label: "the same with 5432 everywhere too: nothing to widen",
             spec: spec([rule(to: ["0.0.0.0/0"], ports: [.obj(["port": 1, "endPort": 5431]), .obj(["port": 5433, "endPort": 65535]),
                                                         .obj(["protocol": "UDP"]), .obj(["protocol": "SCTP"])]),
                         rule(to: ["0.0.0.0/0"], ports: [.obj(["port": 5432])])]), widened: false),
        Case(label: "selector peers cover no address range: widened",
             spec: spec([.obj(["to": [.obj(["namespaceSelector": .object([])])]])]), widened: true),
        Case(label: "an ingress-only policy restricts no egress", spec: spec([], types: ["Ingress"]), widened: false),
    ]

    @Test("a tenant egress policy is widened when the block policy allows something it does not", arguments: cases)
    func table(_ c: Case) throws {
        var config = Config.default
        config.policyStyle = c.style
        let record = try auditRecord(networkPolicy(name: "tenant", namespace: "team-a", spec: c.spec), AuditJudge(config: config))
        #expect(record.findings.contains { $0.check == .guardWidens } == c.widened)
    }

    @Test("the note names what is opened; a cluster-scoped backend reports nothing")
    func message() throws {
        var seed = Config.default
        seed.policyStyle = .seed
        let r = try auditRecord(networkPolicy(name: "db", namespace: "team-a", spec: databaseOnly), AuditJudge(config: seed))
        let note = try #require(r.findings.first { $0.check == .guardWidens })
        #expect(note.message.contains("team-a/db") && note.message.contains("0.0.0.0/2") && note.message.contains("TCP/1-5431"))
        let judge = AuditJudge(config: .default, reportsGuardWidening: false)
        #expect(try auditRecord(networkPolicy(name: "db", namespace: "team-a", spec: databaseOnly), judge).findings.isEmpty)
    }

    @Test("a policy too large to check in bounded work is reported, saying so")
    func bounded() throws {
        // 3,000 rules of one port each: 6,000 port intervals, each looked up in every rule.
        // The last rule allows every address on every port, so no interval is found open
        // early: every one is looked up in every rule, over the bound.
        let rules: [JSON] = (0..<3000).map { i in GuardWideningTests.rule(to: ["10.\(i % 250).0.0/16"], ports: [.obj(["port": .int(20000 + 2 * i)])]) }
            + [GuardWideningTests.rule(to: ["0.0.0.0/0", "::/0"])]
        let r = try auditRecord(networkPolicy(name: "big", namespace: "team-a", spec: Self.spec(rules)))
        #expect(r.findings.first { $0.check == .guardWidens }?.message.contains("too large") == true)
    }
}

@Suite("Audit: the verdict per namespace")
struct AuditVerdictTests {
    static let labelled = AuditNamespace(name: "team-a", guardedLabel: "true", podSecurityEnforce: "baseline")

    func records(_ objects: [JSON], _ config: Config = .default) throws -> [AuditRecord] {
        try objects.map { try auditRecord($0, AuditJudge(config: config)) }
    }

    func verdict(_ state: AuditNamespace?, _ objects: [JSON], namespace: String = "team-a", config: Config = .default) throws -> AuditVerdict? {
        Audit.verdict(namespace: namespace, state: state, records: try records(objects, config), config: config)
    }

    @Test("guard policies in place, labels set, nothing open: protected")
    func protected() throws {
        let v = try #require(try verdict(Self.labelled, guardPolicyObjects("team-a") + [
            runningPod("team-a", hostNetwork: false), service("team-a", externalIPs: ["192.0.2.1"]),
            runningPod("team-a", name: "job", hostNetwork: true, phase: "Succeeded"),
        ]))
        #expect(!v.exposed)
        #expect(v.findings.isEmpty)
    }

    struct Case: CustomTestStringConvertible, Sendable {
        let label: String
        var state: AuditNamespace? = AuditVerdictTests.labelled
        var policies: [JSON] = guardPolicyObjects("team-a")
        var objects: [JSON] = []
        var config: Config = .default
        let checks: [AuditCheck]
        var testDescription: String { label }
    }

    static let cases: [Case] = [
        Case(label: "R1: a running host-network Pod", objects: [runningPod("team-a", hostNetwork: true)], checks: [.hostNetwork]),
        Case(label: "R4: a bypass policy", objects: [networkPolicy(name: "open", namespace: "team-a", spec: openToNodes)],
             checks: [.bypassPolicies]),
        Case(label: "R7: a Service on a node address", objects: [service("team-a", externalIPs: ["70.0.1.1"])], checks: [.externalIPs]),
        Case(label: "guard policies missing", policies: [], checks: [.guardPolicies, .guardPolicies]),
        Case(label: "block policy drifted",
             policies: [networkPolicy(name: GuardNames.blockPolicy, namespace: "team-a",
                                      labels: .obj([GuardNames.managedByKey: "pxguard"]), spec: openToNodes),
                        guardPolicyObjects("team-a")[1]],
             checks: [.guardPolicies]),
        Case(label: "guard policies without their label", policies: guardPolicyObjects("team-a", labelled: false),
             checks: [.guardPolicies, .guardPolicies]),
        Case(label: "the guarded label missing", state: AuditNamespace(name: "team-a", guardedLabel: nil, podSecurityEnforce: "baseline"),
             checks: [.optOut]),
        Case(label: "the guarded label false", state: AuditNamespace(name: "team-a", guardedLabel: "false", podSecurityEnforce: "restricted"),
             checks: [.optOut]),
        Case(label: "Pod Security privileged", state: AuditNamespace(name: "team-a", guardedLabel: "true", podSecurityEnforce: "privileged"),
             checks: [.optOut]),
        Case(label: "Pod Security baseline when restricted is configured", config: { var c = Config.default; c.podSecurity = .restricted; return c }(),
             checks: [.optOut]),
        Case(label: "no Pod Security label with podSecurity: none is fine",
             state: AuditNamespace(name: "team-a", guardedLabel: "true", podSecurityEnforce: nil),
             config: { var c = Config.default; c.podSecurity = .none; return c }(), checks: []),
        Case(label: "the Namespace not seen: its labels cannot be judged", state: nil, checks: [.unjudged]),
        Case(label: "an object that could not be judged",
             objects: [.obj(["apiVersion": "v1", "kind": "Service", "metadata": .obj(["name": "x", "namespace": "team-a"])])],
             checks: [.unjudged]),
        Case(label: "the guard widening a tenant policy does not expose",
             objects: [networkPolicy(name: "db", namespace: "team-a", spec: databaseOnly)], checks: []),
        // A cluster-scoped backend provisions nothing per namespace (SPEC "Guard backends"):
        // no guard policy is missing, and the other rules judge as before.
        Case(label: "adminnetworkpolicy: no guard policies is the backend's way", policies: [], config: clusterScoped(.adminnetworkpolicy),
             checks: []),
        Case(label: "cilium: no guard policies is the backend's way", policies: [], config: clusterScoped(.cilium), checks: []),
        Case(label: "calico before any node address (nodeCIDRs: auto): its guard is not written, the pair is still needed",
             policies: [], config: { var c = Config.install; c.guardBackend = .calico; return c }(),
             checks: [.guardPolicies, .guardPolicies]),
        Case(label: "calico: a bypass policy still exposes (R4 stays as defense in depth)", policies: [],
             objects: [networkPolicy(name: "open", namespace: "team-a", spec: openToNodes)], config: clusterScoped(.calico),
             checks: [.bypassPolicies]),
        Case(label: "one finding per object and rule, every object",
             objects: [runningPod("team-a", name: "a", hostNetwork: true), runningPod("team-a", name: "b", hostNetwork: true),
                       networkPolicy(name: "open", namespace: "team-a", spec: openToNodes),
                       service("team-a", externalIPs: ["70.0.1.1", "70.0.1.2"], loadBalancerIP: "70.0.0.3")],
             checks: [.hostNetwork, .hostNetwork, .bypassPolicies, .externalIPs]),
    ]

    static func clusterScoped(_ backend: GuardBackend) -> Config {
        var c = Config.default
        c.guardBackend = backend
        return c
    }

    @Test("each hole makes the namespace exposed, with one finding per object and rule", arguments: cases)
    func table(_ c: Case) throws {
        let v = try #require(try verdict(c.state, c.policies + c.objects, config: c.config))
        #expect(v.findings.map(\.check) == c.checks)
        #expect(v.exposed == !c.checks.isEmpty)
        for f in v.findings { #expect(f.message.hasPrefix("pxguard: ")) }
    }

    @Test("exempt namespaces are not judged, whatever they hold")
    func exempt() throws {
        let everything = [runningPod("kube-system", hostNetwork: true), networkPolicy(name: "open", namespace: "kube-system", spec: openToNodes),
                          service("kube-system", externalIPs: ["70.0.0.1"])]
        #expect(try verdict(nil, everything, namespace: "kube-system") == nil)
        let all = Audit.verdicts(namespaces: [AuditNamespace(name: "kube-system", guardedLabel: nil, podSecurityEnforce: nil), Self.labelled],
                                 records: try records(everything + guardPolicyObjects("team-a")), config: .default)
        #expect(all.map(\.namespace) == ["team-a"])
        #expect(!all[0].exposed)
    }

    @Test("verdicts: every guarded namespace listed or named by a record, each with its own records only")
    func verdicts() throws {
        let b = AuditNamespace(name: "team-b", guardedLabel: "true", podSecurityEnforce: "restricted")
        let recs = try records(guardPolicyObjects("team-a") + guardPolicyObjects("team-b")
                               + [runningPod("team-b", hostNetwork: true), runningPod("team-c", hostNetwork: false)])
        let all = Audit.verdicts(namespaces: [b, Self.labelled], records: recs, config: .default)
        #expect(all.map(\.namespace) == ["team-a", "team-b", "team-c"])
        #expect(all.map(\.exposed) == [false, true, true])
        #expect(all[1].findings.map(\.object?.name) == ["p"])
        // team-c: no Namespace, no guard policies.
        #expect(all[2].findings.map(\.check) == [.guardPolicies, .guardPolicies, .unjudged])
        let summary = AuditSummary(all)
        #expect(summary.guardedNamespaces == 3 && summary.exposedNamespaces == 2)
        #expect(summary.findings[.hostNetwork] == 1 && summary.findings[.guardPolicies] == 2)
        var incremental = summary
        incremental.add(all[1], times: -1)
        #expect(incremental.exposedNamespaces == 1 && incremental.findings[.hostNetwork] == 0)
    }

    @Test("metrics: exposed namespaces and findings by rule, no namespace label")
    func metrics() throws {
        let v = try #require(try verdict(Self.labelled, guardPolicyObjects("team-a") + [runningPod("team-a", hostNetwork: true),
                                                                                       networkPolicy(name: "db", namespace: "team-a", spec: databaseOnly)]))
        let text = AuditSummary([v]).prometheusText
        #expect(text.contains("pxguard_audit_exposed_namespaces 1\n"))
        #expect(text.contains("pxguard_audit_guarded_namespaces 1\n"))
        #expect(text.contains("pxguard_audit_findings{rule=\"hostNetwork\"} 1\n"))
        #expect(text.contains("pxguard_audit_findings{rule=\"guardWidens\"} 1\n"))
        #expect(text.contains("pxguard_audit_findings{rule=\"bypassPolicies\"} 0\n"))
        #expect(!text.contains("namespace="))
    }
}

@Suite("Audit: report objects")
struct AuditReportTests {
    func exposed() throws -> AuditVerdict {
        let objects = guardPolicyObjects("team-a") + [runningPod("team-a", hostNetwork: true),
                                                      networkPolicy(name: "db", namespace: "team-a", spec: databaseOnly),
                                                      .obj(["apiVersion": "v1", "kind": "Service", "metadata": .obj(["name": "x", "namespace": "team-a"])])]
        let records = try objects.map { try auditRecord($0) }
        return try #require(Audit.verdict(namespace: "team-a", state: AuditNamespace(name: "team-a", guardedLabel: nil, podSecurityEnforce: "baseline"),
                                          records: records, config: .default))
    }

    @Test("PolicyReport and Report: one result per finding, fail / error / warn, the object referenced, a summary",
          arguments: AuditReportFormat.allCases)
    func report(_ format: AuditReportFormat) throws {
        let report = try exposed().report(format: format, timestamp: 1_800_000_000)
        #expect(report["apiVersion"]?.stringValue == format.rawValue)
        #expect(report["kind"]?.stringValue == (format == .policyReport ? "PolicyReport" : "Report"))
        #expect(report["metadata"]?["namespace"]?.stringValue == "team-a")
        #expect(report["metadata"]?["name"]?.stringValue == "pxguard-audit")
        let results = try #require(report["results"]?.arrayValue)
        #expect(results.map { $0["rule"]!.stringValue! } == ["hostNetwork", "optOut", "unjudged", "guardWidens"])
        #expect(results.map { $0["result"]!.stringValue! } == ["fail", "fail", "error", "warn"])
        #expect(results[0]["resources"]?.arrayValue?.first?["kind"]?.stringValue == "Pod")
        #expect(results[0]["resources"]?.arrayValue?.first?["uid"]?.stringValue == "u-pod")
        #expect(results[1]["resources"]?.arrayValue?.first?["kind"]?.stringValue == "Namespace")
        #expect(results[0]["timestamp"]?["seconds"]?.intValue == 1_800_000_000)
        for r in results {
            #expect(["critical", "high", "medium", "low", "info"].contains(r["severity"]!.stringValue!))
            #expect(r["message"]!.stringValue!.hasPrefix("pxguard: "))
        }
        #expect(report["summary"]?["fail"]?.intValue == 2 && report["summary"]?["error"]?.intValue == 1
                && report["summary"]?["warn"]?.intValue == 1)
        #expect((report["source"] != nil) == (format == .openReports))
    }

    @Test("when both report APIs are served, PolicyReport wins; neither served: no report")
    func preferred() {
        #expect(AuditReportFormat.preferred(served: [.policyReport, .openReports]) == .policyReport)
        #expect(AuditReportFormat.preferred(served: [.openReports]) == .openReports)
        #expect(AuditReportFormat.preferred(served: [.policyReport]) == .policyReport)
        #expect(AuditReportFormat.preferred(served: []) == nil)
    }
}

/// The widening against a point-by-point reference. Every set involved is a union of
/// address intervals bounded by the CIDRs in play times port intervals bounded by the
/// ports in play, so checking each bound (and the point past it) decides the question
/// exactly: the block policy allows a point the tenant policy does not, or it does not.
@Suite("Guard widening differential: the analysis against a point-by-point reference")
struct GuardWideningDifferentialTests {
    static let blocks = ["0.0.0.0/0", "70.0.0.0/16", "70.0.0.0/17", "10.0.0.0/8", "0.0.0.0/1", "128.0.0.0/1",
                         "64.0.0.0/2", "::/0", "fd00::/8"]
    static let excepts = ["70.0.0.0/16", "70.0.128.0/17", "10.0.0.0/9", "fd00::/9"]
    static let portBounds = [1, 53, 5432, 9000, 9001, 9010, 9022, 9023, 65535]

    static func randomSpec(_ g: inout SeededGenerator) -> JSON {
        var egress: [JSON] = []
        for _ in 0..<(1 + g.next(3)) {
            var rule: [JSON.Member] = []
            if g.next(4) > 0 {
                var peers: [JSON] = []
                for _ in 0..<(1 + g.next(3)) {
                    if g.next(8) == 0 { peers.append(.obj(["namespaceSelector": .object([])])); continue }
                    let cidr = blocks[g.next(blocks.count)]
                    let except: [JSON] = g.next(2) == 0 ? [] : [.string(excepts[g.next(excepts.count)])]
                    peers.append(.obj(["ipBlock": .obj(["cidr": .string(cidr), "except": except.isEmpty ? nil : .array(except)])]))
                }
                rule.append(.init("to", .array(peers)))
            }
            if g.next(3) > 0 {
                var ports: [JSON] = []
                for _ in 0..<(1 + g.next(3)) {
                    let proto = ["TCP", "TCP", "UDP", "SCTP"][g.next(4)]
                    if g.next(5) == 0 { ports.append(.obj(["protocol": .string(proto)])); continue }
                    let a = portBounds[g.next(portBounds.count)], b = portBounds[g.next(portBounds.count)]
                    ports.append(.obj(["protocol": .string(proto), "port": .int(min(a, b)), "endPort": a == b ? nil : .int(max(a, b))]))
                }
                rule.append(.init("ports", .array(ports)))
            }
            egress.append(.object(rule))
        }
        return .obj(["podSelector": .object([]), "policyTypes": ["Egress"], "egress": .array(egress)])
    }

    static let ranges: [String: IPRange] = Dictionary(uniqueKeysWithValues: Set(blocks + excepts).map { ($0, CIDR($0)!.range) })

    static func contains(_ cidr: String, _ family: IPFamily, _ a: UInt128) -> Bool {
        let r = ranges[cidr]!
        return r.family == family && r.lower <= a && a <= r.upper
    }

    /// The tenant policy allows (family, address, protocol, port).
    static func tenantAllows(_ spec: JSON, _ f: IPFamily, _ a: UInt128, _ proto: String, _ port: Int) -> Bool {
        for rule in spec["egress"]!.arrayValue! {
            let destination: Bool
            if let to = rule["to"]?.arrayValue {
                destination = to.contains { peer in
                    guard let block = peer["ipBlock"] else { return false }
                    let cidr = block["cidr"]!.stringValue!
                    guard contains(cidr, f, a) else { return false }
                    return !(block["except"]?.arrayValue ?? []).contains { contains($0.stringValue!, f, a) }
                }
            } else {
                destination = true
            }
            let ports: Bool
            if let list = rule["ports"]?.arrayValue {
                ports = list.contains { e in
                    guard e["protocol"]!.stringValue! == proto else { return false }
                    guard let lo = e["port"]?.intValue else { return true }
                    return lo <= port && port <= (e["endPort"]?.intValue ?? lo)
                }
            } else {
                ports = true
            }
            if destination && ports { return true }
        }
        return false
    }

    /// The block policy allows it (seed: everything off the nodes; ports: also the
    /// nodes outside TCP 9001-9022). Node subnet 70.0.0.0/16; IPv6 only in ports style.
    static func blockAllows(_ style: PolicyStyle, _ f: IPFamily, _ a: UInt128, _ proto: String, _ port: Int) -> Bool {
        if f == .v6 && style == .seed { return false }
        guard contains(excepts[0], f, a) else { return true }  // 70.0.0.0/16
        return style == .ports && !(proto == "TCP" && 9001 <= port && port <= 9022)
    }

    static let addresses: [(IPFamily, UInt128)] = {
        var out: [(IPFamily, UInt128)] = []
        for text in blocks + excepts {
            let r = CIDR(text)!.range
            let max: UInt128 = r.family == .v4 ? 0xFFFF_FFFF : .max
            for a in [r.lower, r.upper, r.lower > 0 ? r.lower - 1 : 0, r.upper < max ? r.upper + 1 : max] { out.append((r.family, a)) }
        }
        return out
    }()
    static let ports: [Int] = Array(Set(portBounds.flatMap { [$0, max(1, $0 - 1), min(65535, $0 + 1)] })).sorted()

    @Test("400 random tenant policies in each style: widened exactly when a point says so", arguments: [PolicyStyle.seed, .ports])
    func differential(_ style: PolicyStyle) throws {
        var config = Config.default
        config.policyStyle = style
        let judge = AuditJudge(config: config)
        var g = SeededGenerator(seed: style == .seed ? 24 : 2024)
        var widenedCount = 0
        for _ in 0..<400 {
            let spec = Self.randomSpec(&g)
            var expected = false
            search: for (f, a) in Self.addresses {
                for proto in ["TCP", "UDP", "SCTP"] {
                    for port in Self.ports where Self.blockAllows(style, f, a, proto, port) && !Self.tenantAllows(spec, f, a, proto, port) {
                        expected = true
                        break search
                    }
                }
            }
            let record = try auditRecord(networkPolicy(name: "t", namespace: "team-a", spec: spec), judge)
            let widened = record.findings.contains { $0.check == .guardWidens }
            #expect(widened == expected, "\(spec.serialized)")
            if expected { widenedCount += 1 }
        }
        // Both answers must be common, or the test proves little.
        #expect(widenedCount > 40 && widenedCount < 360, "\(widenedCount)")
    }
}
