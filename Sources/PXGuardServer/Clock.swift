import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// Wall and monotonic time without Foundation, and RFC 3339 timestamps in the
/// forms Kubernetes writes (`MicroTime`: microseconds, `Z`).
public enum Clock {
    /// Seconds since boot, for deadlines and intervals.
    public static func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Seconds since the Unix epoch.
    public static func wall() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// RFC 3339 UTC with `fractionDigits` digits: 6 is Kubernetes' MicroTime
    /// (`2026-11-25T02:10:32.123456Z`), 3 is the log's.
    public static func rfc3339(_ seconds: Double, fractionDigits: Int = 6) -> String {
        var t = time_t(seconds.rounded(.down))
        var scale = 1
        for _ in 0..<fractionDigits { scale *= 10 }
        let fraction = Int((seconds - Double(t)) * Double(scale))
        var parts = tm()
        gmtime_r(&t, &parts)
        func pad(_ v: Int, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(Int(parts.tm_year) + 1900, 4))-\(pad(Int(parts.tm_mon) + 1, 2))-\(pad(Int(parts.tm_mday), 2))T"
            + "\(pad(Int(parts.tm_hour), 2)):\(pad(Int(parts.tm_min), 2)):\(pad(Int(parts.tm_sec), 2)).\(pad(fraction, fractionDigits))Z"
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` into seconds since the epoch.
    public static func parseRFC3339(_ text: String) -> Double? {
        let b = Array(text.utf8)
        guard b.count >= 20 else { return nil }
        func number(_ from: Int, _ count: Int) -> Int? {
            var v = 0
            for k in from..<(from + count) {
                guard k < b.count, b[k] >= 48, b[k] <= 57 else { return nil }
                v = v * 10 + Int(b[k] - 48)
            }
            return v
        }
        guard let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
            let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2)
        else { return nil }
        var i = 19
        var fraction = 0.0
        if i < b.count && b[i] == UInt8(ascii: ".") {
            i += 1
            var scale = 0.1
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                fraction += Double(b[i] - 48) * scale
                scale /= 10
                i += 1
            }
        }
        var offset = 0
        if i < b.count && (b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-")) {
            guard let oh = number(i + 1, 2), let om = number(i + 4, 2) else { return nil }
            offset = (oh * 3600 + om * 60) * (b[i] == UInt8(ascii: "-") ? -1 : 1)
        } else if i >= b.count || (b[i] != UInt8(ascii: "Z") && b[i] != UInt8(ascii: "z")) {
            return nil
        }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        return Double(timegm(&parts) - offset) + fraction
    }

    /// An environment variable.
    public static func environment(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }

    public static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

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
