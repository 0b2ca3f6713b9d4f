public import PXGuardBytes
import PXGuardPlatform
import Synchronization

/// Where the server listens and the limits it enforces.
public struct ServerConfiguration: Sendable {
    public var address: SocketAddress
    /// Timeouts and limits, as the config file's `server:` section gives them.
    public var limits: TransportLimits
    /// Seconds from a request's first byte before the minimum rate applies and before
    /// a busy connection counts as slow for shedding (shorter in tests).
    var progressGrace = 2.0

    public init(address: SocketAddress, limits: TransportLimits = TransportLimits()) {
        self.address = address
        self.limits = limits
    }

    /// The request parser's limits (the body's from `limits`, the head's fixed).
    var httpLimits: HTTPLimits {
        var http = HTTPLimits()
        http.maxBodyBytes = limits.maxBodyBytes
        return http
    }

    /// The timeouts and per-connection limits each connection's state machine enforces,
    /// derived here once: the loop passes them on, nothing copies them by hand.
    var connectionTimeouts: ConnectionMachine.Timeouts {
        var t = ConnectionMachine.Timeouts(handshake: limits.handshakeTimeoutSeconds, header: limits.headerTimeoutSeconds,
                                           body: limits.bodyTimeoutSeconds, idle: limits.idleTimeoutSeconds)
        t.maxRequests = limits.maxRequestsPerConnection
        t.minBytesPerSecond = limits.minRequestBytesPerSecond
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
