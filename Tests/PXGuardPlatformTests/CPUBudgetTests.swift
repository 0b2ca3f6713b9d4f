import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import PXGuardPlatform

@Suite("CPU budget: one loop per usable core")
struct CPUBudgetTests {
    @Test("a cgroup quota caps the loops at the quota rounded up; 'max' and -1 mean no limit", arguments: [
        ("max 100000\n", nil), ("100000 100000\n", 1), ("150000 100000", 2), ("50000 100000", 1),
        ("400000 100000", 4), ("garbage", nil), ("", nil),
    ] as [(String, Int?)])
    func cgroupV2(_ cpuMax: String, _ expected: Int?) {
        #expect(CPUBudget.quota(cpuMax: cpuMax) == expected)
    }

    @Test("cgroup v1: cfs_quota_us over cfs_period_us")
    func cgroupV1() {
        #expect(CPUBudget.quota(microseconds: "-1\n", period: "100000\n") == nil)
        #expect(CPUBudget.quota(microseconds: "250000\n", period: "100000\n") == 3)
    }

    @Test("the budget is at least one and never more than the online cores")
    func bounds() {
        let cpus = CPUBudget.available()
        #expect(cpus >= 1)
        #expect(cpus <= Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }
}
