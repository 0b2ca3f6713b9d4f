import PXGuardPlatform
import PXGuardBytes

/// Hard limits of the HTTP/1.1 parser. A limit hit is a status code and a closed
/// connection, never a crash.
public struct HTTPLimits: Sendable {
    var maxRequestLineBytes = 8 * 1024
    var maxHeaderBytes = 16 * 1024
    var maxHeaderCount = 100
    public var maxBodyBytes = 8 << 20
    /// All chunk extensions of one request together (they are ignored, but sit in
    /// the input buffer until the request completes).
    var maxChunkExtensionBytes = 4 * 1024
    /// All trailer fields of one chunked request together.
    var maxTrailerBytes = 16 * 1024
    public init() {}
}

/// Request methods the server distinguishes; anything else is `.other`.
public enum HTTPMethod: Sendable {
    case get, head, post, put, delete, patch, options, other
}

/// What the parser knows about a request head. Offsets are relative to the
/// start of the request in the input buffer, so they survive buffer compaction.
struct RequestHead {
    var method = HTTPMethod.other
    var targetStart = 0
    var targetEnd = 0
    var minorVersion = 1
    var contentLength: Int?
    var chunked = false
    var connectionClose = false
    var connectionKeepAlive = false
    var expectContinue = false
    var contentTypeStart = 0
    var contentTypeEnd = 0
    var headLength = 0

    /// Whether the connection stays open after this request.
    var keepAlive: Bool { minorVersion >= 1 ? !connectionClose : connectionKeepAlive && !connectionClose }
}

/// A request the server could not parse: the status to answer before closing.
struct HTTPParseError: Error {
    let status: Int
    let message: String
}

/// The incremental HTTP/1.1 request parser: a state machine over the bytes in a
/// connection's input buffer. It never copies a Content-Length body; chunked
/// bodies are decoded into a side buffer.
struct HTTPRequestParser {
    enum State {
        /// Looking for the end of the head; `scanned` bytes were already searched.
        case head(scanned: Int)
        /// Head parsed; waiting for `head.contentLength` body bytes after it.
        case body(RequestHead)
        /// Head parsed; decoding chunks. `cursor` is where the next chunk line starts
        /// (relative to the request start).
        case chunkSize(RequestHead, cursor: Int)
        case chunkData(RequestHead, cursor: Int, remaining: Int)
        case trailers(RequestHead, cursor: Int)
    }

    /// A complete request: its head, and where its body is.
    struct Complete {
        var head: RequestHead
        /// Total bytes of this request in the input buffer (head, body, framing).
        var consumed: Int
        /// True when the body is in `chunkBody` rather than after the head.
        var bodyIsChunked: Bool
    }

    enum Outcome {
        case needMore
        /// The client sent `Expect: 100-continue` and waits before sending the body.
        case sendContinue
        case complete(Complete)
    }

    var state = State.head(scanned: 0)
    let limits: HTTPLimits
    /// Decoded chunked body of the current request.
    /// Starts tiny: most requests carry a Content-Length body, and an idle
    /// connection should not hold a chunk buffer.
    let chunkBody = ByteBuffer(capacity: 16)
    private var continueSent = false
    /// Chunk extension bytes seen in the current request.
    private var extensionBytes = 0
    /// Where the trailer section of the current request starts.
    private var trailerStart = 0

    init(limits: HTTPLimits) { self.limits = limits }

    /// Called after a complete request was handled, to parse the next one.
    mutating func reset() {
        state = .head(scanned: 0)
        continueSent = false
        extensionBytes = 0
        if chunkBody.readable > 0 || chunkBody.capacity > 4096 { chunkBody.reset() }
    }

    /// True once the head of the current request has been parsed.
    var headComplete: Bool {
        if case .head = state { return false }
        return true
    }

    /// Bytes of the current request (head and Content-Length body) once its head
    /// is parsed, so the connection can size its buffer exactly; nil otherwise.
    var expectedBytes: Int? {
        if case .body(let head) = state { return head.headLength + (head.contentLength ?? 0) }
        return nil
    }

    /// True while part of a request has arrived (the header timer runs).
    var inRequest: Bool {
        if case .head(let scanned) = state { return scanned > 0 }
        return true
    }

    /// Advances over the bytes at `p` (the request start) of which `n` are available.
    mutating func parse(_ p: UnsafePointer<UInt8>, _ n: Int) throws(HTTPParseError) -> Outcome {
        while true {
            switch state {
            case .head(let scanned):
                guard let headLength = Self.findHeadEnd(p, n, from: scanned) else {
                    try checkIncompleteHead(p, n)
                    state = .head(scanned: n)
                    return .needMore
                }
                if headLength > limits.maxHeaderBytes {
                    throw HTTPParseError(status: 431, message: "request headers larger than \(limits.maxHeaderBytes) bytes")
                }
                var head = try Self.parseHead(p, headLength, limits)
                head.headLength = headLength
                if head.chunked {
                    state = .chunkSize(head, cursor: headLength)
                } else {
                    let length = head.contentLength ?? 0
                    if length > limits.maxBodyBytes {
                        throw HTTPParseError(status: 413, message: "request body of \(length) bytes exceeds the limit of \(limits.maxBodyBytes) bytes")
                    }
                    state = .body(head)
                }
                if head.expectContinue && !continueSent && n == headLength {
                    continueSent = true
                    return .sendContinue
                }
            case .body(let head):
                let total = head.headLength + (head.contentLength ?? 0)
                guard n >= total else { return .needMore }
                return .complete(Complete(head: head, consumed: total, bodyIsChunked: false))
            case .chunkSize(let head, let cursor):
                guard let lineEnd = Self.findCRLF(p, n, from: cursor, limit: 1024) else {
                    if n - cursor > 1024 { throw HTTPParseError(status: 400, message: "chunk size line too long") }
                    if n - head.headLength > limits.maxBodyBytes + (1 << 20) {
                        throw HTTPParseError(status: 413, message: "chunked request body exceeds the limit")
                    }
                    return .needMore
                }
                let size = try Self.parseChunkSize(p, cursor, lineEnd)
                var semicolon = cursor
                while semicolon < lineEnd && p[semicolon] != UInt8(ascii: ";") { semicolon += 1 }
                extensionBytes += lineEnd - semicolon
                if extensionBytes > limits.maxChunkExtensionBytes {
                    throw HTTPParseError(status: 413, message: "chunk extensions exceed \(limits.maxChunkExtensionBytes) bytes in total")
                }
                let next = lineEnd + 2
                if size == 0 {
                    trailerStart = next
                    state = .trailers(head, cursor: next)
                } else {
                    if chunkBody.readable + size > limits.maxBodyBytes {
                        throw HTTPParseError(status: 413, message: "chunked request body exceeds the limit of \(limits.maxBodyBytes) bytes")
                    }
                    state = .chunkData(head, cursor: next, remaining: size)
                }
            case .chunkData(let head, let cursor, let remaining):
                guard n >= cursor + remaining + 2 else {
                    if n - head.headLength > limits.maxBodyBytes + (1 << 20) {
                        throw HTTPParseError(status: 413, message: "chunked request body exceeds the limit")
                    }
                    return .needMore
                }
                guard p[cursor + remaining] == 0x0D, p[cursor + remaining + 1] == 0x0A else {
                    throw HTTPParseError(status: 400, message: "chunk data is not followed by CRLF")
                }
                chunkBody.append(UnsafeRawBufferPointer(start: p + cursor, count: remaining))
                state = .chunkSize(head, cursor: cursor + remaining + 2)
            case .trailers(let head, let cursor):
                let found = Self.findCRLF(p, n, from: cursor, limit: limits.maxTrailerBytes)
                if (found ?? n) - trailerStart > limits.maxTrailerBytes {
                    throw HTTPParseError(status: 413, message: "trailers exceed \(limits.maxTrailerBytes) bytes in total")
                }
                guard let lineEnd = found else { return .needMore }
                if lineEnd == cursor {
                    return .complete(Complete(head: head, consumed: cursor + 2, bodyIsChunked: true))
                }
                state = .trailers(head, cursor: lineEnd + 2)
            }
        }
    }

    /// Fails early when an incomplete head is already over a limit.
    private func checkIncompleteHead(_ p: UnsafePointer<UInt8>, _ n: Int) throws(HTTPParseError) {
        if Self.findCRLF(p, n, from: 0, limit: limits.maxRequestLineBytes) == nil && n > limits.maxRequestLineBytes {
            throw HTTPParseError(status: 414, message: "request line longer than \(limits.maxRequestLineBytes) bytes")
        }
        if n > limits.maxHeaderBytes {
            throw HTTPParseError(status: 431, message: "request headers larger than \(limits.maxHeaderBytes) bytes")
        }
    }

    static func findHeadEnd(_ p: UnsafePointer<UInt8>, _ n: Int, from scanned: Int) -> Int? {
        var i = max(0, scanned - 3)
        while i + 3 < n {
            if p[i + 3] != 0x0A { i += p[i + 3] == 0x0D ? 1 : 4; continue }
            if p[i] == 0x0D && p[i + 1] == 0x0A && p[i + 2] == 0x0D { return i + 4 }
            i += 1
        }
        return nil
    }

    static func findCRLF(_ p: UnsafePointer<UInt8>, _ n: Int, from start: Int, limit: Int) -> Int? {
        var i = start
        let end = min(n - 1, start + limit)
        // Eight bytes at a time to the next CR (the lowest flagged byte of the SWAR
        // test is always a true hit), then byte by byte.
        while i + 8 <= end {
            let x = UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self) ^ (SWAR.ones &* 0x0D)
            let hit = (x &- SWAR.ones) & ~x & SWAR.high
            if hit == 0 { i += 8; continue }
            i += hit.trailingZeroBitCount >> 3
            if p[i + 1] == 0x0A { return i }
            i += 1
        }
        while i < end {
            if p[i] == 0x0D && p[i + 1] == 0x0A { return i }
            i += 1
        }
        return nil
    }

    /// The first byte in `p[start..<end]` that a header value cannot hold (a control
    /// character other than tab, or DEL), eight bytes at a time.
    static func firstForbiddenInValue(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> Int? {
        var i = start
        while i + 8 <= end {
            let w = UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)
            let del = w ^ (SWAR.ones &* 0x7F)
            let hit = (((w &- SWAR.ones &* 0x20) & ~w) | ((del &- SWAR.ones) & ~del)) & SWAR.high
            if hit == 0 { i += 8; continue }
            i += hit.trailingZeroBitCount >> 3
            break
        }
        while i < end {
            if (p[i] < 0x20 && p[i] != 0x09) || p[i] == 0x7F { return i }
            i += 1
        }
        return nil
    }

    static func parseChunkSize(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int) throws(HTTPParseError) -> Int {
        var size = 0
        var i = start
        var digits = 0
        while i < end {
            let c = p[i]
            let v: Int
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = Int(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = Int(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): v = Int(c - UInt8(ascii: "A") + 10)
            case UInt8(ascii: ";"): i = end; continue  // chunk extensions are ignored
            default: throw HTTPParseError(status: 400, message: "invalid chunk size")
            }
            digits += 1
            if digits > 15 { throw HTTPParseError(status: 400, message: "chunk size too large") }
            size = size * 16 + v
            i += 1
        }
        if digits == 0 { throw HTTPParseError(status: 400, message: "invalid chunk size") }
        return size
    }

    /// RFC 9110 `tchar`: letters, digits and ``!#$%&'*+-.^_`|~``, as two 64-bit
    /// masks (bytes 0–63 and 64–127) so a check is one shift and one test.
    @inline(__always) static func isToken(_ c: UInt8) -> Bool {
        let low: UInt64 = 0x03FF_6CFA_0000_0000  // ! # $ % & ' * + - . 0-9
        let high: UInt64 = 0x57FF_FFFF_C7FF_FFFE  // A-Z ^ _ ` a-z | ~
        switch c {
        case 0..<64: return (low >> UInt64(c)) & 1 != 0
        case 64..<128: return (high >> UInt64(c - 64)) & 1 != 0
        default: return false
        }
    }

    /// ASCII case-insensitive comparison of `p[start..<end]` with a lowercase name.
    static func equalsLower(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int, _ lower: StaticString) -> Bool {
        guard end - start == lower.utf8CodeUnitCount else { return false }
        let l = lower.utf8Start
        for k in 0..<(end - start) where p[start + k] | 0x20 != l[k] { return false }
        return true
    }

    static func parseHead(_ p: UnsafePointer<UInt8>, _ length: Int, _ limits: HTTPLimits) throws(HTTPParseError) -> RequestHead {
        var head = RequestHead()
        // Request line: METHOD SP target SP HTTP/1.x CRLF
        guard let lineEnd = findCRLF(p, length, from: 0, limit: limits.maxRequestLineBytes) else {
            throw HTTPParseError(status: 414, message: "request line longer than \(limits.maxRequestLineBytes) bytes")
        }
        var i = 0
        while i < lineEnd && p[i] != 0x20 {
            guard isToken(p[i]) else { throw HTTPParseError(status: 400, message: "malformed request line") }
            i += 1
        }
        guard i > 0, i < lineEnd else { throw HTTPParseError(status: 400, message: "malformed request line") }
        head.method = method(p, 0, i)
        i += 1
        head.targetStart = i
        while i < lineEnd && p[i] != 0x20 {
            guard p[i] > 0x20 && p[i] != 0x7F else { throw HTTPParseError(status: 400, message: "malformed request target") }
            i += 1
        }
        head.targetEnd = i
        guard head.targetEnd > head.targetStart, i < lineEnd else {
            throw HTTPParseError(status: 400, message: "malformed request line")
        }
        i += 1
        guard lineEnd - i == 8 else {
            throw HTTPParseError(status: 400, message: "malformed HTTP version")
        }
        guard p[i] == UInt8(ascii: "H"), p[i + 1] == UInt8(ascii: "T"), p[i + 2] == UInt8(ascii: "T"),
            p[i + 3] == UInt8(ascii: "P"), p[i + 4] == UInt8(ascii: "/"), p[i + 6] == UInt8(ascii: ".")
        else { throw HTTPParseError(status: 400, message: "malformed HTTP version") }
        guard p[i + 5] == UInt8(ascii: "1"), p[i + 7] == UInt8(ascii: "0") || p[i + 7] == UInt8(ascii: "1") else {
            throw HTTPParseError(status: 505, message: "only HTTP/1.0 and HTTP/1.1 are supported")
        }
        head.minorVersion = Int(p[i + 7] - UInt8(ascii: "0"))

        // Header fields.
        var lineStart = lineEnd + 2
        var count = 0
        var sawTransferEncoding = false
        while lineStart < length - 2 {
            guard let end = findCRLF(p, length, from: lineStart, limit: length) else { break }
            count += 1
            if count > limits.maxHeaderCount {
                throw HTTPParseError(status: 431, message: "more than \(limits.maxHeaderCount) header fields")
            }
            var colon = lineStart
            while colon < end && p[colon] != UInt8(ascii: ":") {
                // Whitespace before the colon or an obs-fold line are smuggling vectors.
                guard isToken(p[colon]) else { throw HTTPParseError(status: 400, message: "malformed header field name") }
                colon += 1
            }
            guard colon > lineStart, colon < end else { throw HTTPParseError(status: 400, message: "malformed header field") }
            var vStart = colon + 1
            var vEnd = end
            while vStart < vEnd && (p[vStart] == 0x20 || p[vStart] == 0x09) { vStart += 1 }
            while vEnd > vStart && (p[vEnd - 1] == 0x20 || p[vEnd - 1] == 0x09) { vEnd -= 1 }
            if firstForbiddenInValue(p, vStart, vEnd) != nil {
                throw HTTPParseError(status: 400, message: "control character in header value")
            }
            switch colon - lineStart {
            case 14 where equalsLower(p, lineStart, colon, "content-length"):
                var value = 0
                guard vEnd > vStart, vEnd - vStart <= 15 else { throw HTTPParseError(status: 400, message: "invalid Content-Length") }
                for k in vStart..<vEnd {
                    guard p[k] >= UInt8(ascii: "0") && p[k] <= UInt8(ascii: "9") else {
                        throw HTTPParseError(status: 400, message: "invalid Content-Length")
                    }
                    value = value * 10 + Int(p[k] - UInt8(ascii: "0"))
                }
                if let previous = head.contentLength, previous != value {
                    throw HTTPParseError(status: 400, message: "conflicting Content-Length headers")
                }
                head.contentLength = value
            case 17 where equalsLower(p, lineStart, colon, "transfer-encoding"):
                guard !sawTransferEncoding, equalsLower(p, vStart, vEnd, "chunked") else {
                    throw HTTPParseError(status: 501, message: "only the chunked transfer coding is supported")
                }
                sawTransferEncoding = true
                head.chunked = true
            case 10 where equalsLower(p, lineStart, colon, "connection"):
                var t = vStart
                while t < vEnd {
                    var e = t
                    while e < vEnd && p[e] != UInt8(ascii: ",") { e += 1 }
                    var s = t
                    var f = e
                    while s < f && p[s] == 0x20 { s += 1 }
                    while f > s && p[f - 1] == 0x20 { f -= 1 }
                    if equalsLower(p, s, f, "close") { head.connectionClose = true }
                    if equalsLower(p, s, f, "keep-alive") { head.connectionKeepAlive = true }
                    t = e + 1
                }
            case 12 where equalsLower(p, lineStart, colon, "content-type"):
                head.contentTypeStart = vStart
                head.contentTypeEnd = vEnd
            case 6 where equalsLower(p, lineStart, colon, "expect"):
                head.expectContinue = equalsLower(p, vStart, vEnd, "100-continue")
            default:
                break
            }
            lineStart = end + 2
        }
        if head.chunked && head.contentLength != nil {
            throw HTTPParseError(status: 400, message: "both Content-Length and Transfer-Encoding are present")
        }
        return head
    }

    static func method(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> HTTPMethod {
        func eq(_ s: StaticString) -> Bool {
            end - start == s.utf8CodeUnitCount && Bytes.equal(p + start, s.utf8Start, end - start)
        }
        if eq("POST") { return .post }
        if eq("GET") { return .get }
        if eq("HEAD") { return .head }
        if eq("PUT") { return .put }
        if eq("DELETE") { return .delete }
        if eq("PATCH") { return .patch }
        if eq("OPTIONS") { return .options }
        return .other
    }
}

/// Constants of the eight-bytes-at-a-time ("SIMD within a register") scans.
enum SWAR {
    static let ones: UInt64 = 0x0101_0101_0101_0101
    static let high: UInt64 = 0x8080_8080_8080_8080
}
