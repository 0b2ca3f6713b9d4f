import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// A wake-up signal between threads: `signal` from anywhere, `wait(seconds:)` on
/// the worker (a POSIX mutex and condition variable). Timeouts run on the monotonic
/// clock, so setting the wall clock neither shortens nor stretches a wait.
public final class Waker: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var signalled = false

    public init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
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
        let deadline = Clock.monotonic().nanoseconds &+ UInt64(max(0, min(seconds, 1e9)) * 1e9)
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        pthread_mutex_lock(mutex)
        if !signalled { pthread_cond_timedwait(condition, mutex, &ts) }
        signalled = false
        pthread_mutex_unlock(mutex)
    }
}
