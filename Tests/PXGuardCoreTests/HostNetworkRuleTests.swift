import Foundation
import Testing
@testable import PXGuardCore

@Suite("R1 hostNetwork")
struct HostNetworkRuleTests {
    struct WorkloadCase: CustomTestStringConvertible, Sendable {
        let group: String
        let kind: String
        /// Wraps a pod spec the way this kind embeds it.
        let wrap: @Sendable (JSON) -> JSON
        var testDescription: String { "\(group.isEmpty ? "core" : group)/\(kind)" }
    }

    static let template: @Sendable (JSON) -> JSON = { spec in .obj(["spec": .obj(["template": .obj(["spec": spec])])]) }
    static let workloads: [WorkloadCase] = [
        WorkloadCase(group: "", kind: "Pod", wrap: { .obj(["spec": $0]) }),
        WorkloadCase(group: "apps", kind: "Deployment", wrap: template),
        WorkloadCase(group: "apps", kind: "ReplicaSet", wrap: template),
        WorkloadCase(group: "apps", kind: "StatefulSet", wrap: template),
        WorkloadCase(group: "apps", kind: "DaemonSet", wrap: template),
        WorkloadCase(group: "batch", kind: "Job", wrap: template),
        WorkloadCase(group: "", kind: "ReplicationController", wrap: template),
        WorkloadCase(group: "", kind: "PodTemplate", wrap: { .obj(["template": .obj(["spec": $0])]) }),
        WorkloadCase(group: "batch", kind: "CronJob", wrap: {
            .obj(["spec": .obj(["jobTemplate": .obj(["spec": .obj(["template": .obj(["spec": $0])])])])])
        }),
    ]

    static func spec(_ hostNetwork: Bool?) -> JSON {
        let base: JSON = .obj(["containers": [.obj(["name": "c", "image": "busybox"])]])
        return hostNetwork.map { base.setting("hostNetwork", .bool($0)) } ?? base
    }

    @Test("R1: CREATE of a workload whose pod template asks for hostNetwork is denied", arguments: workloads)
    func createDenied(_ w: WorkloadCase) throws {
        let v = try validate(Review(group: w.group, kind: w.kind, object: w.wrap(Self.spec(true))).bytes)
        #expect(!v.allowed)
        #expect(v.rule == .hostNetwork)
        #expect(v.message?.hasPrefix("pxguard: hostNetwork:") == true)
    }

    @Test("R1: the same workload without hostNetwork, or with false, is allowed", arguments: workloads)
    func createAllowed(_ w: WorkloadCase) throws {
        #expect(try validate(Review(group: w.group, kind: w.kind, object: w.wrap(Self.spec(nil))).bytes).allowed)
        #expect(try validate(Review(group: w.group, kind: w.kind, object: w.wrap(Self.spec(false))).bytes).allowed)
    }

    @Test("R1: a look-alike kind in another API group is not a workload")
    func otherGroup() throws {
        let v = try validate(Review(group: "example.com", kind: "Deployment", object: Self.template(Self.spec(true))).bytes)
        #expect(v.allowed)
    }

    @Test("R1: exempt namespaces may run host-network pods")
    func exemptNamespace() throws {
        #expect(try validate(Review(namespace: "kube-system", object: pod(hostNetwork: true)).bytes).allowed)
        #expect(try validate(Review(namespace: "portworx", object: pod(hostNetwork: true)).bytes).allowed)
    }

    @Test("R1: UPDATE that turns host network on is denied; objects that had it stay updatable")
    func updates() throws {
        let turnOn = Review(group: "apps", kind: "Deployment", operation: "UPDATE",
                            object: Self.template(Self.spec(true)), oldObject: Self.template(Self.spec(false)))
        #expect(try validate(turnOn.bytes).allowed == false)
        let keep = Review(operation: "UPDATE", object: pod(hostNetwork: true), oldObject: pod(hostNetwork: true))
        #expect(try validate(keep.bytes).allowed)
        let terminating = Review(operation: "UPDATE", object: pod(hostNetwork: true, deletionTimestamp: true),
                                 oldObject: pod(hostNetwork: true))
        #expect(try validate(terminating.bytes).allowed)
    }

    @Test("R1: DELETE is never refused, so cleanup cannot wedge")
    func delete() throws {
        #expect(try validate(Review(operation: "DELETE", object: nil, oldObject: pod(hostNetwork: true)).bytes).allowed)
    }

    @Test("R1: a deletionTimestamp does not open a way around the rule")
    func deletionTimestamp() throws {
        #expect(try validate(Review(object: pod(hostNetwork: true, deletionTimestamp: true)).bytes).allowed == false)
    }

    @Test("R1: contract fixtures E2 (deny), E4 (deny), E1/E3 (allow), E9 dry-run (deny), E10 v1beta1")
    func fixtures() throws {
        #expect(try validate(fixture("pod-hostnetwork-e2")).allowed == false)
        #expect(try validate(fixture("deployment-hostnetwork-e4")).allowed == false)
        #expect(try validate(fixture("pod-create-e1")).allowed)
        #expect(try validate(fixture("pod-generatename-e3")).allowed)
        #expect(try validate(fixture("pod-dryrun-e9")).allowed == false)
        #expect(try validate(fixture("pod-v1beta1-e10")).allowed)
        #expect(try validate(fixture("connect-exec-e11")).allowed)
        #expect(try validate(fixture("scale-update-e12")).allowed)
        #expect(try validate(fixture("bench-pod-create")).allowed)
    }

    @Test("R1: a member name written with JSON escapes (\"host\\u004eetwork\") is the decoded name, as Go's decoder reads it")
    func escapedMemberName() throws {
        let plain = String(decoding: Review(object: pod(hostNetwork: true)).bytes, as: UTF8.self)
        for escaped in [#""host\u004eetwork""#, #""\u0068ostNetwork""#, #""hostNetwor\u006b""#, #""\u0068\u006f\u0073\u0074\u004e\u0065\u0074\u0077\u006f\u0072\u006b""#] {
            let text = plain.replacingOccurrences(of: #""hostNetwork""#, with: escaped)
            #expect(text.contains(escaped))
            let v = try validate(Array(text.utf8))
            #expect(!v.allowed && v.rule == .hostNetwork, "\(escaped)")
        }
        // `host\u004etwork` decodes to "hostNtwork", a field the API server drops.
        let other = plain.replacingOccurrences(of: #""hostNetwork""#, with: #""host\u004etwork""#)
        #expect(try validate(Array(other.utf8)).allowed)
    }
}
