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

    /// One streamed GET (a list page): a 2xx body is handed to `read` as a JSON
    /// stream as it arrives, never held whole and with no size limit (each
    /// object's kept fields have their own budget); anything else throws a
    /// `KubeError` built from its (bounded) `Status` body. The body is read to
    /// its end so the connection stays usable.
    public func stream<R>(_ path: String, read: (inout JSONStreamReader) throws -> R) throws(KubeError) -> R {
        let headers = client.headers(contentType: nil)
        var opened: (HTTPClientConnection, HTTPClientResponse)?
        for attempt in 0..<2 {
            let conn = try connect()
            do {
                opened = (conn, try conn.open("GET", path, headers: headers))
                break
            } catch {
                conn.close()
                connection = nil
                if attempt == 1 { throw KubeError.transport("GET \(path): \(error)") }
            }
        }
        guard let (conn, response) = opened else { throw KubeError.transport("GET \(path): no response") }
        do {
            guard (200..<300).contains(response.status) else {
                let body = try conn.readRestOfBody()
                if !conn.reusable { close() }
                throw KubeClient.error(status: response.status, body: body, retryAfter: response.header("Retry-After"))
            }
            var reader = JSONStreamReader { try conn.nextBodyPiece() }
            let result = try read(&reader)
            while try conn.nextBodyPiece() != nil {}
            if !conn.reusable { close() }
            return result
        } catch let error as KubeError {
            throw error
        } catch {
            close()
            throw KubeError.transport("GET \(path): \(error)")
        }
    }

    /// Runs one watch request to its end on a connection of its own: the server
    /// closing it (after `timeoutSeconds`) returns normally. Events are read from
    /// the stream one JSON value at a time, keeping only `paths` of each within
    /// `budget` bytes, and handed to `onEvent`. `pollSeconds` bounds each blocking
    /// read, so `shouldStop` is seen promptly; a stream silent for `idleSeconds`
    /// is treated as dead. `onOpen` runs once the server has answered 2xx.
    public func watch(_ path: String, paths: JSONPaths, budget: Int, pollSeconds: Double, idleSeconds: Double,
                      shouldStop: () -> Bool, onOpen: () -> Void = {},
                      onEvent: (JSONCapture) throws(KubeError) -> Void) throws(KubeError) {
        struct Stopped: Error {}
        let tls = try client.dial(timeout: pollSeconds)
        defer { tls.close() }
        var lastByte = Clock.monotonic().seconds
        do {
            try withoutActuallyEscaping(shouldStop) { shouldStop in
                let conn = HTTPClientConnection(tls) {
                    if shouldStop() { throw Stopped() }
                    if Clock.monotonic().seconds - lastByte > idleSeconds {
                        throw KubeError.transport("watch silent for \(Int(idleSeconds)) s")
                    }
                }
                let response = try conn.open("GET", path, headers: client.headers(contentType: nil))
                guard (200..<300).contains(response.status) else {
                    throw KubeClient.error(status: response.status, body: try conn.readRestOfBody(),
                                           retryAfter: response.header("Retry-After"))
                }
                lastByte = Clock.monotonic().seconds
                onOpen()
                var reader = JSONStreamReader {
                    let piece = try conn.nextBodyPiece()
                    lastByte = Clock.monotonic().seconds
                    return piece
                }
                while !shouldStop(), try !reader.atEnd() {
                    try onEvent(try reader.next(paths, budget: budget))
                }
            }
        } catch let error as KubeError {
            throw error
        } catch is Stopped {
            return
        } catch let error as JSONStreamError {
            throw KubeError.transport("watch \(path): malformed event: \(error)")
        } catch {
            if shouldStop() { return }
            throw KubeError.transport("watch \(path): \(error)")
        }
    }

    /// Closes the keep-alive connection; the next call dials again.
    public func close() {
        connection?.close()
        connection = nil
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
