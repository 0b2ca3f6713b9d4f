import CLinux
public import PXGuardPlatform
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A plain-HTTP listener for scrapers that do not hold the webhook's CA
/// (`server.metricsListen`): `GET` only, one request per connection, one connection at
/// a time on its own thread, each cut after `deadline` seconds, so that no client can
/// hold it longer than that nor reach anything but what `respond` serves. It never
/// touches the TLS event loops. Knows nothing of what it serves.
public final class PlainHTTPListener: Sendable {
    /// What `respond` answers for a path: status, content type, body.
    public typealias Answer = (status: Int, contentType: String, body: [UInt8])

    /// The bound port (useful with port 0).
    public let port: Int
    let fd: Int32
    let respond: @Sendable (String) -> Answer
    let deadline: Double
    let stopped = Atomic<Bool>(false)
    let finished = Waker()
    let logger: Logger

    /// Binds `address` (for `HOST:0`, `port` tells which). `respond` gets the path
    /// without its query; methods other than GET get 405 before it is asked.
    public init(address: SocketAddress, logger: Logger, deadline: Double = 2,
                respond: @escaping @Sendable (String) -> Answer) throws {
        let fd = try Sys.socket(address.family, Int32(SOCK_STREAM.rawValue))
        do {
            try Sys.setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
            try Sys.bind(fd, address)
            try Sys.listen(fd, backlog: 64)
            port = try Sys.boundPort(fd)
        } catch {
            Sys.close(fd)
            throw error
        }
        self.fd = fd
        self.respond = respond
        self.deadline = deadline
        self.logger = logger
    }

    /// Serves on a thread of its own (`pxguard-metrics`) until `stop`.
    public func start() {
        spawnThread(name: "pxguard-metrics") { [self] in
            while !stopped.load(ordering: .relaxed) {
                guard wait(fd, for: Int16(POLLIN), until: Clock.monotonic().seconds + 0.2) else { continue }
                guard case .processed(let client) = (try? Sys.accept(fd)) ?? .wouldBlock else { continue }
                serve(client)
                Sys.close(client)
            }
            Sys.close(fd)
            finished.signal()
        }
    }

    /// Stops accepting and closes the listener; returns once the thread is done.
    public func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        finished.wait(seconds: deadline * 2 + 1)
    }

    /// True once `fd` is ready for `events`, false at the deadline.
    func wait(_ fd: Int32, for events: Int16, until end: Double) -> Bool {
        let left = end - Clock.monotonic().seconds
        guard left > 0 else { return false }
        var p = pollfd(fd: fd, events: events, revents: 0)
        return poll(&p, 1, Int32(max(1, left * 1000))) == 1
    }

    func serve(_ client: Int32) {
        let end = Clock.monotonic().seconds + deadline
        var head: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 2048)
        while firstHeadEnd(head) == nil && head.count < 8192 {
            guard wait(client, for: Int16(POLLIN), until: end) else { return }
            let result = chunk.withUnsafeMutableBytes { try? Syscall.read(client, $0.baseAddress!, $0.count) }
            guard case .processed(let n)? = result, n > 0 else {
                if case .wouldBlock? = result { continue }
                return
            }
            head += chunk[0..<n]
        }
        let line = head.split(separator: 10, maxSplits: 1).first.map { String(decoding: $0, as: UTF8.self) } ?? ""
        let parts = line.split(separator: " ")
        let answer: Answer
        if parts.count != 3 || !parts[2].hasPrefix("HTTP/1.") {
            answer = (400, "application/json", Array("{\"message\":\"expected an HTTP/1.1 request line\"}\n".utf8))
        } else if parts[0] != "GET" {
            answer = (405, "application/json", Array("{\"message\":\"only GET is served here\"}\n".utf8))
        } else {
            let target = parts[1]
            answer = respond(String(target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""))
        }
        let reason = [200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"][answer.status] ?? "Error"
        var out = Array("HTTP/1.1 \(answer.status) \(reason)\r\nContent-Type: \(answer.contentType)\r\nContent-Length: \(answer.body.count)\r\nConnection: close\r\n\r\n".utf8)
        out += answer.body
        var offset = 0
        while offset < out.count {
            guard wait(client, for: Int16(POLLOUT), until: end + deadline) else { return }
            let result = out.withUnsafeBytes { try? Syscall.write(client, $0.baseAddress! + offset, $0.count - offset) }
            guard case .processed(let n)? = result else {
                if case .wouldBlock? = result { continue }
                return
            }
            offset += n
        }
    }

    /// Index just past the first blank line, if any.
    func firstHeadEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return i + 4
        }
        return nil
    }
}
