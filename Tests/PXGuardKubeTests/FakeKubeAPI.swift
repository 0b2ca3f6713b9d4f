import Foundation
import Synchronization
@testable import PXGuardCore
@testable import PXGuardPlatform
@testable import PXGuardServer

/// An in-test Kubernetes API over real HTTPS (a thread per connection, pxguard's
/// own TLS layer): the paths, verbs, `Status` bodies and resourceVersion semantics
/// of the real one for namespaces, NetworkPolicies, Leases, Secrets and (cluster-scoped,
/// read and updated by name) webhook registrations. Lists are paged
/// (`limit`/`continue`, a token expires with compaction); watches stream events
/// after a resourceVersion, filter by label and field selector (an object
/// leaving the selector is DELETED to the watcher), send bookmarks, end after
/// `timeoutSeconds`, and answer `410 Gone` with a Status once the version was
/// compacted away. Faults: injected statuses, watches dropped mid-stream, slow
/// answers.
final class FakeKubeAPI: @unchecked Sendable {
    struct Fault {
        let status: Int
        let reason: String
        let retryAfter: Int?
        /// Only requests whose target contains this (nil: any request).
        var matching: String? = nil
        /// Only requests whose target is exactly this (nil: any request).
        var exactly: String? = nil

        func matches(_ target: String) -> Bool {
            (matching.map(target.contains) ?? true) && (exactly.map { $0 == target } ?? true)
        }
    }

    struct Event {
        let resourceVersion: Int
        let type: String
        let resource: String
        let object: JSON
        /// The object before a MODIFIED, to tell a watcher with a selector that it left.
        let old: JSON?
    }

    struct State {
        var namespaces: [String: JSON] = [:]
        /// Namespaced objects by "resource/namespace/name".
        var objects: [String: JSON] = [:]
        var resourceVersion = 100
        var tokens: Set<String> = ["token-1"]
        var faults: [Fault] = []
        var log: [String] = []
        var history: [Event] = []
        /// Watches and continue tokens older than this get 410 Gone.
        var compactedBelow = 0
        /// When each object was created (monotonic seconds), by key.
        var createdAt: [String: Double] = [:]
        var delay: Double = 0
        var watchGeneration = 0
        var bookmarkInterval: Double = 1
        /// Send 410 for a too-old watch as an HTTP status instead of an ERROR event.
        var goneAsHTTPStatus = false
        /// Ends every watch after this long, whatever `timeoutSeconds` asked (a cutting proxy).
        var watchLifetime: Double?
        var stopped = false
        /// Answers every request with these bytes instead of the API (tests of
        /// malformed answers); then holds the connection open until the client
        /// closes it when `holdOpen`, or closes it.
        var rawAnswer: [UInt8]?
        var holdOpen = false
        /// `group/version` strings `GET /apis` lists (discovery).
        var servedGroupVersions: [String] = []
    }

    let state = Locked(State())
    /// Served API group versions beyond the built-ins ("group/version" -> resources),
    /// answered by discovery (`GET /apis/GROUP/VERSION`): custom resources such as
    /// report CRDs, served only once a test installs them.
    let served = Locked<[String: [String]]>([:])

    /// Serves `resources` under `/apis/GROUP/VERSION` (a CRD installed).
    func serveAPI(_ groupVersion: String, resources: [String]) { served.withLock { $0[groupVersion] = resources } }
    let changed = NSCondition()
    let dir: String
    let context: TLSContext
    let listener: Int32
    let port: Int

    init() throws {
        dir = NSTemporaryDirectory() + "pxguard-kube-" + UUID().uuidString
        try CertificateFactory.write(to: dir, service: "kubernetes", namespace: "default")
        try "token-1\n".write(toFile: dir + "/token", atomically: true, encoding: .utf8)
        context = try TLSContext.server(certificateFile: dir + "/tls.crt", keyFile: dir + "/tls.key")
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(fd, 512)
        var bound = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        port = Int(UInt16(bigEndian: bound.sin_port))
        listener = fd
        let listener = fd
        spawnThread(name: "fake-kube-accept") { [self] in
            while true {
                let fd = accept(listener, nil, nil)
                if fd < 0 {
                    if errno == EINTR { continue }
                    return
                }
                if state.withLock({ $0.stopped }) { close(fd); return }
                spawnThread(name: "fake-kube-conn") { [self] in serve(fd) }
            }
        }
    }

    func shutdown() {
        state.withLock { $0.stopped = true }
        Glibc.shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        wakeWatchers()
        try? FileManager.default.removeItem(atPath: dir)
    }

    var url: String { "https://127.0.0.1:\(port)" }
    var tokenFile: String { dir + "/token" }
    var caFile: String { dir + "/ca.crt" }

    // MARK: test controls

    func wakeWatchers() {
        changed.lock()
        changed.broadcast()
        changed.unlock()
    }

    func mutate<R>(_ body: (inout State) -> R) -> R {
        let r = state.withLock(body)
        wakeWatchers()
        return r
    }

    static func record(_ s: inout State, _ type: String, _ resource: String, _ object: JSON, old: JSON? = nil) {
        s.history.append(Event(resourceVersion: s.resourceVersion, type: type, resource: resource, object: object, old: old))
    }

    static func stamp(_ object: JSON, _ s: inout State) -> JSON {
        s.resourceVersion += 1
        let meta = (object["metadata"] ?? .object([])).setting("resourceVersion", .string(String(s.resourceVersion)))
        return object.setting("metadata", meta)
    }

    func addNamespace(_ name: String, labels: JSON = .object([])) {
        mutate { s in
            let object = Self.stamp(.obj([
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": .obj(["name": .string(name), "uid": .string(UUID().uuidString),
                                  "labels": labels.setting("kubernetes.io/metadata.name", .string(name))]),
                "status": .obj(["phase": "Active"]),
            ]), &s)
            s.namespaces[name] = object
            s.createdAt["namespaces//\(name)"] = Clock.monotonic().seconds
            Self.record(&s, "ADDED", "namespaces", object)
        }
    }

    /// Adds (or changes) a Node with these InternalIP addresses.
    func addNode(_ name: String, addresses: [String]) {
        mutate { s in
            let key = "nodes//\(name)"
            let old = s.objects[key]
            let object = Self.stamp(.obj([
                "apiVersion": "v1", "kind": "Node", "metadata": .obj(["name": .string(name)]),
                "status": .obj(["addresses": .array([.obj(["type": "Hostname", "address": .string(name)])]
                    + addresses.map { .obj(["type": "InternalIP", "address": .string($0)]) })]),
            ]), &s)
            s.objects[key] = object
            Self.record(&s, old == nil ? "ADDED" : "MODIFIED", "nodes", object, old: old)
        }
    }

    /// Deletes a Node.
    func deleteNode(_ name: String) {
        mutate { s in
            guard let old = s.objects.removeValue(forKey: "nodes//\(name)") else { return }
            Self.record(&s, "DELETED", "nodes", Self.stamp(old, &s))
        }
    }

    /// Deletes a namespace and everything in it, as the namespace controller ends up doing.
    func deleteNamespace(_ name: String) {
        mutate { s in
            for key in s.objects.keys.sorted() where key.split(separator: "/", omittingEmptySubsequences: false)[1] == Substring(name) {
                let object = Self.stamp(s.objects[key]!, &s)
                s.objects[key] = nil
                Self.record(&s, "DELETED", String(key.split(separator: "/")[0]), object)
            }
            if let ns = s.namespaces[name] {
                let object = Self.stamp(ns, &s)
                s.namespaces[name] = nil
                Self.record(&s, "DELETED", "namespaces", object)
            }
        }
    }

    /// Any stored object by resource, namespace ("" for cluster-scoped) and name.
    func object(_ resource: String, _ namespace: String, _ name: String) -> JSON? {
        state.withLock { $0.objects["\(resource)/\(namespace)/\(name)"] }
    }

    func policy(_ namespace: String, _ name: String) -> JSON? {
        state.withLock { $0.objects["networkpolicies/\(namespace)/\(name)"] }
    }

    func namespace(_ name: String) -> JSON? { state.withLock { $0.namespaces[name] } }
    /// Every Event stored, in key order.
    func events() -> [JSON] {
        state.withLock { s in s.objects.filter { $0.key.hasPrefix("events/") }.sorted { $0.key < $1.key }.map(\.value) }
    }

    /// Writes an object behind the provisioner's back (as an exempt admin would).
    func put(_ resource: String, _ namespace: String, _ name: String, _ object: JSON?) {
        mutate { s in
            let key = "\(resource)/\(namespace)/\(name)"
            let old = s.objects[key]
            if let object {
                var meta = (object["metadata"] ?? .object([])).setting("name", .string(name))
                if !namespace.isEmpty { meta = meta.setting("namespace", .string(namespace)) }
                let stored = Self.stamp(object.setting("metadata", meta), &s)
                s.objects[key] = stored
                Self.record(&s, old == nil ? "ADDED" : "MODIFIED", resource, stored, old: old)
            } else if let old {
                s.objects[key] = nil
                Self.record(&s, "DELETED", resource, Self.stamp(old, &s))
            }
        }
    }

    func inject(_ faults: [Fault]) { state.withLock { $0.faults += faults } }
    func rotateToken(to token: String) { state.withLock { $0.tokens = [token] } }
    var requests: [String] { state.withLock { $0.log } }
    func clearLog() { state.withLock { $0.log.removeAll() } }
    /// Forgets all history: every older watch and continue token gets 410 Gone.
    func compact() { mutate { s in s.compactedBelow = s.resourceVersion; s.history.removeAll() } }
    /// Cuts every open watch mid-stream, without the last chunk.
    func dropWatches() { mutate { $0.watchGeneration += 1 } }
    func objects(_ resource: String, in namespace: String) -> [String] {
        state.withLock { s in s.objects.keys.filter { $0.hasPrefix("\(resource)/\(namespace)/") }.map { String($0.split(separator: "/")[2]) }.sorted() }
    }
    func createdAt(_ resource: String, _ namespace: String, _ name: String) -> Double? {
        state.withLock { $0.createdAt["\(resource)/\(namespace)/\(name)"] }
    }

    // MARK: connections

    /// One connection: TLS handshake, then requests until the client closes.
    func serve(_ fd: Int32) {
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        guard let session = try? TLSSession(context: context, fd: fd) else { close(fd); return }
        defer {
            session.shutdown()
            session.free()
            close(fd)
        }
        var handshake = session.accept()
        var tries = 0
        while case .wantRead = handshake, tries < 50 {
            tries += 1
            handshake = session.accept()
        }
        guard case .done = handshake else { return }
        let connection = Connection(session: session, stopped: { [self] in state.withLock { $0.stopped } })
        while let request = connection.readRequest() {
            guard handle(request, connection) else { return }
        }
    }

    struct Request {
        var method: String
        var target: String
        var headers: [String: String]
        var body: [UInt8]
        var path: [String] { target.split(separator: "?")[0].split(separator: "/").map { String($0).removingPercentEncoding ?? String($0) } }
        var query: [String: String] {
            guard let q = target.split(separator: "?", maxSplits: 1).dropFirst().first else { return [:] }
            var out: [String: String] = [:]
            for pair in q.split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? String($0) }
                out[kv[0]] = kv.count > 1 ? kv[1] : ""
            }
            return out
        }
    }

    final class Connection {
        let session: TLSSession
        let stopped: () -> Bool
        var buffer: [UInt8] = []

        init(session: TLSSession, stopped: @escaping () -> Bool) {
            self.session = session
            self.stopped = stopped
        }

        func fill() -> Bool {
            var chunk = [UInt8](repeating: 0, count: 16384)
            while !stopped() {
                let result = chunk.withUnsafeMutableBufferPointer { session.read(into: $0.baseAddress!, count: $0.count) }
                switch result {
                case .done(let n):
                    buffer += chunk[0..<n]
                    return true
                case .wantRead, .wantWrite: continue
                default: return false
                }
            }
            return false
        }

        func readRequest() -> Request? {
            let marker: [UInt8] = [13, 10, 13, 10]
            var end: Int?
            while end == nil {
                if buffer.count >= 4, let i = (0...(buffer.count - 4)).first(where: { Array(buffer[$0..<$0 + 4]) == marker }) {
                    end = i
                } else if !fill() {
                    return nil
                }
            }
            let head = String(decoding: buffer[0..<end!], as: UTF8.self)
            buffer.removeFirst(end! + 4)
            let lines = head.components(separatedBy: "\r\n")
            let first = lines[0].split(separator: " ")
            guard first.count >= 2 else { return nil }
            var headers: [String: String] = [:]
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            let length = Int(headers["content-length"] ?? "0") ?? 0
            while buffer.count < length { guard fill() else { return nil } }
            let body = Array(buffer[0..<length])
            buffer.removeFirst(length)
            return Request(method: String(first[0]), target: String(first[1]), headers: headers, body: body)
        }

        func write(_ bytes: [UInt8]) -> Bool {
            var offset = 0
            while offset < bytes.count {
                let result = bytes.withUnsafeBufferPointer { session.write(from: $0.baseAddress! + offset, count: $0.count - offset) }
                switch result {
                case .done(let n): offset += n
                case .wantWrite, .wantRead: if stopped() { return false }
                default: return false
                }
            }
            return true
        }

        func respond(_ status: Int, _ body: JSON, headers: String = "") -> Bool {
            let bytes = Array(body.serialized.utf8)
            let head = "HTTP/1.1 \(status) X\r\nContent-Type: application/json\r\n\(headers)Content-Length: \(bytes.count)\r\n\r\n"
            return write(Array(head.utf8) + bytes)
        }

        func chunk(_ text: String) -> Bool {
            let bytes = Array(text.utf8)
            return write(Array((String(bytes.count, radix: 16) + "\r\n").utf8) + bytes + [13, 10])
        }
    }

    // MARK: the API

    static func status(_ code: Int, _ reason: String, _ message: String) -> JSON {
        .obj(["kind": "Status", "apiVersion": "v1", "metadata": .object([]), "status": "Failure",
              "message": .string(message), "reason": .string(reason), "code": .int(code)])
    }

    /// Answers one request; false to close the connection.
    func handle(_ request: Request, _ connection: Connection) -> Bool {
        let (authorized, fault, delay) = state.withLock { s -> (Bool, Fault?, Double) in
            s.log.append("\(request.method) \(request.target)")
            let token = request.headers["authorization"]?.replacingOccurrences(of: "Bearer ", with: "")
            guard let token, s.tokens.contains(token) else { return (false, nil, 0) }
            if let i = s.faults.firstIndex(where: { $0.matches(request.target) }) {
                return (true, s.faults.remove(at: i), 0)
            }
            return (true, nil, s.delay)
        }
        guard authorized else { return connection.respond(401, Self.status(401, "Unauthorized", "Unauthorized")) }
        if let (raw, hold) = state.withLock({ s in s.rawAnswer.map { ($0, s.holdOpen) } }) {
            guard connection.write(raw) else { return false }
            if hold { while connection.fill() {} }
            return false
        }
        if let fault {
            return connection.respond(fault.status, Self.status(fault.status, fault.reason, "injected \(fault.reason)"),
                                      headers: fault.retryAfter.map { "Retry-After: \($0)\r\n" } ?? "")
        }
        if delay > 0 { usleep(UInt32(delay * 1_000_000)) }
        if request.method == "GET" && request.query["watch"].map({ $0 == "1" || $0 == "true" }) == true {
            return watch(request, connection)
        }
        let body = request.body.isEmpty ? nil : try? JSON(parsing: request.body)
        let (code, answer) = mutate { s in route(&s, request, body) }
        return connection.respond(code, answer)
    }

    /// `resource` and namespace scope of a collection path, e.g.
    /// `/api/v1/namespaces` or `/apis/networking.k8s.io/v1/networkpolicies`.
    static func collection(_ parts: [String]) -> (resource: String, namespace: String?)? {
        if parts == ["api", "v1", "namespaces"] { return ("namespaces", nil) }
        // Core resources (pods, services, endpoints) across namespaces, or in one
        // (Secrets): /api/v1/RESOURCE, /api/v1/namespaces/NS/RESOURCE.
        if parts.count == 3 && parts[0] == "api" { return (parts[2], nil) }
        if parts.count == 5 && parts[0] == "api" && parts[2] == "namespaces" { return (parts[4], parts[3]) }
        if parts.count == 4 && parts[0] == "apis" { return (parts[3], nil) }
        if parts.count == 6 && parts[0] == "apis" && parts[3] == "namespaces" { return (parts[5], parts[4]) }
        return nil
    }

    /// Resource, namespace ("" when cluster-scoped) and name of an object path: a
    /// namespaced group resource, a core namespaced one (Secrets), or a cluster-scoped
    /// group resource (webhook registrations), stored as "resource/namespace/name".
    static func object(_ parts: [String]) -> (resource: String, namespace: String, name: String)? {
        if parts.count == 7 && parts[0] == "apis" && parts[3] == "namespaces" { return (parts[5], parts[4], parts[6]) }
        if parts.count == 6 && parts[0] == "api" && parts[2] == "namespaces" { return (parts[4], parts[3], parts[5]) }
        if parts.count == 5 && parts[0] == "apis" { return (parts[3], "", parts[4]) }
        return nil
    }

    static func matches(_ object: JSON, selector: String?, fields: String? = nil) -> Bool {
        if let selector, !selector.isEmpty {
            let pair = selector.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2 && object["metadata"]?["labels"]?[pair[0]]?.stringValue == pair[1] else { return false }
        }
        return matches(object, fieldSelector: fields)
    }

    /// A field selector as the API server reads one: comma-separated `path=value`,
    /// `path==value` or `path!=value` terms, all of which must hold; a path is
    /// dotted (`metadata.name`, `spec.hostNetwork`), and a missing boolean reads
    /// as `false` (the API server's defaulting).
    static func matches(_ object: JSON, fieldSelector: String?) -> Bool {
        guard let fieldSelector, !fieldSelector.isEmpty else { return true }
        for term in fieldSelector.split(separator: ",") {
            let negated = term.contains("!=")
            let parts = term.replacingOccurrences(of: "!=", with: "=").replacingOccurrences(of: "==", with: "=")
                .split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { return false }
            var node: JSON? = object
            for key in parts[0].split(separator: ".") { node = node?[String(key)] }
            let value: String
            switch node {
            case .string(let text)?: value = text
            case .bool(let flag)?: value = flag ? "true" : "false"
            case .number(let text)?: value = text
            default: value = parts[1] == "false" ? "false" : ""
            }
            if (value == parts[1]) == negated { return false }
        }
        return true
    }

    func items(_ s: State, _ resource: String, _ namespace: String?) -> [(String, JSON)] {
        if resource == "namespaces" { return s.namespaces.sorted { $0.key < $1.key }.map { ("namespaces//" + $0.key, $0.value) } }
        let prefix = resource + "/" + (namespace.map { $0 + "/" } ?? "")
        return s.objects.filter { $0.key.hasPrefix(prefix) }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    func list(_ s: State, _ request: Request, _ resource: String, _ namespace: String?) -> (Int, JSON) {
        let query = request.query
        let selector = query["labelSelector"]
        let fields = query["fieldSelector"]
        var snapshot = s.resourceVersion
        var after = ""
        if let token = query["continue"], !token.isEmpty {
            let parts = token.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts.count == 2, let rv = Int(parts[0]) else { return (400, Self.status(400, "BadRequest", "bad continue token")) }
            guard rv >= s.compactedBelow else {
                return (410, Self.status(410, "Expired", "The provided continue parameter is too old to display a consistent list result."))
            }
            snapshot = rv
            after = parts[1]
        }
        let limit = Int(query["limit"] ?? "") ?? 0
        var page: [JSON] = []
        var last = ""
        var more = false
        for (key, object) in items(s, resource, namespace) where key > after && Self.matches(object, selector: selector, fields: fields) {
            if limit > 0 && page.count == limit {
                more = true
                break
            }
            page.append(object)
            last = key
        }
        let kind = resource == "namespaces" ? "NamespaceList" : resource == "networkpolicies" ? "NetworkPolicyList" : "List"
        return (200, .obj(["kind": .string(kind), "apiVersion": "v1",
                           "metadata": .obj(["resourceVersion": .string(String(snapshot)),
                                             "continue": more ? .string("\(snapshot):\(last)") : nil]),
                           "items": .array(page)]))
    }

    /// Streams events after the requested resourceVersion until `timeoutSeconds`,
    /// a dropped watch, or the server stopping.
    func watch(_ request: Request, _ connection: Connection) -> Bool {
        guard let (resource, namespace) = Self.collection(request.path) else {
            return connection.respond(404, Self.status(404, "NotFound", "the server could not find the requested resource"))
        }
        let query = request.query
        let selector = query["labelSelector"]
        let fields = query["fieldSelector"]
        let bookmarks = query["allowWatchBookmarks"] == "true"
        let timeout = state.withLock { $0.watchLifetime } ?? Double(query["timeoutSeconds"] ?? "") ?? 1800
        var cursor = Int(query["resourceVersion"] ?? "") ?? 0
        let (compacted, generation, interval, goneAsStatus, current) = state.withLock {
            ($0.compactedBelow, $0.watchGeneration, $0.bookmarkInterval, $0.goneAsHTTPStatus, $0.resourceVersion)
        }
        if cursor == 0 { cursor = current }
        let gone = Self.status(410, "Expired", "too old resource version: \(cursor) (\(compacted))")
        if cursor < compacted && goneAsStatus { return connection.respond(410, gone) }
        guard connection.write(Array("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)) else { return false }
        if cursor < compacted {
            return connection.chunk(JSON.obj(["type": "ERROR", "object": gone]).serialized + "\n") && connection.chunk("")
        }
        let deadline = Date().addingTimeInterval(timeout)
        var lastSent = Date()
        while true {
            let (events, dropped, stopped, now) = state.withLock { s -> ([Event], Bool, Bool, Int) in
                // History is in resourceVersion order: binary search for the first newer event.
                var (lo, hi) = (0, s.history.count)
                while lo < hi {
                    let mid = (lo + hi) / 2
                    if s.history[mid].resourceVersion > cursor { hi = mid } else { lo = mid + 1 }
                }
                let fresh = Array(s.history[lo...])
                return (fresh, s.watchGeneration != generation, s.stopped, s.resourceVersion)
            }
            if dropped || stopped { return false }  // cut mid-stream, no final chunk
            var text = ""
            for event in events {
                cursor = event.resourceVersion
                guard event.resource == resource else { continue }
                if let namespace, event.object["metadata"]?["namespace"]?.stringValue != namespace { continue }
                let nowMatches = Self.matches(event.object, selector: selector, fields: fields)
                var type = event.type
                if type == "MODIFIED" {
                    let before = event.old.map { Self.matches($0, selector: selector, fields: fields) } ?? false
                    if !before && !nowMatches { continue }
                    if before && !nowMatches { type = "DELETED" }
                    if !before && nowMatches { type = "ADDED" }
                } else if !nowMatches {
                    continue
                }
                text += JSON.obj(["type": .string(type), "object": event.object]).serialized + "\n"
            }
            if !text.isEmpty {
                guard connection.chunk(text) else { return false }
                lastSent = Date()
            } else if bookmarks && Date().timeIntervalSince(lastSent) >= interval {
                cursor = max(cursor, now)
                let bookmark = JSON.obj(["type": "BOOKMARK", "object": .obj([
                    "kind": .string(resource == "namespaces" ? "Namespace" : "NetworkPolicy"),
                    "metadata": .obj(["resourceVersion": .string(String(cursor))]),
                ])])
                guard connection.chunk(bookmark.serialized + "\n") else { return false }
                lastSent = Date()
            }
            if Date() >= deadline { return connection.chunk("") }
            changed.lock()
            let pending = state.withLock { s in (s.history.last?.resourceVersion ?? 0) > cursor || s.watchGeneration != generation || s.stopped }
            if !pending { _ = changed.wait(until: min(deadline, Date().addingTimeInterval(min(interval, 0.5)))) }
            changed.unlock()
        }
    }

    func route(_ s: inout State, _ request: Request, _ body: JSON?) -> (Int, JSON) {
        let parts = request.path
        let method = request.method
        if parts == ["apis"] && method == "GET" {
            // Discovery: the groups and versions served (cluster-scoped kinds are stored as "resource//name").
            var groups: [(String, [String])] = []
            for gv in s.servedGroupVersions {
                let p = gv.split(separator: "/").map(String.init)
                if let i = groups.firstIndex(where: { $0.0 == p[0] }) { groups[i].1.append(p[1]) } else { groups.append((p[0], [p[1]])) }
            }
            return (200, .obj(["kind": "APIGroupList", "apiVersion": "v1", "groups": .array(groups.map { g in
                .obj(["name": .string(g.0), "versions": .array(g.1.map { .obj(["groupVersion": .string("\(g.0)/\($0)"), "version": .string($0)]) }),
                      "preferredVersion": .obj(["groupVersion": .string("\(g.0)/\(g.1[0])"), "version": .string(g.1[0])])])
            })]))
        }
        if parts.count == 3 && parts[0] == "apis" && method == "GET" {
            guard let resources = served.withLock({ $0[parts[1] + "/" + parts[2]] }) else {
                return (404, Self.status(404, "NotFound", "the server could not find the requested resource"))
            }
            return (200, .obj(["kind": "APIResourceList", "groupVersion": .string(parts[1] + "/" + parts[2]),
                               "resources": .array(resources.map { .obj(["name": .string($0), "namespaced": true]) })]))
        }
        if parts.count >= 4 && parts[0] == "apis", served.withLock({ s in s.keys.contains(parts[1] + "/" + parts[2]) }) == false,
            !s.servedGroupVersions.contains(parts[1] + "/" + parts[2]),
            !["networking.k8s.io", "coordination.k8s.io", "discovery.k8s.io", "admissionregistration.k8s.io",
              // The cluster-scoped guard backends' groups (ClusterGuardTests write them without discovery).
              "policy.networking.k8s.io", "crd.projectcalico.org", "projectcalico.org", "cilium.io"].contains(parts[1]) {
            return (404, Self.status(404, "NotFound", "the server could not find the requested resource"))
        }
        if let (resource, namespace) = Self.collection(parts) {
            switch method {
            case "GET": return list(s, request, resource, namespace)
            case "POST": return create(&s, resource, namespace ?? "", body)
            default: return (405, Self.status(405, "MethodNotAllowed", "method not allowed"))
            }
        }
        if parts.count == 4 && parts[0] == "api" && parts[2] == "namespaces" {
            let name = parts[3]
            guard let ns = s.namespaces[name] else { return (404, Self.status(404, "NotFound", "namespaces \"\(name)\" not found")) }
            switch method {
            case "GET": return (200, ns)
            case "PATCH":
                guard let patch = body, request.headers["content-type"] == "application/merge-patch+json" else {
                    return (415, Self.status(415, "UnsupportedMediaType", "expected a merge patch"))
                }
                let updated = Self.stamp(Self.mergePatch(ns, patch), &s)
                s.namespaces[name] = updated
                Self.record(&s, "MODIFIED", "namespaces", updated, old: ns)
                return (200, updated)
            default: return (405, Self.status(405, "MethodNotAllowed", "method not allowed"))
            }
        }
        if let (resource, namespace, name) = Self.object(parts) {
            let key = "\(resource)/\(namespace)/\(name)"
            guard let current = s.objects[key] else {
                return (404, Self.status(404, "NotFound", "\(resource) \"\(name)\" not found"))
            }
            switch method {
            case "GET":
                return (200, current)
            case "DELETE":
                s.objects[key] = nil
                Self.record(&s, "DELETED", resource, Self.stamp(current, &s))
                return (200, .obj(["kind": "Status", "status": "Success"]))
            case "PUT", "PATCH":
                guard let body else { return (400, Self.status(400, "BadRequest", "no body")) }
                var updated: JSON
                if method == "PUT" {
                    let sent = body["metadata"]?["resourceVersion"]?.stringValue
                    if let sent, sent != current["metadata"]?["resourceVersion"]?.stringValue {
                        return (409, Self.status(409, "Conflict", "the object has been modified; please apply your changes to the latest version and try again"))
                    }
                    updated = body
                } else if request.headers["content-type"] == "application/json-patch+json" {
                    guard let patched = Self.jsonPatch(current, body) else {
                        return (422, Self.status(422, "Invalid", "the JSON patch could not be applied"))
                    }
                    updated = patched
                } else {
                    updated = Self.mergePatch(current, body)
                }
                var meta = (updated["metadata"] ?? .object([])).setting("name", .string(name))
                if !namespace.isEmpty { meta = meta.setting("namespace", .string(namespace)) }
                updated = Self.stamp(updated.setting("metadata", meta), &s)
                s.objects[key] = updated
                Self.record(&s, "MODIFIED", resource, updated, old: current)
                return (200, updated)
            default:
                return (405, Self.status(405, "MethodNotAllowed", "method not allowed"))
            }
        }
        return (404, Self.status(404, "NotFound", "the server could not find the requested resource"))
    }

    func create(_ s: inout State, _ resource: String, _ namespace: String, _ body: JSON?) -> (Int, JSON) {
        // Events for cluster-scoped objects go to `default`, which a real cluster always has.
        guard namespace.isEmpty || s.namespaces[namespace] != nil || (resource == "events" && namespace == "default") else {
            return (404, Self.status(404, "NotFound", "namespaces \"\(namespace)\" not found"))
        }
        guard let object = body, let name = object["metadata"]?["name"]?.stringValue else {
            return (400, Self.status(400, "BadRequest", "name is required"))
        }
        let key = "\(resource)/\(namespace)/\(name)"
        if s.objects[key] != nil {
            return (409, Self.status(409, "AlreadyExists", "\(resource) \"\(name)\" already exists"))
        }
        var meta = object["metadata"]!.setting("uid", .string(UUID().uuidString))
        if !namespace.isEmpty { meta = meta.setting("namespace", .string(namespace)) }
        let stored = Self.stamp(object.setting("metadata", meta), &s)
        s.objects[key] = stored
        s.createdAt[key] = Clock.monotonic().seconds
        Self.record(&s, "ADDED", resource, stored)
        return (201, stored)
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

    /// RFC 6902 `add`, `replace` and `remove` on object members (what pxguard sends).
    static func jsonPatch(_ target: JSON, _ patch: JSON) -> JSON? {
        guard let ops = patch.arrayValue else { return nil }
        var result = target
        for op in ops {
            guard let kind = op["op"]?.stringValue, let path = op["path"]?.stringValue, path.hasPrefix("/") else { return nil }
            let keys = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
                .map { $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~") }
            func apply(_ node: JSON, _ keys: ArraySlice<String>) -> JSON? {
                guard let key = keys.first, case .object(let members) = node else { return nil }
                if keys.count == 1 {
                    let exists = members.contains { $0.key == key }
                    switch kind {
                    case "add": return node.setting(key, op["value"] ?? .null)
                    case "replace": return exists ? node.setting(key, op["value"] ?? .null) : nil
                    case "remove": return exists ? .object(members.filter { $0.key != key }) : nil
                    case "test": return node[key] == op["value"] ? node : nil
                    default: return nil
                    }
                }
                guard let child = node[key], let updated = apply(child, keys.dropFirst()) else { return nil }
                return node.setting(key, updated)
            }
            guard let next = apply(result, keys[...]) else { return nil }
            result = next
        }
        return result
    }
}
