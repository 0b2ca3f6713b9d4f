import Testing
@testable import PXGuardPlatform
@testable import PXGuardServer

@Suite("HTTP/1.1 request parser")
struct HTTPParserTests {
    func parse(_ text: String, limits: HTTPLimits = HTTPLimits()) -> Result<HTTPRequestParser.Outcome, HTTPParseError> {
        var parser = HTTPRequestParser(limits: limits)
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBufferPointer { p in
            Result { () throws(HTTPParseError) in try parser.parse(p.baseAddress!, p.count) }
        }
    }

    func status(_ text: String, limits: HTTPLimits = HTTPLimits()) -> Int? {
        if case .failure(let e) = parse(text, limits: limits) { return e.status }
        return nil
    }

    @Test("a complete request with a Content-Length body")
    func complete() throws {
        let r = parse("POST /validate?timeout=10s HTTP/1.1\r\nHost: a\r\ncontent-length: 2\r\nContent-Type: application/json\r\n\r\n{}")
        guard case .success(.complete(let c)) = r else { Issue.record("\(r)"); return }
        #expect(c.head.method == .post)
        #expect(c.head.contentLength == 2)
        #expect(c.head.keepAlive)
        #expect(c.consumed == 101)
    }

    @Test("partial heads and bodies ask for more")
    func partial() {
        if case .success(.needMore) = parse("POST / HTTP/1.1\r\nHost: a\r\n") {} else { Issue.record("head") }
        if case .success(.needMore) = parse("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab") {} else { Issue.record("body") }
    }

    @Test("HTTP/1.0 closes unless keep-alive is asked for; Connection: close closes 1.1")
    func connection() {
        if case .success(.complete(let c)) = parse("GET / HTTP/1.0\r\n\r\n") { #expect(!c.head.keepAlive) }
        if case .success(.complete(let c)) = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n") { #expect(c.head.keepAlive) }
        if case .success(.complete(let c)) = parse("GET / HTTP/1.1\r\nConnection: te, close\r\n\r\n") { #expect(!c.head.keepAlive) }
    }

    @Test("Expect: 100-continue is answered before the body arrives")
    func expectContinue() {
        if case .success(.sendContinue) = parse("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n") {} else {
            Issue.record("no continue")
        }
    }

    @Test("smuggling and malformed framing are refused", arguments: [
        ("POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", 501),
        ("POST / HTTP/1.1\r\nContent-Length : 1\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\n folded: x\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nX: a\u{01}b\r\n\r\n", 400),
        ("POST  / HTTP/1.1\r\n\r\n", 400),
        ("POST / HTTP/3.0\r\n\r\n", 505),
        ("POST / FOO/1.1\r\n\r\n", 400),
        ("POST /a\u{7f} HTTP/1.1\r\n\r\n", 400),
    ])
    func refused(_ text: String, _ expected: Int) {
        #expect(status(text) == expected)
    }

    @Test("limits: body, header bytes, header count, request line")
    func limits() {
        var small = HTTPLimits()
        small.maxBodyBytes = 10
        #expect(status("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", limits: small) == 413)
        #expect(status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n", limits: small) == 413)
        #expect(status("GET / HTTP/1.1\r\n" + String(repeating: "X-A: b\r\n", count: 101) + "\r\n") == 431)
        #expect(status("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 17_000)) == 431)
        #expect(status("GET /" + String(repeating: "a", count: 9000)) == 414)
    }

    @Test("chunked bodies decode across chunks, with extensions and trailers")
    func chunked() throws {
        var parser = HTTPRequestParser(limits: HTTPLimits())
        let bytes = Array("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\nA\r\n0123456789\r\n0\r\nT: v\r\n\r\n".utf8)
        let outcome = try bytes.withUnsafeBufferPointer { try parser.parse($0.baseAddress!, $0.count) }
        guard case .complete(let c) = outcome else { Issue.record("\(outcome)"); return }
        #expect(c.bodyIsChunked)
        #expect(c.consumed == bytes.count)
        #expect(Array(UnsafeBufferPointer(start: parser.chunkBody.readPointer, count: parser.chunkBody.readable)) == Array("abc0123456789".utf8))
        #expect(status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n") == 400)
        #expect(status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\r\n") == 400)
    }

    @Test("a 2-byte body with endless trailers is refused with 413 once the trailers pass their total limit")
    func endlessTrailers() {
        let start = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n"
        let trailers = String(repeating: "X-T: aaaaaaaaaa\r\n", count: 1200)  // 20 KiB of small lines
        #expect(status(start + trailers) == 413)
        #expect(status(start + trailers + "\r\n") == 413)
        #expect(status(start + "X-T: " + String(repeating: "a", count: 17_000)) == 413)
        // Within the limit, trailers are accepted.
        if case .success(.complete) = parse(start + String(repeating: "X-T: aaaaaaaaaa\r\n", count: 100) + "\r\n") {} else {
            Issue.record("small trailers refused")
        }
    }

    @Test("chunk extensions are limited in total, not only per line, with 413")
    func extensionTotal() {
        let chunk = "1;" + String(repeating: "e", count: 1000) + "\r\nx\r\n"
        let head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        #expect(status(head + String(repeating: chunk, count: 3)) == nil)  // 3 KB: more is awaited
        #expect(status(head + String(repeating: chunk, count: 5)) == 413)
        var tight = HTTPLimits()
        tight.maxChunkExtensionBytes = 10
        #expect(status(head + "1;abcdefghijk\r\nx\r\n", limits: tight) == 413)
    }

    @Test("the token table is RFC 9110's tchar, byte for byte")
    func tokenTable() {
        let tchar = Set(Array("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8))
        for c in 0...255 { #expect(HTTPRequestParser.isToken(UInt8(c)) == tchar.contains(UInt8(c)), "byte \(c)") }
    }

    @Test("the eight-byte scans agree with byte-by-byte ones at every offset")
    func wordScans() {
        // A fixed-seed generator over the bytes that matter: CR, LF, tab, other controls, DEL, high bytes.
        var state: UInt64 = 0x1234_5678_9ABC_DEF1
        func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }
        let alphabet: [UInt8] = [0x0D, 0x0A, 0x09, 0x01, 0x1F, 0x7F, 0x80, 0xFF, 0x20, 0x41, 0x0D, 0x61]
        var mismatches = 0
        for _ in 0..<3_000 {
            let count = 1 + next(64)
            let bytes = (0..<count).map { _ in next(3) == 0 ? alphabet[next(alphabet.count)] : UInt8(ascii: "x") }
            bytes.withUnsafeBufferPointer { b in
                let p = b.baseAddress!
                let crlf = (0..<max(0, count - 1)).first { bytes[$0] == 0x0D && bytes[$0 + 1] == 0x0A }
                if HTTPRequestParser.findCRLF(p, count, from: 0, limit: count) != crlf { mismatches += 1 }
                let forbidden = bytes.indices.first { (bytes[$0] < 0x20 && bytes[$0] != 0x09) || bytes[$0] == 0x7F }
                if HTTPRequestParser.firstForbiddenInValue(p, 0, count) != forbidden { mismatches += 1 }
            }
        }
        #expect(mismatches == 0)
    }
}
