import Testing
import PXGuardPlatform
@testable import PXGuardKube

@Suite("Provisioner work queue")
struct WorkQueueTests {
    @Test("duplicates are queued once, in arrival order")
    func dedup() {
        var q = WorkQueue(capacity: 10)
        do { let added = q.add("a"); #expect(added) }
        do { let added = q.add("b"); #expect(added) }
        do { let added = q.add("a"); #expect(!added) }
        #expect(q.count == 2)
        do { let taken = q.take(now: 0).0; #expect(taken == "a") }
        do { let taken = q.take(now: 0).0; #expect(taken == "b") }
        do { let taken = q.take(now: 0).0; #expect(taken == nil) }
    }

    @Test("a name is never handed out twice at once: added while processing, it comes back after done")
    func processing() {
        var q = WorkQueue(capacity: 10)
        q.add("a")
        do { let taken = q.take(now: 0).0; #expect(taken == "a") }
        do { let added = q.add("a"); #expect(added) }
        do { let taken = q.take(now: 0).0; #expect(taken == nil) }
        q.done("a")
        do { let taken = q.take(now: 0).0; #expect(taken == "a") }
        q.done("a")
        do { let taken = q.take(now: 0).0; #expect(taken == nil) }
    }

    @Test("bounded: over capacity names are refused and the overflow is reported once")
    func bounded() {
        var q = WorkQueue(capacity: 3)
        for name in ["a", "b", "c"] { let added = q.add(name); #expect(added) }
        do { let added = q.add("d"); #expect(!added) }
        #expect(q.count == 3)
        do { let o = q.takeOverflow(); #expect(o) }
        do { let o = q.takeOverflow(); #expect(!o) }
    }

    @Test("delayed retries come due in time order")
    func delayed() {
        var q = WorkQueue(capacity: 10)
        q.add("late", due: 5)
        q.add("soon", due: 1)
        q.add("mid", due: 3)
        let (none, wait) = q.take(now: 0)
        #expect(none == nil && wait == 1)
        do { let taken = q.take(now: 3.5).0; #expect(taken == "soon") }
        do { let taken = q.take(now: 3.5).0; #expect(taken == "mid") }
        do { let taken = q.take(now: 3.5).0; #expect(taken == nil) }
        do { let taken = q.take(now: 6).0; #expect(taken == "late") }
    }

    @Test("60,000 distinct names and as many duplicates: every add is a hash lookup (the queue stays at 60,000)")
    func many() {
        var q = WorkQueue(capacity: 100_000)
        for i in 0..<60_000 { q.add("ns-\(i)") }
        for i in 0..<60_000 { q.add("ns-\(i)") }
        #expect(q.count == 60_000)
    }
}

@Suite("Provisioner work queue retries")
struct WorkQueueRetryTests {
    @Test("a retry scheduled at done keeps its delay even when the name was added meanwhile (Retry-After holds)")
    func retryKeepsDelay() {
        var q = WorkQueue(capacity: 10)
        q.add("a")
        _ = q.take(now: 0)
        q.add("a")  // an event while the write was failing
        q.done("a", retryAt: 2)
        let early = q.take(now: 1).0
        #expect(early == nil)
        let due = q.take(now: 2).0
        #expect(due == "a")
    }
}
