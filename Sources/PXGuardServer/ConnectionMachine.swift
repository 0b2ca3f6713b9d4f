/// One connection's life as a pure state machine: the event loop reports what an
/// I/O call came to (an event, with the time it happened), and the machine answers
/// with the next thing to do (a `Step`). It never reads a clock or touches a
/// socket, so every transition and timeout is tested by feeding it events.
struct ConnectionMachine {
    /// Monotonic time in nanoseconds, as the loop's clock reads it.
    typealias Instant = UInt64

    /// The timeouts and per-connection limits the machine enforces.
    struct Timeouts: Sendable, Equatable {
        var handshake: UInt64
        var header: UInt64
        var body: UInt64
        var idle: UInt64
        var linger: UInt64 = 2_000_000_000
        /// Answers on one connection before it is closed (0: unlimited).
        var maxRequests = 0
        /// Bytes dropped while lingering before giving up on the peer.
        var maxLingerBytes = 1 << 20
        /// Reads per wake-up, so one busy peer cannot starve the others.
        var readsPerTurn = 16
        /// Pipelined answers are not parsed further while this much output waits.
        var outputHighWater = 64 * 1024
        /// Least rate at which a request's head and body must arrive, counted from its
        /// first byte after `progressGrace` (0: off). A peer holding a request open with
        /// a byte now and then is cut long before the header and body timeouts.
        var minBytesPerSecond = 0
        var progressGrace: UInt64 = 2_000_000_000

        init(handshake: Double, header: Double, body: Double, idle: Double) {
            self.handshake = Self.nanos(handshake)
            self.header = Self.nanos(header)
            self.body = Self.nanos(body)
            self.idle = Self.nanos(idle)
        }

        static func nanos(_ seconds: Double) -> UInt64 { UInt64(max(0, seconds) * 1e9) }
    }

    /// How a finished answer ends the connection.
    enum Ending: Equatable {
        case close
        /// Shut our side and drop what the peer still sends for a moment, so its
        /// unread data does not turn into a reset that destroys the answer.
        case linger
    }

    /// What follows once a blocked write completes.
    enum AfterWrite: Equatable {
        case nextRequest
        case end(Ending)
    }

    enum State: Equatable {
        /// Accepted; no byte seen, no TLS state allocated.
        case awaitingHello
        /// `SSL_accept` in progress.
        case handshaking
        /// Between requests: waiting for the first byte of the next one.
        case idle
        /// Part of a head has arrived; the header timer runs from the first byte.
        case readingHead
        /// The head is complete; the body has its own budget, granted once.
        case readingBody
        /// The last answer is queued; it ends the connection once written.
        case finishing(Ending)
        /// A write blocked: the peer must read our answer within the body timeout.
        case writing(then: AfterWrite)
        case lingering(dropped: Int)
        case closed(CloseReason)
    }

    /// Which deadline a state runs (each starts once; arriving bytes never push it back).
    enum Timer: Equatable {
        case handshake, idle, header, body, write, linger
        /// The request arrives slower than `minBytesPerSecond`.
        case progress
    }

    enum CloseReason: Equatable {
        case helloTooLarge
        case handshakeFailed
        case peerClosed
        case failed
        case timedOut(Timer)
        /// The answer ended the connection (Connection: close, a limit, an error status).
        case answered
        case lingerDone
        case drained
        /// Closed to make room under the connection budget.
        case shed
    }

    /// The readiness a waiting connection needs.
    enum Interest: Equatable {
        case readable
        /// Readable, edge-triggered: more bytes must arrive (a partial ClientHello
        /// header stays readable and would otherwise wake the loop in a spin).
        case moreBytes
        case writable
    }

    /// What the loop does next for this connection.
    enum Step: Equatable {
        case inspectHello
        case handshake
        case read
        case process
        case flush
        case wait(Interest)
        /// Stop for now but resume on the loop's next turn: bytes are buffered
        /// inside OpenSSL, so the socket will not report them again.
        case yield
        case startLinger
        case drop
        case close(CloseReason)
    }

    /// What a TLS or socket operation came to, as the machine needs to know it.
    enum IO: Equatable {
        case done
        case wantRead
        case wantWrite
        case closed
        case failed
    }

    /// The buffer facts the machine decides on, reported by the loop.
    struct Buffers: Equatable {
        var input = 0
        var output = 0
        /// OpenSSL holds bytes a read would return without touching the socket.
        var tlsPending = false
    }

    private(set) var state = State.awaitingHello
    /// The request being read. Its state is part of the machine's: `needMore` reads
    /// whether the head is complete from it (the body's budget starts then), and an
    /// answer resets it, so the loop never carries one's state over to the other.
    private(set) var parser: HTTPRequestParser
    private(set) var deadline: Instant
    /// When the connection entered its current idle state (for shedding the oldest idle first).
    private(set) var idleSince: Instant
    private(set) var served = 0
    let timeouts: Timeouts
    private var readsThisTurn = 0
    private var lastReadShort = false
    /// When the request being read started (its first byte), and its bytes so far.
    private(set) var requestStart: Instant = 0
    private var requestBytes = 0
    /// Immediate retries of `SSL_accept` while it asks for bytes and OpenSSL holds some.
    private var handshakeRetries = 0
    /// Immediate retries of `SSL_read` while it asks for bytes and OpenSSL holds some.
    private var readRetries = 0
    /// While OpenSSL holds handshake bytes it did not take: when to ask it again (no
    /// socket event will come for bytes already read).
    private(set) var recheckAt: Instant?
    /// Immediate retries before the machine waits, and how long it waits then.
    static let handshakeRetryLimit = 4
    static let handshakeRecheck: UInt64 = 50_000_000

    init(now: Instant, timeouts: Timeouts, limits: HTTPLimits = HTTPLimits()) {
        self.timeouts = timeouts
        parser = HTTPRequestParser(limits: limits)
        deadline = now + timeouts.handshake
        idleSince = now
    }

    /// The timer the current state runs, if any.
    var timer: Timer? {
        switch state {
        case .awaitingHello, .handshaking: return .handshake
        case .idle: return .idle
        case .readingHead: return .header
        case .readingBody: return .body
        case .finishing, .writing: return .write
        case .lingering: return .linger
        case .closed: return nil
        }
    }

    /// The earliest time something is due: the state's deadline or, while a request
    /// is being read, the time by which its bytes fall below the minimum rate.
    var nextDeadline: Instant {
        let due = recheckAt.map { min(deadline, $0) } ?? deadline
        guard timeouts.minBytesPerSecond > 0 else { return due }
        switch state {
        case .readingHead, .readingBody: return min(due, progressDeadline)
        default: return due
        }
    }

    /// When the bytes received so far stop covering the minimum rate.
    private var progressDeadline: Instant {
        requestStart &+ timeouts.progressGrace &+ UInt64(requestBytes) &* 1_000_000_000 / UInt64(timeouts.minBytesPerSecond)
    }

    /// How readily the connection is shed to make room, lowest first: holding nothing
    /// (tier 0, since it went idle); reading a request for longer than the progress
    /// grace (1, since the request started: a slow head or body); with `fresh`,
    /// reading one at speed (2: only for a lighter peer when the heaviest has nothing
    /// slower). An answer being made or written is never shed (nil).
    func sheddingRank(_ b: Buffers, now: Instant, fresh: Bool = false) -> (tier: Int, since: Instant)? {
        if isIdle(b) { return (0, idleSince) }
        switch state {
        case .readingHead, .readingBody:
            guard b.output == 0 else { return nil }
            if now &- requestStart >= timeouts.progressGrace { return (1, requestStart) }
            return fresh ? (2, requestStart) : nil
        default: return nil
        }
    }

    /// True when the connection holds no request: it may be closed on drain or shed
    /// for the budget without losing anything.
    func isIdle(_ b: Buffers) -> Bool {
        switch state {
        case .awaitingHello, .handshaking: return true
        case .idle: return b.input == 0 && b.output == 0
        default: return false
        }
    }

    var isClosed: Bool { if case .closed = state { return true } else { return false } }

    // MARK: events

    /// The socket is ready (or the loop resumes a yielded connection).
    mutating func resume(_ b: Buffers) -> Step {
        readsThisTurn = 0
        lastReadShort = false
        switch state {
        case .awaitingHello: return .inspectHello
        case .handshaking: return .handshake
        case .lingering: return .drop
        case .closed(let reason): return .close(reason)
        case .finishing, .writing: return .flush
        case .idle, .readingHead, .readingBody:
            if b.output > 0 { return .flush }
            return b.input > 0 ? .process : read(b)
        }
    }

    /// The first bytes were inspected.
    mutating func helloInspected(_ inspection: HelloInspection, now: Instant) -> Step {
        switch inspection {
        case .proceed:
            state = .handshaking
            return .handshake
        case .incomplete: return .wait(.moreBytes)
        case .wouldBlock: return .wait(.readable)
        case .oversized: return close(.helloTooLarge)
        case .closed: return close(.handshakeFailed)
        }
    }

    /// `SSL_accept` returned. Bytes OpenSSL already holds never wake epoll: when it
    /// asks for more while holding some (read ahead past a record), it is asked again
    /// at once, a few times; if it still holds bytes it did not take (an unfinished
    /// record, or records it takes one call at a time), the machine waits for the socket
    /// and asks again after `handshakeRecheck`, until the handshake deadline.
    mutating func handshake(_ io: IO, _ b: Buffers = Buffers(), now: Instant) -> Step {
        switch io {
        case .done:
            recheckAt = nil
            becomeIdle(now)
            return read(b)
        case .wantRead:
            guard b.tlsPending else {
                handshakeRetries = 0
                recheckAt = nil
                return .wait(.readable)
            }
            if handshakeRetries < Self.handshakeRetryLimit {
                handshakeRetries += 1
                return .handshake
            }
            handshakeRetries = 0
            recheckAt = now + Self.handshakeRecheck
            return .wait(.readable)
        case .wantWrite:
            recheckAt = nil
            return .wait(.writable)
        case .closed, .failed: return close(.handshakeFailed)
        }
    }

    /// A read into the input buffer returned `count` bytes of `requested`
    /// (`io` is `.done` when bytes arrived).
    mutating func read(_ io: IO, count: Int, requested: Int, _ b: Buffers = Buffers(), now: Instant) -> Step {
        switch io {
        case .done:
            readRetries = 0
            recheckAt = nil
            lastReadShort = count < requested
            if state == .idle {
                state = .readingHead
                deadline = now + timeouts.header
                requestStart = now
                requestBytes = 0
            }
            requestBytes += count
            return .process
        case .wantRead:
            // As in the handshake: bytes OpenSSL holds never wake epoll. Asked again at
            // once a few times, then after `handshakeRecheck` while they stay.
            guard b.tlsPending else {
                readRetries = 0
                recheckAt = nil
                return .wait(.readable)
            }
            if readRetries < Self.handshakeRetryLimit {
                readRetries += 1
                return .read
            }
            readRetries = 0
            recheckAt = now + Self.handshakeRecheck
            return .wait(.readable)
        case .wantWrite: return .wait(.writable)
        case .closed: return close(.peerClosed)
        case .failed: return close(.failed)
        }
    }

    /// Parses the request at `p`, of which `n` bytes are in the input buffer.
    @inline(__always)
    mutating func parse(_ p: UnsafePointer<UInt8>, _ n: Int) throws(HTTPParseError) -> HTTPRequestParser.Outcome {
        try parser.parse(p, n)
    }

    /// The parser needs more bytes.
    mutating func needMore(_ b: Buffers, now: Instant) -> Step {
        if state == .readingHead && parser.headComplete {
            // The body gets its own budget once, on top of what is left of the head's.
            state = .readingBody
            deadline += timeouts.body
        }
        return b.output > 0 ? .flush : read(b)
    }

    /// Whether the answer to a request that asked for `requested` keep-alive keeps
    /// the connection open (the per-connection request limit and draining say no).
    func keepAlive(requested: Bool, draining: Bool) -> Bool {
        requested && !draining && !(timeouts.maxRequests > 0 && served + 1 >= timeouts.maxRequests)
    }

    /// An answer was queued; `keepAlive` as `keepAlive(requested:draining:)` decided.
    mutating func answered(keepAlive: Bool, _ b: Buffers, now: Instant) -> Step {
        served += 1
        parser.reset()
        guard keepAlive else {
            state = .finishing(.close)
            return .flush
        }
        if b.input > 0 {
            startPipelined(b, now: now)
            return b.output < timeouts.outputHighWater ? .process : .flush
        }
        becomeIdle(now)
        return .flush
    }

    /// A request was refused with an error status (a parse error, a limit, no buffer budget).
    mutating func refused() -> Step {
        state = .finishing(.linger)
        return .flush
    }

    /// `100 Continue` was queued.
    mutating func continueQueued() -> Step { .flush }

    /// A flush of the output buffer returned; `.done` means the buffer is empty.
    mutating func flushed(_ io: IO, _ b: Buffers, now: Instant) -> Step {
        switch io {
        case .wantRead, .wantWrite:
            switch state {
            case .writing: break
            case .finishing(let ending):
                state = .writing(then: .end(ending))
                deadline = now + timeouts.body
            default:
                state = .writing(then: .nextRequest)
                deadline = now + timeouts.body
            }
            return .wait(io == .wantRead ? .readable : .writable)
        case .closed: return close(.peerClosed)
        case .failed: return close(.failed)
        case .done:
            switch state {
            case .finishing(let ending), .writing(then: .end(let ending)):
                return ending == .linger ? .startLinger : close(.answered)
            case .writing(then: .nextRequest):
                if b.input > 0 {
                    startPipelined(b, now: now)
                } else {
                    becomeIdle(now)
                }
            default: break
            }
            return b.input > 0 ? .process : read(b)
        }
    }

    /// Our side is shut; start dropping what the peer still sends.
    mutating func lingerStarted(now: Instant) -> Step {
        state = .lingering(dropped: 0)
        deadline = now + timeouts.linger
        return .drop
    }

    /// Reading bytes to drop returned.
    mutating func dropped(_ result: DropResult) -> Step {
        guard case .lingering(let total) = state else { return close(.lingerDone) }
        switch result {
        case .dropped(let n):
            if total + n > timeouts.maxLingerBytes { return close(.lingerDone) }
            state = .lingering(dropped: total + n)
            return .drop
        case .wouldBlock: return .wait(.readable)
        case .closed: return close(.lingerDone)
        }
    }

    /// The loop's timer for this connection came: ask `SSL_accept` again for held
    /// handshake bytes, close at a passed deadline, or nothing yet (nil: the loop
    /// schedules `nextDeadline`).
    mutating func timerFired(now: Instant) -> Step? {
        if let at = recheckAt, now >= at, now < deadline {
            recheckAt = nil
            switch state {
            case .handshaking: return .handshake
            case .idle, .readingHead, .readingBody: return .read
            default: break
            }
        }
        return tick(now: now).map { .close($0) }
    }

    /// A deadline came (the loop's timer heap says so): a passed deadline closes the
    /// connection; otherwise nil, and the loop schedules `nextDeadline`.
    mutating func tick(now: Instant) -> CloseReason? {
        guard let timer else { return nil }
        if now < deadline {
            guard timeouts.minBytesPerSecond > 0, now >= nextDeadline else { return nil }
            state = .closed(.timedOut(.progress))
            return .timedOut(.progress)
        }
        let reason: CloseReason
        switch timer {
        case .idle: reason = .timedOut(.idle)
        case .linger: reason = .lingerDone
        default: reason = .timedOut(timer)
        }
        state = .closed(reason)
        return reason
    }

    /// The loop closes the connection for its own reasons (drain, shedding, errors).
    mutating func close(_ reason: CloseReason) -> Step {
        state = .closed(reason)
        return .close(reason)
    }

    // MARK: helpers

    /// The next request is already in the buffer (pipelined): its clocks start now.
    private mutating func startPipelined(_ b: Buffers, now: Instant) {
        state = .readingHead
        deadline = now + timeouts.header
        requestStart = now
        requestBytes = b.input
    }

    private mutating func becomeIdle(_ now: Instant) {
        state = .idle
        deadline = now + timeouts.idle
        idleSince = now
    }

    /// The next read, unless this turn has read enough: after a short read the
    /// socket is most likely drained, so wait for epoll instead of paying a read
    /// that returns EAGAIN; but bytes inside OpenSSL never wake epoll, so those
    /// are read now or on the loop's next turn.
    private mutating func read(_ b: Buffers) -> Step {
        readsThisTurn += 1
        if lastReadShort && !b.tlsPending { return .wait(.readable) }
        if readsThisTurn > timeouts.readsPerTurn { return b.tlsPending ? .yield : .wait(.readable) }
        return .read
    }
}

extension ConnectionMachine.CloseReason {
    /// Counted as a timeout in the statistics (idle and linger expiries are normal).
    var isTimeout: Bool {
        if case .timedOut(let timer) = self { return timer != .idle }
        return false
    }
}
