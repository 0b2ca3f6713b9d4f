import Testing
@testable import PXGuardServer

@Suite("ClientHello size check on the record header")
struct HelloInspectionTests {
    func inspect(_ bytes: [UInt8], queued: Int = 1 << 20, cap: Int = 16 * 1024) -> HelloInspection {
        bytes.withUnsafeBytes { HelloInspection(header: $0, queued: queued, maxHelloBytes: cap) }
    }

    @Test("a ClientHello within the cap proceeds; one announcing more is refused; the cap itself is allowed")
    func announced() {
        #expect(inspect([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]) == .proceed)
        #expect(inspect([0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x02, 0x00, 0x00]) == .oversized(131_072))
        #expect(inspect([0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x40, 0x00]) == .proceed)
        #expect(inspect([0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x40, 0x01]) == .oversized(16_385))
    }

    @Test("fewer than nine bytes of a handshake record wait for more; anything else is left to OpenSSL")
    func partialAndOther() {
        #expect(inspect([0x16]) == .incomplete)
        #expect(inspect([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]) == .incomplete)
        #expect(inspect(Array("GET / HTTP/1.1\r\n".utf8)) == .proceed)
        #expect(inspect([0x16, 0x03, 0x01, 0x00, 0x10, 0x02, 0x7f, 0xff, 0xff]) == .proceed)  // not a ClientHello
        #expect(inspect([]) == .proceed)
    }

    @Test("TLS state waits until the whole first record has arrived (a ClientHello that stops half-way costs none)")
    func wholeRecord() {
        let header: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]  // a 512-byte record
        #expect(inspect(header, queued: 11) == .incomplete)
        #expect(inspect(header, queued: 516) == .incomplete)
        #expect(inspect(header, queued: 517) == .proceed)
        // A record longer than TLS allows is OpenSSL's to refuse, at once.
        #expect(inspect([0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00, 0x01, 0x00], queued: 11) == .proceed)
    }
}
