import PXGuardBytes
#if canImport(Glibc)
import Glibc
#endif

/// A structured logger writing one JSON object per line. Library code receives
/// one and never creates its own; tests pass one that records lines in memory.
public struct Logger: Sendable {
    public enum Level: String, Sendable { case debug, info, warn, error }

    let sink: @Sendable (String) -> Void
    let minimum: Level

    /// A logger that hands each finished line to `sink`.
    public init(minimum: Level = .info, sink: @escaping @Sendable (String) -> Void) {
        self.sink = sink
        self.minimum = minimum
    }

    /// Logs to standard error.
    public static let stderr = Logger { line in
        line.withCString { p in
            _ = Glibc.write(2, p, strlen(p))
        }
    }

    /// Discards everything.
    public static let none = Logger { _ in }

    public func debug(_ message: String, _ fields: [(String, String)] = []) { log(.debug, message, fields) }
    public func info(_ message: String, _ fields: [(String, String)] = []) { log(.info, message, fields) }
    public func warn(_ message: String, _ fields: [(String, String)] = []) { log(.warn, message, fields) }
    public func error(_ message: String, _ fields: [(String, String)] = []) { log(.error, message, fields) }

    static let order: [Level] = [.debug, .info, .warn, .error]

    public func log(_ level: Level, _ message: String, _ fields: [(String, String)]) {
        guard Self.order.firstIndex(of: level)! >= Self.order.firstIndex(of: minimum)! else { return }
        var out: [UInt8] = []
        out.append(contentsOf: #"{"ts":""#.utf8)
        out.append(contentsOf: Self.timestamp().utf8)
        out.append(contentsOf: #"","level":""#.utf8)
        out.append(contentsOf: level.rawValue.utf8)
        out.append(contentsOf: #"","msg":"#.utf8)
        JSONWriter.appendString(message, to: &out)
        for (key, value) in fields {
            out.append(UInt8(ascii: ","))
            JSONWriter.appendString(key, to: &out)
            out.append(UInt8(ascii: ":"))
            JSONWriter.appendString(value, to: &out)
        }
        out.append(contentsOf: "}\n".utf8)
        sink(String(decoding: out, as: UTF8.self))
    }

    /// RFC 3339 UTC time with milliseconds.
    static func timestamp() -> String { Clock.rfc3339(Clock.wall(), fractionDigits: 3) }
}

