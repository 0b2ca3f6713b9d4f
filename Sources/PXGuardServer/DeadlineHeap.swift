/// Something with a place in a `DeadlineHeap`: the heap keeps its index in it, so an
/// entry is moved or removed in O(log n) without a search.
protocol DeadlineEntry: AnyObject {
    /// Index in the heap's array; -1 when not in a heap.
    var heapIndex: Int { get set }
    /// The time the entry is scheduled for.
    var scheduled: UInt64 { get set }
}

/// The loop's timers (swift-nio's scheduled-task queue, nginx's timer tree): a binary
/// min-heap of connections by their next deadline. The loop waits in `epoll_wait`
/// exactly until the earliest one and visits only the connections that are due; no
/// periodic scan of every connection.
///
/// An entry may be scheduled earlier than its connection's real deadline (deadlines
/// that move later, such as a keep-alive connection's idle timer after each answer,
/// are not re-sorted): when it comes up, the connection's machine says whether it is
/// really due, and if not the loop schedules it again at the right time.
struct DeadlineHeap<Entry: DeadlineEntry> {
    private(set) var entries: [Entry] = []

    var count: Int { entries.count }
    var isEmpty: Bool { entries.isEmpty }
    /// The earliest entry.
    var first: Entry? { entries.first }

    /// Puts `entry` in the heap at `time`, or moves it there.
    mutating func schedule(_ entry: Entry, at time: UInt64) {
        if entry.heapIndex < 0 {
            entry.scheduled = time
            entry.heapIndex = entries.count
            entries.append(entry)
            siftUp(entry.heapIndex)
            return
        }
        let earlier = time < entry.scheduled
        entry.scheduled = time
        if earlier { siftUp(entry.heapIndex) } else { siftDown(entry.heapIndex) }
    }

    /// Takes `entry` out of the heap (a closed connection); nothing when it is not in it.
    mutating func remove(_ entry: Entry) {
        let index = entry.heapIndex
        guard index >= 0, index < entries.count, entries[index] === entry else { return }
        entry.heapIndex = -1
        let last = entries.removeLast()
        guard index < entries.count else { return }
        entries[index] = last
        last.heapIndex = index
        siftDown(index)
        siftUp(last.heapIndex)
    }

    /// Takes out and returns the earliest entry if it is due at `now`.
    mutating func popDue(now: UInt64) -> Entry? {
        guard let top = entries.first, top.scheduled <= now else { return nil }
        remove(top)
        return top
    }

    private mutating func siftUp(_ start: Int) {
        var i = start
        while i > 0 {
            let parent = (i - 1) / 2
            guard entries[i].scheduled < entries[parent].scheduled else { return }
            swapAt(i, parent)
            i = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        while true {
            let left = 2 * i + 1
            guard left < entries.count else { return }
            var smallest = left
            let right = left + 1
            if right < entries.count && entries[right].scheduled < entries[left].scheduled { smallest = right }
            guard entries[smallest].scheduled < entries[i].scheduled else { return }
            swapAt(i, smallest)
            i = smallest
        }
    }

    private mutating func swapAt(_ a: Int, _ b: Int) {
        entries.swapAt(a, b)
        entries[a].heapIndex = a
        entries[b].heapIndex = b
    }
}

/// The epoll data word of a registration (swift-nio's `SelectorRegistrationID`): the
/// descriptor in the low 32 bits, the loop's registration counter in the high 32. An
/// event queued for a connection that was closed in the same turn carries the old
/// counter, so it cannot reach the connection that reuses the descriptor number.
struct RegistrationTag: Equatable {
    let raw: UInt64

    /// The listener's and the wake-up eventfd's tags: counters no connection gets.
    static let listener = RegistrationTag(raw: UInt64.max - 1)
    static let wake = RegistrationTag(raw: UInt64.max)

    init(raw: UInt64) { self.raw = raw }

    init(fd: Int32, generation: UInt32) {
        raw = UInt64(UInt32(bitPattern: fd)) | UInt64(generation) << 32
    }

    var fd: Int32 { Int32(bitPattern: UInt32(truncatingIfNeeded: raw)) }
    var generation: UInt32 { UInt32(truncatingIfNeeded: raw >> 32) }

    /// The counter after `generation`, skipping the one the fixed tags use.
    static func next(after generation: UInt32) -> UInt32 {
        let next = generation &+ 1
        return next == UInt32.max ? 0 : next
    }
}
