import CLinux
import PXGuardBytes
import PXGuardPlatform
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Entry points for the transport fuzz targets in `fuzz/` (built outside the main
/// product): the chunked-body path of the parser, and the TLS record path of the
/// real event loop.
public enum TransportFuzzHooks {
    /// Feeds `data` as a chunked body (chunk lines, extensions, trailers) after a
    /// fixed head, in irregular slices, with small limits. The parser must finish,
    /// ask for more or refuse, and never let the body or the framing it buffers
    /// pass the limits. Returns the number of complete requests.
    @discardableResult
    public static func chunkedBody(_ data: UnsafeRawBufferPointer) -> Int {
        var limits = HTTPLimits()
        limits.maxBodyBytes = 4096
        limits.maxTrailerBytes = 512
        limits.maxChunkExtensionBytes = 256
        var parser = HTTPRequestParser(limits: limits)
        let buffer = ByteBuffer(capacity: 64)
        let head: StaticString = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        buffer.append(head)
        // Framing the parser may buffer beyond the body before refusing: the
        // allowance for chunk lines, one line in progress, and the trailers.
        let bound = head.utf8CodeUnitCount + limits.maxBodyBytes + (1 << 20) + 1024 + limits.maxTrailerBytes + 2
        var offset = 0
        var complete = 0
        var slice = 1
        while offset < data.count {
            let n = min(slice, data.count - offset)
            buffer.append(UnsafeRawBufferPointer(rebasing: data[offset..<offset + n]))
            offset += n
            slice = slice * 5 % 61 + 1
            do {
                switch try parser.parse(buffer.readPointer, buffer.readable) {
                case .needMore, .sendContinue:
                    precondition(buffer.readable <= bound + n, "buffered \(buffer.readable) bytes without refusing")
                case .complete(let c):
                    precondition(c.consumed <= buffer.readable, "consumed past the input")
                    precondition(c.bodyIsChunked && parser.chunkBody.readable <= limits.maxBodyBytes, "body over the limit")
                    complete += 1
                    return complete
                }
            } catch {
                precondition([400, 413, 431].contains(error.status), "status \(error.status) for a chunked body")
                return complete
            }
        }
        return complete
    }

    /// Sends well-formed requests derived from `data` to a real server over real
    /// TLS, cut into TLS records and TCP segments at places `data` chooses (a
    /// request split over many records, many requests in one record, many records
    /// in one segment). Every request must be answered, in order: a record left
    /// inside OpenSSL would hang here, and the fuzzer reports the timeout.
    /// Returns the number of requests answered.
    @discardableResult
    public static func recordPath(_ data: UnsafeRawBufferPointer) -> Int {
        guard let rig = RecordRig.shared else { return 0 }
        var bytes = Array(data)
        if bytes.isEmpty { bytes = [0] }
        var cursor = 0
        func next() -> Int {
            defer { cursor += 1 }
            return Int(bytes[cursor % bytes.count])
        }
        // The requests and the answers they must get.
        var stream: [UInt8] = []
        var expected: [String] = []
        let count = 1 + next() % 24
        for i in 0..<count {
            switch next() % 3 {
            case 0:
                stream += Array("GET /g\(i) HTTP/1.1\r\nHost: f\r\n\r\n".utf8)
                expected.append("get /g\(i) 0")
            case 1:
                let length = next() * 17
                stream += Array("POST /p\(i) HTTP/1.1\r\nHost: f\r\nContent-Length: \(length)\r\n\r\n".utf8)
                stream += [UInt8](repeating: UInt8(ascii: "b"), count: length)
                expected.append("post /p\(i) \(length)")
            default:
                stream += Array("POST /c\(i) HTTP/1.1\r\nHost: f\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
                var total = 0
                for _ in 0..<(next() % 4) {
                    let size = 1 + next() * 3
                    stream += Array("\(String(size, radix: 16));e=\(next())\r\n".utf8)
                    stream += [UInt8](repeating: UInt8(ascii: "c"), count: size) + [0x0D, 0x0A]
                    total += size
                }
                stream += Array("0\r\n".utf8)
                for t in 0..<(next() % 3) { stream += Array("X-T\(t): v\r\n".utf8) }
                stream += [0x0D, 0x0A]
                expected.append("post /c\(i) \(total)")
            }
        }
        guard let connection = rig.connect() else { return 0 }
        // Records of fuzz-chosen sizes, grouped into corked segments.
        var offset = 0
        var corked = false
        while offset < stream.count {
            let size = min(stream.count - offset, 1 + next() * (next() % 4 == 0 ? 64 : 1))
            let groupStart = next() % 3 == 0
            if groupStart != corked {
                RecordRig.cork(connection.fd, groupStart)
                corked = groupStart
            }
            do { try connection.write(Array(stream[offset..<offset + size])) } catch { preconditionFailure("write failed: \(error)") }
            offset += size
        }
        if corked { RecordRig.cork(connection.fd, false) }
        let client = HTTPClientConnection(connection)
        var answered = 0
        for want in expected {
            // Wait for the answer in 50 ms slices rather than one long blocking read: on the
            // CI VMs a loopback segment this thread sent can sit until its CPU takes an
            // interrupt, and a thread asleep in one long read gives it none (the strand
            // reports: answers went out just before the client's own timeout fired).
            var waiting = pollfd(fd: connection.fd, events: Int16(POLLIN), revents: 0)
            var slices = 0
            while client.reader.buffer.count <= client.reader.position, !connection.session.hasPending,
                poll(&waiting, 1, 50) == 0, slices < 200
            {
                slices += 1
            }
            guard let response = try? client.readResponse(method: "POST") else {
                // Release builds drop a precondition's message: say it on stderr first. What
                // told the cases apart so far: each open connection as the loop last left it
                // (read without a lock: a diagnostic only), when the server last answered, and
                // both ends' TCP queues (tx:rx) as the kernel holds them.
                let t = rig.server.statistics
                let answeredAgo = (Clock.monotonic().nanoseconds &- RecordRig.lastHandled.load(ordering: .relaxed)) / 1_000_000
                var why = "request \(answered + 1) of \(expected.count) was not answered (stranded records?); "
                why += "server: \(t.timeouts) timeouts, \(t.shedConnections) shed, \(t.openConnections) open, last answer \(answeredAgo) ms ago;"
                for loop in rig.server.loops {
                    for c in loop.active {
                        why += " [\(c.state) in=\(c.input?.readable ?? -1) interest=\(c.interest) pending=\(c.session?.hasPending ?? false)"
                        why += " recheck=\(c.awaitsRecheck) ssl=\(c.session?.stateDescription ?? "none")]"
                    }
                }
                why += " tcp{\(RecordRig.queues(port: rig.server.port))}\n"
                _ = why.withCString { Glibc.write(2, $0, strlen($0)) }
                preconditionFailure(why)
            }
            precondition(response.status == 200 && response.bodyText == want, "wanted \(want), got \(response.status) \(response.bodyText)")
            answered += 1
        }
        connection.close()
        return answered
    }
}

/// The server the record-path fuzzer talks to: started once per process.
final class RecordRig: Sendable {
    /// When the handler last answered (a strand's report says whether the server
    /// answered, late or not at all).
    static let lastHandled = Atomic<UInt64>(0)

    /// The established connections to `port` as /proc/net/tcp lists them: local>remote
    /// and tx_queue:rx_queue (bytes not yet acknowledged : bytes not yet read).
    static func queues(port: Int) -> String {
        let hex = String(port, radix: 16, uppercase: true)
        let suffix = ":" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        var lines: [String] = []
        guard let file = fopen("/proc/net/tcp", "r") else { return "" }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 512)
        while fgets(&line, 512, file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let columns = text.split(separator: " ")
            guard columns.count > 4, columns[3] == "01", columns[1].hasSuffix(suffix) || columns[2].hasSuffix(suffix) else { continue }
            lines.append("\(columns[1])>\(columns[2]) q=\(columns[4])")
        }
        return lines.joined(separator: "; ")
    }

    struct Echo: HTTPHandler {
        func handle(_ request: HTTPRequest, _ response: inout HTTPResponse) {
            RecordRig.lastHandled.store(Clock.monotonic().nanoseconds, ordering: .relaxed)
            response.contentType = "text/plain"
            response.body.append(contentsOf: "\(request.method) \(request.path) \(request.body.count)".utf8)
        }
    }

    let server: HTTPServer
    let client: TLSContext
    let address: SocketAddress

    enum RigError: Error { case noTemporaryDirectory }

    static let shared: RecordRig? = try? RecordRig()

    private init() throws {
        var template = Array("/tmp/pxguard-fuzz-tls-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw RigError.noTemporaryDirectory }
        let dir = String(cString: made)
        try CertificateFactory.write(to: dir, service: "fuzz", namespace: "default")
        var configuration = ServerConfiguration(address: try SocketAddress(parsing: "127.0.0.1:0"))
        configuration.limits.workers = 1
        let tls = TLSContextBox(try TLSContext.server(certificateFile: dir + "/tls.crt", keyFile: dir + "/tls.key"))
        server = try HTTPServer(configuration: configuration, tls: tls, handler: Echo(), logger: .none)
        server.start()
        client = try TLSContext.client(caFile: dir + "/ca.crt")
        address = try SocketAddress(parsing: "127.0.0.1:\(server.port)")
        // Both contexts hold what they need in memory: leave no key files behind.
        for name in ["ca.crt", "ca.key", "tls.crt", "tls.key"] { unlink(dir + "/" + name) }
        rmdir(dir)
    }

    func connect() -> TLSClientConnection? {
        // 10 s per read: a client that writes every request before reading any answer can
        // fill both receive windows with tiny segments, and TCP's zero-window probes back off
        // (0.2, 0.4, 0.8, 1.6 s...); answers then come seconds late. A stranded server never
        // answers, so this still catches one (see docs/DESIGN.md, "Bytes OpenSSL has read").
        try? TLSClientConnection(address: address, context: client, serverName: "127.0.0.1", timeout: 10)
    }

    static func cork(_ fd: Int32, _ on: Bool) {
        var value: Int32 = on ? 1 : 0
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_CORK, &value, socklen_t(MemoryLayout<Int32>.size))
    }
}
