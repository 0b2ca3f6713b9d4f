import Synchronization
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
        #expect(m.needMore(headComplete: false, .init(input: 10), now: at(20)) == .wait(.readable))
        // A trickle: one byte a second keeps arriving; the deadline stays at 25 s.
        for t in 21...24 {
            #expect(m.resume(.init(input: 10)) == .process)
            #expect(m.needMore(headComplete: false, .init(input: 10), now: at(UInt64(t))) == .read)
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
        #expect(m.needMore(headComplete: true, .init(input: 100), now: at(2)) == .wait(.readable))
        #expect(m.state == .readingBody)
        #expect(m.timer == .body)
        // More body bytes do not grant it again.
        _ = m.read(.done, count: 100, requested: 4096, now: at(3))
        _ = m.needMore(headComplete: true, .init(input: 200), now: at(3))
        #expect(m.tick(now: at(35, 999_999_999)) == nil)  // 1 + 5 (head) + 30 (body)
        #expect(m.tick(now: at(36)) == .timedOut(.body))
    }

    @Test("keep-alive answer: back to idle with a fresh idle timer, output flushed first")
    func keepAlive() {
        var m = open()
        _ = m.read(.done, count: 50, requested: 4096, now: at(1))
        #expect(m.keepAlive(requested: true, draining: false))
        #expect(m.answered(keepAlive: true, .init(output: 200), now: at(2)) == .flush)
        #expect(m.state == .idle)
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
            #expect(m.needMore(headComplete: false, .init(input: 1, tlsPending: true), now: 0) == .read)
        }
        _ = m.read(.done, count: 4096, requested: 4096, now: 0)
        #expect(m.needMore(headComplete: false, .init(input: 1, tlsPending: true), now: 0) == .yield)
        #expect(m.resume(.init(input: 1, tlsPending: true)) == .process)
        // After a short read with nothing inside OpenSSL the socket is drained: wait.
        #expect(m.read(.done, count: 10, requested: 4096, now: 0) == .process)
        #expect(m.needMore(headComplete: false, .init(input: 11), now: 0) == .wait(.readable))
        // A short read while OpenSSL still holds records keeps reading.
        #expect(m.resume(.init(input: 11)) == .process)
        #expect(m.read(.done, count: 10, requested: 4096, now: 0) == .process)
        #expect(m.needMore(headComplete: false, .init(input: 21, tlsPending: true), now: 0) == .read)
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
