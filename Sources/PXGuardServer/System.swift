import CLinux
import PXGuardPlatform
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The socket and epoll calls, over `Syscall` (which retries EINTR and turns
/// errno into `IOError`); nothing else in the transport reads errno.
enum Sys {
    @discardableResult
    static func check(_ reason: @autoclosure () -> String, _ call: () -> Int32) throws -> Int32 {
        try Syscall.check(reason(), call)
    }

    static func socket(_ domain: Int32, _ type: Int32) throws -> Int32 {
        Syscall.ignoreBrokenPipe()
        return try Syscall.check("socket") { Glibc.socket(domain, type | Int32(SOCK_CLOEXEC.rawValue), 0) }
    }

    static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) throws {
        var v = value
        try check("setsockopt(\(name))") {
            setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    static func setTimeout(_ fd: Int32, _ name: Int32, seconds: Double) throws {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
        try check("setsockopt(timeout)") { setsockopt(fd, SOL_SOCKET, name, &tv, socklen_t(MemoryLayout<timeval>.size)) }
    }

    static func bind(_ fd: Int32, _ address: SocketAddress) throws {
        _ = try address.withSockAddr { sa, len in try check("bind \(address)") { Glibc.bind(fd, sa, len) } }
    }

    static func connect(_ fd: Int32, _ address: SocketAddress) throws -> IOResult<Void> {
        do {
            _ = try address.withSockAddr { sa, len in try check("connect \(address)") { Glibc.connect(fd, sa, len) } }
            return .processed(())
        } catch let e as IOError where e.errnoCode == EINPROGRESS {
            return .wouldBlock
        }
    }

    static func listen(_ fd: Int32, backlog: Int32) throws {
        try check("listen") { Glibc.listen(fd, backlog) }
    }

    static func accept(_ fd: Int32) throws -> IOResult<Int32> {
        var ignored = sockaddr_storage()
        return try accept(fd, peer: &ignored)
    }

    /// Accepts a connection, filling `peer` with the client's address.
    static func accept(_ fd: Int32, peer: inout sockaddr_storage) throws -> IOResult<Int32> {
        while true {
            do {
                var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let r = try withUnsafeMutablePointer(to: &peer) { storage in
                    try storage.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                        try Syscall.check("accept") { accept4(fd, address, &length, Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)) }
                    }
                }
                return .processed(r)
            } catch let error as IOError {
                switch error.errnoCode {
                case EAGAIN, EWOULDBLOCK: return .wouldBlock
                // A connection that died in the queue: try the next one.
                case ECONNABORTED, EPROTO, EPERM: continue
                // Out of descriptors or memory: the listener stays readable, so the
                // caller must stop polling it for a while instead of spinning.
                case EMFILE, ENFILE, ENOBUFS, ENOMEM: return .exhausted
                default: throw error
                }
            }
        }
    }

    /// Raises the soft descriptor limit to the hard one (servers hold many sockets).
    static func raiseDescriptorLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    static func close(_ fd: Int32) { Syscall.close(fd) }

    static func boundPort(_ fd: Int32) throws -> Int {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try withUnsafeMutablePointer(to: &storage) { p in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                try check("getsockname") { getsockname(fd, sa, &len) }
            }
        }
        if storage.ss_family == sa_family_t(AF_INET6) {
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
        }
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
    }

    static func epollCreate() throws -> Int32 {
        try check("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
    }

    /// Adds, changes or removes `fd`'s registration; `tag` is what its events carry.
    static func epollControl(_ epfd: Int32, _ op: Int32, _ fd: Int32, events: UInt32, tag: UInt64) throws {
        var event = epoll_event()
        event.events = events
        event.data.u64 = tag
        try check("epoll_ctl") { epoll_ctl(epfd, op, fd, &event) }
    }

    /// The number of ready events; a failure (a bad descriptor, not EINTR) throws.
    static func epollWait(_ epfd: Int32, _ events: UnsafeMutablePointer<epoll_event>, _ max: Int32, timeoutMillis: Int32) throws -> Int32 {
        try Syscall.check("epoll_wait") { epoll_wait(epfd, events, max, timeoutMillis) }
    }

    static func eventFD() throws -> Int32 {
        try check("eventfd") { eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC)) }
    }

    /// Wakes the loop waiting on `fd`; a counter already at its maximum is awake anyway.
    static func signalEventFD(_ fd: Int32) {
        var one: UInt64 = 1
        _ = try? Syscall.write(fd, &one, 8)
    }

    static func drainEventFD(_ fd: Int32) {
        var value: UInt64 = 0
        _ = try? Syscall.read(fd, &value, 8)
    }
}

/// A listen or connect address that does not parse.
struct AddressError: Error, CustomStringConvertible, Sendable {
    let description: String
    init(_ description: String) { self.description = description }
}

/// An IPv4 or IPv6 socket address parsed from `HOST:PORT` or `[HOST]:PORT`.
public struct SocketAddress: Sendable, CustomStringConvertible {
    public let host: String
    public let port: Int
    let isIPv6: Bool

    /// Parses a listen or connect address; `localhost` means 127.0.0.1.
    public init(parsing text: String) throws {
        var host: Substring
        var portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw AddressError("address \(text) is not [HOST]:PORT")
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw AddressError("address \(text) is not HOST:PORT")
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        if host == "localhost" { host = "127.0.0.1" }
        if host.isEmpty { host = "0.0.0.0" }
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw AddressError("port in \(text) must be 0-65535")
        }
        self.host = String(host)
        self.port = port
        isIPv6 = host.contains(":")
        var probe = in6_addr()
        let ok = self.host.withCString { inet_pton(isIPv6 ? AF_INET6 : AF_INET, $0, &probe) }
        guard ok == 1 else { throw AddressError("host \(host) is not an IP address") }
    }

    public var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }
    var family: Int32 { isIPv6 ? AF_INET6 : AF_INET }

    func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) throws -> R {
        if isIPv6 {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = UInt16(port).bigEndian
            _ = host.withCString { inet_pton(AF_INET6, $0, &sa.sin6_addr) }
            return try withUnsafePointer(to: &sa) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = UInt16(port).bigEndian
        _ = host.withCString { inet_pton(AF_INET, $0, &sa.sin_addr) }
        return try withUnsafePointer(to: &sa) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }
}

/// A growable byte buffer with a read and a write index, reused across requests:
/// sockets and TLS read into its free tail, parsers read from its filled part.
final class ByteBuffer {
    private(set) var base: UnsafeMutablePointer<UInt8>
    private(set) var capacity: Int
    var readIndex = 0
    var writeIndex = 0
    let initialCapacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        initialCapacity = capacity
        base = .allocate(capacity: capacity)
    }

    deinit { base.deallocate() }

    var readable: Int { writeIndex - readIndex }
    var writable: Int { capacity - writeIndex }
    var readPointer: UnsafeMutablePointer<UInt8> { base + readIndex }
    var writePointer: UnsafeMutablePointer<UInt8> { base + writeIndex }

    /// Makes room for at least `count` more bytes, compacting before growing.
    func reserve(_ count: Int) {
        if writable >= count { return }
        if readIndex > 0 {
            let live = readable
            if live > 0 { memmove(base, base + readIndex, live) }
            readIndex = 0
            writeIndex = live
            if writable >= count { return }
        }
        var newCapacity = capacity
        while newCapacity - writeIndex < count { newCapacity *= 2 }
        let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        grown.update(from: base, count: writeIndex)
        base.deallocate()
        base = grown
        capacity = newCapacity
    }

    func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        reserve(bytes.count)
        UnsafeMutableRawPointer(writePointer).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        writeIndex += bytes.count
    }

    func append(_ bytes: [UInt8]) { bytes.withUnsafeBytes { append($0) } }
    func append(_ text: StaticString) { append(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)) }

    func append(decimal value: Int) {
        var v = value
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { d in
            repeat {
                d[19 - count] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
                count += 1
            } while v > 0
            append(UnsafeRawBufferPointer(rebasing: d[(20 - count)...]))
        }
    }

    /// Marks `count` bytes as consumed; an empty buffer rewinds to the start.
    func consume(_ count: Int) {
        readIndex += count
        if readIndex == writeIndex { readIndex = 0; writeIndex = 0 }
    }

    /// Drops everything and gives back memory above the initial capacity, so an
    /// idle connection that once carried a large body costs little.
    func reset() {
        readIndex = 0
        writeIndex = 0
        if capacity > initialCapacity * 4 {
            base.deallocate()
            base = .allocate(capacity: initialCapacity)
            capacity = initialCapacity
        }
    }
}
