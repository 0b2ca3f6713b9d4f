import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// Starts a detached POSIX thread running `body`; for workers that live as long as
/// the process (the log writer). Threads a lifecycle owns use `startThread` and join.
public func spawnThread(name: String, stackSize: Int = 1 << 20, _ body: @escaping @Sendable () -> Void) {
    _ = createThread(name: name, stackSize: stackSize, detached: true, body)
}

/// Starts a POSIX thread running `body` and returns its handle, to be joined on shutdown.
public func startThread(name: String, stackSize: Int = 1 << 20, _ body: @escaping @Sendable () -> Void) -> JoinableThread {
    JoinableThread(createThread(name: name, stackSize: stackSize, detached: false, body))
}

/// A thread that its owner joins (the server's loops, the service's reload and
/// certificate threads): shutdown ends when they have returned, not when a flag says so.
public final class JoinableThread: @unchecked Sendable {
    private let thread: pthread_t
    private let state = Locked<Bool>(false)

    init(_ thread: pthread_t) { self.thread = thread }

    /// Waits until the thread has returned, at most `seconds` when given. Returns false
    /// when it is still running then (it is detached, so it costs nothing once it ends).
    @discardableResult
    public func join(seconds: Double? = nil) -> Bool {
        state.withLock { joined -> Bool in
            if joined { return true }
            joined = true
            guard let seconds else { return pthread_join(thread, nil) == 0 }
            // pthread_timedjoin_np takes a CLOCK_REALTIME deadline.
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            let total = Int(now.tv_nsec) + Int(max(0, min(seconds, 3600)) * 1e9)
            var deadline = timespec(tv_sec: now.tv_sec + total / 1_000_000_000, tv_nsec: total % 1_000_000_000)
            if pthread_timedjoin_np(thread, nil, &deadline) == 0 { return true }
            pthread_detach(thread)
            return false
        }
    }
}

private func createThread(name: String, stackSize: Int, detached: Bool, _ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Box: @unchecked Sendable {
        let body: @Sendable () -> Void
        let name: String
        init(_ name: String, _ body: @escaping @Sendable () -> Void) {
            self.name = String(name.prefix(15))
            self.body = body
        }
    }
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    pthread_attr_setstacksize(&attributes, stackSize)
    pthread_attr_setdetachstate(&attributes, Int32(detached ? PTHREAD_CREATE_DETACHED : PTHREAD_CREATE_JOINABLE))
    let box = Unmanaged.passRetained(Box(name, body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, &attributes, { raw in
        let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
        _ = box.name.withCString { pxg_set_thread_name($0) }
        box.body()
        return nil
    }, box)
    pthread_attr_destroy(&attributes)
    if rc != 0 {
        Unmanaged<Box>.fromOpaque(box).release()
        fatalError("pthread_create failed: \(rc)")
    }
    return thread
}
