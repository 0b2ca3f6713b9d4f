import Synchronization
import CLinux
import PXGuardBytes
import PXGuardPlatform
#if canImport(Glibc)
import Glibc
#endif

/// A request as the handler sees it: views into the connection's buffer, valid
/// only during `handle`.
public struct HTTPRequest {
    public let method: HTTPMethod
    let target: UnsafeBufferPointer<UInt8>
    let contentTypeBytes: UnsafeBufferPointer<UInt8>
    /// The whole request head, for the rare lookups of other headers.
    let headBytes: UnsafeBufferPointer<UInt8>
    public let body: UnsafeRawBufferPointer
    /// Index of the event loop serving this request, for sharded counters.
    public let worker: Int

    /// The request path without the query string.
    public var path: String {
        let end = target.firstIndex(of: UInt8(ascii: "?")) ?? target.endIndex
        return String(decoding: UnsafeBufferPointer(rebasing: target[..<end]), as: UTF8.self)
    }

    /// True when the path (query ignored) equals `path`.
    public func pathIs(_ path: StaticString) -> Bool {
        let end = target.firstIndex(of: UInt8(ascii: "?")) ?? target.endIndex
        guard end == path.utf8CodeUnitCount else { return false }
        return Bytes.equal(target.baseAddress!, path.utf8Start, end)
    }

    /// The request target as sent: path and query string.
    public var targetString: String { String(decoding: target, as: UTF8.self) }

    /// The value of the first header named `name` (case-insensitive). Scans the
    /// head, so it is for off-path use (tests, rare headers), not per request.
    public func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        for line in String(decoding: headBytes, as: UTF8.self).split(separator: "\r\n").dropFirst() {
            guard let colon = line.firstIndex(of: ":"), line[..<colon].lowercased() == lowered else { continue }
            return line[line.index(after: colon)...].trimmingPrefix(" ").description
        }
        return nil
    }

    public var contentType: String? {
        contentTypeBytes.isEmpty ? nil : String(decoding: contentTypeBytes, as: UTF8.self)
    }

    /// True for `application/json`, with any parameters, in any letter case.
    public var isJSON: Bool {
        let media = contentTypeBytes.prefix { $0 != UInt8(ascii: ";") }
        let trimmed = media.reversed().drop { $0 == 0x20 || $0 == 0x09 }.reversed()
        let expected = Array("application/json".utf8)
        return trimmed.count == expected.count && zip(trimmed, expected).allSatisfy { $0 | 0x20 == $1 | 0x20 }
    }
}

/// The response the handler fills in; its body buffer is reused across requests.
public struct HTTPResponse {
    public var status = 200
    public var contentType: StaticString = "application/json"
    public var body: [UInt8] = []
    /// Extra header lines, each ending in CRLF (rare: `Allow`, `Retry-After`).
    public var extraHeaders: String = ""

    mutating func reset() {
        status = 200
        contentType = "application/json"
        body.removeAll(keepingCapacity: true)
        extraHeaders = ""
    }

    /// Replaces the body with a JSON error object carrying a one-line message.
    public mutating func error(_ status: Int, _ message: String) {
        self.status = status
        contentType = "application/json"
        body.removeAll(keepingCapacity: true)
        body.append(contentsOf: #"{"code":"#.utf8)
        body.append(contentsOf: String(status).utf8)
        body.append(contentsOf: #","message":"#.utf8)
        JSONWriter.appendString(message, to: &body)
        body.append(contentsOf: "}".utf8)
    }
}

/// What the server serves. Called on an event-loop thread; must not block.
public protocol HTTPHandler: Sendable {
    func handle(_ request: HTTPRequest, _ response: inout HTTPResponse)
}

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
    /// Memory one loop may hold in request buffers across its connections. A
    /// request that would need more is answered 503 and closed, so many large
    /// bodies at once cannot exhaust memory.
    public var maxBufferedBytesPerWorker = 256 << 20

    public init(address: SocketAddress) { self.address = address }
}

/// The serving TLS context, swapped on certificate reload.
public typealias TLSContextBox = ReloadBox<TLSContext>

/// Transport counters of one event loop; the server sums them on demand.
final class LoopStats: Sendable {
    let open = Atomic<Int>(0)
    let accepted = Atomic<Int>(0)
    let handshakeFailures = Atomic<Int>(0)
    let timeouts = Atomic<Int>(0)
    let protocolErrors = Atomic<Int>(0)
    let rejected = Atomic<Int>(0)
    let bufferedBytes = Atomic<Int>(0)
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
}

/// An HTTPS/1.1 server: one epoll event loop per worker thread, each with its own
/// `SO_REUSEPORT` listener, so the request path has no shared lock or hand-off.
public final class HTTPServer: Sendable {
    public let port: Int
    let loops: [EventLoop]
    private let finished = Locked<Int>(0)
    let logger: Logger

    /// Binds the listeners (so the port is known) without serving yet.
    public init(configuration: ServerConfiguration, tls: TLSContextBox, handler: any HTTPHandler, logger: Logger) throws {
        Sys.raiseDescriptorLimit()
        var configuration = configuration
        let workers = configuration.workers > 0 ? configuration.workers : CPUBudget.available()
        var loops: [EventLoop] = []
        var boundPort = configuration.address.port
        for index in 0..<workers {
            configuration.address = try SocketAddress(parsing: SocketAddress.format(configuration.address.host, boundPort))
            let fd = try Self.listen(on: configuration.address)
            if index == 0 { boundPort = try Sys.boundPort(fd) }
            loops.append(try EventLoop(index: index, listenFD: fd, configuration: configuration, tls: tls,
                                       handler: handler, logger: logger))
        }
        self.loops = loops
        self.port = boundPort
        self.logger = logger
    }

    static func listen(on address: SocketAddress) throws -> Int32 {
        let fd = try Sys.socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue))
        do {
            try Sys.setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
            try Sys.setOption(fd, SOL_SOCKET, SO_REUSEPORT, 1)
            try Sys.bind(fd, address)
            try Sys.listen(fd, backlog: 1024)
            return fd
        } catch {
            Sys.close(fd)
            throw error
        }
    }

    /// Starts one thread per loop.
    public func start() {
        for loop in loops {
            spawnThread(name: "pxguard-loop-\(loop.index)") { [self] in
                loop.run()
                finished.withLock { $0 += 1 }
            }
        }
    }

    /// Stops accepting, closes idle connections at once, lets in-flight requests
    /// finish (answered with `Connection: close`), and force-closes whatever is
    /// left after `grace` seconds.
    public func shutdown(grace: Double) {
        for loop in loops { loop.post(.drain(deadline: Clock.monotonic().nanoseconds + UInt64(grace * 1e9))) }
    }

    /// Blocks until every loop has exited.
    public func wait() {
        while finished.withLock({ $0 }) < loops.count { usleep(5_000) }
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

/// One connection's state. Transitions happen in `EventLoop.drive`.
final class Connection {
    enum Phase {
        case handshaking
        case open
        /// Answered with an error while the peer may still be sending: our side is
        /// shut, incoming bytes are read and dropped for a moment, so that the
        /// peer's unread data does not turn into a reset that destroys the answer.
        case lingering
    }

    /// Which deadline is running: each starts once and is never pushed back by
    /// arriving bytes (a client trickling one byte a second is still cut).
    enum Timer {
        case handshake, idle, request, write, linger
    }

    let fd: Int32
    let tls: TLSSession
    var phase = Phase.handshaking
    let input: ByteBuffer
    let output: ByteBuffer
    var parser: HTTPRequestParser
    var deadline: UInt64
    var timer = Timer.handshake
    var served = 0
    var interest: UInt32 = 0
    var closeAfterFlush = false
    /// Linger after the final flush instead of closing at once (error answers).
    var lingerOnClose = false
    var lingered = 0
    var bodyBudgetGranted = false
    var slot = 0

    init(fd: Int32, tls: TLSSession, limits: HTTPLimits, deadline: UInt64) {
        self.fd = fd
        self.tls = tls
        self.deadline = deadline
        input = ByteBuffer(capacity: 8 * 1024)
        output = ByteBuffer(capacity: 2 * 1024)
        parser = HTTPRequestParser(limits: limits)
    }
}

/// One epoll loop. Everything it owns is touched only by its own thread; other
/// threads talk to it through `post`, which wakes it with an eventfd.
final class EventLoop: @unchecked Sendable {
    enum Command {
        case drain(deadline: UInt64)
    }

    let index: Int
    let epfd: Int32
    let wakeFD: Int32
    var listenFD: Int32
    let configuration: ServerConfiguration
    let tlsBox: TLSContextBox
    var tlsContext: TLSContext
    var tlsGeneration: Int
    let handler: any HTTPHandler
    let logger: Logger
    let stats = LoopStats()
    let inbox = Locked<[Command]>([])

    var table: [Connection?] = []
    var active: [Connection] = []
    var response = HTTPResponse()
    var drainDeadline: UInt64?
    var lastSweep: UInt64 = 0
    /// Set while accepting is paused after running out of descriptors.
    var acceptPausedUntil: UInt64?
    /// Sum of the input buffer capacities of this loop's connections.
    var bufferedBytes = 0 {
        didSet { stats.bufferedBytes.store(bufferedBytes, ordering: .relaxed) }
    }

    static let readableEvents = UInt32(EPOLLIN.rawValue | EPOLLRDHUP.rawValue)
    static let writableEvents = UInt32(EPOLLOUT.rawValue)

    init(index: Int, listenFD: Int32, configuration: ServerConfiguration, tls: TLSContextBox,
         handler: any HTTPHandler, logger: Logger) throws {
        self.index = index
        self.listenFD = listenFD
        self.configuration = configuration
        self.tlsBox = tls
        self.tlsGeneration = tls.generation.load(ordering: .acquiring)
        self.tlsContext = tls.value
        self.handler = handler
        self.logger = logger
        epfd = try Sys.epollCreate()
        wakeFD = try Sys.eventFD()
        try Sys.epollControl(epfd, EPOLL_CTL_ADD, listenFD, events: UInt32(EPOLLIN.rawValue))
        try Sys.epollControl(epfd, EPOLL_CTL_ADD, wakeFD, events: UInt32(EPOLLIN.rawValue))
        response.body.reserveCapacity(4096)
    }

    func post(_ command: Command) {
        inbox.withLock { $0.append(command) }
        Sys.signalEventFD(wakeFD)
    }

    func seconds(_ s: Double) -> UInt64 { UInt64(s * 1e9) }

    func run() {
        let capacity: Int32 = 256
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: Int(capacity))
        defer {
            events.deallocate()
            Sys.close(epfd)
            Sys.close(wakeFD)
        }
        while true {
            let n: Int32
            do {
                n = try Sys.epollWait(epfd, events, capacity, timeoutMillis: acceptPausedUntil == nil ? 250 : 20)
            } catch {
                logger.error("event loop stopped", [("loop", String(index)), ("error", "\(error)")])
                return
            }
            for i in 0..<Int(n) {
                let fd = events[i].data.fd
                let flags = events[i].events
                if fd == listenFD {
                    acceptConnections()
                } else if fd == wakeFD {
                    Sys.drainEventFD(wakeFD)
                    handleCommands()
                } else if Int(fd) < table.count, let connection = table[Int(fd)] {
                    if flags & UInt32(EPOLLERR.rawValue) != 0 {
                        close(connection)
                    } else {
                        drive(connection)
                    }
                }
            }
            let now = Clock.monotonic().nanoseconds
            if let until = acceptPausedUntil, now >= until, listenFD >= 0 {
                acceptPausedUntil = nil
                try? Sys.epollControl(epfd, EPOLL_CTL_MOD, listenFD, events: UInt32(EPOLLIN.rawValue))
            }
            if now - lastSweep >= 250_000_000 {
                lastSweep = now
                sweep(now)
            }
            if let deadline = drainDeadline {
                if active.isEmpty { return }
                if now >= deadline {
                    for connection in active { close(connection) }
                    return
                }
            }
        }
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
                if listenFD >= 0 {
                    try? Sys.epollControl(epfd, EPOLL_CTL_DEL, listenFD, events: 0)
                    Sys.close(listenFD)
                    listenFD = -1
                }
                // Idle keep-alive connections close now, so clients reconnect to
                // another replica; busy ones finish with Connection: close.
                for connection in active where isIdle(connection) { close(connection) }
            }
        }
    }

    func isIdle(_ c: Connection) -> Bool {
        c.phase == .handshaking || (c.output.readable == 0 && c.input.readable == 0 && !c.parser.inRequest)
    }

    func acceptConnections() {
        for _ in 0..<64 {
            let fd: Int32
            do {
                switch try Sys.accept(listenFD) {
                case .wouldBlock: return
                case .exhausted:
                    // Stop polling the listener for 100 ms; the sweep re-arms it.
                    logger.warn("out of file descriptors or memory; pausing accept", [("open", String(active.count))])
                    try? Sys.epollControl(epfd, EPOLL_CTL_MOD, listenFD, events: 0)
                    acceptPausedUntil = Clock.monotonic().nanoseconds + 100_000_000
                    return
                case .processed(let accepted): fd = accepted
                }
            } catch {
                logger.error("accept failed", [("error", "\(error)")])
                return
            }
            if active.count >= configuration.maxConnectionsPerWorker || drainDeadline != nil {
                stats.rejected.add(1, ordering: .relaxed)
                Sys.close(fd)
                continue
            }
            try? Sys.setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
            let generation = tlsBox.generation.load(ordering: .acquiring)
            if generation != tlsGeneration {
                tlsContext = tlsBox.value
                tlsGeneration = generation
            }
            guard let session = try? TLSSession(context: tlsContext, fd: fd) else {
                Sys.close(fd)
                continue
            }
            let connection = Connection(fd: fd, tls: session, limits: configuration.limits,
                                        deadline: Clock.monotonic().nanoseconds + seconds(configuration.handshakeTimeout))
            bufferedBytes += connection.input.capacity
            if Int(fd) >= table.count { table.append(contentsOf: repeatElement(nil, count: Int(fd) + 64 - table.count)) }
            table[Int(fd)] = connection
            connection.slot = active.count
            active.append(connection)
            stats.accepted.add(1, ordering: .relaxed)
            stats.open.add(1, ordering: .relaxed)
            connection.interest = Self.readableEvents
            do {
                try Sys.epollControl(epfd, EPOLL_CTL_ADD, fd, events: connection.interest)
            } catch {
                close(connection)
                continue
            }
            drive(connection)
        }
    }

    func setInterest(_ c: Connection, _ events: UInt32) {
        guard c.interest != events else { return }
        c.interest = events
        try? Sys.epollControl(epfd, EPOLL_CTL_MOD, c.fd, events: events)
    }

    func close(_ c: Connection) {
        guard Int(c.fd) < table.count, table[Int(c.fd)] === c else { return }
        if c.phase == .open { c.tls.shutdown() }
        c.tls.free()
        Sys.close(c.fd)
        bufferedBytes -= c.input.capacity
        table[Int(c.fd)] = nil
        let last = active.removeLast()
        if last !== c {
            active[c.slot] = last
            last.slot = c.slot
        }
        stats.open.add(-1, ordering: .relaxed)
    }

    func sweep(_ now: UInt64) {
        var expired: [Connection] = []
        for c in active where now >= c.deadline { expired.append(c) }
        for c in expired {
            if c.timer != .idle && c.timer != .linger { stats.timeouts.add(1, ordering: .relaxed) }
            close(c)
        }
    }

    /// Runs a connection as far as it can go without blocking, then records which
    /// readiness event it waits for.
    func drive(_ c: Connection) {
        if c.phase == .lingering {
            linger(c)
            return
        }
        if c.phase == .handshaking {
            switch c.tls.accept() {
            case .done:
                c.phase = .open
                c.timer = .idle
                c.deadline = Clock.monotonic().nanoseconds + seconds(configuration.idleTimeout)
            case .wantRead: setInterest(c, Self.readableEvents); return
            case .wantWrite: setInterest(c, Self.writableEvents); return
            case .closed, .failed:
                stats.handshakeFailures.add(1, ordering: .relaxed)
                close(c)
                return
            }
        }
        var reads = 0
        var lastReadShort = false
        while true {
            if c.output.readable > 0 {
                switch flush(c) {
                case .wantRead: setInterest(c, Self.readableEvents); return
                case .wantWrite: setInterest(c, Self.writableEvents); return
                case .closed, .failed: close(c); return
                case .done: break
                }
            }
            if c.closeAfterFlush {
                if c.lingerOnClose { startLinger(c) } else { close(c) }
                return
            }
            if c.input.readable > 0 && process(c) { continue }
            if c.closeAfterFlush { continue }
            // Bounded reads per wake-up, so one busy peer cannot starve the others.
            // After a short read the socket is most likely drained: wait for epoll
            // instead of paying a read that returns EAGAIN.
            reads += 1
            if reads > 16 || (lastReadShort && !c.tls.hasPending) { setInterest(c, Self.readableEvents); return }
            // Buffers up to 64 KiB always grow; beyond that, only within the loop's budget
            // (a growing buffer doubles, so the growth is its current capacity).
            if c.input.writable < 4096 && c.input.capacity >= 64 * 1024
                && bufferedBytes + c.input.capacity > configuration.maxBufferedBytesPerWorker
            {
                refuseOverBudget(c)
                continue
            }
            resizeInput(c) { $0.reserve(4096) }
            let requested = c.input.writable
            switch c.tls.read(into: c.input.writePointer, count: requested) {
            case .done(let n):
                lastReadShort = n < requested
                c.input.writeIndex += n
                if c.timer == .idle {
                    c.timer = .request
                    c.deadline = Clock.monotonic().nanoseconds + seconds(configuration.headerTimeout)
                }
            case .wantRead: setInterest(c, Self.readableEvents); return
            case .wantWrite: setInterest(c, Self.writableEvents); return
            case .closed, .failed: close(c); return
            }
        }
    }

    /// Writes pending output; `.done` once the buffer is empty.
    func flush(_ c: Connection) -> TLSResult {
        while c.output.readable > 0 {
            switch c.tls.write(from: c.output.readPointer, count: c.output.readable) {
            case .done(let n): c.output.consume(n)
            case .wantWrite:
                startWriteTimer(c)
                return .wantWrite
            case .wantRead:
                startWriteTimer(c)
                return .wantRead
            case let other: return other
            }
        }
        if c.timer == .write {
            c.timer = c.input.readable > 0 ? .request : .idle
            c.deadline = Clock.monotonic().nanoseconds + seconds(c.timer == .idle ? configuration.idleTimeout : configuration.headerTimeout)
        }
        return .done(0)
    }

    /// Applies `change` to a connection's input buffer, keeping `bufferedBytes` in step.
    @inline(__always) func resizeInput(_ c: Connection, _ change: (ByteBuffer) -> Void) {
        let before = c.input.capacity
        change(c.input)
        if c.input.capacity != before { bufferedBytes += c.input.capacity - before }
    }

    /// Answers 503 to a request whose body no longer fits in the loop's budget.
    func refuseOverBudget(_ c: Connection) {
        stats.protocolErrors.add(1, ordering: .relaxed)
        logger.warn("request buffers full; refusing a large request", [("bufferedBytes", String(bufferedBytes))])
        response.reset()
        response.error(503, "server busy: request buffers are full; retry")
        response.extraHeaders = "Retry-After: 1\r\n"
        writeResponse(c, keepAlive: false)
        c.lingerOnClose = true
    }

    func startLinger(_ c: Connection) {
        c.tls.shutdown()
        _ = Glibc.shutdown(c.fd, Int32(SHUT_WR))
        c.phase = .lingering
        c.timer = .linger
        c.deadline = Clock.monotonic().nanoseconds + 2_000_000_000
        setInterest(c, Self.readableEvents)
        linger(c)
    }

    /// Reads and drops what the peer still sends, up to 1 MiB or two seconds.
    func linger(_ c: Connection) {
        while true {
            resizeInput(c) {
                $0.reset()
                $0.reserve(16 * 1024)
            }
            switch try? Syscall.read(c.fd, c.input.writePointer, c.input.writable) {
            case .processed(let n) where n > 0:
                c.lingered += n
                if c.lingered > 1 << 20 { close(c); return }
            case .wouldBlock: return
            default: close(c); return
            }
        }
    }

    /// A peer that stops reading our answer is cut after the body timeout.
    func startWriteTimer(_ c: Connection) {
        guard c.timer != .write else { return }
        c.timer = .write
        c.deadline = Clock.monotonic().nanoseconds + seconds(configuration.bodyTimeout)
    }

    /// Parses and answers complete requests in the input buffer. Returns true
    /// when it produced output.
    func process(_ c: Connection) -> Bool {
        var produced = false
        while c.input.readable > 0 && !c.closeAfterFlush && c.output.readable < 64 * 1024 {
            let outcome: HTTPRequestParser.Outcome
            do {
                outcome = try c.parser.parse(c.input.readPointer, c.input.readable)
            } catch {
                stats.protocolErrors.add(1, ordering: .relaxed)
                response.reset()
                response.error(error.status, error.message)
                writeResponse(c, keepAlive: false)
                c.lingerOnClose = true
                return true
            }
            switch outcome {
            case .needMore:
                if c.parser.headComplete && !c.bodyBudgetGranted {
                    // The body gets its own budget once, when the head is complete.
                    c.bodyBudgetGranted = true
                    c.deadline += seconds(configuration.bodyTimeout)
                }
                return produced
            case .sendContinue:
                c.output.append("HTTP/1.1 100 Continue\r\n\r\n")
                produced = true
            case .complete(let complete):
                let base = UnsafePointer(c.input.readPointer)
                let head = complete.head
                let body: UnsafeRawBufferPointer
                if complete.bodyIsChunked {
                    body = UnsafeRawBufferPointer(start: c.parser.chunkBody.readPointer, count: c.parser.chunkBody.readable)
                } else {
                    body = UnsafeRawBufferPointer(start: base + head.headLength, count: head.contentLength ?? 0)
                }
                let request = HTTPRequest(
                    method: head.method,
                    target: UnsafeBufferPointer(start: base + head.targetStart, count: head.targetEnd - head.targetStart),
                    contentTypeBytes: UnsafeBufferPointer(start: base + head.contentTypeStart,
                                                          count: head.contentTypeEnd - head.contentTypeStart),
                    headBytes: UnsafeBufferPointer(start: base, count: head.headLength),
                    body: body, worker: index)
                response.reset()
                handler.handle(request, &response)
                c.served += 1
                var keepAlive = head.keepAlive && drainDeadline == nil
                if configuration.maxRequestsPerConnection > 0 && c.served >= configuration.maxRequestsPerConnection {
                    keepAlive = false
                }
                c.input.consume(complete.consumed)
                if c.input.readable == 0 && c.input.capacity > 64 * 1024 {
                    // Give back what a large body needed; idle connections stay small.
                    resizeInput(c) { $0.reset() }
                }
                c.parser.reset()
                c.bodyBudgetGranted = false
                writeResponse(c, keepAlive: keepAlive, head: head.method == .head)
                produced = true
                if keepAlive {
                    c.timer = c.input.readable > 0 ? .request : .idle
                    c.deadline = Clock.monotonic().nanoseconds + seconds(c.input.readable > 0 ? configuration.headerTimeout : configuration.idleTimeout)
                }
            }
        }
        return produced
    }

    static let reasons: [Int: StaticString] = [
        200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
        408: "Request Timeout", 413: "Content Too Large", 414: "URI Too Long", 415: "Unsupported Media Type",
        431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
        503: "Service Unavailable", 505: "HTTP Version Not Supported",
    ]

    func writeResponse(_ c: Connection, keepAlive: Bool, head: Bool = false) {
        let out = c.output
        out.append("HTTP/1.1 ")
        out.append(decimal: response.status)
        out.append(" ")
        out.append(Self.reasons[response.status] ?? "Unknown")
        out.append("\r\nContent-Type: ")
        out.append(response.contentType)
        out.append("\r\nContent-Length: ")
        out.append(decimal: response.body.count)
        out.append("\r\n")
        if !response.extraHeaders.isEmpty {
            var extra = response.extraHeaders
            extra.withUTF8 { out.append(UnsafeRawBufferPointer($0)) }
        }
        out.append(keepAlive ? "\r\n" : "Connection: close\r\n\r\n")
        if !head { out.append(response.body) }
        if !keepAlive { c.closeAfterFlush = true }
    }
}

