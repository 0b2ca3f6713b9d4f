import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// A value behind a POSIX mutex. Used instead of `Synchronization.Mutex`, whose
/// futex-based Linux implementation ThreadSanitizer cannot see, so that the TSan
/// run of the suite checks pxguard's real locking. Never on the request path:
/// loops read atomics and take this only when something changed.
public final class Locked<Value>: @unchecked Sendable {
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
