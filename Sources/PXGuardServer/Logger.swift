import CLinux
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
        Self.appendJSONString(message, &out)
        for (key, value) in fields {
            out.append(UInt8(ascii: ","))
            Self.appendJSONString(key, &out)
            out.append(UInt8(ascii: ":"))
            Self.appendJSONString(value, &out)
        }
        out.append(contentsOf: "}\n".utf8)
        sink(String(decoding: out, as: UTF8.self))
    }

    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    static func appendJSONString(_ s: String, _ out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for c in s.utf8 {
            switch c {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\")); out.append(c)
            case 0x0A: out.append(contentsOf: "\\n".utf8)
            case 0..<0x20:
                out.append(contentsOf: "\\u00".utf8)
                out.append(hexDigits[Int(c >> 4)])
                out.append(hexDigits[Int(c & 15)])
            default: out.append(c)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// RFC 3339 UTC time with milliseconds.
    static func timestamp() -> String { Clock.rfc3339(Clock.wall(), fractionDigits: 3) }
}

/// Starts a detached POSIX thread running `body`; the server's loops and the
/// background workers are plain threads, not a task pool.
public func spawnThread(name: String, stackSize: Int = 1 << 20, _ body: @escaping @Sendable () -> Void) {
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
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
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
}
