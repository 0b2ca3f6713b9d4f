public import CLinux
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed system call and the errno it failed with. Only `Syscall` makes one,
/// so `errnoCode` is always what the kernel said, never an invented code.
public struct IOError: Error, CustomStringConvertible, Sendable {
    public let errnoCode: Int32
    public let reason: String
    public var description: String { "\(reason): \(String(cString: strerror(errnoCode)))" }
}

/// The outcome of a non-blocking call: done, or "try again when ready".
public enum IOResult<T> {
    case processed(T)
    case wouldBlock
    /// Out of descriptors or memory: stop accepting for a moment.
    case exhausted
}

/// The system calls everything above uses, each wrapped once: `EINTR` is retried,
/// a failure becomes an `IOError`, and "would block" is a result, not an error.
/// This is the only code that reads `errno`.
public enum Syscall {
    /// Runs `call` until it does not fail with `EINTR`; a negative result throws.
    @discardableResult
    public static func check(_ reason: @autoclosure () -> String, _ call: () -> Int32) throws -> Int32 {
        while true {
            let r = call()
            if r >= 0 { return r }
            let code = errno
            if code == EINTR { continue }
            throw IOError(errnoCode: code, reason: reason())
        }
    }

    /// Like `check` for calls that return `ssize_t`, with `EAGAIN` as `.wouldBlock`.
    static func transfer(_ reason: @autoclosure () -> String, _ call: () -> Int) throws -> IOResult<Int> {
        while true {
            let r = call()
            if r >= 0 { return .processed(r) }
            let code = errno
            switch code {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            default: throw IOError(errnoCode: code, reason: reason())
            }
        }
    }

    /// Opens `path` with `O_CLOEXEC` added.
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0) throws -> Int32 {
        try check("open \(path)") { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    /// Reads up to `count` bytes; `.processed(0)` is end of file.
    public static func read(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) throws -> IOResult<Int> {
        try transfer("read") { Glibc.read(fd, buffer, count) }
    }

    /// Writes up to `count` bytes; may write fewer.
    public static func write(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) throws -> IOResult<Int> {
        try transfer("write") { Glibc.write(fd, buffer, count) }
    }

    /// Writes all of `bytes` to a blocking descriptor.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            switch try write(fd, bytes.baseAddress! + offset, bytes.count - offset) {
            case .processed(let n): offset += n
            // A non-blocking descriptor that is full: wait until it drains.
            case .wouldBlock, .exhausted:
                var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                try check("poll") { Glibc.poll(&p, 1, -1) }
            }
        }
    }

    /// Closes `fd`. `EINTR` is not retried: on Linux the descriptor is gone either way.
    public static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// Ignores SIGPIPE for the whole process, once: a peer that resets while we
    /// write must cost an error code, not the process. Sockets call this when made.
    public static func ignoreBrokenPipe() { _ = brokenPipeIgnored }

    private static let brokenPipeIgnored: Bool = {
        signal(SIGPIPE, SIG_IGN)
        return true
    }()
}
