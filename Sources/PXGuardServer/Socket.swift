import PXGuardPlatform
import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// Owns one file descriptor and closes it in `deinit`: moving it is the only way
/// to hand it on, so a descriptor is closed exactly once and never leaked.
struct FileDescriptor: ~Copyable {
    let raw: Int32

    init(_ raw: Int32) { self.raw = raw }

    deinit { Sys.close(raw) }
}

/// What reading bytes to drop came to.
enum DropResult: Equatable {
    case dropped(Int)
    case wouldBlock
    /// End of stream or a reset: nothing more will come.
    case closed
}

/// What the first bytes of a connection say about its ClientHello.
enum HelloInspection: Equatable {
    /// A ClientHello within the size cap, or bytes that are not a handshake record
    /// at all (OpenSSL rejects those cheaply with an alert).
    case proceed
    /// The record and handshake headers, or the rest of the first record, have
    /// not all arrived: wait for more (no TLS state is allocated meanwhile).
    case incomplete
    /// Nothing yet (a spurious wake-up).
    case wouldBlock
    /// A ClientHello announcing more than the cap: refused before OpenSSL allocates it.
    case oversized(Int)
    case closed
}

/// Socket-level calls of the server: errno is read here and turned into results.
enum Socket {
    /// Reads and discards what the peer sends, into `scratch`.
    static func drop(_ fd: Int32, scratch: UnsafeMutableRawBufferPointer) -> DropResult {
        while true {
            let n = Glibc.read(fd, scratch.baseAddress, scratch.count)
            if n > 0 { return .dropped(n) }
            if n == 0 { return .closed }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            default: return .closed
            }
        }
    }

    /// Peeks at the TLS record header and the handshake header after it (9 bytes)
    /// without consuming them, so the announced ClientHello length is checked
    /// before OpenSSL allocates a buffer for the whole message; and asks the kernel
    /// how many bytes are queued, so TLS state is only created once the whole first
    /// record is there (a ClientHello that stops half-way costs no TLS state).
    static func inspectHello(_ fd: Int32, maxHelloBytes: Int) -> HelloInspection {
        var header: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0, 0)
        let n: Int = withUnsafeMutableBytes(of: &header) { buffer in
            while true {
                let r = recv(fd, buffer.baseAddress, 9, Int32(MSG_PEEK | MSG_DONTWAIT))
                if r >= 0 { return r }
                if errno == EINTR { continue }
                return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : 0
            }
        }
        if n < 0 { return .wouldBlock }
        if n == 0 { return .closed }
        var queued: Int32 = 0
        if ioctl(fd, UInt(FIONREAD), &queued) != 0 { queued = Int32(n) }
        return withUnsafeBytes(of: &header) {
            HelloInspection(header: UnsafeRawBufferPointer(rebasing: $0[0..<n]), queued: Int(queued), maxHelloBytes: maxHelloBytes)
        }
    }

    /// Disables lingering on close, so a close after an aborted exchange does not
    /// keep kernel buffers; used when shedding connections.
    static func shutdownWrite(_ fd: Int32) { _ = Glibc.shutdown(fd, Int32(SHUT_WR)) }

    static func setNoDelay(_ fd: Int32) { try? Sys.setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1) }
}

extension HelloInspection {
    /// Judges the first bytes of a connection (pure, for tests and the fuzzer):
    /// `header` is up to 9 peeked bytes, `queued` how many bytes wait in the socket.
    init(header b: UnsafeRawBufferPointer, queued: Int, maxHelloBytes: Int) {
        // Not a handshake record: leave it to OpenSSL, which refuses it without
        // allocating a message buffer.
        guard b.count > 0, b[0] == 0x16 else { self = .proceed; return }
        guard b.count >= 9 else { self = .incomplete; return }
        guard b[5] == 0x01 else { self = .proceed; return }
        let announced = Int(b[6]) << 16 | Int(b[7]) << 8 | Int(b[8])
        if announced > maxHelloBytes { self = .oversized(announced); return }
        // A record longer than TLS allows is OpenSSL's to refuse; otherwise wait
        // until the whole first record has arrived.
        let record = Int(b[3]) << 8 | Int(b[4])
        self = record <= 16 * 1024 + 256 && queued < 5 + record ? .incomplete : .proceed
    }
}

/// Returns memory glibc holds in free lists to the system (after a burst of
/// connections closes, so RSS falls back near its idle figure).
func releaseFreeMemory() { _ = glibcMallocTrim(0) }

/// glibc's `malloc_trim` (declared in <malloc.h>, which the system modules do not import).
@_silgen_name("malloc_trim") private func glibcMallocTrim(_ pad: Int) -> Int32
