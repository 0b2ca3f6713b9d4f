import PXGuardPlatform
import Synchronization

/// Timeouts and limits of the transport.
public struct ServerConfiguration: Sendable {
    public var address: SocketAddress
    public var workers = 0
    public var limits = HTTPLimits()
    public var handshakeTimeout = 10.0
    public var headerTimeout = 10.0
    public var bodyTimeout = 30.0
    public var idleTimeout = 90.0
    /// Requests served on one connection before it is closed (0: unlimited).
    public var maxRequestsPerConnection = 0
    public var maxConnectionsPerWorker = 10_000
    /// Connections across all loops. When it is spent, the address holding the most
    /// connections on the loop gives one up (idle, else slow) to a lighter address;
    /// the heaviest itself may only replace an idle one of its own (see `EventLoop.admit`).
    public var maxConnections = 8_192
    /// Connections per loop holding TLS state in an unfinished handshake; a new
    /// handshake beyond it evicts the oldest unfinished one.
    public var maxHandshakesPerWorker = 256
    /// Largest ClientHello a peer may announce; checked on the record header before
    /// OpenSSL allocates a buffer for the message (its own cap is 128 KiB).
    public var maxClientHelloBytes = 16 * 1024
    /// Memory one loop may hold in request buffers across its connections. A
    /// request that would need more is answered 503 and closed, so many large
    /// bodies at once cannot exhaust memory.
    public var maxBufferedBytesPerWorker = 256 << 20
    /// Connections one client address may hold across all loops (each loop holds its
    /// share); past it, the address's own longest-idle or slowest connection makes room.
    public var maxConnectionsPerPeer = 4_096
    /// Least rate (bytes per second, after a 2 s grace from a request's first byte) at
    /// which request heads and bodies must arrive; 0 turns the check off.
    public var minRequestBytesPerSecond = 1_024
    /// Seconds from a request's first byte before the minimum rate applies and before
    /// a busy connection counts as slow for shedding (shorter in tests).
    var progressGrace = 2.0

    public init(address: SocketAddress) { self.address = address }

    /// The timeouts and per-connection limits each connection's state machine enforces,
    /// derived here once: the loop passes them on, nothing copies them by hand.
    var connectionTimeouts: ConnectionMachine.Timeouts {
        var t = ConnectionMachine.Timeouts(handshake: handshakeTimeout, header: headerTimeout, body: bodyTimeout, idle: idleTimeout)
        t.maxRequests = maxRequestsPerConnection
        t.minBytesPerSecond = minRequestBytesPerSecond
        t.progressGrace = ConnectionMachine.Timeouts.nanos(progressGrace)
        return t
    }
}

/// Transport counters of one event loop; the server sums them on demand.
final class LoopStats: Sendable {
    let open = Atomic<Int>(0)
    let accepted = Atomic<Int>(0)
    let handshakeFailures = Atomic<Int>(0)
    let timeouts = Atomic<Int>(0)
    let protocolErrors = Atomic<Int>(0)
    let rejected = Atomic<Int>(0)
    let bufferedBytes = Atomic<Int>(0)
    let shed = Atomic<Int>(0)
    let handshaking = Atomic<Int>(0)
}

/// A snapshot of the transport counters across all loops.
public struct ServerStatistics: Sendable {
    public var openConnections = 0
    public var acceptedConnections = 0
    public var handshakeFailures = 0
    public var timeouts = 0
    public var protocolErrors = 0
    public var rejectedConnections = 0
    /// Capacity of all request buffers, the figure `maxBufferedBytesPerWorker` bounds per loop.
    public var bufferedBytes = 0
    /// Connections closed to make room under `maxConnections`, a peer's share or the handshake cap.
    public var shedConnections = 0
    /// Connections holding TLS state in an unfinished handshake (capped per loop).
    public var handshakesInProgress = 0
}
