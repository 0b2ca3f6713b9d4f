#if canImport(Glibc)
import Glibc
#endif
public import PXGuardCore
import PXGuardPlatform
import PXGuardServer

/// Where the Kubernetes API is and how to authenticate to it.
public struct KubeEndpoint: Sendable {
    public var host: String
    public var port: Int
    public var tokenFile: String?
    public var caFile: String?

    static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// Parses `https://HOST[:PORT]`.
    public init(url: String, tokenFile: String?, caFile: String?) throws(KubeError) {
        guard url.hasPrefix("https://") else { throw KubeError.configuration("--kube-api \(url): expected https://HOST[:PORT]") }
        var rest = url.dropFirst("https://".count)
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            port = after.hasPrefix(":") ? Int(after.dropFirst()) ?? -1 : 443
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            port = Int(rest[rest.index(after: colon)...]) ?? -1
        } else {
            host = String(rest)
            port = 443
        }
        guard !host.isEmpty, (1...65535).contains(port) else { throw KubeError.configuration("--kube-api \(url): bad host or port") }
        self.tokenFile = tokenFile
        self.caFile = caFile
    }

    /// The in-cluster configuration, or nil outside a cluster.
    public static func inCluster() -> KubeEndpoint? {
        guard let host = Environment.variable("KUBERNETES_SERVICE_HOST"), let port = Environment.variable("KUBERNETES_SERVICE_PORT"),
            FileIO.exists(serviceAccountDirectory + "/token")
        else { return nil }
        let bracketed = host.contains(":") ? "[\(host)]" : host
        return try? KubeEndpoint(url: "https://\(bracketed):\(port)", tokenFile: serviceAccountDirectory + "/token",
                                 caFile: serviceAccountDirectory + "/ca.crt")
    }
}

/// A failed Kubernetes API call.
public enum KubeError: Error, CustomStringConvertible, Sendable {
    /// The API answered with a `Status` (or at least a status code).
    case status(code: Int, reason: String, message: String, retryAfter: Double?)
    /// The call never got an answer: connection, TLS or timeout.
    case transport(String)
    case configuration(String)
    /// A name that is not a DNS-1123 label was about to become part of a request path.
    case invalidName(String)

    public var description: String {
        switch self {
        case .status(let code, let reason, let message, _): return "HTTP \(code) \(reason): \(message)"
        case .transport(let m): return "transport: \(m)"
        case .configuration(let m): return m
        case .invalidName(let name): return "not a DNS-1123 label, refused in a request path: \(name.debugDescription)"
        }
    }

    public var code: Int? {
        if case .status(let code, _, _, _) = self { return code }
        return nil
    }

    public var reason: String? {
        if case .status(_, let reason, _, _) = self { return reason }
        return nil
    }

    /// Worth retrying: throttling, server errors and transport failures.
    var isTransient: Bool {
        switch self {
        case .status(let code, _, _, _): return code == 429 || code >= 500
        case .transport: return true
        case .configuration, .invalidName: return false
        }
    }

    var retryAfter: Double? {
        if case .status(_, _, _, let after) = self { return after }
        return nil
    }
}

/// Names and paths of the Kubernetes objects pxguard touches. Every name that
/// reaches a path is checked to be a DNS-1123 label (what the API server allows
/// for namespaces and what pxguard's own object names are) and percent-encoded,
/// so no name can step into another path or smuggle a query.
enum KubePath {
    /// RFC 1123 label as Kubernetes validates it: 1–63 of `[a-z0-9-]`, starting
    /// and ending with an alphanumeric.
    static func isDNS1123Label(_ name: String) -> Bool {
        let bytes = name.utf8
        guard (1...63).contains(bytes.count) else { return false }
        func alnum(_ b: UInt8) -> Bool { (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) }
        guard alnum(bytes.first!), alnum(bytes.last!) else { return false }
        return bytes.allSatisfy { alnum($0) || $0 == UInt8(ascii: "-") }
    }

    /// RFC 3986 percent-encoding of everything but the unreserved characters.
    static func percentEncoded(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                out += "%" + String(decoding: [hex[Int(byte >> 4)], hex[Int(byte & 15)]], as: UTF8.self)
            }
        }
        return out
    }

    /// `name` as a path segment, or `invalidName`.
    static func segment(_ name: String) throws(KubeError) -> String {
        guard isDNS1123Label(name) else { throw KubeError.invalidName(name) }
        return percentEncoded(name)
    }

    /// The Namespace collection.
    static let namespaces = "/api/v1/namespaces"
    /// NetworkPolicies of every namespace (for list and watch).
    static let allNetworkPolicies = "/apis/networking.k8s.io/v1/networkpolicies"

    /// One Namespace.
    static func namespace(_ name: String) throws(KubeError) -> String {
        "\(namespaces)/\(try segment(name))"
    }

    /// The NetworkPolicies of one namespace.
    static func networkPolicies(in namespace: String) throws(KubeError) -> String {
        "/apis/networking.k8s.io/v1/namespaces/\(try segment(namespace))/networkpolicies"
    }

    /// One NetworkPolicy.
    static func networkPolicy(_ name: String, in namespace: String) throws(KubeError) -> String {
        "\(try networkPolicies(in: namespace))/\(try segment(name))"
    }

    /// The Leases of one namespace.
    static func leases(in namespace: String) throws(KubeError) -> String {
        "/apis/coordination.k8s.io/v1/namespaces/\(try segment(namespace))/leases"
    }

    /// One Lease.
    static func lease(_ name: String, in namespace: String) throws(KubeError) -> String {
        "\(try leases(in: namespace))/\(try segment(name))"
    }

    /// `path?k=v&…` with each value percent-encoded.
    static func query(_ path: String, _ items: [(String, String?)]) -> String {
        let present = items.compactMap { item in item.1.map { "\(item.0)=\(percentEncoded($0))" } }
        return present.isEmpty ? path : path + "?" + present.joined(separator: "&")
    }
}

/// How to reach the Kubernetes API: endpoint, TLS context and timeout. Immutable
/// and shared; every thread that talks to the API opens its own `KubeConnection`,
/// so no connection is ever shared between threads (the compiler keeps it so:
/// a connection is not `Sendable`).
public struct KubeClient: Sendable {
    public let endpoint: KubeEndpoint
    let context: TLSContext
    public let timeout: Double

    public init(endpoint: KubeEndpoint, timeout: Double = 10) throws(KubeError) {
        self.endpoint = endpoint
        self.timeout = timeout
        do {
            context = try TLSContext.client(caFile: endpoint.caFile)
        } catch {
            throw KubeError.configuration("Kubernetes CA \(endpoint.caFile ?? "(system)"): \(error)")
        }
    }

    /// A connection for the calling thread (it dials on first use).
    public func connection() -> KubeConnection { KubeConnection(client: self) }

    /// The bearer token, re-read on every request so that rotated bound tokens work.
    func token() -> String? {
        guard let file = endpoint.tokenFile, let bytes = try? FileIO.read(file, limit: 1 << 16) else { return nil }
        let trimmed = bytes.drop { $0 <= 0x20 }.reversed().drop { $0 <= 0x20 }.reversed()
        return String(decoding: Array(trimmed), as: UTF8.self)
    }

    func headers(contentType: String?) -> [(String, String)] {
        var headers = [("Accept", "application/json"), ("User-Agent", "pxguard")]
        if let token = token() { headers.append(("Authorization", "Bearer \(token)")) }
        if let contentType { headers.append(("Content-Type", contentType)) }
        return headers
    }

    func dial(timeout: Double) throws(KubeError) -> TLSClientConnection {
        do {
            let address = try SocketAddress.resolve(host: endpoint.host, port: endpoint.port)
            return try TLSClientConnection(address: address, context: context, serverName: endpoint.host, timeout: timeout)
        } catch {
            throw KubeError.transport("connecting to \(endpoint.host):\(endpoint.port): \(error)")
        }
    }

    static func error(status: Int, body: [UInt8], retryAfter: String?) -> KubeError {
        let json = try? JSON(parsing: body)
        return KubeError.status(code: status, reason: json?["reason"]?.stringValue ?? "",
                                message: json?["message"]?.stringValue ?? String(decoding: body.prefix(200), as: UTF8.self),
                                retryAfter: retryAfter.flatMap(Double.init))
    }
}

/// One keep-alive connection to the API, owned by the thread that made it. Not
/// `Sendable` on purpose: that is what makes the client safe to use from many
/// threads without a lock.
public final class KubeConnection {
    let client: KubeClient
    private var connection: HTTPClientConnection?

    init(client: KubeClient) { self.client = client }

    deinit { connection?.close() }

    func connect() throws(KubeError) -> HTTPClientConnection {
        if let connection, connection.reusable, connection.connection.isOpen { return connection }
        connection?.close()
        let fresh = HTTPClientConnection(try client.dial(timeout: client.timeout))
        connection = fresh
        return fresh
    }

    /// One API call. 2xx answers return the decoded body; anything else throws a
    /// `KubeError` built from the `Status` body and `Retry-After`.
    @discardableResult
    public func call(_ method: String, _ path: String, body: JSON? = nil,
                     contentType: String = "application/json") throws(KubeError) -> JSON {
        let headers = client.headers(contentType: body == nil ? nil : contentType)
        let bytes = body.map { Array($0.serialized.utf8) }
        var response: HTTPClientResponse?
        var used: HTTPClientConnection?
        // A keep-alive connection the server closed meanwhile: retry once on a new one.
        for attempt in 0..<2 {
            let conn = try connect()
            do {
                response = try conn.request(method, path, headers: headers, body: bytes)
                used = conn
                break
            } catch {
                conn.close()
                connection = nil
                if attempt == 1 { throw KubeError.transport("\(method) \(path): \(error)") }
            }
        }
        guard let response else { throw KubeError.transport("\(method) \(path): no response") }
        if used?.reusable == false {
            used?.close()
            connection = nil
        }
        guard (200..<300).contains(response.status) else {
            throw KubeClient.error(status: response.status, body: response.body, retryAfter: response.header("Retry-After"))
        }
        return (try? JSON(parsing: response.body)) ?? .null
    }

    /// Runs one watch request to its end: the server closing it (after
    /// `timeoutSeconds`) returns normally; each event line is handed to `onEvent`.
    /// `pollSeconds` bounds each blocking read, so `shouldStop` is seen promptly;
    /// a stream silent for `idleSeconds` is treated as dead.
    /// `onOpen` runs once the server has answered 200 and the stream begins.
    public func watch(_ path: String, pollSeconds: Double, idleSeconds: Double, shouldStop: () -> Bool,
                      onOpen: () -> Void = {}, onEvent: (JSON) throws(KubeError) -> Void) throws(KubeError) {
        let stream = WatchStream(try client.dial(timeout: pollSeconds))
        defer { stream.close() }
        do {
            try stream.send("GET", path, headers: client.headers(contentType: nil))
            try stream.run(idleSeconds: idleSeconds, shouldStop: shouldStop, onOpen: onOpen, onEvent: onEvent)
        } catch let error as KubeError {
            throw error
        } catch {
            throw KubeError.transport("watch \(path): \(error)")
        }
    }

    /// Closes the keep-alive connection; the next call dials again.
    public func close() {
        connection?.close()
        connection = nil
    }
}

/// The reading side of one watch: an HTTP/1.1 response whose chunked body is a
/// stream of newline-separated JSON events, read as it arrives.
final class WatchStream {
    let tls: TLSClientConnection
    var buffer: [UInt8] = []
    var start = 0
    var lastByte = Clock.monotonic().seconds

    init(_ tls: TLSClientConnection) { self.tls = tls }

    func close() { tls.close() }

    func send(_ method: String, _ target: String, headers: [(String, String)]) throws {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: kubernetes\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "\r\n"
        try tls.write(Array(head.utf8))
    }

    /// Reads more bytes; false when the peer closed. Read timeouts come back as
    /// `nil` so that the caller can check for stop and idleness.
    func fill() throws -> Bool? {
        if start > 0 && start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        }
        var chunk = [UInt8](repeating: 0, count: 16384)
        do {
            let n = try chunk.withUnsafeMutableBufferPointer { try tls.read(into: $0.baseAddress!, count: $0.count) }
            if n == 0 { return false }
            if start > 65536 {
                buffer.removeFirst(start)
                start = 0
            }
            buffer.append(contentsOf: chunk[0..<n])
            lastByte = Clock.monotonic().seconds
            return true
        } catch let error as HTTPClientError where error.isTimeout {
            // The read bound (SO_RCVTIMEO) passed with nothing to read: not a failure.
            return nil
        }
    }

    /// Waits for bytes, giving up on stop or idleness.
    func more(idleSeconds: Double, shouldStop: () -> Bool) throws -> Bool {
        while true {
            if shouldStop() { return false }
            switch try fill() {
            case true?: return true
            case false?: return false
            case nil:
                if Clock.monotonic().seconds - lastByte > idleSeconds { throw KubeError.transport("watch silent for \(Int(idleSeconds)) s") }
            }
        }
    }

    func line(idleSeconds: Double, shouldStop: () -> Bool) throws -> String? {
        while true {
            if let i = buffer[start...].firstIndex(of: 0x0A) {
                var end = i
                if end > start && buffer[end - 1] == 0x0D { end -= 1 }
                let text = String(decoding: buffer[start..<end], as: UTF8.self)
                start = i + 1
                return text
            }
            guard try more(idleSeconds: idleSeconds, shouldStop: shouldStop) else { return nil }
        }
    }

    func bytes(_ count: Int, idleSeconds: Double, shouldStop: () -> Bool) throws -> ArraySlice<UInt8>? {
        while buffer.count - start < count {
            guard try more(idleSeconds: idleSeconds, shouldStop: shouldStop) else { return nil }
        }
        defer { start += count }
        return buffer[start..<start + count]
    }

    func run(idleSeconds: Double, shouldStop: () -> Bool, onOpen: () -> Void, onEvent: (JSON) throws(KubeError) -> Void) throws {
        guard let statusLine = try line(idleSeconds: idleSeconds, shouldStop: shouldStop) else {
            if shouldStop() { return }
            throw KubeError.transport("watch closed before a response")
        }
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let status = Int(parts[1]) else { throw KubeError.transport("malformed status line") }
        var chunked = false
        var length: Int?
        var retryAfter: String?
        while let header = try line(idleSeconds: idleSeconds, shouldStop: shouldStop), !header.isEmpty {
            guard let colon = header.firstIndex(of: ":") else { continue }
            let name = header[..<colon].lowercased()
            let value = String(header[header.index(after: colon)...].drop { $0 == " " })
            if name == "transfer-encoding" { chunked = value.lowercased().contains("chunked") }
            if name == "content-length" { length = Int(value) }
            if name == "retry-after" { retryAfter = value }
        }
        // A body that is not chunked is a plain answer (an error Status, usually).
        guard chunked else {
            let body = try length.flatMap { try bytes($0, idleSeconds: idleSeconds, shouldStop: shouldStop) }.map(Array.init) ?? []
            if (200..<300).contains(status) {
                for line in body.split(separator: 0x0A) where !line.isEmpty {
                    if let event = try? JSON(parsing: Array(line)) { try onEvent(event) }
                }
                return
            }
            throw KubeClient.error(status: status, body: body, retryAfter: retryAfter)
        }
        if (200..<300).contains(status) { onOpen() }
        var pending: [UInt8] = []
        var errorBody: [UInt8] = []
        // A stream that ends without its last chunk was cut (not ended by the server).
        func cut() throws {
            if !shouldStop() { throw KubeError.transport("watch cut mid-stream") }
        }
        while true {
            guard let sizeLine = try line(idleSeconds: idleSeconds, shouldStop: shouldStop) else { return try cut() }
            guard let size = Int(sizeLine.split(separator: ";").first.map(String.init) ?? "", radix: 16) else {
                throw KubeError.transport("watch: bad chunk size")
            }
            if size == 0 { break }
            guard let data = try bytes(size, idleSeconds: idleSeconds, shouldStop: shouldStop),
                try bytes(2, idleSeconds: idleSeconds, shouldStop: shouldStop) != nil
            else { return try cut() }
            guard (200..<300).contains(status) else {
                errorBody += data
                continue
            }
            pending += data
            while let newline = pending.firstIndex(of: 0x0A) {
                let line = Array(pending[..<newline])
                pending.removeFirst(newline + 1)
                guard !line.isEmpty else { continue }
                guard let event = try? JSON(parsing: line) else { throw KubeError.transport("watch: malformed event") }
                try onEvent(event)
            }
        }
        if !(200..<300).contains(status) { throw KubeClient.error(status: status, body: errorBody, retryAfter: retryAfter) }
    }
}

extension SocketAddress {
    /// Resolves a host name (or literal) to its first IPv4 or IPv6 address.
    static func resolve(host: String, port: Int) throws -> SocketAddress {
        if let literal = try? SocketAddress(parsing: SocketAddress.format(host, port)) { return literal }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else {
            throw KubeError.transport("cannot resolve \(host)")
        }
        defer { freeaddrinfo(result) }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        if first.pointee.ai_family == AF_INET6 {
            first.pointee.ai_addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sa in
                var addr = sa.pointee.sin6_addr
                _ = inet_ntop(AF_INET6, &addr, &buffer, socklen_t(buffer.count))
            }
        } else {
            first.pointee.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sa in
                var addr = sa.pointee.sin_addr
                _ = inet_ntop(AF_INET, &addr, &buffer, socklen_t(buffer.count))
            }
        }
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return try SocketAddress(parsing: SocketAddress.format(text, port))
    }
}
