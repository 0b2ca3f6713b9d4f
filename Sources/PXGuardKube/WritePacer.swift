public import PXGuardPlatform
public import Synchronization

/// Paces the provisioner's writes to `provisioning.writesPerSecond` across all its
/// workers: each write takes the next free slot on a shared schedule (a token
/// bucket with a burst of one second's worth), so that a configuration change that
/// rewrites every guard policy never floods the API server. Waits sleep the calling
/// worker only.
final class WritePacer: Sendable {
    /// Next free slot (monotonic seconds) and the rate in force.
    let schedule = Locked<(next: Double, rate: Int)>((0, 50))
    /// Writes that had to wait for their slot.
    let paced = Atomic<Int>(0)
    let now: @Sendable () -> Double

    init(rate: Int, now: @escaping @Sendable () -> Double = { Clock.monotonic().seconds }) {
        self.now = now
        schedule.withLock { $0.rate = max(1, rate) }
    }

    /// A configuration reload may change the rate.
    func setRate(_ rate: Int) { schedule.withLock { $0.rate = max(1, rate) } }

    /// Reserves the next slot; returns how long the caller must wait for it (0: go).
    func reserve() -> Double {
        let t = now()
        return schedule.withLock { s in
            let interval = 1 / Double(s.rate)
            // Idle time earns at most one second of burst.
            let slot = max(s.next, t - 1 + interval)
            s.next = slot + interval
            return max(0, slot - t)
        }
    }

    /// Waits for the next slot (true), or returns false at once when `stopped` says so.
    func acquire(waker: Waker, stopped: () -> Bool) -> Bool {
        var wait = reserve()
        if wait > 0 { paced.add(1, ordering: .relaxed) }
        let deadline = now() + wait
        while wait > 0 {
            if stopped() { return false }
            waker.wait(seconds: min(wait, 0.2))
            wait = deadline - now()
        }
        return true
    }
}
