/// What the event loop keeps for one connection: the owners of its descriptor and
/// `SSL*`, its buffers (borrowed from the loop's pool only while a request is in
/// flight), its parser, and the state machine that decides what happens next.
final class Connection: DeadlineEntry {
    let fd: Int32
    /// The loop's registration counter when accepted; with `fd` it makes the epoll tag.
    let generation: UInt32
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
    var input: ByteBuffer?
    var output: ByteBuffer?
    /// The epoll events registered for the descriptor.
    var interest: UInt32 = 0
    /// Index in the loop's `active` list.
    var slot = 0
    /// Counted among the loop's unfinished handshakes (TLS state allocated, not done).
    var holdsHandshakeSlot = false
    /// Place in the loop's deadline heap (see `DeadlineEntry`).
    var heapIndex = -1
    var scheduled: UInt64 = 0
    /// The client address it counts against, and its index in that peer's list.
    var peer: Peer?
    var peerSlot = 0
    /// Listed for the loop's next buffer release (went idle holding buffers).
    var awaitingRelease = false

    init(socket: consuming FileDescriptor, generation: UInt32 = 0, machine: ConnectionMachine) {
        fd = socket.raw
        self.generation = generation
        self.socket = .some(socket)
        self.machine = machine
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

    /// Parses the request at the start of `input` (see `ConnectionMachine.parse`).
    @inline(__always) func parse(_ input: ByteBuffer) throws(HTTPParseError) -> HTTPRequestParser.Outcome {
        try machine.parse(input.readPointer, input.readable)
    }

    /// Bytes of the current request once its head is parsed (see `HTTPRequestParser.expectedBytes`).
    var expectedBytes: Int? { machine.parser.expectedBytes }
    /// The decoded body of a chunked request, valid until the answer.
    var chunkBody: ByteBuffer { machine.parser.chunkBody }

    var state: ConnectionMachine.State { machine.state }
    var idleSince: ConnectionMachine.Instant { machine.idleSince }

    /// True when nothing is in flight (see `ConnectionMachine.isIdle`).
    var isIdle: Bool {
        machine.isIdle(buffers)
    }

    /// A scheduled deadline came: the close reason when really due, else nil.
    func tick(now: ConnectionMachine.Instant) -> ConnectionMachine.CloseReason? {
        machine.tick(now: now)
    }

    /// The earliest time the machine has something due.
    var nextDeadline: ConnectionMachine.Instant { machine.nextDeadline }
    /// The machine has armed a recheck for bytes OpenSSL holds (the loop's timer asks again).
    var awaitsRecheck: Bool { machine.recheckAt != nil }

    /// How readily it is shed (see `ConnectionMachine.sheddingRank`).
    func sheddingRank(now: UInt64, fresh: Bool) -> (tier: Int, since: UInt64)? {
        // Bytes held inside OpenSSL do not change the rank: no call into it per candidate.
        machine.sheddingRank(ConnectionMachine.Buffers(input: input?.readable ?? 0, output: output?.readable ?? 0), now: now, fresh: fresh)
    }

    /// The epoll data word of its registration.
    var tag: RegistrationTag { RegistrationTag(fd: fd, generation: generation) }

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
