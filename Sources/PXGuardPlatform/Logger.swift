import PXGuardBytes
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
    let minimum: Level

    /// A logger that hands each finished line (ending in a newline) to `sink`.
    public init(minimum: Level = .info, sink: @escaping @Sendable (String) -> Void) {
        self.sink = sink
        self.minimum = minimum
    }

    /// A logger that writes each line to `fd` with one `write(2)`, under a lock that
    /// every such logger shares, so lines from concurrent threads never interleave
    /// (a pipe only guarantees that for writes up to 4 KiB).
    public static func writing(to fd: Int32, minimum: Level = .info) -> Logger {
        Logger(minimum: minimum) { line in
            var line = line
            writeLock.withLock { written in
                written &+= 1
                line.withUTF8 { bytes in
                    // A closed or full stderr must not take the server down: the line is lost.
                    try? Syscall.writeAll(fd, UnsafeRawBufferPointer(bytes))
                }
            }
        }
    }

    /// Lines written through it. The count gives the lock a value with storage: ThreadSanitizer
    /// reports the exclusive access to a zero-sized `Void` as a race between its holders.
    private static let writeLock = Locked<Int>(0)

    /// Logs to standard error.
    public static let stderr = Logger.writing(to: 2)

    /// Discards everything.
    public static let none = Logger { _ in }

    public func debug(_ message: String, _ fields: [(String, String)] = []) { log(.debug, message, fields) }
    public func info(_ message: String, _ fields: [(String, String)] = []) { log(.info, message, fields) }
    public func warn(_ message: String, _ fields: [(String, String)] = []) { log(.warn, message, fields) }
    public func error(_ message: String, _ fields: [(String, String)] = []) { log(.error, message, fields) }
    public func info(_ message: String, _ fields: [(String, LogValue)]) { log(.info, message, fields) }
    public func warn(_ message: String, _ fields: [(String, LogValue)]) { log(.warn, message, fields) }
    public func error(_ message: String, _ fields: [(String, LogValue)]) { log(.error, message, fields) }

    static let order: [Level] = [.debug, .info, .warn, .error]

    public func log(_ level: Level, _ message: String, _ fields: [(String, String)]) {
        log(level, message, fields.map { ($0.0, LogValue.text($0.1)) })
    }

    /// Logs with typed fields: numbers are written as JSON numbers.
    public func log(_ level: Level, _ message: String, _ fields: [(String, LogValue)]) {
        guard Self.order.firstIndex(of: level)! >= Self.order.firstIndex(of: minimum)! else { return }
        sink(String(decoding: Self.line(level, message, fields, timestamp: Self.timestamp()), as: UTF8.self))
    }

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

/// A log field's value: text is a JSON string, a count or a port a JSON number, so
/// that log pipelines can compare and sum it without parsing strings.
public enum LogValue: Sendable {
    case text(String)
    case integer(Int)
}

