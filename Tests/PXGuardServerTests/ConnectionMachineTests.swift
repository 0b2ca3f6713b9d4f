import Synchronization
#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import PXGuardServer

/// The connection state machine driven by hand: every transition and timeout with
/// a clock that is just a number, no sockets and no sleeping.
@Suite("Connection state machine")
struct ConnectionMachineTests {
    typealias M = ConnectionMachine
    static let second: UInt64 = 1_000_000_000
    static let timeouts = M.Timeouts(handshake: 10, header: 5, body: 30, idle: 90)

    /// A machine whose handshake finished at `t` seconds, now idle.
    func open(at t: UInt64 = 0) -> M {
        var m = M(now: t * Self.second, timeouts: Self.timeouts)
        #expect(m.resume(.init()) == .inspectHello)
        #expect(m.helloInspected(.proceed, now: t * Self.second) == .handshake)
        #expect(m.handshake(.done, now: t * Self.second) == .read)
        #expect(m.state == .idle)
        return m
    }

    func at(_ seconds: UInt64, _ nanos: UInt64 = 0) -> UInt64 { seconds * Self.second + nanos }

    @Test("accepted: no TLS state until the first bytes; the handshake timer runs from accept")
    func accepted() {
        var m = M(now: 0, timeouts: Self.timeouts)
        #expect(m.state == .awaitingHello)
        #expect(m.timer == .handshake)
        #expect(m.resume(.init()) == .inspectHello)
        #expect(m.helloInspected(.wouldBlock, now: 0) == .wait(.readable))
        #expect(m.helloInspected(.incomplete, now: 0) == .wait(.moreBytes))
        #expect(m.state == .awaitingHello)
        #expect(m.tick(now: at(9, 999_999_999)) == nil)
        #expect(m.tick(now: at(10)) == .timedOut(.handshake))
        #expect(m.isClosed)
    }

    @Test("an oversized ClientHello announcement or an early close ends the connection before TLS starts")
    func helloRefused() {
        var m = M(now: 0, timeouts: Self.timeouts)
        #expect(m.helloInspected(.oversized(131_072), now: 0) == .close(.helloTooLarge))
        var n = M(now: 0, timeouts: Self.timeouts)
        #expect(n.helloInspected(.closed, now: 0) == .close(.handshakeFailed))
    }

    @Test("handshake: want-read and want-write wait for that event; failure closes; the deadline is kept")
    func handshake() {
        var m = M(now: 0, timeouts: Self.timeouts)
        _ = m.helloInspected(.proceed, now: 0)
        #expect(m.state == .handshaking)
        #expect(m.handshake(.wantRead, now: at(1)) == .wait(.readable))
        #expect(m.handshake(.wantWrite, now: at(2)) == .wait(.writable))
        #expect(m.resume(.init()) == .handshake)
        #expect(m.tick(now: at(10)) == .timedOut(.handshake))
        var f = M(now: 0, timeouts: Self.timeouts)
        _ = f.helloInspected(.proceed, now: 0)
        #expect(f.handshake(.failed, now: 0) == .close(.handshakeFailed))
    }

    @Test("idle keep-alive: the idle timer closes a connection that sends nothing, counted as no timeout")
    func idle() {
        var m = open(at: 1)
        #expect(m.timer == .idle)
        #expect(m.tick(now: at(90)) == nil)
        let reason = m.tick(now: at(91))
        #expect(reason == .timedOut(.idle))
        #expect(reason?.isTimeout == false)
    }

    @Test("the header timer starts at the first byte and is not pushed back by more bytes")
    func headerTimer() {
        var m = open()
        #expect(m.read(.done, count: 10, requested: 4096, now: at(20)) == .process)
        #expect(m.state == .readingHead)
        #expect(m.needMore(.init(input: 10), now: at(20)) == .wait(.readable))
        // A trickle: one byte a second keeps arriving; the deadline stays at 25 s.
        for t in 21...24 {
            #expect(m.resume(.init(input: 10)) == .process)
            #expect(m.needMore(.init(input: 10), now: at(UInt64(t))) == .read)
            #expect(m.read(.done, count: 1, requested: 4096, now: at(UInt64(t))) == .process)
        }
        #expect(m.tick(now: at(24, 999_999_999)) == nil)
        let reason = m.tick(now: at(25))
        #expect(reason == .timedOut(.header))
        #expect(reason?.isTimeout == true)
    }

    @Test("the body gets its own budget once, when the head completes")
    func bodyTimer() {
        var m = open()
        _ = m.read(.done, count: 100, requested: 4096, now: at(1))
        m.parse("POST /validate HTTP/1.1\r\n")
        #expect(m.needMore(.init(input: 100), now: at(1)) == .wait(.readable))
        #expect(m.state == .readingHead, "a partial head: still the header timer")
        m.parse(M.postHead(contentLength: 4096))
        #expect(m.parser.headComplete)
        #expect(m.needMore(.init(input: 100), now: at(2)) == .wait(.readable))
        #expect(m.state == .readingBody)
        #expect(m.timer == .body)
        // More body bytes do not grant it again.
        _ = m.read(.done, count: 100, requested: 4096, now: at(3))
        _ = m.needMore(.init(input: 200), now: at(3))
        #expect(m.tick(now: at(35, 999_999_999)) == nil)  // 1 + 5 (head) + 30 (body)
        #expect(m.tick(now: at(36)) == .timedOut(.body))
    }

    @Test("keep-alive answer: back to idle with a fresh idle timer and a fresh parser, output flushed first")
    func keepAlive() {
        var m = open()
        _ = m.read(.done, count: 50, requested: 4096, now: at(1))
        m.parse(M.postHead(contentLength: 0))
        #expect(m.keepAlive(requested: true, draining: false))
        #expect(m.answered(keepAlive: true, .init(output: 200), now: at(2)) == .flush)
        #expect(m.state == .idle)
        #expect(!m.parser.headComplete && !m.parser.inRequest, "the answer resets the parser for the next request")
        #expect(m.served == 1)
        #expect(m.flushed(.done, .init(), now: at(2)) == .wait(.readable))
        #expect(m.idleSince == at(2))
        #expect(m.tick(now: at(92)) == .timedOut(.idle))
    }

    @Test("pipelined requests are parsed before flushing, up to the output high-water mark")
    func pipelined() {
        var m = open()
        _ = m.read(.done, count: 300, requested: 4096, now: at(1))
        #expect(m.answered(keepAlive: true, .init(input: 200, output: 100), now: at(1)) == .process)
        #expect(m.state == .readingHead)
        #expect(m.answered(keepAlive: true, .init(input: 100, output: 64 * 1024), now: at(1)) == .flush)
        #expect(m.flushed(.done, .init(input: 100), now: at(1)) == .process)
    }

    @Test("Connection: close, draining and the per-connection request limit end the connection after the answer")
    func closing() {
        var m = open()
        #expect(!m.keepAlive(requested: false, draining: false))
        #expect(!m.keepAlive(requested: true, draining: true))
        #expect(m.answered(keepAlive: false, .init(output: 10), now: at(1)) == .flush)
        #expect(m.state == .finishing(.close))
        #expect(m.flushed(.done, .init(), now: at(1)) == .close(.answered))
        var limits = Self.timeouts
        limits.maxRequests = 2
        var l = M(now: 0, timeouts: limits)
        _ = l.helloInspected(.proceed, now: 0)
        _ = l.handshake(.done, now: 0)
        #expect(l.keepAlive(requested: true, draining: false))
        _ = l.answered(keepAlive: true, .init(), now: 0)
        #expect(!l.keepAlive(requested: true, draining: false))
    }

    @Test("a refused request is answered, then our side shuts and the peer's bytes are dropped for a while")
    func linger() {
        var m = open()
        _ = m.read(.done, count: 50, requested: 4096, now: at(1))
        #expect(m.refused() == .flush)
        #expect(m.flushed(.done, .init(), now: at(1)) == .startLinger)
        #expect(m.lingerStarted(now: at(1)) == .drop)
        #expect(m.dropped(.dropped(1000)) == .drop)
        #expect(m.state == .lingering(dropped: 1000))
        #expect(m.dropped(.wouldBlock) == .wait(.readable))
        #expect(m.resume(.init()) == .drop)
        #expect(m.dropped(.dropped(1 << 20)) == .close(.lingerDone))
        var t = open()
        _ = t.refused()
        _ = t.flushed(.done, .init(), now: at(1))
        _ = t.lingerStarted(now: at(1))
        #expect(t.tick(now: at(3)) == .lingerDone)
        var e = open()
        _ = e.refused()
        _ = e.flushed(.done, .init(), now: at(1))
        _ = e.lingerStarted(now: at(1))
        #expect(e.dropped(.closed) == .close(.lingerDone))
    }

    @Test("a peer that stops reading our answer is cut after the body timeout, counted from the blocked write")
    func writeTimer() {
        var m = open()
        _ = m.read(.done, count: 50, requested: 4096, now: at(1))
        _ = m.answered(keepAlive: true, .init(output: 100_000), now: at(1))
        #expect(m.flushed(.wantWrite, .init(output: 50_000), now: at(2)) == .wait(.writable))
        #expect(m.state == .writing(then: .nextRequest))
        #expect(m.timer == .write)
        // A second blocked write does not restart the timer.
        #expect(m.resume(.init(output: 40_000)) == .flush)
        #expect(m.flushed(.wantWrite, .init(output: 40_000), now: at(20)) == .wait(.writable))
        #expect(m.tick(now: at(31, 999_999_999)) == nil)
        #expect(m.tick(now: at(32)) == .timedOut(.write))
    }

    @Test("a blocked write that completes returns to reading, or ends the connection when the answer was the last")
    func writeCompletes() {
        var m = open()
        _ = m.answered(keepAlive: true, .init(output: 100_000), now: at(1))
        _ = m.flushed(.wantRead, .init(output: 50_000), now: at(1))
        #expect(m.flushed(.done, .init(input: 20), now: at(3)) == .process)
        #expect(m.state == .readingHead)
        #expect(m.tick(now: at(8)) == .timedOut(.header))
        var c = open()
        _ = c.answered(keepAlive: false, .init(output: 100_000), now: at(1))
        _ = c.flushed(.wantWrite, .init(output: 1), now: at(1))
        #expect(c.state == .writing(then: .end(.close)))
        #expect(c.flushed(.done, .init(), now: at(2)) == .close(.answered))
    }

    @Test("reads per wake-up are bounded; bytes left inside OpenSSL make the connection yield, not wait")
    func fairness() {
        var m = open()
        #expect(m.resume(.init()) == .read)
        for _ in 0..<15 {
            #expect(m.read(.done, count: 4096, requested: 4096, now: 0) == .process)
            #expect(m.needMore(.init(input: 1, tlsPending: true), now: 0) == .read)
        }
        _ = m.read(.done, count: 4096, requested: 4096, now: 0)
        #expect(m.needMore(.init(input: 1, tlsPending: true), now: 0) == .yield)
        #expect(m.resume(.init(input: 1, tlsPending: true)) == .process)
        // After a short read with nothing inside OpenSSL the socket is drained: wait.
        #expect(m.read(.done, count: 10, requested: 4096, now: 0) == .process)
        #expect(m.needMore(.init(input: 11), now: 0) == .wait(.readable))
        // A short read while OpenSSL still holds records keeps reading.
        #expect(m.resume(.init(input: 11)) == .process)
        #expect(m.read(.done, count: 10, requested: 4096, now: 0) == .process)
        #expect(m.needMore(.init(input: 21, tlsPending: true), now: 0) == .read)
    }

    @Test("peer close and failures while reading or writing close the connection")
    func failures() {
        var a = open()
        #expect(a.read(.closed, count: 0, requested: 4096, now: 0) == .close(.peerClosed))
        var b = open()
        #expect(b.read(.failed, count: 0, requested: 4096, now: 0) == .close(.failed))
        var c = open()
        #expect(c.read(.wantWrite, count: 0, requested: 4096, now: 0) == .wait(.writable))
        _ = c.answered(keepAlive: true, .init(output: 10), now: 0)
        #expect(c.flushed(.closed, .init(output: 10), now: 0) == .close(.peerClosed))
    }

    @Test("idle means nothing in flight: awaiting a hello, handshaking, or idle with empty buffers")
    func idleness() {
        let fresh = M(now: 0, timeouts: Self.timeouts)
        #expect(fresh.isIdle(.init()))
        var m = open()
        #expect(m.isIdle(.init()))
        #expect(!m.isIdle(.init(output: 1)))
        _ = m.read(.done, count: 5, requested: 4096, now: 0)
        #expect(!m.isIdle(.init(input: 5)))
    }
}

@Suite("Connection budget and buffer pool")
struct BudgetAndPoolTests {
    @Test("the budget gives out exactly its limit, and a place given back can be taken again")
    func budget() {
        let budget = ConnectionBudget(limit: 2)
        #expect(budget.take())
        #expect(budget.take())
        #expect(!budget.take())
        #expect(budget.open.load(ordering: .relaxed) == 2)
        budget.give()
        #expect(budget.take())
    }

    @Test("the pool reuses standard buffers, drops grown ones, and keeps no more than it may")
    func pool() {
        let pool = BufferPool(bufferSize: 64, keep: 2)
        let a = pool.take(), b = pool.take(), c = pool.take()
        a.append(Array("hello".utf8))
        pool.give(a)
        pool.give(b)
        pool.give(c)
        #expect(pool.kept == 2)
        let reused = pool.take()
        #expect(reused === b || reused === a)
        #expect(reused.readable == 0)
        let grown = ByteBuffer(capacity: 64)
        grown.reserve(1000)
        pool.give(grown)
        #expect(pool.kept == 1)
        pool.trim(to: 0)
        #expect(pool.kept == 0)
    }
}

/// The pieces the design review asked for, driven with a clock that is a number.
@Suite("Transport design: progress rate, handshake bytes held by OpenSSL, shedding rank, timer heap, registration tags")
struct TransportDesignTests {
    typealias M = ConnectionMachine
    static let second: UInt64 = 1_000_000_000
    func at(_ seconds: UInt64, _ nanos: UInt64 = 0) -> UInt64 { seconds * Self.second + nanos }

    static var timeouts: M.Timeouts {
        var t = M.Timeouts(handshake: 10, header: 10, body: 30, idle: 90)
        t.minBytesPerSecond = 1024
        t.progressGrace = 2 * second
        return t
    }

    func open(at t: UInt64 = 0) -> M {
        var m = M(now: at(t), timeouts: Self.timeouts)
        _ = m.resume(.init())
        _ = m.helloInspected(.proceed, now: at(t))
        _ = m.handshake(.done, now: at(t))
        return m
    }

    @Test("a request that holds a head and one body byte is cut when its bytes fall below the minimum rate, long before the header and body timeouts")
    func slowRequestCut() {
        var m = open()
        #expect(m.nextDeadline == at(90), "idle: only the idle timer")
        // At 100 s: a 150-byte head and one byte of a 4 KiB body, then nothing.
        #expect(m.read(.done, count: 151, requested: 4096, now: at(100)) == .process)
        m.parse(M.postHead(contentLength: 4096) + "x")
        #expect(m.parser.headComplete)
        #expect(m.needMore(.init(input: 151), now: at(100)) == .wait(.readable))
        // 2 s grace plus 151 bytes at 1,024 B/s: due at 102.147 s.
        let due = at(102) + 151 * Self.second / 1024
        #expect(m.nextDeadline == due)
        #expect(m.tick(now: due - 1) == nil)
        #expect(m.tick(now: due) == .timedOut(.progress))
        #expect(M.CloseReason.timedOut(.progress).isTimeout)
    }

    @Test("bytes arriving at the minimum rate or faster push the progress deadline on; the header timer still holds")
    func steadyRequestKept() {
        var m = open()
        _ = m.read(.done, count: 100, requested: 4096, now: at(0))
        _ = m.needMore(.init(input: 100), now: at(0))
        var t: UInt64 = 0
        for _ in 0..<8 {
            t += 1
            #expect(m.tick(now: at(t)) == nil, "on time at \(t) s")
            _ = m.resume(.init(input: 100))
            _ = m.read(.done, count: 2048, requested: 4096, now: at(t))
        }
        #expect(m.nextDeadline == at(10), "the progress deadline is past the header deadline, which now rules")
        #expect(m.tick(now: at(10)) == .timedOut(.header))
    }

    @Test("the rate is off at 0: only the header and body timers apply")
    func rateOff() {
        var t = Self.timeouts
        t.minBytesPerSecond = 0
        var m = M(now: 0, timeouts: t)
        _ = m.helloInspected(.proceed, now: 0)
        _ = m.handshake(.done, now: 0)
        _ = m.read(.done, count: 1, requested: 4096, now: at(1))
        #expect(m.nextDeadline == at(11))
        #expect(m.tick(now: at(10)) == nil)
    }

    @Test("a pipelined request left in the buffer starts its own rate clock when the answer before it is queued")
    func pipelinedClock() {
        var m = open()
        _ = m.read(.done, count: 300, requested: 4096, now: at(5))
        #expect(m.answered(keepAlive: true, .init(input: 120), now: at(6)) == .process)
        #expect(m.requestStart == at(6))
        #expect(m.nextDeadline == at(8) + 120 * Self.second / 1024)
    }

    @Test("handshake: a want-read while OpenSSL holds bytes asks SSL_accept once more at once, then waits for the socket")
    func handshakePending() {
        var m = M(now: 0, timeouts: Self.timeouts)
        _ = m.helloInspected(.proceed, now: 0)
        let held = M.Buffers(tlsPending: true)
        for _ in 0..<M.handshakeRetryLimit {
            #expect(m.handshake(.wantRead, held, now: at(1)) == .handshake, "bytes held: no event will come for them")
        }
        #expect(m.handshake(.wantRead, held, now: at(1)) == .wait(.readable), "still held: wait for the socket, and ask again soon")
        #expect(m.nextDeadline == at(1) + M.handshakeRecheck)
        #expect(m.timerFired(now: at(1) + M.handshakeRecheck - 1) == nil)
        #expect(m.timerFired(now: at(1) + M.handshakeRecheck) == .handshake, "held bytes are asked for again without an event")
        #expect(m.nextDeadline == at(10), "then only the handshake deadline")
        #expect(m.handshake(.wantRead, .init(), now: at(2)) == .wait(.readable))
        #expect(m.nextDeadline == at(10), "nothing held: the socket's event (or the deadline) comes next")
        #expect(m.timerFired(now: at(10)) == .close(.timedOut(.handshake)))
        // Finished with application data already inside OpenSSL: read it now, not on a socket event.
        var d = M(now: 0, timeouts: Self.timeouts)
        _ = d.helloInspected(.proceed, now: 0)
        #expect(d.handshake(.done, held, now: 0) == .read)
    }

    @Test("reading: a want-read while OpenSSL holds bytes reads again at once a few times, then waits for the socket and reads again after the recheck")
    func readPending() {
        var m = open()
        _ = m.read(.done, count: 100, requested: 4096, now: at(1))
        let held = M.Buffers(input: 100, tlsPending: true)
        for _ in 0..<M.handshakeRetryLimit {
            #expect(m.read(.wantRead, count: 0, requested: 4096, held, now: at(1)) == .read)
        }
        #expect(m.read(.wantRead, count: 0, requested: 4096, held, now: at(1)) == .wait(.readable))
        #expect(m.recheckAt == at(1) + M.handshakeRecheck)
        #expect(m.timerFired(now: at(1) + M.handshakeRecheck) == .read)
        #expect(m.read(.wantRead, count: 0, requested: 4096, .init(input: 100), now: at(2)) == .wait(.readable))
        #expect(m.recheckAt == nil, "nothing held: only the socket can bring more")
    }

    @Test("shedding rank: idle first (oldest first), then a request slower than the grace; a fresh request or an answer under way never")
    func shedding() {
        var idle = open(at: 3)
        #expect(idle.sheddingRank(.init(), now: at(50))! == (0, at(3)))
        _ = idle.read(.done, count: 10, requested: 4096, now: at(50))
        #expect(idle.sheddingRank(.init(input: 10), now: at(51)) == nil, "reading for 1 s: at speed")
        #expect(idle.sheddingRank(.init(input: 10), now: at(51), fresh: true)! == (2, at(50)), "last resort, for a lighter peer")
        #expect(idle.sheddingRank(.init(input: 10), now: at(52))! == (1, at(50)), "reading for 2 s: slow")
        #expect(idle.sheddingRank(.init(input: 10, output: 5), now: at(52)) == nil)
        var writing = open()
        _ = writing.read(.done, count: 10, requested: 4096, now: at(1))
        _ = writing.answered(keepAlive: true, .init(output: 100), now: at(1))
        _ = writing.flushed(.wantWrite, .init(output: 100), now: at(1))
        #expect(writing.sheddingRank(.init(output: 100), now: at(60)) == nil)
    }

    final class Item: DeadlineEntry {
        var heapIndex = -1
        var scheduled: UInt64 = 0
        let id: Int
        init(_ id: Int) { self.id = id }
    }

    @Test("the deadline heap gives entries back in time order through schedules, moves and removals (checked against a sorted list)")
    func heap() {
        var generator = SystemRandomNumberGenerator()
        var heap = DeadlineHeap<Item>()
        let items = (0..<500).map(Item.init)
        var expected: [Int: UInt64] = [:]
        for _ in 0..<5_000 {
            let item = items[Int.random(in: 0..<items.count, using: &generator)]
            switch Int.random(in: 0..<3, using: &generator) {
            case 0, 1:
                let time = UInt64.random(in: 0..<10_000, using: &generator)
                heap.schedule(item, at: time)
                expected[item.id] = time
            default:
                heap.remove(item)
                expected[item.id] = nil
            }
        }
        #expect(heap.count == expected.count)
        var popped: [UInt64] = []
        while let item = heap.popDue(now: UInt64.max) {
            #expect(expected[item.id] == item.scheduled)
            #expect(item.heapIndex == -1)
            popped.append(item.scheduled)
        }
        #expect(popped == expected.values.sorted())
        let late = Item(0)
        heap.schedule(late, at: 50)
        #expect(heap.popDue(now: 49) == nil)
        #expect(heap.popDue(now: 50) === late)
    }

    @Test("registration tags: the descriptor and the counter round-trip; a counter never takes the fixed tags' value")
    func tags() {
        let tag = RegistrationTag(fd: 1234, generation: 77)
        #expect(tag.fd == 1234 && tag.generation == 77)
        #expect(RegistrationTag(fd: 1234, generation: 78) != tag, "the same descriptor number, a newer connection: another tag")
        #expect(RegistrationTag.next(after: UInt32.max - 1) == 0)
        #expect(RegistrationTag(fd: Int32.max, generation: UInt32.max - 1) != .listener)
        #expect(RegistrationTag(fd: -1, generation: 0).fd == -1)
    }

    @Test("peer addresses: IPv4 is kept as IPv4-mapped IPv6, so 127.0.0.1 and 127.0.0.2 are different peers")
    func peerAddresses() {
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { raw in
            var v4 = sockaddr_in()
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_addr.s_addr = inet_addr("127.0.0.2")
            raw.storeBytes(of: v4, as: sockaddr_in.self)
        }
        #expect(PeerAddress(storage) == PeerAddress(ipv4: 127, 0, 0, 2))
        #expect(PeerAddress(storage) != PeerAddress(ipv4: 127, 0, 0, 1))
    }
}

extension ConnectionMachine {
    /// Feeds `text` as the whole request so far to the machine's own parser.
    @discardableResult
    mutating func parse(_ text: String) -> HTTPRequestParser.Outcome? {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBufferPointer { try? parse($0.baseAddress!, $0.count) }
    }

    /// A head announcing a body of `length` bytes.
    static func postHead(contentLength length: Int) -> String {
        "POST /validate HTTP/1.1\r\nHost: pxguard\r\nContent-Length: \(length)\r\n\r\n"
    }
}
