public import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A value behind a POSIX mutex. Used instead of `Synchronization.Mutex`, whose
/// futex-based Linux implementation ThreadSanitizer cannot see, so that the TSan
/// run of the suite checks pxguard's real locking. Never on the request path:
/// loops read atomics and take this only when something changed.
public final class Locked<Value> {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @discardableResult
    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}

// The mutex makes access exclusive; the value must be safe to hand between threads.
extension Locked: @unchecked Sendable where Value: Sendable {}

/// The one mutable thing shared with the loops (the TLS context, the admission
/// policy), swapped whole on reload. Readers compare a generation counter (one
/// relaxed atomic load) and only take the lock when it moved.
public final class ReloadBox<Value: Sendable>: Sendable {
    private let current: Locked<Value>
    public let generation = Atomic<Int>(0)

    public init(_ value: Value) { current = Locked(value) }

    public func swap(_ value: Value) {
        current.withLock { $0 = value }
        generation.add(1, ordering: .releasing)
    }

    public var value: Value { current.withLock { $0 } }
}
