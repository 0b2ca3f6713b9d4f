import PXGuardCore
#if canImport(Glibc)
import Glibc
#endif

/// `pxguard_build_info` and the standard `process_*` series, with the names and
/// meanings the Prometheus client libraries give them, read from /proc/self at
/// scrape time (nothing on the request path).
enum ProcessMetrics {
    /// The exposition text for one scrape.
    static func render() -> String {
        var out = "# HELP pxguard_build_info The running build: its version (also the image tag).\n"
        out += "# TYPE pxguard_build_info gauge\n"
        out += "pxguard_build_info{version=\"\(BuildInfo.version)\"} 1\n"
        let page = sysconf(Int32(_SC_PAGESIZE))
        if let statm = readProc("/proc/self/statm"), let memory = memory(statm: statm, pageSize: page) {
            out += series("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", "\(memory.virtual)")
            out += series("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", "\(memory.resident)")
        }
        var usage = rusage()
        if getrusage(RUSAGE_SELF.rawValue, &usage) == 0 {
            let seconds = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
                + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
            out += series("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", "\(seconds)")
        }
        if let fds = openDescriptors() {
            out += series("process_open_fds", "gauge", "Number of open file descriptors.", "\(fds)")
        }
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            out += series("process_max_fds", "gauge", "Maximum number of open file descriptors.", "\(limit.rlim_cur)")
        }
        if let stat = readProc("/proc/self/stat"), let procStat = readProc("/proc/stat"),
           let start = startTime(stat: stat, procStat: procStat, ticksPerSecond: sysconf(Int32(_SC_CLK_TCK))) {
            out += series("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", "\(start)")
        }
        return out
    }

    static func series(_ name: String, _ type: String, _ help: String, _ value: String) -> String {
        "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
    }

    /// Virtual and resident bytes from `/proc/self/statm` (sizes in pages).
    static func memory(statm: String, pageSize: Int) -> (virtual: Int, resident: Int)? {
        let fields = statm.split(separator: " ")
        guard fields.count >= 2, let size = Int(fields[0]), let resident = Int(fields[1]) else { return nil }
        return (size * pageSize, resident * pageSize)
    }

    /// Start time in seconds since the epoch: field 22 of `/proc/self/stat` (clock
    /// ticks after boot) plus `btime` from `/proc/stat`. The command name (field 2)
    /// may hold spaces and parentheses, so fields are counted after its last `)`.
    static func startTime(stat: String, procStat: String, ticksPerSecond: Int) -> Double? {
        guard let close = stat.lastIndex(of: ")"), ticksPerSecond > 0 else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state), so field 22 is fields[19].
        guard fields.count > 19, let ticks = Double(fields[19]) else { return nil }
        guard let line = procStat.split(separator: "\n").first(where: { $0.hasPrefix("btime ") }),
              let boot = Double(line.dropFirst(6).trimmingPrefix(" "))
        else { return nil }
        return boot + ticks / Double(ticksPerSecond)
    }

    /// Entries of /proc/self/fd, less the descriptor that lists them.
    static func openDescriptors() -> Int? {
        guard let dir = opendir("/proc/self/fd") else { return nil }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            let isDot = withUnsafeBytes(of: entry.pointee.d_name) { $0.first == UInt8(ascii: ".") }
            if !isDot { count += 1 }
        }
        return count - 1
    }

    /// A small /proc file (they report size 0, so read to end of file).
    static func readProc(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 20 {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
