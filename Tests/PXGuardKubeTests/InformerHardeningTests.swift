import Foundation
import Synchronization
import Testing
@testable import PXGuardCore
@testable import PXGuardKube
@testable import PXGuardPlatform
@testable import PXGuardServer

/// The API client's one response reader under hostile answers (issue 27 item 6),
/// and informers whose memory is set by what they keep (items 1 and 2), over
/// real HTTPS to the in-test API on loopback.
@Suite("Informers and the API reader under hostile input", .serialized)
struct InformerHardeningTests {
    static func connection(_ api: FakeKubeAPI) throws -> KubeConnection {
        try KubeClient(endpoint: KubeEndpoint(url: api.url, tokenFile: api.tokenFile, caFile: api.caFile), timeout: 5).connection()
    }

    static let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"

    static func event(_ i: Int) -> String {
        #"{"type":"ADDED","object":{"kind":"Namespace","metadata":{"name":"ns-\#(i)","resourceVersion":"\#(i)"}}}"# + "\n"
    }

    /// Runs one watch against whatever the in-test API answers; returns the
    /// events handed on and the error that ended it.
    static func watch(_ api: FakeKubeAPI, raw: [UInt8], holdOpen: Bool = false) throws -> (events: [String], error: KubeError?) {
        api.state.withLock { $0.rawAnswer = raw; $0.holdOpen = holdOpen }
        let conn = try connection(api)
        var names: [String] = []
        do {
            try conn.watch("/api/v1/namespaces?watch=1", paths: Informer<NamespaceProjection>.eventPaths(Informer<NamespaceProjection>.itemPaths(NamespaceProjection.fields)), budget: 1 << 20,
                           pollSeconds: 0.2, idleSeconds: 10, shouldStop: { false }) { event in
                names.append(event.string(4) ?? "?")
            }
        } catch {
            return (names, error)
        }
        return (names, nil)
    }

    @Test("malformed lengths end the watch with an error, never a trap", arguments: [
        ("chunk size -1", head + "-1\r\nxx\r\n0\r\n\r\n"),
        ("chunk size of 17 hex digits (overflowing)", head + "10000000000000000\r\n"),
        ("Content-Length -5", "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello"),
        ("Content-Length overflowing", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
        ("an event that is not JSON", head + "5\r\n{\"a\"]\r\n0\r\n\r\n"),
    ])
    func malformedLengths(_ name: String, _ answer: String) throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        let (events, error) = try Self.watch(api, raw: Array(answer.utf8))
        #expect(events.isEmpty)
        guard case .transport? = error else {
            Issue.record("\(name): expected a transport error, got \(String(describing: error))")
            return
        }
        // The same answer to a list page and (for framing faults) to a plain call:
        // the same reader, the same refusal.
        for stream in name.contains("JSON") ? [true] : [false, true] {
            let conn = try Self.connection(api)
            do {
                if stream {
                    _ = try conn.stream("/api/v1/namespaces") { reader in
                        try reader.list(JSONPaths([]), arrayKey: "items", element: JSONPaths([]), budget: 1024) { _ in }
                    }
                } else {
                    try conn.call("GET", "/api/v1/namespaces")
                }
                Issue.record("\(name): \(stream ? "list" : "call") succeeded")
            } catch {
                #expect(error.code == nil, "\(name): \(error)")
            }
        }
    }

    @Test("a chunk announcing 1 GiB costs nothing up front: its events are handed on as they arrive, and a cut is an error")
    func hugeChunk() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        let body = (0..<2000).map(Self.event).joined()
        let (events, error) = try Self.watch(api, raw: Array((Self.head + "40000000\r\n" + body).utf8))
        #expect(events.count == 2000)
        #expect(events.last == "ns-1999")
        guard case .transport(let message)? = error else {
            Issue.record("expected a transport error, got \(String(describing: error))")
            return
        }
        #expect(message.contains("mid-chunk"))
    }

    @Test("a status line that never ends is refused at the line limit, without waiting for the peer to close")
    func endlessStatusLine() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        let raw = Array("HTTP/1.1 200 ".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: 1 << 20)
        let (events, error) = try Self.watch(api, raw: raw, holdOpen: true)
        #expect(events.isEmpty)
        guard case .transport(let message)? = error else {
            Issue.record("expected a transport error, got \(String(describing: error))")
            return
        }
        #expect(message.contains("longer than"))
    }

    @Test("100,000 events in one chunk are all handed on, each taken out of the stream where it lies")
    func manyEventsInOneChunk() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        let body = Array((0..<100_000).map(Self.event).joined().utf8)
        let raw = Array(Self.head.utf8) + Array((String(body.count, radix: 16) + "\r\n").utf8) + body + Array("\r\n0\r\n\r\n".utf8)
        let (events, error) = try Self.watch(api, raw: raw)
        #expect(error == nil)
        #expect(events.count == 100_000)
        #expect(events.first == "ns-0" && events.last == "ns-99999")
    }

    @Test("a tenant's 300 NetworkPolicies labelled managed-by: pxguard with 250 KiB of annotations each: the view syncs and R6 holds")
    func tenantFlood() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("tenant")
        // 73 MB of list in all; under a sanitizer (scripts/sanitize.sh) 2.4 MB, the same paths.
        let kib = ProcessInfo.processInfo.environment["PXGUARD_SANITIZER"] == nil ? 250 : 8
        let annotations: JSON = .obj(["note": .string(String(repeating: "x", count: kib << 10))])
        for i in 0..<300 {
            let object = networkPolicyObject(name: "flood-\(i)", namespace: "tenant",
                                             labels: .obj([GuardNames.managedByKey: .string(GuardNames.managedByValue)]), spec: loose)
            api.put("networkpolicies", "tenant", "flood-\(i)", object.setting("metadata", object["metadata"]!.setting("annotations", annotations)))
        }
        let h = try Harness(api, pageSize: 50)
        let policy = AdmissionPolicy(config: .default, view: h.view)
        h.start()
        defer { h.stop() }
        #expect(eventually(60) { h.view.isSynced })
        #expect(eventually { canonical(api, "tenant") })
        #expect(eventually { h.view.namespaceHasCanonicalPolicies("tenant") })
        // R6 holds: a namespace without its policies is refused until they are in place.
        api.inject((0..<6).map { _ in .init(status: 500, reason: "InternalError", retryAfter: nil, matching: "/namespaces/team-after") })
        api.addNamespace("team-after")
        #expect(eventually { h.view.counts.namespaces == 2 })
        let denied = try podCreate(policy, "team-after")
        #expect(!denied.allowed && denied.rule == .unguardedNamespace)
        #expect(eventually { (try? podCreate(policy, "team-after").allowed) == true })
        // The flood is not in the view: only guard names are kept.
        #expect(h.view.counts.policies == 4)
    }

    @Test("a guard policy whose spec is over the per-object budget is judged not canonical and repaired; the view stays in sync")
    func overBudgetGuardPolicy() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("team-big")
        let h = try Harness(api, objectBudget: 4096)
        h.start()
        defer { h.stop() }
        #expect(eventually { canonical(api, "team-big") })
        let peers: [JSON] = (0..<400).map { i in .obj(["ipBlock": .obj(["cidr": .string("10.\(i / 256).\(i % 256).0/24")])]) }
        let big: JSON = .obj(["podSelector": .object([]), "policyTypes": ["Egress"], "egress": [.obj(["to": .array(peers)])]])
        api.put("networkpolicies", "team-big", GuardNames.allowAPIPolicy, networkPolicyObject(
            name: GuardNames.allowAPIPolicy, namespace: "team-big",
            labels: .obj([GuardNames.managedByKey: .string(GuardNames.managedByValue)]), spec: big))
        #expect(eventually { h.provisioner.informers.contains { $0.counters.overBudget.load(ordering: .relaxed) > 0 } })
        #expect(eventually { canonical(api, "team-big") })
        #expect(h.view.isSynced)
        #expect(h.provisioner.metricsText.contains("pxguard_watch_objects_over_budget_total{resource=\"networkpolicies\"} "))
    }

    @Test("a guard name without pxguard's label (now visible to the watch) is taken over: canonical, labelled, other labels kept")
    func unlabelledGuardName() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("team-u")
        api.put("networkpolicies", "team-u", GuardNames.blockPolicy, networkPolicyObject(
            name: GuardNames.blockPolicy, namespace: "team-u", labels: .obj(["team": "u"]), spec: loose))
        let h = try Harness(api)
        h.start()
        defer { h.stop() }
        #expect(eventually { canonical(api, "team-u") })
        #expect(api.policy("team-u", GuardNames.blockPolicy)?["metadata"]?["labels"]?["team"] == "u")
        #expect(eventually { h.view.namespaceHasCanonicalPolicies("team-u") })
    }
}

func podCreate(_ policy: AdmissionPolicy, _ namespace: String) throws -> Verdict {
    let review: JSON = .obj(["apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": .obj([
        "uid": "u-1", "kind": .obj(["group": "", "version": "v1", "kind": "Pod"]),
        "resource": .obj(["group": "", "version": "v1", "resource": "pods"]),
        "name": "p", "namespace": .string(namespace), "operation": "CREATE",
        "userInfo": .obj(["username": "alice"]),
        "object": .obj(["spec": .obj(["containers": [.obj(["name": "c", "image": "busybox"])]])]),
    ])])
    let bytes = Array(review.serialized.utf8)
    return try bytes.withUnsafeBytes { raw in try AdmissionRequest.withDecoded(raw) { policy.validate($0) } }
}

/// A projection of the kind the audit adds: host-network Pods, selected by field.
struct HostNetworkPod: KubeProjection {
    static let fields: [[String]] = [["spec", "hostNetwork"], ["spec", "nodeName"]]
    var key: String
    var hostNetwork: Bool
    var node: String?
    init(_ object: KubeObject) {
        key = (object.namespace ?? "") + "/" + (object.name ?? "")
        hostNetwork = object.fields.json(0) == .bool(true)
        node = object.fields.string(1)
    }
}

@Suite("Informer foundation: any projection, field selectors", .serialized)
struct InformerFoundationTests {
    static func pod(_ name: String, hostNetwork: Bool) -> JSON {
        .obj(["apiVersion": "v1", "kind": "Pod", "metadata": .obj(["name": .string(name),
                                                                    "annotations": .obj(["big": .string(String(repeating: "z", count: 8192))])]),
              "spec": .obj(["hostNetwork": .bool(hostNetwork), "nodeName": "node-1",
                            "containers": [.obj(["name": "c", "image": "busybox"])]])])
    }

    @Test("a Pod informer with fieldSelector spec.hostNetwork=true: only those Pods, kept as two fields; one leaving the selector is DELETED")
    func hostNetworkPods() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("team-p")
        api.put("pods", "team-p", "host", Self.pod("host", hostNetwork: true))
        api.put("pods", "team-p", "plain", Self.pod("plain", hostNetwork: false))
        let client = try KubeClient(endpoint: KubeEndpoint(url: api.url, tokenFile: api.tokenFile, caFile: api.caFile), timeout: 5)
        let seen = Locked<(listed: [String], events: [String])>(([], []))
        var settings = InformerSettings()
        settings.pollSeconds = 0.2
        let informer = Informer<HostNetworkPod>(
            name: "pods", client: client, path: "/api/v1/pods", fieldSelector: "spec.hostNetwork=true", settings: settings,
            logger: .none,
            onList: { phase in if case .page(let pods) = phase { seen.withLock { $0.listed += pods.map { "\($0.key) \($0.hostNetwork) \($0.node ?? "")" } } } },
            onEvent: { type, pod in seen.withLock { $0.events.append("\(type.rawValue) \(pod.key)") } },
            onHealth: { _, _ in })
        spawnThread(name: "t-pods") { informer.run() }
        defer { informer.stop() }
        #expect(eventually { informer.counters.lists.load(ordering: .relaxed) == 1 })
        #expect(seen.withLock { $0.listed } == ["team-p/host true node-1"])
        #expect(api.requests.contains { $0.hasPrefix("GET /api/v1/pods?fieldSelector=spec.hostNetwork%3Dtrue&limit=") })
        #expect(eventually { informer.counters.watches.load(ordering: .relaxed) == 1 })
        api.put("pods", "team-p", "plain", Self.pod("plain", hostNetwork: true))
        api.put("pods", "team-p", "host", Self.pod("host", hostNetwork: false))
        #expect(eventually { seen.withLock { $0.events } == ["ADDED team-p/plain", "DELETED team-p/host"] })
    }
}
