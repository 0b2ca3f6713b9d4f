/// The transport's limits and timeouts: the one type the config file's `server:`
/// section decodes into (PXGuardCore's `Config.server`) and the event loops enforce
/// (PXGuardServer's `ServerConfiguration.limits`). It lives here, below both, so that
/// neither module imports the other and nothing copies the fields by hand.
public struct TransportLimits: Sendable, Equatable {
    /// Largest request body.
    public var maxBodyBytes = 8 << 20
    /// Requests served on one connection before it is closed (0: unlimited), so
    /// that API servers reconnect and spread over replicas.
    public var maxRequestsPerConnection = 0
    /// Seconds a keep-alive connection may stay idle.
    public var idleTimeoutSeconds = 90.0
    /// Seconds from accept to a finished TLS handshake.
    public var handshakeTimeoutSeconds = 10.0
    /// Seconds from a request's first byte to the end of its head.
    public var headerTimeoutSeconds = 10.0
    /// Seconds granted once for the body, on top of what is left of the head's.
    public var bodyTimeoutSeconds = 30.0
    /// Event loops; 0 means one per available core.
    public var workers = 0
    /// Connections one loop holds at most.
    public var maxConnectionsPerWorker = 10_000
    /// Connections across all loops. When it is spent, the address holding the most
    /// connections on the loop gives one up (idle, else slow) to a lighter address;
    /// the heaviest itself may only replace an idle one of its own.
    public var maxConnections = 8_192
    /// Connections per loop holding TLS state in an unfinished handshake; a new
    /// handshake beyond it evicts the oldest unfinished one.
    public var maxHandshakesPerWorker = 256
    /// Largest ClientHello a peer may announce; checked on the record header before
    /// OpenSSL allocates a buffer for the message (its own cap is 128 KiB).
    public var maxClientHelloBytes = 16 << 10
    /// Memory one loop may hold in request buffers across its connections; a request
    /// that would need more is answered 503 and closed.
    public var maxBufferedBytesPerWorker = 256 << 20
    /// Connections one client address may hold across all loops (each loop holds its
    /// share); past it, the address's own longest-idle or slowest connection makes room.
    public var maxConnectionsPerPeer = 4_096
    /// Least rate (bytes per second, after a 2 s grace from a request's first byte) at
    /// which request heads and bodies must arrive; 0 turns the check off.
    public var minRequestBytesPerSecond = 1_024

    /// The built-in limits.
    public init() {}
}
