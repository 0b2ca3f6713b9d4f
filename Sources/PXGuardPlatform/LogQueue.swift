import CLinux
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where finished log lines wait for their writer: a bounded queue drained by its own
/// thread (spdlog's async logger), so a slow or stalled reader of the descriptor never
/// holds up the thread that logged. When the queue is full the line is dropped and
/// counted, never waited for; the writer then says in one line how many were lost.
///
/// The queue's mutex is held only to append or take lines (never across I/O), so a
/// logging thread waits at most for another thread's append or the writer's swap.
public final class LogQueue: @unchecked Sendable {
    /// Lines the queue holds at most.
    public let capacity: Int
    /// Bytes the queued lines hold at most (a full queue of 8 KiB lines is 8 MiB otherwise).
    public let capacityBytes: Int
    private let fd: Int32
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let drained = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    // Guarded by `mutex`.
    private var pending: [String] = []
    private var pendingBytes = 0
    private var droppedSinceReport = 0
    private var writing = false
    private var started = false
    /// Lines dropped because the queue was full, since the process started.
    let dropped = Atomic<Int>(0)

    /// Lines dropped because the queue was full, since the process started (`/metrics`).
    public var droppedLines: Int { dropped.load(ordering: .relaxed) }

    /// A queue in front of `fd`; its writer thread starts with the first line.
    public init(fd: Int32, capacity: Int = 4096, capacityBytes: Int = 1 << 20) {
        self.fd = fd
        self.capacity = capacity
        self.capacityBytes = capacityBytes
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(drained, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    /// Standard error's queue, shared by every logger that writes there.
    public static let standardError = LogQueue(fd: 2)

    /// Queues one finished line (ending in a newline). Returns false when the queue was
    /// full and the line was dropped. Never waits for the descriptor.
    @discardableResult
    public func enqueue(_ line: String) -> Bool {
        let size = line.utf8.count
        pthread_mutex_lock(mutex)
        if !started {
            started = true
            spawnThread(name: "pxguard-log", stackSize: 256 << 10) { [self] in drain() }
        }
        guard pending.count < capacity, pendingBytes + size <= capacityBytes else {
            droppedSinceReport += 1
            pthread_mutex_unlock(mutex)
            dropped.add(1, ordering: .relaxed)
            return false
        }
        pending.append(line)
        pendingBytes += size
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
        return true
    }

    /// Waits up to `seconds` for every queued line to be written (at exit, so the last
    /// lines are not lost). Returns false when the writer is stuck on its descriptor.
    @discardableResult
    public func flush(seconds: Double) -> Bool {
        let deadline = Clock.monotonic().nanoseconds &+ UInt64(max(0, min(seconds, 3600)) * 1e9)
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while started && (!pending.isEmpty || writing || droppedSinceReport > 0) {
            if Clock.monotonic().nanoseconds >= deadline { return false }
            pthread_cond_timedwait(drained, mutex, &ts)
        }
        return true
    }

    /// The writer thread: takes everything queued at once and writes it with the lock released.
    private func drain() {
        var batch: [String] = []
        while true {
            pthread_mutex_lock(mutex)
            writing = false
            if pending.isEmpty && droppedSinceReport == 0 { pthread_cond_broadcast(drained) }
            while pending.isEmpty && droppedSinceReport == 0 { pthread_cond_wait(condition, mutex) }
            swap(&batch, &pending)
            pendingBytes = 0
            let lost = droppedSinceReport
            droppedSinceReport = 0
            writing = true
            pthread_mutex_unlock(mutex)
            for var line in batch {
                // A closed or broken descriptor must not take the server down: the line is lost.
                line.withUTF8 { try? Syscall.writeAll(fd, UnsafeRawBufferPointer($0)) }
            }
            batch.removeAll(keepingCapacity: true)
            if lost > 0 {
                var line = String(decoding: Logger.line(.warn, "log queue full: lines dropped",
                                                        [("dropped", .integer(lost))], timestamp: Logger.timestamp()),
                                  as: UTF8.self)
                line.withUTF8 { try? Syscall.writeAll(fd, UnsafeRawBufferPointer($0)) }
            }
        }
    }
}

/// Suppresses a message repeated within `interval`: the first line of each interval is
/// written, carrying how many copies were suppressed since the last one written (a lease
/// failing every 2 s through an API outage logs once a minute with a count).
public final class RepeatLimiter: Sendable {
    struct Entry {
        var lastWritten: UInt64
        var suppressed: Int
    }
    /// Nanoseconds between two lines of the same message.
    public let interval: UInt64
    /// Distinct messages remembered; past it the memory starts over (messages are chosen by code).
    static let maxKeys = 512
    private let entries = Locked<[String: Entry]>([:])

    /// A limiter letting one line per message through every `interval` seconds.
    public init(interval: Double = 60) { self.interval = UInt64(max(0, interval) * 1e9) }

    /// Whether a line with `key` is written at `now` (monotonic nanoseconds): nil to
    /// suppress it, else the count of copies suppressed before it.
    public func admit(_ key: String, now: UInt64) -> Int? {
        entries.withLock { table -> Int? in
            if var entry = table[key] {
                if now &- entry.lastWritten < interval {
                    entry.suppressed += 1
                    table[key] = entry
                    return nil
                }
                table[key] = Entry(lastWritten: now, suppressed: 0)
                return entry.suppressed
            }
            if table.count >= Self.maxKeys { table.removeAll(keepingCapacity: true) }
            table[key] = Entry(lastWritten: now, suppressed: 0)
            return 0
        }
    }
}

/// At most `perSecond` events per key in each second, taken with atomics only (no lock):
/// the admission handler asks it on the request path before logging a finding.
public final class RateLimiter: Sendable {
    public enum Decision: Equatable, Sendable {
        /// Log it; `suppressed` events of this key were dropped before it.
        case log(suppressed: Int)
        case suppress
    }

    /// One key's window: the second it counts, events in it, events suppressed since the last logged.
    final class Slot: Sendable {
        let window = Atomic<UInt64>(UInt64.max)
        let count = Atomic<Int>(0)
        let suppressed = Atomic<Int>(0)
    }

    private let rate: Atomic<Int>
    private let slots: [Slot]
    private let suppressedCount = Atomic<Int>(0)

    /// A limiter for keys `0..<keys`, each allowed `perSecond` events per second (0: none).
    public init(keys: Int, perSecond: Int) {
        rate = Atomic(perSecond)
        slots = (0..<max(1, keys)).map { _ in Slot() }
    }

    /// Events allowed per key per second.
    public var perSecond: Int { rate.load(ordering: .relaxed) }

    /// Changes the rate (a configuration reload).
    public func setRate(_ perSecond: Int) { rate.store(perSecond, ordering: .relaxed) }

    /// Events suppressed since the start, all keys.
    public var suppressedTotal: Int { suppressedCount.load(ordering: .relaxed) }

    /// Decides for one event of `key` at `now` (monotonic nanoseconds).
    public func admit(_ key: Int, now: UInt64) -> Decision {
        let slot = slots[key % slots.count]
        let second = now / 1_000_000_000
        let window = slot.window.load(ordering: .relaxed)
        if window != second, slot.window.compareExchange(expected: window, desired: second, ordering: .relaxed).exchanged {
            slot.count.store(0, ordering: .relaxed)
        }
        if slot.count.wrappingAdd(1, ordering: .relaxed).newValue <= perSecond {
            return .log(suppressed: slot.suppressed.exchange(0, ordering: .relaxed))
        }
        slot.suppressed.add(1, ordering: .relaxed)
        suppressedCount.add(1, ordering: .relaxed)
        return .suppress
    }
}
