import PXGuardBytes
import PXGuardPlatform
import Synchronization
import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// One epoll loop. It performs what each connection's state machine asks for and
/// reports back what the I/O came to; it decides nothing about the protocol itself.
/// Everything it owns is touched only by its own thread; other threads talk to it
/// through `post`, which wakes it with an eventfd.
final class EventLoop: @unchecked Sendable {
    enum Command {
        case drain(deadline: UInt64)
    }

    typealias Step = ConnectionMachine.Step

    let index: Int
    private let epoll: FileDescriptor
    private let wake: FileDescriptor
    private var listener: FileDescriptor?
    private let listenFD: Int32
    let configuration: ServerConfiguration
    let timeouts: ConnectionMachine.Timeouts
    let httpLimits: HTTPLimits
    let tlsBox: TLSContextBox
    var tlsContext: TLSContext
    var tlsGeneration: Int
    let handler: any HTTPHandler
    let logger: Logger
    let stats = LoopStats()
    let budget: ConnectionBudget
    let inbox = Locked<[Command]>([])

    var table: [Connection?] = []
    var active: [Connection] = []
    /// Connections that yielded with bytes still inside OpenSSL (decrypted or
    /// buffered records): the socket will not signal them again, so the loop
    /// resumes them itself on its next turn.
    var resumable: [Connection] = []
    /// The one response the loop fills per request (its body buffer is reused). Only
    /// this loop's thread touches it, one request at a time, so the runtime
    /// exclusivity check around the handler call is turned off.
    @exclusivity(unchecked) var response = HTTPResponse()
    var drainDeadline: UInt64?
    /// Every connection's next deadline; `epoll_wait` sleeps until the earliest.
    var timers = DeadlineHeap<Connection>()
    /// Connections grouped by client address, for the per-peer share and fair shedding.
    var peers = PeerTable()
    /// Connections one address may hold on this loop (its share of `maxConnectionsPerPeer`).
    let peerShare: Int
    /// The registration counter: each accepted connection gets the next one.
    var generation: UInt32 = 0
    /// Connections that went idle holding buffers: given back at the next housekeeping,
    /// so a busy keep-alive connection does not cycle its buffers per request.
    var idleHolding: [Connection] = []
    /// When housekeeping (idle buffers, memory trim) runs next; nil: nothing to do.
    var housekeepingAt: UInt64?
    /// Set while accepting is paused after running out of descriptors.
    var acceptPausedUntil: UInt64?
    /// Connections holding TLS state in an unfinished handshake (capped).
    var handshakesInProgress = 0 {
        didSet { stats.handshaking.store(handshakesInProgress, ordering: .relaxed) }
    }
    /// Connections closed since memory was last handed back to the system.
    var closedSinceTrim = 0
    let inputPool: BufferPool
    let outputPool: BufferPool
    /// Where lingering connections drop what their peers still send.
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 * 1024, alignment: 16)
    /// Sum of the input buffer capacities held by this loop's connections.
    var bufferedBytes = 0 {
        didSet { stats.bufferedBytes.store(bufferedBytes, ordering: .relaxed) }
    }

    static let readableEvents = UInt32(EPOLLIN.rawValue | EPOLLRDHUP.rawValue)
    static let edgeReadableEvents = UInt32(EPOLLIN.rawValue | EPOLLRDHUP.rawValue) | UInt32(EPOLLET.rawValue)
    static let writableEvents = UInt32(EPOLLOUT.rawValue)
    static let inputBufferSize = 8 * 1024
    static let outputBufferSize = 4 * 1024

    init(index: Int, listener: consuming FileDescriptor, configuration: ServerConfiguration, budget: ConnectionBudget,
         tls: TLSContextBox, handler: any HTTPHandler, logger: Logger) throws {
        self.index = index
        listenFD = listener.raw
        self.listener = .some(listener)
        self.configuration = configuration
        self.budget = budget
        timeouts = configuration.connectionTimeouts
        httpLimits = configuration.httpLimits
        let loops = max(1, configuration.limits.workers)
        peerShare = max(1, (configuration.limits.maxConnectionsPerPeer + loops - 1) / loops)
        self.tlsBox = tls
        self.tlsGeneration = tls.generation.load(ordering: .acquiring)
        self.tlsContext = tls.value
        self.handler = handler
        self.logger = logger
        inputPool = BufferPool(bufferSize: Self.inputBufferSize, keep: 64)
        outputPool = BufferPool(bufferSize: Self.outputBufferSize, keep: 64)
        epoll = FileDescriptor(try Sys.epollCreate())
        wake = FileDescriptor(try Sys.eventFD())
        try Sys.epollControl(epoll.raw, EPOLL_CTL_ADD, listenFD, events: UInt32(EPOLLIN.rawValue), tag: RegistrationTag.listener.raw)
        try Sys.epollControl(epoll.raw, EPOLL_CTL_ADD, wake.raw, events: UInt32(EPOLLIN.rawValue), tag: RegistrationTag.wake.raw)
        response.body.reserveCapacity(4096)
    }

    deinit { scratch.deallocate() }

    func post(_ command: Command) {
        inbox.withLock { $0.append(command) }
        Sys.signalEventFD(wake.raw)
    }

    func run() {
        let capacity: Int32 = 256
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: Int(capacity))
        defer { events.deallocate() }
        // The time read after the last turn's work serves this turn's wait: one clock read per turn.
        var now = Clock.monotonic().nanoseconds
        while true {
            let n: Int32
            do {
                n = try Sys.epollWait(epoll.raw, events, capacity, timeoutMillis: waitMillis(now: now))
            } catch {
                logger.error("event loop stopped", [("loop", .integer(index)), ("error", .text("\(error)"))])
                return
            }
            for i in 0..<Int(n) {
                let tag = RegistrationTag(raw: events[i].data.u64)
                let flags = events[i].events
                if tag == .listener {
                    if listener != nil { acceptConnections() }
                } else if tag == .wake {
                    Sys.drainEventFD(wake.raw)
                    handleCommands()
                } else if let c = connection(for: tag) {
                    if flags & UInt32(EPOLLERR.rawValue) != 0 {
                        close(c, c.advance { $0.close(.failed) })
                    } else {
                        resume(c)
                    }
                }
            }
            if !resumable.isEmpty {
                let resumed = resumable
                resumable.removeAll(keepingCapacity: true)
                for c in resumed where isCurrent(c) { resume(c) }
            }
            now = Clock.monotonic().nanoseconds
            if let until = acceptPausedUntil, now >= until, listener != nil {
                acceptPausedUntil = nil
                try? Sys.epollControl(epoll.raw, EPOLL_CTL_MOD, listenFD, events: UInt32(EPOLLIN.rawValue), tag: RegistrationTag.listener.raw)
            }
            expireDeadlines(now)
            if let at = housekeepingAt, now >= at { housekeeping() }
            if let deadline = drainDeadline {
                if active.isEmpty { return }
                if now >= deadline {
                    for c in active { close(c, c.advance { $0.close(.drained) }) }
                    return
                }
            }
        }
    }

    /// How long `epoll_wait` may sleep: until the earliest timer, a paused accept's
    /// end, the drain deadline or housekeeping; 0 when connections yielded; -1 (no
    /// timeout) when nothing is due at all.
    func waitMillis(now: UInt64) -> Int32 {
        if !resumable.isEmpty { return 0 }
        var next = timers.first?.scheduled ?? UInt64.max
        if let until = acceptPausedUntil { next = min(next, until) }
        if let deadline = drainDeadline { next = min(next, deadline) }
        if let at = housekeepingAt { next = min(next, at) }
        if next == UInt64.max { return -1 }
        if next <= now { return 0 }
        // Rounded up, so the loop never wakes just before a deadline and sleeps again.
        return Int32(min((next - now + 999_999) / 1_000_000, 3_600_000))
    }

    /// Closes the connections whose deadline has come, asks OpenSSL again for held
    /// handshake bytes whose recheck came; the others (scheduled early, see
    /// `DeadlineHeap`) are scheduled again at their real deadline.
    func expireDeadlines(_ now: UInt64) {
        while let c = timers.popDue(now: now) {
            guard isCurrent(c) else { continue }
            switch c.advance({ $0.timerFired(now: now) ?? .wait(.readable) }) {
            case .close(let reason): close(c, .close(reason))
            case .handshake: drive(c, .handshake)
            case .read: resume(c)
            default: schedule(c)
            }
        }
    }

    /// Puts a connection's next deadline in the heap when it is not there or moved
    /// earlier (a later one is found when the earlier entry comes up).
    @inline(__always) func schedule(_ c: Connection) {
        let deadline = c.nextDeadline
        if c.heapIndex < 0 || deadline < c.scheduled { timers.schedule(c, at: deadline) }
    }

    /// Gives idle connections' buffers back and, after a burst of connections has
    /// gone, hands the memory they used back to the system.
    func housekeeping() {
        housekeepingAt = nil
        for c in idleHolding {
            c.awaitingRelease = false
            if isCurrent(c) { releaseIdleBuffers(c) }
        }
        idleHolding.removeAll(keepingCapacity: idleHolding.count <= 1024)
        if closedSinceTrim >= 256 && active.count * 4 < closedSinceTrim {
            closedSinceTrim = 0
            inputPool.trim(to: 16)
            outputPool.trim(to: 16)
            releaseFreeMemory()
        }
    }

    func scheduleHousekeeping(_ now: UInt64) {
        if housekeepingAt == nil { housekeepingAt = now + 250_000_000 }
    }

    /// The connection an event is for, unless it was closed (and its number reused) since.
    @inline(__always) func connection(for tag: RegistrationTag) -> Connection? {
        let fd = Int(tag.fd)
        guard fd >= 0, fd < table.count, let c = table[fd], c.generation == tag.generation else { return nil }
        return c
    }

    func handleCommands() {
        let commands = inbox.withLock { list -> [Command] in
            defer { list.removeAll() }
            return list
        }
        for command in commands {
            switch command {
            case .drain(let deadline):
                guard drainDeadline == nil else { continue }
                drainDeadline = deadline
                if listener != nil {
                    try? Sys.epollControl(epoll.raw, EPOLL_CTL_DEL, listenFD, events: 0, tag: 0)
                    listener = nil
                }
                // Idle keep-alive connections close now, so clients reconnect to
                // another replica; busy ones finish with Connection: close.
                for c in active where c.isIdle { close(c, c.advance { $0.close(.drained) }) }
            }
        }
    }

    func isCurrent(_ c: Connection) -> Bool { Int(c.fd) < table.count && table[Int(c.fd)] === c }

    // MARK: accepting and closing

    func acceptConnections() {
        var storage = sockaddr_storage()
        for _ in 0..<64 {
            let fd: Int32
            do {
                switch try Sys.accept(listenFD, peer: &storage) {
                case .wouldBlock: return
                case .exhausted:
                    // Stop polling the listener for 100 ms; the loop re-arms it.
                    logger.warn("out of file descriptors or memory; pausing accept", [("open", .integer(active.count))])
                    try? Sys.epollControl(epoll.raw, EPOLL_CTL_MOD, listenFD, events: 0, tag: RegistrationTag.listener.raw)
                    acceptPausedUntil = Clock.monotonic().nanoseconds + 100_000_000
                    return
                case .processed(let accepted): fd = accepted
                }
            } catch {
                logger.error("accept failed", [("error", "\(error)")])
                return
            }
            let socket = FileDescriptor(fd)
            let address = PeerAddress(storage)
            guard drainDeadline == nil, active.count < configuration.limits.maxConnectionsPerWorker, admit(address) else {
                stats.rejected.add(1, ordering: .relaxed)
                continue  // `socket` closes here
            }
            Socket.setNoDelay(fd)
            let now = Clock.monotonic().nanoseconds
            generation = RegistrationTag.next(after: generation)
            let c = Connection(socket: socket, generation: generation,
                               machine: ConnectionMachine(now: now, timeouts: timeouts, limits: httpLimits))
            if Int(fd) >= table.count { table.append(contentsOf: repeatElement(nil, count: Int(fd) + 64 - table.count)) }
            table[Int(fd)] = c
            peers.add(c, to: peers.peer(address))
            c.slot = active.count
            active.append(c)
            stats.accepted.add(1, ordering: .relaxed)
            stats.open.add(1, ordering: .relaxed)
            c.interest = Self.readableEvents
            do {
                try Sys.epollControl(epoll.raw, EPOLL_CTL_ADD, fd, events: c.interest, tag: c.tag.raw)
                schedule(c)
            } catch {
                close(c, c.advance { $0.close(.failed) })
            }
            // Nothing is read yet: a silent connection costs its descriptor and
            // this object, no TLS state and no buffers.
        }
    }

    /// Takes a place for a connection from `address`. A peer at its share makes room
    /// among its own connections (idle, else slow) or is refused. When the budget across
    /// loops is spent, max-min fairness: a peer holding fewer connections here than the
    /// heaviest takes one of the heaviest's (its longest idle, else its slowest request,
    /// else its oldest request in progress); the heaviest itself may only replace one of
    /// its own idle connections, so it cannot churn through the slow ones others need.
    func admit(_ address: PeerAddress) -> Bool {
        let now = Clock.monotonic().nanoseconds
        if let peer = peers.peers[address], peer.count >= peerShare {
            guard let victim = PeerTable.victim(in: peer, now: now) else { return false }
            close(victim, victim.advance { $0.close(.shed) })
        }
        if budget.take() { return true }
        let mine = peers.peers[address]?.count ?? 0
        guard let heaviest = peers.heaviest else { return false }
        let lighter = heaviest.count > mine + 1 && heaviest.address != address
        guard let victim = PeerTable.victim(in: lighter ? heaviest : (peers.peers[address] ?? heaviest), now: now,
                                            maxTier: lighter ? 2 : 0)
        else { return false }
        close(victim, victim.advance { $0.close(.shed) })
        return budget.take()
    }

    func oldest(where include: (Connection) -> Bool) -> Connection? {
        var found: Connection?
        for c in active where include(c) {
            if found == nil || c.idleSince < found!.idleSince { found = c }
        }
        return found
    }

    func close(_ c: Connection, _ step: Step) {
        guard case .close(let reason) = step, isCurrent(c) else { return }
        if reason.isTimeout { stats.timeouts.add(1, ordering: .relaxed) }
        switch reason {
        case .handshakeFailed, .helloTooLarge: stats.handshakeFailures.add(1, ordering: .relaxed)
        case .shed: stats.shed.add(1, ordering: .relaxed)
        case .answered, .drained, .timedOut(.idle), .timedOut(.header), .timedOut(.body), .timedOut(.write):
            // A finished handshake says goodbye with close_notify.
            if c.holdsHandshakeSlot == false { c.session?.shutdown() }
        default: break
        }
        if c.holdsHandshakeSlot {
            c.holdsHandshakeSlot = false
            handshakesInProgress -= 1
        }
        if let input = c.input { giveInput(c, input) }
        if let output = c.output {
            c.output = nil
            outputPool.give(output)
        }
        timers.remove(c)
        peers.remove(c)
        c.release()
        table[Int(c.fd)] = nil
        let last = active.removeLast()
        if last !== c {
            active[c.slot] = last
            last.slot = c.slot
        }
        stats.open.add(-1, ordering: .relaxed)
        budget.give()
        closedSinceTrim += 1
        if closedSinceTrim >= 256 && housekeepingAt == nil { scheduleHousekeeping(Clock.monotonic().nanoseconds) }
    }

    // MARK: performing steps

    /// The socket is ready (or the connection yielded last turn): continue it.
    func resume(_ c: Connection) {
        let b = c.buffers
        drive(c, c.advance { $0.resume(b) })
    }

    /// Performs the steps a connection's machine asks for until it waits.
    func drive(_ c: Connection, _ first: Step) {
        var step = first
        let now = Clock.monotonic().nanoseconds
        while true {
            switch step {
            case .inspectHello:
                let inspection = Socket.inspectHello(c.fd, maxHelloBytes: configuration.limits.maxClientHelloBytes)
                step = c.advance { $0.helloInspected(inspection, now: now) }
            case .handshake:
                if c.session == nil && !startTLS(c) {
                    step = c.advance { $0.close(.failed) }
                    continue
                }
                let io = Self.io(c.session?.accept() ?? .failed("no TLS state"))
                let b = c.buffers
                step = c.advance { $0.handshake(io, b, now: now) }
                if c.holdsHandshakeSlot, case .idle = c.state {
                    c.holdsHandshakeSlot = false
                    handshakesInProgress -= 1
                }
            case .read:
                step = read(c, now)
            case .process:
                step = process(c, now)
            case .flush:
                let io = flush(c)
                let b = c.buffers
                step = c.advance { $0.flushed(io, b, now: now) }
            case .wait(let interest):
                setInterest(c, interest)
                // Bytes OpenSSL already holds never wake epoll: a wait for readability
                // while it holds some, with no recheck armed (a write that asked for a
                // read, say), resumes on the loop's next turn instead of sleeping
                // (fuzz-tls-records: a pipelined request stranded in readingBody).
                if interest == .readable, !c.awaitsRecheck, c.session?.hasPending == true {
                    resumable.append(c)
                }
                waiting(c, now)
                return
            case .yield:
                setInterest(c, .readable)
                resumable.append(c)
                waiting(c, now)
                return
            case .startLinger:
                c.session?.shutdown()
                Socket.shutdownWrite(c.fd)
                step = c.advance { $0.lingerStarted(now: now) }
            case .drop:
                let result = Socket.drop(c.fd, scratch: scratch)
                step = c.advance { $0.dropped(result) }
            case .close:
                close(c, step)
                return
            }
        }
    }

    /// A connection stops for now: its next deadline goes in the heap, and an idle one
    /// holding buffers is listed to give them back.
    @inline(__always) func waiting(_ c: Connection, _ now: UInt64) {
        schedule(c)
        if !c.awaitingRelease, c.input != nil || c.output != nil, case .idle = c.state {
            c.awaitingRelease = true
            idleHolding.append(c)
            scheduleHousekeeping(now)
        }
    }

    /// Allocates the TLS state for a connection whose ClientHello has started to
    /// arrive, within the cap on connections in the handshake (the oldest
    /// unfinished handshake makes room: a real client finishes in milliseconds).
    func startTLS(_ c: Connection) -> Bool {
        if handshakesInProgress >= configuration.limits.maxHandshakesPerWorker,
            let oldest = oldest(where: { $0.holdsHandshakeSlot && $0 !== c })
        {
            close(oldest, oldest.advance { $0.close(.shed) })
        }
        let generation = tlsBox.generation.load(ordering: .acquiring)
        if generation != tlsGeneration {
            tlsContext = tlsBox.value
            tlsGeneration = generation
        }
        guard let stream = try? TLSStream(context: tlsContext, fd: c.fd) else { return false }
        c.adopt(stream)
        c.holdsHandshakeSlot = true
        handshakesInProgress += 1
        return true
    }

    static func io(_ result: TLSResult) -> ConnectionMachine.IO {
        switch result {
        case .done: return .done
        case .wantRead: return .wantRead
        case .wantWrite: return .wantWrite
        case .closed: return .closed
        case .failed: return .failed
        }
    }

    func read(_ c: Connection, _ now: UInt64) -> Step {
        let input: ByteBuffer
        if let held = c.input {
            input = held
        } else {
            input = inputPool.take()
            c.input = input
            bufferedBytes += input.capacity
        }
        // A request of known length reads no further than its end (its buffer was
        // sized for it); otherwise room for 4 KiB more.
        let wanted = c.expectedBytes.map { min(4096, max(1, $0 - input.readable)) } ?? 4096
        // Buffers up to 64 KiB always grow; beyond that, only within the loop's budget
        // (a growing buffer doubles, so the growth is its current capacity).
        if input.capacity - input.readable < wanted && input.capacity >= 64 * 1024
            && bufferedBytes + input.capacity > configuration.limits.maxBufferedBytesPerWorker
        {
            return refuseOverBudget(c)
        }
        resizeInput(input) { $0.reserve(wanted) }
        let requested = input.writable
        switch c.session?.read(into: input.writePointer, count: requested) ?? .failed("no TLS state") {
        case .done(let n):
            input.writeIndex += n
            return c.advance { $0.read(.done, count: n, requested: requested, now: now) }
        case let other:
            let io = Self.io(other)
            let b = c.buffers
            return c.advance { $0.read(io, count: 0, requested: requested, b, now: now) }
        }
    }

    /// Writes pending output; `.done` once the buffer is empty.
    func flush(_ c: Connection) -> ConnectionMachine.IO {
        guard let output = c.output, let session = c.session else { return .done }
        while output.readable > 0 {
            switch session.write(from: output.readPointer, count: output.readable) {
            case .done(let n): output.consume(n)
            case let other: return Self.io(other)
            }
        }
        return .done
    }

    /// Gives an idle connection's empty buffers back to the pools.
    func releaseIdleBuffers(_ c: Connection) {
        switch c.state {
        case .idle, .awaitingHello, .handshaking: break
        default: return
        }
        if let input = c.input, input.readable == 0 { giveInput(c, input) }
        if let output = c.output, output.readable == 0 {
            c.output = nil
            outputPool.give(output)
        }
    }

    func giveInput(_ c: Connection, _ input: ByteBuffer) {
        c.input = nil
        bufferedBytes -= input.capacity
        inputPool.give(input)
    }

    /// Applies `change` to an input buffer, keeping `bufferedBytes` in step.
    @inline(__always) func resizeInput(_ input: ByteBuffer, _ change: (ByteBuffer) -> Void) {
        let before = input.capacity
        change(input)
        if input.capacity != before { bufferedBytes += input.capacity - before }
    }

    func setInterest(_ c: Connection, _ interest: ConnectionMachine.Interest) {
        let events: UInt32
        switch interest {
        case .readable: events = Self.readableEvents
        case .moreBytes: events = Self.edgeReadableEvents
        case .writable: events = Self.writableEvents
        }
        guard c.interest != events else { return }
        c.interest = events
        try? Sys.epollControl(epoll.raw, EPOLL_CTL_MOD, c.fd, events: events, tag: c.tag.raw)
    }
}
