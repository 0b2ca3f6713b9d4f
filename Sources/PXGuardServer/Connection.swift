/// What the event loop keeps for one connection: the owners of its descriptor and
/// `SSL*`, its buffers (borrowed from the loop's pool only while a request is in
/// flight), its parser, and the state machine that decides what happens next.
final class Connection {
    let fd: Int32
    /// Closes the descriptor when released (set to nil by `release`).
    private var socket: FileDescriptor?
    /// Created when the first record of a ClientHello has arrived, not at accept:
    /// a silent TCP connection holds no TLS state. Set through `adopt`.
    private var tls: TLSStream?
    /// The operations of `tls` (a copy of its pointer), read on the request path
    /// without borrowing the owner.
    private(set) var session: TLSSession?
    /// Changed only through `advance` on the loop's thread, one event at a time,
    /// so the runtime exclusivity check (a call per event) is turned off.
    @exclusivity(unchecked) private var machine: ConnectionMachine
    /// Mutated in place across the parse call on the loop's thread only; the
    /// runtime exclusivity check would cost two calls per request.
    @exclusivity(unchecked) var parser: HTTPRequestParser
    var input: ByteBuffer?
    var output: ByteBuffer?
    /// The epoll events registered for the descriptor.
    var interest: UInt32 = 0
    /// Index in the loop's `active` list.
    var slot = 0
    /// Counted among the loop's unfinished handshakes (TLS state allocated, not done).
    var holdsHandshakeSlot = false

    init(socket: consuming FileDescriptor, machine: ConnectionMachine, limits: HTTPLimits) {
        fd = socket.raw
        self.socket = .some(socket)
        self.machine = machine
        parser = HTTPRequestParser(limits: limits)
    }

    /// Takes ownership of the connection's TLS state.
    func adopt(_ stream: consuming TLSStream) {
        session = stream.session
        tls = .some(stream)
    }

    /// Feeds the state machine one event and returns the step it asks for.
    @inline(__always) func advance(_ event: (inout ConnectionMachine) -> ConnectionMachine.Step) -> ConnectionMachine.Step {
        event(&machine)
    }

    var state: ConnectionMachine.State { machine.state }
    var idleSince: ConnectionMachine.Instant { machine.idleSince }

    /// True when nothing is in flight (see `ConnectionMachine.isIdle`).
    var isIdle: Bool {
        machine.isIdle(buffers)
    }

    /// The periodic deadline check.
    func tick(now: ConnectionMachine.Instant) -> ConnectionMachine.CloseReason? {
        machine.tick(now: now)
    }

    /// Whether the answer keeps the connection open (see `ConnectionMachine.keepAlive`).
    func keepAlive(requested: Bool, draining: Bool) -> Bool {
        machine.keepAlive(requested: requested, draining: draining)
    }

    /// Frees the TLS state, then closes the descriptor (which also leaves epoll).
    func release() {
        session = nil
        tls = nil
        socket = nil
    }

    /// The buffer facts the state machine decides on.
    var buffers: ConnectionMachine.Buffers {
        ConnectionMachine.Buffers(input: input?.readable ?? 0, output: output?.readable ?? 0,
                                  tlsPending: session?.hasPending ?? false)
    }
}

/// Per-loop free lists of connection buffers: a connection takes one when bytes
/// arrive and gives it back when it goes idle, so idle connections hold none and
/// busy ones allocate nothing per request.
final class BufferPool {
    let bufferSize: Int
    let keep: Int
    private var free: [ByteBuffer] = []

    init(bufferSize: Int, keep: Int) {
        self.bufferSize = bufferSize
        self.keep = keep
    }

    func take() -> ByteBuffer { free.popLast() ?? ByteBuffer(capacity: bufferSize) }

    /// Keeps the buffer for reuse unless it grew (a large body) or enough are kept.
    func give(_ buffer: ByteBuffer) {
        guard buffer.capacity == bufferSize, free.count < keep else { return }
        buffer.readIndex = 0
        buffer.writeIndex = 0
        free.append(buffer)
    }

    /// Frees the kept buffers (after a burst, so memory can return to the system).
    func trim(to count: Int) { if free.count > count { free.removeLast(free.count - count) } }

    var kept: Int { free.count }
}
