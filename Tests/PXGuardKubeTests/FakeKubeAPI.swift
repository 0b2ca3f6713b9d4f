import Foundation
import Synchronization
@testable import PXGuardCore
@testable import PXGuardPlatform
@testable import PXGuardServer

/// A faithful in-test Kubernetes API over real HTTPS (pxguard's own server): the
/// paths, verbs, resourceVersion conflicts and `Status` bodies of the real one,
/// for namespaces, NetworkPolicies and Leases, with injectable faults.
final class FakeKubeAPI: HTTPHandler, @unchecked Sendable {
    struct Fault {
        let status: Int
        let reason: String
        let retryAfter: Int?
    }

    struct State {
        var namespaces: [String: JSON] = [:]
        /// Namespaced objects by "resource/namespace/name".
        var objects: [String: JSON] = [:]
        var resourceVersion = 100
        var tokens: Set<String> = ["token-1"]
        var faults: [Fault] = []
        var log: [String] = []
    }

    let state = Locked(State())
    var server: HTTPServer!
    let dir: String

    init() throws {
        dir = NSTemporaryDirectory() + "pxguard-kube-" + UUID().uuidString
        try CertificateFactory.write(to: dir, service: "kubernetes", namespace: "default")
        try "token-1\n".write(toFile: dir + "/token", atomically: true, encoding: .utf8)
        var configuration = ServerConfiguration(address: try SocketAddress(parsing: "127.0.0.1:0"))
        configuration.workers = 1
        let tls = TLSContextBox(try TLSContext.server(certificateFile: dir + "/tls.crt", keyFile: dir + "/tls.key"))
        server = try HTTPServer(configuration: configuration, tls: tls, handler: self, logger: .none)
        server.start()
    }

    func shutdown() {
        server.shutdown(grace: 1)
        server.wait()
        try? FileManager.default.removeItem(atPath: dir)
    }

    var url: String { "https://127.0.0.1:\(server.port)" }
    var tokenFile: String { dir + "/token" }
    var caFile: String { dir + "/ca.crt" }

    // MARK: test controls

    func addNamespace(_ name: String, labels: JSON = .object([])) {
        state.withLock { s in
            s.resourceVersion += 1
            s.namespaces[name] = .obj([
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": .obj(["name": .string(name), "resourceVersion": .string(String(s.resourceVersion)),
                                  "labels": labels.setting("kubernetes.io/metadata.name", .string(name))]),
                "status": .obj(["phase": "Active"]),
            ])
        }
    }

    func policy(_ namespace: String, _ name: String) -> JSON? {
        state.withLock { $0.objects["networkpolicies/\(namespace)/\(name)"] }
    }

    func namespace(_ name: String) -> JSON? { state.withLock { $0.namespaces[name] } }

    /// Writes an object behind the provisioner's back (as an exempt admin would).
    func put(_ resource: String, _ namespace: String, _ name: String, _ object: JSON?) {
        state.withLock { s in
            s.resourceVersion += 1
            let key = "\(resource)/\(namespace)/\(name)"
            if let object {
                let meta = (object["metadata"] ?? .object([])).setting("resourceVersion", .string(String(s.resourceVersion)))
                s.objects[key] = object.setting("metadata", meta)
            } else {
                s.objects[key] = nil
            }
        }
    }

    func inject(_ faults: [Fault]) { state.withLock { $0.faults += faults } }
    func rotateToken(to token: String) { state.withLock { $0.tokens = [token] } }
    var requests: [String] { state.withLock { $0.log } }
    func objects(_ resource: String, in namespace: String) -> [String] {
        state.withLock { s in s.objects.keys.filter { $0.hasPrefix("\(resource)/\(namespace)/") }.map { String($0.split(separator: "/")[2]) }.sorted() }
    }

    // MARK: the API

    static func status(_ code: Int, _ reason: String, _ message: String, into response: inout HTTPResponse) {
        response.status = code
        let body: JSON = .obj([
            "kind": "Status", "apiVersion": "v1", "metadata": .object([]), "status": "Failure",
            "message": .string(message), "reason": .string(reason), "code": .int(code),
        ])
        response.body = Array(body.serialized.utf8)
    }

    func reply(_ object: JSON, _ code: Int = 200, into response: inout HTTPResponse) {
        response.status = code
        response.body = Array(object.serialized.utf8)
    }

    func handle(_ request: HTTPRequest, _ response: inout HTTPResponse) {
        let method: String
        switch request.method {
        case .get: method = "GET"
        case .post: method = "POST"
        case .put: method = "PUT"
        case .patch: method = "PATCH"
        case .delete: method = "DELETE"
        default: method = "OTHER"
        }
        let target = request.targetString
        let body = request.body.count > 0 ? try? JSON(parsing: Array(request.body)) : nil
        state.withLock { s in
            s.log.append("\(method) \(target)")
            let token = request.header("Authorization")?.replacingOccurrences(of: "Bearer ", with: "")
            guard let token, s.tokens.contains(token) else {
                Self.status(401, "Unauthorized", "Unauthorized", into: &response)
                return
            }
            if !s.faults.isEmpty {
                let fault = s.faults.removeFirst()
                Self.status(fault.status, fault.reason, "injected \(fault.reason)", into: &response)
                if let after = fault.retryAfter { response.extraHeaders = "Retry-After: \(after)\r\n" }
                return
            }
            let parts = target.split(separator: "?")[0].split(separator: "/").map(String.init)
            let query = target.contains("?") ? String(target.split(separator: "?")[1]) : ""
            route(&s, method, parts, query, body, &response)
        }
    }

    func list(_ kind: String, _ items: [JSON], _ s: State) -> JSON {
        .obj(["kind": .string(kind), "apiVersion": "v1", "metadata": .obj(["resourceVersion": .string(String(s.resourceVersion))]),
              "items": .array(items)])
    }

    func route(_ s: inout State, _ method: String, _ parts: [String], _ query: String, _ body: JSON?, _ response: inout HTTPResponse) {
        switch (method, parts.count) {
        case ("GET", 3) where parts == ["api", "v1", "namespaces"]:
            reply(list("NamespaceList", s.namespaces.keys.sorted().map { s.namespaces[$0]! }, s), into: &response)
        case ("GET", 4) where parts[0] == "api" && parts[2] == "namespaces":
            guard let ns = s.namespaces[parts[3]] else {
                return Self.status(404, "NotFound", "namespaces \"\(parts[3])\" not found", into: &response)
            }
            reply(ns, into: &response)
        case ("PATCH", 4) where parts[0] == "api" && parts[2] == "namespaces":
            guard var ns = s.namespaces[parts[3]], let patch = body else {
                return Self.status(404, "NotFound", "namespaces \"\(parts[3])\" not found", into: &response)
            }
            ns = Self.mergePatch(ns, patch)
            s.resourceVersion += 1
            ns = ns.setting("metadata", ns["metadata"]!.setting("resourceVersion", .string(String(s.resourceVersion))))
            s.namespaces[parts[3]] = ns
            reply(ns, into: &response)
        case ("GET", 4) where parts[0] == "apis":
            // Cluster-wide list, e.g. /apis/networking.k8s.io/v1/networkpolicies?labelSelector=k%3Dv
            let selector = query.removingPercentEncoding?.replacingOccurrences(of: "labelSelector=", with: "") ?? ""
            let pair = selector.split(separator: "=").map(String.init)
            let items = s.objects.filter { $0.key.hasPrefix(parts[3] + "/") }.sorted { $0.key < $1.key }.map(\.value).filter {
                pair.count != 2 || $0["metadata"]?["labels"]?[pair[0]]?.stringValue == pair[1]
            }
            reply(list("List", items, s), into: &response)
        case ("POST", 6) where parts[0] == "apis" && parts[3] == "namespaces":
            let (ns, resource) = (parts[4], parts[5])
            guard s.namespaces[ns] != nil else {
                return Self.status(404, "NotFound", "namespaces \"\(ns)\" not found", into: &response)
            }
            guard let object = body, let name = object["metadata"]?["name"]?.stringValue else {
                return Self.status(400, "BadRequest", "name is required", into: &response)
            }
            let key = "\(resource)/\(ns)/\(name)"
            if s.objects[key] != nil {
                return Self.status(409, "AlreadyExists", "\(resource) \"\(name)\" already exists", into: &response)
            }
            s.resourceVersion += 1
            let stored = object.setting("metadata", object["metadata"]!.setting("resourceVersion", .string(String(s.resourceVersion)))
                .setting("namespace", .string(ns)).setting("uid", .string(UUID().uuidString)))
            s.objects[key] = stored
            reply(stored, 201, into: &response)
        case (_, 7) where parts[0] == "apis" && parts[3] == "namespaces":
            let key = "\(parts[5])/\(parts[4])/\(parts[6])"
            guard let current = s.objects[key] else {
                return Self.status(404, "NotFound", "\(parts[5]) \"\(parts[6])\" not found", into: &response)
            }
            switch method {
            case "GET":
                reply(current, into: &response)
            case "DELETE":
                s.objects[key] = nil
                reply(.obj(["kind": "Status", "status": "Success"]), into: &response)
            case "PUT":
                guard let object = body else { return Self.status(400, "BadRequest", "no body", into: &response) }
                let sent = object["metadata"]?["resourceVersion"]?.stringValue
                if let sent, sent != current["metadata"]?["resourceVersion"]?.stringValue {
                    return Self.status(409, "Conflict", "the object has been modified; please apply your changes to the latest version and try again", into: &response)
                }
                s.resourceVersion += 1
                let stored = object.setting("metadata", object["metadata"]!.setting("resourceVersion", .string(String(s.resourceVersion))))
                s.objects[key] = stored
                reply(stored, into: &response)
            default:
                Self.status(405, "MethodNotAllowed", "method not allowed", into: &response)
            }
        default:
            Self.status(404, "NotFound", "the server could not find the requested resource", into: &response)
        }
    }

    /// RFC 7386 JSON merge patch.
    static func mergePatch(_ target: JSON, _ patch: JSON) -> JSON {
        guard case .object(let members) = patch else { return patch }
        var result = target.members == nil ? JSON.object([]) : target
        for m in members {
            if case .null = m.value {
                if case .object(let existing) = result { result = .object(existing.filter { $0.key != m.key }) }
            } else {
                result = result.setting(m.key, mergePatch(result[m.key] ?? .null, m.value))
            }
        }
        return result
    }
}
