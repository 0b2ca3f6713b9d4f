import Foundation
import CSIMD
import PXGuardBytes
import Testing
@testable import PXGuardCore

@Suite("AdmissionReview decoding and encoding")
struct ReviewCodecTests {
    func respond(_ bytes: [UInt8], mutating: Bool = false) throws -> JSON {
        var out: [UInt8] = []
        try bytes.withUnsafeBytes { raw in
            try AdmissionRequest.withDecoded(raw) { request in
                let verdict = mutating ? AdmissionPolicy(config: .default).mutate(request).verdict
                    : AdmissionPolicy(config: .default).validate(request)
                ReviewEncoder.encode(verdict, uid: request.uid, version: request.version, into: &out)
            }
        }
        return try JSON(parsing: out)
    }

    @Test("the response echoes apiVersion, kind and uid for v1 and v1beta1", arguments: ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
    func echo(_ version: String) throws {
        var r = Review(object: pod(hostNetwork: true))
        r.version = version
        let response = try respond(r.bytes)
        #expect(response["apiVersion"] == .string(version))
        #expect(response["kind"] == "AdmissionReview")
        #expect(response["response"]?["uid"] == "0d3c2b1a-0000-4000-8000-000000000001")
        #expect(response["response"]?["allowed"] == false)
        #expect(response["response"]?["status"]?["code"] == 403)
        #expect(response["response"]?["status"]?["reason"] == "Forbidden")
        #expect(response["response"]?["patch"] == nil)
        #expect(response["response"]?["patchType"] == nil)
    }

    @Test("a mutating answer carries patch and patchType together, as standard base64")
    func mutatingPatch() throws {
        let response = try respond(try fixture("namespace-create-e8"), mutating: true)
        #expect(response["response"]?["patchType"] == "JSONPatch")
        let patch = try #require(response["response"]?["patch"]?.stringValue)
        let decoded = try #require(Base64.decode(patch))
        #expect(try JSON(parsing: decoded).arrayValue?.isEmpty == false)
        let none = try respond(try fixture("pod-create-e1"), mutating: true)
        #expect(none["response"]?["patch"] == nil && none["response"]?["patchType"] == nil)
    }

    @Test("base64 matches the documented example")
    func base64() {
        let text = #"[{"op": "add", "path": "/spec/replicas", "value": 3}]"#
        #expect(Base64.encode(Array(text.utf8)) == "W3sib3AiOiAiYWRkIiwgInBhdGgiOiAiL3NwZWMvcmVwbGljYXMiLCAidmFsdWUiOiAzfV0=")
        #expect(Base64.decode("W10=") == Array("[]".utf8))
    }

    @Test("broken reviews are refused with a clear message", arguments: [
        (#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#, "no request"),
        (#"{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview","request":{}}"#, "unsupported apiVersion"),
        (#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod","request":{}}"#, "kind must be AdmissionReview"),
        (#"{"apiVersion":"admission.k8s.io/v1","request":{"operation":"CREATE","kind":{"kind":"Pod"}}}"#, "uid"),
        (#"{"apiVersion":"admission.k8s.io/v1","request":{"uid":"u","operation":"PATCH","kind":{"kind":"Pod"}}}"#, "operation"),
        (#"{"apiVersion":"admission.k8s.io/v1","request":{"uid":"u","operation":"CREATE","kind":{"kind":"Pod"},"object":5}}"#, "object"),
        (#"{"apiVersion":"admission.k8s.io/v1","request":"#, "malformed JSON"),
        (#"[1,2]"#, "not a JSON object"),
    ])
    func broken(_ body: String, _ expected: String) {
        do {
            _ = try validate(Array(body.utf8))
            Issue.record("accepted \(body)")
        } catch let error as AdmissionDecodeError {
            #expect(error.message.contains(expected), "\(error.message)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test("escaped member names and uids survive the round trip")
    func escapes() throws {
        let body = #"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"u\u0069d":"a\"b\\c","operation":"DELETE","kind":{"kind":"Pod"}}}"#
        let response = try respond(Array(body.utf8))
        #expect(response["response"]?["uid"] == #"a"b\c"#)
    }
}

@Suite("JSON reader")
struct JSONReaderTests {
    @Test("rejects what RFC 8259 rejects", arguments: [
        "", " ", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "01", "1.", "-", "1e", "tru", "nul", "\"abc", "\"\\x\"",
        "\"\\u12G4\"", "\"a\u{01}b\"", "[1] [2]", "{\"a\":1}x", "[\"\\ud800\\u\"]",
    ])
    func rejects(_ text: String) {
        #expect(throws: JSONSyntaxError.self) { try JSONDocument.parse(Array(text.utf8)) { _ in } }
    }

    @Test("rejects invalid UTF-8 and nesting deeper than the limit")
    func utf8AndDepth() {
        #expect(throws: JSONSyntaxError.self) { try JSONDocument.parse([0x22, 0xC0, 0xAF, 0x22]) { _ in } }
        #expect(throws: JSONSyntaxError.self) { try JSONDocument.parse([0x22, 0xED, 0xA0, 0x80, 0x22]) { _ in } }
        let deep = Array(repeating: UInt8(ascii: "["), count: 10_000) + Array(repeating: UInt8(ascii: "]"), count: 10_000)
        #expect(throws: JSONSyntaxError.self) { try JSONDocument.parse(deep) { _ in } }
    }

    @Test("lookups match escaped names and values, and long names to the last byte")
    func escapedLookups() throws {
        let text = #"{"\u0061bc":1,"x\u0079z":2,"protocolVersion":3,"protocolVersioN":4,"protoXolVersion":5,"p":"\u0054CP","q":"TC\u0050","r":"XCP"}"#
        try JSONDocument.parse(Array(text.utf8)) { root in
            #expect(root["abc"]?.int == 1)  // starts with an escape
            #expect(root["xyz"]?.int == 2)  // escape after a matching first byte
            #expect(root["ab"] == nil && root["abcd"] == nil && root["xbz"] == nil)
            // 15 bytes: one 8-byte word, then 7 single bytes; a difference in either part counts.
            #expect(root["protocolVersion"]?.int == 3)
            #expect(root["protocolVersioN"]?.int == 4)
            #expect(root["protoXolVersion"]?.int == 5)
            #expect(root["p"]?.stringEquals("TCP") == true)
            #expect(root["q"]?.stringEquals("TCP") == true)
            #expect(root["r"]?.stringEquals("TCP") == false)
            #expect(root["p"]?.stringEquals("UDP") == false)
        }
    }

    @Test("reads members, elements, strings with escapes, numbers and literals")
    func reads() throws {
        let text = #"{"a":{"b":[1,-2,{"c":"x\u00e9\ud83d\ude00\n"}]},"t":true,"f":false,"n":null,"a":"last"}"#
        try JSONDocument.parse(Array(text.utf8)) { root in
            #expect(root["a"]?.string == "last")  // a repeated key: the last wins, as in Go
            #expect(root["t"]?.bool == true)
            #expect(root["f"]?.bool == false)
            #expect(root["n"]?.isNull == true)
            #expect(root["missing"] == nil)
        }
        let nested = #"{"b":[1,-2,{"c":"x\u00e9\ud83d\ude00\n"}], "big": 123456789012345678901234567890}"#
        try JSONDocument.parse(Array(nested.utf8)) { root in
            let items = root["b"]?.elements ?? []
            #expect(items.count == 3)
            #expect(items[1].int == -2)
            #expect(items[2]["c"]?.string == "xé😀\n")
            #expect(root["big"]?.int == nil)
        }
    }
}

@Suite("CIDR and ports")
struct NetTests {
    @Test("parses and prints addresses canonically", arguments: [
        ("70.0.0.0/16", "70.0.0.0/16"), ("70.0.5.5/16", "70.0.0.0/16"), ("10.1.2.3", "10.1.2.3/32"),
        ("::/0", "::/0"), ("fd00:70::1/64", "fd00:70::/64"), ("2001:db8:0:0:1:0:0:1/128", "2001:db8::1:0:0:1/128"),
        ("::ffff:70.0.0.1/128", "::ffff:4600:1/128"),
    ])
    func parses(_ input: String, _ expected: String) throws {
        #expect(try #require(CIDR(input)).description == expected)
    }

    @Test("rejects malformed blocks", arguments: ["70.0.0/16", "70.0.0.0/33", "256.0.0.0/8", "01.0.0.0/8", "1::2::3/64",
                                                 "fd00::/129", "70.0.0.0/", "abc", "70.0.0.0/016", ""])
    func rejects(_ input: String) { #expect(CIDR(input) == nil) }

    @Test("ranges decompose into the fewest CIDR blocks")
    func decomposition() throws {
        let whole = try #require(CIDR("70.0.0.0/16")).range
        let left = IPRangeSet.subtract([whole], [try #require(CIDR("70.0.0.0/17")).range])
        #expect(left.map(\.description) == ["70.0.128.0/17"])
        let odd = IPRange(family: .v4, lower: 3, upper: 10)
        #expect(odd.cidrs.map(\.description) == ["0.0.0.3/32", "0.0.0.4/30", "0.0.0.8/31", "0.0.0.10/32"])
    }

    @Test("port ranges parse the config notation", arguments: [
        ("9001-9022", "TCP/9001-9022"), ("UDP/9002", "UDP/9002"), ("SCTP/9001-9005", "SCTP/9001-9005"), ("tcp/80", "TCP/80"),
    ])
    func ports(_ input: String, _ expected: String) throws {
        #expect(try #require(PortRange(input)).description == expected)
    }

    @Test("port ranges reject nonsense", arguments: ["0", "65536", "9022-9001", "ICMP/1", "9001-", "a-b", "1-2-3"])
    func badPorts(_ input: String) { #expect(PortRange(input) == nil) }
}

@Suite("Fuzz regressions")
struct FuzzRegressionTests {
    /// Each file under Fixtures/regressions once crashed a fuzz target; decoding,
    /// every rule, the mutation and encoding must all run cleanly on it (the
    /// AddressSanitizer run of the suite checks the memory side).
    @Test("fuzz crashers stay fixed: the review decodes, and both verdicts are encoded from live views",
          arguments: ["review-use-after-free"])
    func crasher(_ name: String) throws {
        let url = try #require(Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures/regressions"))
        let bytes = Array(try Data(contentsOf: url))
        let policy = AdmissionPolicy(config: .default)
        // The crash was a use-after-free: views read after their tape was freed. Decoding
        // must succeed and what the views produce must be the request's own values.
        let (validated, mutated) = try bytes.withUnsafeBytes { raw in
            try AdmissionRequest.withDecoded(raw) { request -> (String, String) in
                var validated: [UInt8] = []
                ReviewEncoder.encode(policy.validate(request), uid: request.uid, version: request.version, into: &validated)
                var mutated: [UInt8] = []
                ReviewEncoder.encode(policy.mutate(request).verdict, uid: request.uid, version: request.version, into: &mutated)
                return (String(decoding: validated, as: UTF8.self), String(decoding: mutated, as: UTF8.self))
            }
        }
        let response = #""response":{"uid":"4d5e6f70-8192-4a3b-b4c5-d6e7f8091a2b","allowed":true"#
        // The namespace arrives at /validate without pxguard's labels: denied as stored
        // (R5, issue 23), naming the request's own namespace.
        #expect(validated.contains(#""response":{"uid":"4d5e6f70-8192-4a3b-b4c5-d6e7f8091a2b","allowed":false"#), "\(validated)")
        #expect(validated.contains("creating namespace team-a without the label"), "\(validated)")
        #expect(mutated.contains(response), "\(mutated)")
        #expect(validated.hasPrefix(#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview""#))
    }
}

@Suite("JSON string scanning: bit-mask fast path against the byte-by-byte scanner")
struct StringMaskTests {
    /// Both scanners on every opening position of `bytes`: same end, or both refuse.
    func agree(_ bytes: [UInt8]) -> Bool {
        let words = (bytes.count + 63) / 64
        var masks = [UInt64](repeating: 0, count: max(2, 2 * words))
        return bytes.withUnsafeBufferPointer { buffer in
            let p = buffer.baseAddress!
            masks.withUnsafeMutableBufferPointer { StringMasks.fill($0.baseAddress!, words: words, base: p, count: bytes.count) }
            return masks.withUnsafeBufferPointer { m in
                (0..<bytes.count).filter { bytes[$0] == UInt8(ascii: "\"") }.allSatisfy { open in
                    let fast = try? JSONValidator.scanString(p, bytes.count, open, m.baseAddress!)
                    let slow = try? JSONValidator.scanString(p, bytes.count, open)
                    return fast == slow
                }
            }
        }
    }

    @Test("the AVX2, SSE2 and portable kernels give the same masks")
    func kernels() {
        var random = SeededGenerator(seed: 0x0DDB_1A5E_5BAD_5EED)
        let blocks = 40
        let bytes = (0..<(64 * blocks)).map { _ -> UInt8 in
            // Any byte, biased towards the ones the masks are about.
            [UInt8.random(in: 0...255, using: &random), 0x22, 0x5C, 0x1F, 0x20, 0x7F, 0x80][random.next(7)]
        }
        var portable = [UInt64](repeating: 0, count: 2 * blocks)
        var sse2 = portable
        var avx2 = portable
        bytes.withUnsafeBufferPointer { p in
            pxg_string_masks_portable(p.baseAddress!, blocks, &portable)
            #if arch(x86_64)
            pxg_string_masks_sse2(p.baseAddress!, blocks, &sse2)
            pxg_string_masks(p.baseAddress!, blocks, &avx2)  // AVX2 where this CPU has it
            #else
            sse2 = portable
            avx2 = portable
            #endif
        }
        #expect(portable.contains { $0 != 0 })
        #expect(sse2 == portable)
        #expect(avx2 == portable)
    }

    @Test("quotes, escapes, control characters, UTF-8 (valid and not) and 64-byte boundaries")
    func differential() {
        // A fixed-seed generator: the same 4,000 documents every run.
        var random = SeededGenerator(seed: 0x9E37_79B9_7F4A_7C15)
        func next(_ bound: Int) -> Int { random.next(bound) }
        let pieces: [[UInt8]] = [
            Array("a".utf8), Array("key".utf8), [0x22], [0x5C, 0x22], [0x5C, 0x5C], [0x5C, 0x6E], [0x5C],
            Array("\\u00e9".utf8), [0x01], [0x1F], [0x7F], [0xC3, 0xA9], [0xF0, 0x9F, 0x98, 0x80], [0xFF], [0xC3],
            [0xED, 0xA0, 0x80], Array(String(repeating: "x", count: 60).utf8),
        ]
        var failures = 0
        for _ in 0..<4_000 {
            var bytes = [UInt8](repeating: 0x20, count: next(70))
            for _ in 0..<(1 + next(12)) { bytes += pieces[next(pieces.count)] }
            if next(4) > 0 { bytes.append(0x22) }
            if !agree(bytes) { failures += 1 }
        }
        #expect(failures == 0)
    }

    @Test("a document whose last string ends exactly on, before or after a 64-byte boundary")
    func boundaries() throws {
        for length in 55...75 {
            let text = "[\"" + String(repeating: "z", count: length) + "\"]"
            #expect(try JSONDocument.parse(Array(text.utf8)) { $0.elements.first?.string?.count } == length)
            #expect(throws: JSONSyntaxError.self) { try JSONDocument.parse(Array(text.dropLast(2).utf8)) { _ in } }
        }
    }
}

@Suite("JSON writer")
struct JSONWriterTests {
    @Test("strings are escaped as RFC 8259 requires, plain runs copied whole", arguments: [
        ("", #""""#), ("plain", #""plain""#), ("a\"b", #""a\"b""#), ("back\\slash", #""back\\slash""#),
        ("l1\nl2\r\tx", #""l1\nl2\r\tx""#), ("\u{01}\u{1F}", #""\u0001\u001f""#), ("é€😀", "\"é€😀\""),
        ("\"\"", #""\"\"""#), ("end\\", #""end\\""#),
    ])
    func escapes(_ input: String, _ expected: String) throws {
        var out: [UInt8] = []
        JSONWriter.appendString(input, to: &out)
        #expect(String(decoding: out, as: UTF8.self) == expected)
        #expect(try JSONDocument.parse(out) { $0.string } == input)
    }
}
