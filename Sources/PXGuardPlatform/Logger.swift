import PXGuardBytes
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A structured logger writing one JSON object per line. Library code receives
/// one and never creates its own; tests pass one that records lines in memory.
///
/// Every line is valid JSON and at most `maxLineBytes` long: the message and each
/// field value are cut at `maxFieldBytes` (escaped) with a marker saying how long
/// they were, and fields that no longer fit are dropped and counted, so a request
/// that carries a 128 KiB name costs one short line, not 128 KiB of log.
public struct Logger: Sendable {
    public enum Level: String, Sendable { case debug, info, warn, error }

    /// No line is longer than this, newline included.
    public static let maxLineBytes = 8192
    /// The message and each field value are cut beyond this many (escaped) bytes.
    static let maxFieldBytes = 1024
    /// Keys are names chosen by the code; this only bounds a mistake.
    static let maxKeyBytes = 64

    let sink: @Sendable (String) -> Void
    /// The lowest level written; shared by the copies of this logger, so that a
    /// `logLevel` read from the configuration applies to every holder at once.
    let threshold: LogThreshold
    /// Repeated warnings: one line per message per interval, with a count of the rest.
    let repeats: RepeatLimiter
    /// The queue behind `sink`, when there is one (for its dropped-line count and `flush`).
    public let queue: LogQueue?

    /// A logger that hands each finished line (ending in a newline) to `sink`.
    public init(minimum: Level = .info, repeatInterval: Double = 60, sink: @escaping @Sendable (String) -> Void) {
        self.sink = sink
        threshold = LogThreshold(minimum)
        repeats = RepeatLimiter(interval: repeatInterval)
        queue = nil
    }

    /// A logger that queues each line on `queue`, whose own thread writes it with one
    /// `write(2)`: lines from concurrent threads never interleave, and a stalled reader
    /// costs dropped lines, never a blocked caller.
    public init(minimum: Level = .info, repeatInterval: Double = 60, queue: LogQueue) {
        sink = { queue.enqueue($0) }
        threshold = LogThreshold(minimum)
        repeats = RepeatLimiter(interval: repeatInterval)
        self.queue = queue
    }

    /// A logger writing to `fd` through a queue of its own (see `init(minimum:queue:)`).
    public static func writing(to fd: Int32, minimum: Level = .info) -> Logger {
        Logger(minimum: minimum, queue: LogQueue(fd: fd))
    }

    /// Logs to standard error, through the process's one stderr queue.
    public static let stderr = Logger(queue: .standardError)

    /// The lowest level this logger (and its copies) writes.
    public var minimum: Level { threshold.level }

    /// Changes the lowest level written, for this logger and all its copies.
    public func setMinimum(_ level: Level) { threshold.set(level) }

    /// Lines lost because the queue was full (0 without a queue).
    public var droppedLines: Int { queue?.droppedLines ?? 0 }

    /// Waits up to `seconds` for queued lines to be written (before the process exits).
    public func flush(seconds: Double = 2) { queue?.flush(seconds: seconds) }

    /// Discards everything.
    public static let none = Logger { _ in }

    public func debug(_ message: String, _ fields: [(String, String)] = []) { log(.debug, message, fields) }
    public func info(_ message: String, _ fields: [(String, String)] = []) { log(.info, message, fields) }
    public func warn(_ message: String, _ fields: [(String, String)] = []) { log(.warn, message, fields) }
    public func error(_ message: String, _ fields: [(String, String)] = []) { log(.error, message, fields) }
    public func debug(_ message: String, _ fields: [(String, LogValue)]) { log(.debug, message, fields) }
    public func info(_ message: String, _ fields: [(String, LogValue)]) { log(.info, message, fields) }
    public func warn(_ message: String, _ fields: [(String, LogValue)]) { log(.warn, message, fields) }
    public func error(_ message: String, _ fields: [(String, LogValue)]) { log(.error, message, fields) }

    static let order: [Level] = [.debug, .info, .warn, .error]

    public func log(_ level: Level, _ message: String, _ fields: [(String, String)]) {
        log(level, message, fields.map { ($0.0, LogValue.text($0.1)) })
    }

    /// Logs with typed fields: numbers are written as JSON numbers.
    public func log(_ level: Level, _ message: String, _ fields: [(String, LogValue)]) {
        guard level.rank >= threshold.rank else { return }
        var fields = fields
        if level == .warn {
            guard let suppressed = repeats.admit(message, now: Clock.monotonic().nanoseconds) else { return }
            if suppressed > 0 { fields.append(("repeated", .integer(suppressed))) }
        }
        sink(String(decoding: Self.line(level, message, fields, timestamp: Self.timestamp()), as: UTF8.self))
    }

    /// Whether a line at `level` would be written (to skip building costly fields).
    public func enabled(_ level: Level) -> Bool { level.rank >= threshold.rank }

    /// The bytes of one log line, newline included, within `maxLineBytes`.
    static func line(_ level: Level, _ message: String, _ fields: [(String, LogValue)], timestamp: String) -> [UInt8] {
        // Room kept at the end for `,"droppedFields":N}` and the newline.
        let reserve = 32
        var out: [UInt8] = []
        out.reserveCapacity(256)
        out.append(contentsOf: #"{"ts":""#.utf8)
        out.append(contentsOf: timestamp.utf8)
        out.append(contentsOf: #"","level":""#.utf8)
        out.append(contentsOf: level.rawValue.utf8)
        out.append(contentsOf: #"","msg":"#.utf8)
        appendCapped(message, to: &out, limit: maxFieldBytes)
        var dropped = 0
        for (key, value) in fields {
            // A field is written only when even its longest form fits in the line.
            let room = maxLineBytes - reserve - out.count - (maxKeyBytes + 6)
            guard dropped == 0, room > 64 else {
                dropped += 1
                continue
            }
            out.append(UInt8(ascii: ","))
            appendCapped(key, to: &out, limit: maxKeyBytes)
            out.append(UInt8(ascii: ":"))
            switch value {
            case .text(let text): appendCapped(text, to: &out, limit: min(maxFieldBytes, room))
            case .integer(let n): out.append(contentsOf: String(n).utf8)
            }
        }
        if dropped > 0 {
            out.append(contentsOf: #","droppedFields":"#.utf8)
            out.append(contentsOf: String(dropped).utf8)
        }
        out.append(contentsOf: "}\n".utf8)
        return out
    }

    /// A string cut to `limit` escaped bytes ends in `...[truncated, N bytes]`, N its full length.
    static func appendCapped(_ s: String, to out: inout [UInt8], limit: Int) {
        // An escape is at most six bytes: a short string cannot need cutting.
        if s.utf8.count * 6 <= limit {
            JSONWriter.appendString(s, to: &out)
        } else {
            JSONWriter.appendString(s, to: &out, limit: limit, marker: "...[truncated, \(s.utf8.count) bytes]")
        }
    }

    /// RFC 3339 UTC time with milliseconds.
    static func timestamp() -> String { Clock.rfc3339(Clock.wall(), fractionDigits: 3) }
}

extension Logger.Level {
    /// Position in `debug < info < warn < error`.
    var rank: Int {
        switch self {
        case .debug: return 0
        case .info: return 1
        case .warn: return 2
        case .error: return 3
        }
    }
}

/// The lowest level a logger writes, changeable at run time (one relaxed atomic).
final class LogThreshold: Sendable {
    private let value: Atomic<Int>
    init(_ level: Logger.Level) { value = Atomic(level.rank) }
    var rank: Int { value.load(ordering: .relaxed) }
    var level: Logger.Level { Logger.order[rank] }
    func set(_ level: Logger.Level) { value.store(level.rank, ordering: .relaxed) }
}

/// A log field's value: text is a JSON string, a count or a port a JSON number, so
/// that log pipelines can compare and sum it without parsing strings.
public enum LogValue: Sendable {
    case text(String)
    case integer(Int)
}

