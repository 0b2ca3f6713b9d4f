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

    public static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

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

    public var description: String {
        switch self {
        case .status(let code, let reason, let message, _): return "HTTP \(code) \(reason): \(message)"
        case .transport(let m): return "transport: \(m)"
        case .configuration(let m): return m
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
    public var isTransient: Bool {
        switch self {
        case .status(let code, _, _, _): return code == 429 || code >= 500
        case .transport: return true
        case .configuration: return false
        }
    }

    public var retryAfter: Double? {
        if case .status(_, _, _, let after) = self { return after }
        return nil
    }
}

/// A small Kubernetes API client over pxguard's own TLS layer (OpenSSL client
/// mode, verifying the API server against the CA file). The bearer token is read
/// from its file on every request, so rotated bound tokens keep working. One
/// client per thread: it keeps one keep-alive connection and takes no lock.
public final class KubeClient: @unchecked Sendable {
    let endpoint: KubeEndpoint
    let context: TLSContext
    let timeout: Double
    private var connection: HTTPClientConnection?

    public init(endpoint: KubeEndpoint, timeout: Double = 10) throws(KubeError) {
        self.endpoint = endpoint
        self.timeout = timeout
        do {
            context = try TLSContext.client(caFile: endpoint.caFile)
        } catch {
            throw KubeError.configuration("Kubernetes CA \(endpoint.caFile ?? "(system)"): \(error)")
        }
    }

    func token() -> String? {
        guard let file = endpoint.tokenFile, let bytes = try? FileIO.read(file, limit: 1 << 16) else { return nil }
        let trimmed = bytes.drop { $0 <= 0x20 }.reversed().drop { $0 <= 0x20 }.reversed()
        return String(decoding: Array(trimmed), as: UTF8.self)
    }

    func connect() throws(KubeError) -> HTTPClientConnection {
        if let connection, connection.reusable, connection.connection.isOpen { return connection }
        do {
            let address = try SocketAddress.resolve(host: endpoint.host, port: endpoint.port)
            let tls = try TLSClientConnection(address: address, context: context, serverName: endpoint.host, timeout: timeout)
            let fresh = HTTPClientConnection(tls)
            connection = fresh
            return fresh
        } catch {
            throw KubeError.transport("connecting to \(endpoint.host):\(endpoint.port): \(error)")
        }
    }

    /// One API call. 2xx answers return the decoded body; anything else throws a
    /// `KubeError` built from the `Status` body and `Retry-After`.
    @discardableResult
    public func call(_ method: String, _ path: String, body: JSON? = nil,
                     contentType: String = "application/json") throws(KubeError) -> JSON {
        var headers = [("Accept", "application/json"), ("User-Agent", "pxguard")]
        if let token = token() { headers.append(("Authorization", "Bearer \(token)")) }
        if body != nil { headers.append(("Content-Type", contentType)) }
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
        let json = try? JSON(parsing: response.body)
        guard (200..<300).contains(response.status) else {
            let retryAfter = response.header("Retry-After").flatMap(Double.init)
            throw KubeError.status(code: response.status, reason: json?["reason"]?.stringValue ?? "",
                                   message: json?["message"]?.stringValue ?? response.bodyText.prefix(200).description,
                                   retryAfter: retryAfter)
        }
        return json ?? .null
    }

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
