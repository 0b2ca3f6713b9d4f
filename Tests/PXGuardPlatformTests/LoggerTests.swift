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
        // A queue large enough for every line: this test is about whole lines, not overflow.
        let logger = Logger(queue: LogQueue(fd: fds[1], capacity: 4096, capacityBytes: 32 << 20))
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
                if finished.withLock({ $0 += 1; return $0 }) == 2 {
                    logger.flush(seconds: 120)
                    close(writeEnd)
                }
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

    @Test("a pipe nobody reads: logging never blocks; lines past the queue are dropped, counted and reported in one line")
    func stalledReader() throws {
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)
        defer { close(fds[0]) }
        let queue = LogQueue(fd: fds[1], capacity: 64, capacityBytes: 1 << 20)
        let logger = Logger(queue: queue)
        // 64 KiB of pipe plus 64 queued lines hold far fewer than 5,000 lines of ~300 bytes:
        // with a blocking write this loop would never finish.
        let total = 5_000
        let padding = String(repeating: "x", count: 200)
        for i in 0..<total { logger.info("admission finding", [("i", .integer(i)), ("pad", .text(padding))]) }
        let dropped = logger.droppedLines
        #expect(dropped > total / 2, "most lines dropped, none waited for (dropped \(dropped))")
        // Now read: the writer finishes what it took, then says in one line how many it lost.
        var text = ""
        var chunk = [UInt8](repeating: 0, count: 65536)
        var reported = 0
        var findings = 0
        while reported < dropped {
            var p = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 10_000) == 1 else { break }
            let n = read(fds[0], &chunk, chunk.count)
            if n <= 0 { break }
            text += String(decoding: chunk[0..<n], as: UTF8.self)
            while let newline = text.firstIndex(of: "\n") {
                let object = parse(text[..<newline])
                text = String(text[text.index(after: newline)...])
                if object?["msg"] as? String == "log queue full: lines dropped" {
                    reported += object?["dropped"] as? Int ?? 0
                } else if object?["msg"] as? String == "admission finding" {
                    findings += 1
                }
            }
        }
        close(fds[1])
        #expect(reported == dropped, "every dropped line is in a report")
        #expect(findings + dropped == total, "a line is either written or counted")
    }

    @Test("a warning repeated within the interval is suppressed; the next one written carries the count")
    func repeatedWarnings() {
        let limiter = RepeatLimiter(interval: 60)
        let second: UInt64 = 1_000_000_000
        #expect(limiter.admit("lease round failed", now: 10 * second) == 0)
        for t in stride(from: 12, to: 70, by: 2) { #expect(limiter.admit("lease round failed", now: UInt64(t) * second) == nil) }
        #expect(limiter.admit("other warning", now: 20 * second) == 0, "another message has its own interval")
        #expect(limiter.admit("lease round failed", now: 70 * second) == 29)
        #expect(limiter.admit("lease round failed", now: 71 * second) == nil)
    }

    @Test("a logger's repeated warnings reach the sink once per interval, with a repeated count")
    func repeatedWarningsThroughLogger() throws {
        let lines = Locked<[String]>([])
        let logger = Logger(repeatInterval: 3600) { line in lines.withLock { $0.append(line) } }
        for _ in 0..<50 { logger.warn("lease round failed", [("error", "connection refused")]) }
        logger.info("info lines are never suppressed")
        logger.info("info lines are never suppressed")
        let written = lines.withLock { $0 }
        #expect(written.count == 3)
        #expect(!written[0].contains("repeated"))
    }

    @Test("at most N findings per second per rule, with the count of the rest on the next line written")
    func findingRate() {
        let limiter = RateLimiter(keys: 2, perSecond: 3)
        let t0: UInt64 = 5_000_000_000
        var decisions: [RateLimiter.Decision] = []
        for k in 0..<10 { decisions.append(limiter.admit(0, now: t0 + UInt64(k) * 1_000_000)) }
        #expect(decisions.prefix(3).allSatisfy { $0 == .log(suppressed: 0) })
        #expect(decisions.dropFirst(3).allSatisfy { $0 == .suppress })
        #expect(limiter.admit(1, now: t0) == .log(suppressed: 0), "each rule has its own budget")
        #expect(limiter.admit(0, now: t0 + 1_000_000_000) == .log(suppressed: 7))
        #expect(limiter.admit(0, now: t0 + 1_100_000_000) == .log(suppressed: 0))
        let silent = RateLimiter(keys: 1, perSecond: 0)
        #expect(silent.admit(0, now: t0) == .suppress)
    }

    @Test("the level applies to every copy of a logger and can change at run time")
    func levels() {
        let lines = Locked<[String]>([])
        let logger = Logger(minimum: .info) { line in lines.withLock { $0.append(line) } }
        let copy = logger
        copy.debug("hidden")
        logger.setMinimum(.debug)
        copy.debug("shown")
        logger.setMinimum(.error)
        copy.warn("hidden too")
        copy.error("shown too")
        let written = lines.withLock { $0 }
        #expect(written.count == 2 && written[0].contains("shown") && written[1].contains("shown too"))
        #expect(Logger.Level(rawValue: "warn") == .warn && Logger.Level(rawValue: "verbose") == nil)
    }
}
