import Foundation
import Testing
@testable import PXGuardPlatform

@Suite("Log lines: valid JSON, bounded, never interleaved")
struct LoggerTests {
    func parse(_ line: Substring) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
    }

    @Test("two threads logging large fields to one pipe: every line is whole, valid JSON and at most 8 KiB")
    func twoThreadsOnePipe() throws {
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)
        let logger = Logger.writing(to: fds[1])
        let perThread = 300
        let finished = Locked<Int>(0)
        let writeEnd = fds[1]
        for thread in 0..<2 {
            spawnThread(name: "log-\(thread)") {
                // A denied request with a huge uid and name, as the red team sent.
                let huge = String(repeating: thread == 0 ? "a" : "\u{e9}\"", count: 64 * 1024)
                for i in 0..<perThread {
                    logger.info("admission finding", [("uid", huge), ("thread", String(thread)), ("i", String(i)), ("name", huge)])
                }
                if finished.withLock({ $0 += 1; return $0 }) == 2 { close(writeEnd) }
            }
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fds[0], &chunk, chunk.count)
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        close(fds[0])
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 2 * perThread)
        #expect(lines.allSatisfy { $0.utf8.count + 1 <= Logger.maxLineBytes })
        let objects = lines.compactMap(parse)
        #expect(objects.count == lines.count, "\(lines.count - objects.count) lines are not valid JSON")
        for thread in ["0", "1"] {
            let numbers = objects.filter { $0["thread"] as? String == thread }.compactMap { ($0["i"] as? String).flatMap(Int.init) }
            #expect(numbers == Array(0..<perThread), "thread \(thread)'s lines are all there, in order")
        }
        #expect(objects.allSatisfy { ($0["uid"] as? String)?.hasSuffix("bytes]") == true })
    }

    @Test("a field past the cap is cut at a character boundary and says how long it was")
    func fieldCap() throws {
        let uid = String(repeating: "\u{1F600}", count: 1000)  // 4,000 bytes of 4-byte characters
        let line = Logger.line(.warn, "m", [("uid", .text(uid)), ("short", .text("x\ny"))], timestamp: "t")
        let object = try #require(parse(Substring(String(decoding: line.dropLast(), as: UTF8.self))))
        let cut = try #require(object["uid"] as? String)
        #expect(cut.hasSuffix("...[truncated, 4000 bytes]"))
        #expect(cut.utf8.count <= Logger.maxFieldBytes)
        #expect(cut.hasPrefix(String(repeating: "\u{1F600}", count: 200)))
        #expect(object["short"] as? String == "x\ny")
    }

    @Test("a message of control characters (six bytes escaped each) is capped on its escaped size")
    func escapedCap() throws {
        let line = Logger.line(.info, String(repeating: "\u{01}", count: 5000), [], timestamp: "t")
        #expect(line.count < 2 * Logger.maxFieldBytes)
        let object = try #require(parse(Substring(String(decoding: line.dropLast(), as: UTF8.self))))
        #expect((object["msg"] as? String)?.hasSuffix("...[truncated, 5000 bytes]") == true)
    }

    @Test("more fields than fit in 8 KiB: the rest are dropped and counted")
    func droppedFields() throws {
        let fields = (0..<40).map { ("field\($0)", LogValue.text(String(repeating: "v", count: 2000))) }
        let line = Logger.line(.info, "many", fields, timestamp: "t")
        #expect(line.count <= Logger.maxLineBytes)
        let object = try #require(parse(Substring(String(decoding: line.dropLast(), as: UTF8.self))))
        let dropped = try #require(object["droppedFields"] as? Int)
        #expect(dropped > 30 && object.keys.filter { $0.hasPrefix("field") }.count == 40 - dropped)
    }

    @Test("numbers are written as JSON numbers, text as strings (a digit-only text stays a string)")
    func numbersAsNumbers() throws {
        let line = Logger.line(.info, "listening", [("port", .integer(8443)), ("workers", .integer(-2)), ("namespace", .text("123"))], timestamp: "t")
        let text = String(decoding: line, as: UTF8.self)
        #expect(text.contains(#""port":8443,"workers":-2,"namespace":"123"}"#))
        let object = try #require(parse(Substring(text.dropLast())))
        #expect(object["port"] as? Int == 8443)
        #expect(object["namespace"] as? String == "123")
    }
}
