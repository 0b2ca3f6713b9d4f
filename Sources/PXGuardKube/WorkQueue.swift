/// The provisioner's queue of namespace names, shaped like client-go's rate-limited
/// work queue: deduplicated in O(1) (a name waiting once is queued once), never
/// handed to two workers at a time (a name added while it is being processed is
/// queued again when done), delayed retries, and a hard bound. A name refused for
/// being over the bound is not lost: the queue remembers that it overflowed and
/// the provisioner answers with a resync from the view, which holds every name.
struct WorkQueue {
    private var ready: [String] = []
    private var head = 0
    private var queued = Set<String>()
    private var processing = Set<String>()
    private var dirty = Set<String>()
    /// Delayed retries as a binary min-heap on the due time.
    private var delayed: [(due: Double, name: String)] = []
    private(set) var attempts: [String: Int] = [:]
    let capacity: Int
    private(set) var overflowed = false

    init(capacity: Int) { self.capacity = capacity }

    var count: Int { queued.count + dirty.count }

    /// Queues `name` unless it is already waiting. False when it was a duplicate
    /// or the queue is full.
    @discardableResult
    mutating func add(_ name: String) -> Bool {
        if processing.contains(name) { return dirty.insert(name).inserted }
        guard !queued.contains(name) else { return false }
        guard queued.count < capacity else {
            overflowed = true
            return false
        }
        queued.insert(name)
        ready.append(name)
        return true
    }

    /// Queues `name` once `due` has passed (a retry after a failure).
    mutating func add(_ name: String, due: Double) {
        guard !queued.contains(name), !processing.contains(name) else {
            if processing.contains(name) { dirty.insert(name) }
            return
        }
        guard queued.count < capacity else {
            overflowed = true
            return
        }
        queued.insert(name)
        delayed.append((due, name))
        var i = delayed.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard delayed[i].due < delayed[parent].due else { break }
            delayed.swapAt(i, parent)
            i = parent
        }
    }

    private mutating func popDelayed() -> String {
        let top = delayed[0].name
        delayed.swapAt(0, delayed.count - 1)
        delayed.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < delayed.count && delayed[l].due < delayed[m].due { m = l }
            if r < delayed.count && delayed[r].due < delayed[m].due { m = r }
            guard m != i else { break }
            delayed.swapAt(i, m)
            i = m
        }
        return top
    }

    /// The next name due at `now`, marked as being processed; or nil and how long
    /// until the next delayed one is due.
    mutating func take(now: Double) -> (String?, Double) {
        while let first = delayed.first, first.due <= now {
            ready.append(popDelayed())
        }
        guard head < ready.count else {
            if head > 0 { ready.removeAll(keepingCapacity: true); head = 0 }
            return (nil, delayed.first.map { $0.due - now } ?? .infinity)
        }
        let name = ready[head]
        head += 1
        if head > 4096 && head * 2 > ready.count {
            ready.removeFirst(head)
            head = 0
        }
        queued.remove(name)
        processing.insert(name)
        return (name, 0)
    }

    /// Ends processing of `name`. With `retryAt` it comes back then (and an add
    /// that arrived meanwhile waits with it, so that `Retry-After` holds);
    /// otherwise one added meanwhile is queued again at once.
    mutating func done(_ name: String, retryAt: Double? = nil) {
        processing.remove(name)
        let wasDirty = dirty.remove(name) != nil
        if let retryAt {
            add(name, due: retryAt)
        } else if wasDirty {
            add(name)
        }
    }

    /// Counts a failed attempt and returns how many there were.
    mutating func failed(_ name: String) -> Int {
        let n = (attempts[name] ?? 0) + 1
        attempts[name] = n
        return n
    }

    mutating func succeeded(_ name: String) { attempts[name] = nil }

    /// True once after names were refused for being over the bound.
    mutating func takeOverflow() -> Bool {
        defer { overflowed = false }
        return overflowed
    }
}
