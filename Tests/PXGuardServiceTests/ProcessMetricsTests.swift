import Foundation
import Testing
@testable import PXGuardCore
@testable import PXGuardServer
@testable import PXGuardService

@Suite("/metrics: build info and process series")
struct ProcessMetricsTests {
    @Test("start time counts /proc/self/stat fields after the last ')' (a command name may hold spaces and parentheses)")
    func startTimeParsing() {
        let fields = (4...21).map(String.init).joined(separator: " ")
        let stat = "4242 (px guard) (x)) S \(fields) 500 1000 20\n"
        let procStat = "cpu  1 2 3 4\nbtime 1700000000\nprocesses 10\n"
        #expect(ProcessMetrics.startTime(stat: stat, procStat: procStat, ticksPerSecond: 100) == 1_700_000_005)
        #expect(ProcessMetrics.startTime(stat: "4242 (truncated", procStat: procStat, ticksPerSecond: 100) == nil)
        #expect(ProcessMetrics.startTime(stat: stat, procStat: "cpu 1\n", ticksPerSecond: 100) == nil)
        #expect(ProcessMetrics.memory(statm: "2500 300 100 1 0 200 0\n", pageSize: 4096)! == (10_240_000, 1_228_800))
    }

    @Test("/metrics carries pxguard_build_info and process_* with this process's values")
    func exposition() throws {
        let server = try TestServer()
        let client = try server.client()
        // Other suites open and close descriptors in this process meanwhile: the figure
        // must lie within what /proc/self/fd lists just before and just after it.
        let before = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count
        let text = try client.request("GET", "/metrics").bodyText
        let after = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count
        #expect(text.contains("\npxguard_build_info{version=\"\(BuildInfo.version)\"} 1\n"))
        func value(_ name: String) -> Double? {
            text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
        }
        let now = Date().timeIntervalSince1970
        let start = try #require(value("process_start_time_seconds"))
        #expect(start <= now && start > now - 86_400, "start \(start), now \(now)")
        let resident = try #require(value("process_resident_memory_bytes"))
        let virtual = try #require(value("process_virtual_memory_bytes"))
        #expect(resident > 1_048_576 && resident < virtual)
        let open = try #require(value("process_open_fds"))
        // (With a slack for descriptors that come and go while the figure is read.)
        #expect(open >= 3 && open >= Double(min(before, after) - 16) && open <= Double(max(before, after) + 16),
                "open \(open), listed \(before) before and \(after) after")
        let maxFDs = try #require(value("process_max_fds"))
        #expect(open <= maxFDs)
        #expect(try #require(value("process_cpu_seconds_total")) > 0)
        for type in ["# TYPE process_cpu_seconds_total counter", "# TYPE process_open_fds gauge", "# TYPE pxguard_build_info gauge"] {
            #expect(text.contains(type))
        }
    }

    @Test("pxguard --version prints the version the image is tagged with")
    func version() throws {
        #expect(try shell("'\(try pxguardBinary())' --version") == "pxguard \(BuildInfo.version)\n")
        #expect(try shell("'\(try pxguardBinary())' --help").contains("--version"))
    }
}
