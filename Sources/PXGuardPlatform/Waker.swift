import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// A wake-up signal between threads: `signal` from anywhere, `wait(seconds:)` on
/// the worker (a POSIX mutex and condition variable).
public final class Waker: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var signalled = false

    public init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    public func signal() {
        pthread_mutex_lock(mutex)
        signalled = true
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    /// Waits until signalled or `seconds` pass.
    public func wait(seconds: Double) {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let total = Double(ts.tv_nsec) + max(0, seconds) * 1e9
        ts.tv_sec += Int(total / 1e9)
        ts.tv_nsec = Int(total.truncatingRemainder(dividingBy: 1e9))
        pthread_mutex_lock(mutex)
        if !signalled { pthread_cond_timedwait(condition, mutex, &ts) }
        signalled = false
        pthread_mutex_unlock(mutex)
    }
}
