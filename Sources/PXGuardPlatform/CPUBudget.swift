import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// How many CPUs this process may really use: the online cores, narrowed by its
/// affinity mask (cpuset, `taskset`) and by a cgroup CPU quota (a container's
/// `resources.limits.cpu`). One event loop per core of the *node* inside a pod
/// limited to one CPU would make the loops fight over the quota and be throttled
/// mid-request, which shows up as p99 latency.
public enum CPUBudget {
    /// The number of event loops to run when the configuration says "one per core".
    public static func available() -> Int {
        var cpus = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let affinity = Int(pxg_affinity_cpu_count())
        if affinity > 0 { cpus = min(cpus, affinity) }
        if let quota = quotaCPUs() { cpus = min(cpus, quota) }
        return max(1, cpus)
    }

    /// The cgroup v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us`) quota of this process, rounded up.
    static func quotaCPUs() -> Int? {
        let root = "/sys/fs/cgroup"
        if let cpuMax = try? FileIO.read(root + "/cpu.max", limit: 4096) {
            return quota(cpuMax: String(decoding: cpuMax, as: UTF8.self))
        }
        guard let quota = try? FileIO.read(root + "/cpu/cpu.cfs_quota_us", limit: 4096),
            let period = try? FileIO.read(root + "/cpu/cpu.cfs_period_us", limit: 4096)
        else { return nil }
        return self.quota(microseconds: String(decoding: quota, as: UTF8.self), period: String(decoding: period, as: UTF8.self))
    }

    /// `cpu.max` holds "QUOTA PERIOD" or "max PERIOD".
    static func quota(cpuMax: String) -> Int? {
        let fields = cpuMax.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count == 2 else { return nil }
        return quota(microseconds: String(fields[0]), period: String(fields[1]))
    }

    /// A quota of -1 (v1) or "max" (v2) means no limit.
    static func quota(microseconds: String, period: String) -> Int? {
        func number(_ s: String) -> Int? { Int(s.filter { $0 != "\n" && $0 != " " }) }
        guard let quota = number(microseconds), let period = number(period), quota > 0, period > 0 else { return nil }
        return (quota + period - 1) / period
    }
}
