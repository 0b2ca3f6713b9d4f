import PXGuardBytes
public import PXGuardPlatform
import Synchronization
import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// An HTTPS/1.1 server: one epoll event loop per worker thread, each with its own
/// `SO_REUSEPORT` listener, so the request path has no shared lock or hand-off.
public final class HTTPServer: Sendable {
    public let port: Int
    let loops: [EventLoop]
    /// The loops' threads, joined by `wait`.
    private let threads = Locked<[JoinableThread]>([])
    let logger: Logger

    /// Binds the listeners (so the port is known) without serving yet.
    public init(configuration: ServerConfiguration, tls: TLSContextBox, handler: any HTTPHandler, logger: Logger) throws {
        // A peer that resets while we write must cost an error code, not the process.
        signal(SIGPIPE, SIG_IGN)
        Sys.raiseDescriptorLimit()
        var configuration = configuration
        let workers = configuration.limits.workers > 0 ? configuration.limits.workers : CPUBudget.available()
        configuration.limits.workers = workers
        let budget = ConnectionBudget(limit: configuration.limits.maxConnections)
        var loops: [EventLoop] = []
        var boundPort = configuration.address.port
        for index in 0..<workers {
            configuration.address = try SocketAddress(parsing: SocketAddress.format(configuration.address.host, boundPort))
            let listener = try Self.listen(on: configuration.address)
            if index == 0 { boundPort = try Sys.boundPort(listener.raw) }
            loops.append(try EventLoop(index: index, listener: listener, configuration: configuration, budget: budget,
                                       tls: tls, handler: handler, logger: logger))
        }
        self.loops = loops
        self.port = boundPort
        self.logger = logger
    }

    static func listen(on address: SocketAddress) throws -> FileDescriptor {
        let socket = FileDescriptor(try Sys.socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue)))
        try Sys.setOption(socket.raw, SOL_SOCKET, SO_REUSEADDR, 1)
        try Sys.setOption(socket.raw, SOL_SOCKET, SO_REUSEPORT, 1)
        try Sys.bind(socket.raw, address)
        try Sys.listen(socket.raw, backlog: 1024)
        return socket
    }

    /// Starts one thread per loop.
    public func start() {
        let started = loops.map { loop in startThread(name: "pxguard-loop-\(loop.index)") { loop.run() } }
        threads.withLock { $0 += started }
    }

    /// Stops accepting, closes idle connections at once, lets in-flight requests
    /// finish (answered with `Connection: close`), and force-closes whatever is
    /// left after `grace` seconds.
    public func shutdown(grace: Double) {
        for loop in loops { loop.post(.drain(deadline: Clock.monotonic().nanoseconds + UInt64(grace * 1e9))) }
    }

    /// Blocks until every loop has exited (joins their threads).
    public func wait() {
        for thread in threads.withLock({ $0 }) { thread.join() }
    }

    public var statistics: ServerStatistics {
        var s = ServerStatistics()
        for loop in loops {
            s.openConnections += loop.stats.open.load(ordering: .relaxed)
            s.acceptedConnections += loop.stats.accepted.load(ordering: .relaxed)
            s.handshakeFailures += loop.stats.handshakeFailures.load(ordering: .relaxed)
            s.timeouts += loop.stats.timeouts.load(ordering: .relaxed)
            s.protocolErrors += loop.stats.protocolErrors.load(ordering: .relaxed)
            s.rejectedConnections += loop.stats.rejected.load(ordering: .relaxed)
            s.bufferedBytes += loop.stats.bufferedBytes.load(ordering: .relaxed)
            s.shedConnections += loop.stats.shed.load(ordering: .relaxed)
            s.handshakesInProgress += loop.stats.handshaking.load(ordering: .relaxed)
        }
        return s
    }
}

extension SocketAddress {
    /// `HOST:PORT`, bracketing IPv6 hosts.
    public static func format(_ host: String, _ port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
