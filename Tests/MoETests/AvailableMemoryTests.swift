import XCTest
@testable import MoE

/// Reading the memory budget from /proc and the cgroup files, on fixture text in the formats
/// the kernel writes, and once for real on this machine.
final class AvailableMemoryTests: XCTestCase {
    static let meminfo = """
        MemTotal:       24684084 kB
        MemFree:        22272708 kB
        MemAvailable:   23956928 kB
        Buffers:           18100 kB
        Cached:          1821184 kB
        SwapCached:            0 kB
        HugePages_Total:       0
        Hugepagesize:       2048 kB

        """

    static let cgroupV1 = """
        12:hugetlb:/
        9:name=systemd:/user.slice/user-0.slice/session-3.scope
        5:cpu,cpuacct:/user.slice
        4:memory:/docker/4f1c2a
        1:cpuset:/
        0::/user.slice/user-0.slice/session-3.scope

        """

    static let cgroupV2 = "0::/system.slice/moekit.service\n"

    static let statV1 = """
        cache 710553600
        rss 268877824
        rss_huge 0
        hierarchical_memory_limit 2684354560
        total_cache 910553600
        total_rss 300000000

        """

    func testMeminfoGivesMemAvailableInBytes() {
        XCTAssertEqual(AvailableMemory.parseMeminfo(Self.meminfo), 23_956_928 * 1024)
        XCTAssertEqual(AvailableMemory.meminfoField("MemTotal", in: Self.meminfo), 24_684_084 * 1024)
        // A line without a unit (HugePages_Total) is a plain count.
        XCTAssertEqual(AvailableMemory.meminfoField("HugePages_Total", in: Self.meminfo), 0)
        // Kernels before 3.14 have no MemAvailable.
        XCTAssertNil(AvailableMemory.parseMeminfo("MemTotal: 1000 kB\nMemFree: 500 kB\n"))
        XCTAssertNil(AvailableMemory.parseMeminfo(""))
    }

    func testStatusGivesResidentAndPeak() {
        let status = "Name:\tmoekit\nVmPeak:\t  812340 kB\nVmHWM:\t   40960 kB\nVmRSS:\t   20480 kB\nThreads:\t3\n"
        XCTAssertEqual(AvailableMemory.parseStatus("VmRSS", in: status), 20 * 1_048_576)
        XCTAssertEqual(AvailableMemory.parseStatus("VmHWM", in: status), 40 * 1_048_576)
        XCTAssertNil(AvailableMemory.parseStatus("VmSwap", in: status))
    }

    func testCgroupPathsOfBothHierarchies() {
        XCTAssertEqual(AvailableMemory.parseCgroupPaths(Self.cgroupV1),
                       AvailableMemory.CgroupPaths(v1Memory: "/docker/4f1c2a", v2: "/user.slice/user-0.slice/session-3.scope"))
        XCTAssertEqual(AvailableMemory.parseCgroupPaths(Self.cgroupV2),
                       AvailableMemory.CgroupPaths(v1Memory: nil, v2: "/system.slice/moekit.service"))
        // The memory controller may share a hierarchy with others.
        XCTAssertEqual(AvailableMemory.parseCgroupPaths("7:blkio,memory:/a/b\n").v1Memory, "/a/b")
        // A path may contain colons.
        XCTAssertEqual(AvailableMemory.parseCgroupPaths("0::/odd:name\n").v2, "/odd:name")
        XCTAssertEqual(AvailableMemory.parseCgroupPaths(""), AvailableMemory.CgroupPaths())
    }

    func testUnlimitedValuesAreNoLimit() {
        let physical = 24_684_084 * 1024
        XCTAssertNil(AvailableMemory.parseLimit("max\n"))
        XCTAssertEqual(AvailableMemory.parseLimit("314572800\n"), 314_572_800)
        XCTAssertNil(AvailableMemory.parseV1Limit("9223372036854771712\n", physical: physical))  // 4 KiB pages
        XCTAssertNil(AvailableMemory.parseV1Limit("9223372036854710272\n", physical: physical))  // 64 KiB pages
        XCTAssertNil(AvailableMemory.parseV1Limit("\(physical + 1)\n", physical: physical))      // cannot bind
        XCTAssertEqual(AvailableMemory.parseV1Limit("314572800\n", physical: physical), 314_572_800)
    }

    /// A fake filesystem: paths to contents.
    func budget(_ files: [String: String]) -> AvailableMemory.Budget {
        AvailableMemory.current { files[$0] }
    }

    func testV1LimitLessResidentMemory() {
        let v1 = "/sys/fs/cgroup/memory/docker/4f1c2a"
        var files = ["/proc/meminfo": Self.meminfo, "/proc/self/cgroup": Self.cgroupV1,
                     v1 + "/memory.limit_in_bytes": "3221225472\n", v1 + "/memory.stat": Self.statV1]
        // The ancestor's 2.5 GiB (hierarchical_memory_limit) binds before the cgroup's own 3 GiB;
        // 300,000,000 bytes of anonymous memory (total_rss) are taken already.
        var b = budget(files)
        XCTAssertEqual(b.bytes, 2_684_354_560 - 300_000_000)
        XCTAssertTrue(b.source.hasPrefix("cgroup v1 limit of an ancestor 2.50 GiB (\(v1))"), b.source)

        // Without hierarchical figures: the own limit, less `rss`.
        files[v1 + "/memory.stat"] = "cache 5\nrss 1000\n"
        b = budget(files)
        XCTAssertEqual(b.bytes, 3_221_225_472 - 1000)
        XCTAssertTrue(b.source.hasPrefix("cgroup v1 limit 3.00 GiB (\(v1))"), b.source)

        // A limit above what is available is capped by MemAvailable.
        files[v1 + "/memory.limit_in_bytes"] = "\(20 * 1024 * 1_048_576)\n"
        files[v1 + "/memory.stat"] = "rss 0\n"
        files["/proc/meminfo"] = "MemTotal: 24684084 kB\nMemAvailable: 1048576 kB\n"
        b = budget(files)
        XCTAssertEqual(b.bytes, 1024 * 1_048_576)
        XCTAssertTrue(b.source.hasPrefix("MemAvailable 1.00 GiB, below the cgroup v1 limit 20.0 GiB"), b.source)
    }

    func testV1RootIsTriedWhenThePathIsNotMounted() {
        // A container without a cgroup namespace: /proc/self/cgroup names the host's path,
        // but its own cgroup is what is mounted at /sys/fs/cgroup/memory.
        let files = ["/proc/meminfo": Self.meminfo, "/proc/self/cgroup": Self.cgroupV1,
                     "/sys/fs/cgroup/memory/memory.limit_in_bytes": "524288000\n",
                     "/sys/fs/cgroup/memory/memory.stat": "total_rss 24288000\n"]
        let b = budget(files)
        XCTAssertEqual(b.bytes, 500_000_000)
        XCTAssertTrue(b.source.hasPrefix("cgroup v1 limit 500 MiB (/sys/fs/cgroup/memory)"), b.source)
    }

    func testV1UnlimitedFallsBackToMemAvailable() {
        let v1 = "/sys/fs/cgroup/memory/docker/4f1c2a"
        let files = ["/proc/meminfo": Self.meminfo, "/proc/self/cgroup": Self.cgroupV1,
                     v1 + "/memory.limit_in_bytes": "9223372036854771712\n",
                     v1 + "/memory.stat": "hierarchical_memory_limit 9223372036854771712\ntotal_rss 5\n"]
        XCTAssertEqual(budget(files), AvailableMemory.Budget(bytes: 23_956_928 * 1024, source: "MemAvailable 22.8 GiB"))
    }

    func testV2TightestAncestorLessAnon() {
        let leaf = "/sys/fs/cgroup/system.slice/moekit.service"
        var files = ["/proc/meminfo": Self.meminfo, "/proc/self/cgroup": Self.cgroupV2,
                     leaf + "/memory.max": "max\n", leaf + "/memory.stat": "anon 1000\nfile 99999\n",
                     "/sys/fs/cgroup/system.slice/memory.max": "2147483648\n",
                     "/sys/fs/cgroup/system.slice/memory.stat": "anon 147483648\nfile 5\n"]
        var b = budget(files)
        XCTAssertEqual(b.bytes, 2_000_000_000)
        XCTAssertTrue(b.source.hasPrefix("cgroup v2 memory.max 2.00 GiB (/sys/fs/cgroup/system.slice)"), b.source)

        // The service's own tighter limit wins.
        files[leaf + "/memory.max"] = "1073741824\n"
        b = budget(files)
        XCTAssertEqual(b.bytes, 1_073_741_824 - 1000)
        XCTAssertTrue(b.source.hasPrefix("cgroup v2 memory.max 1.00 GiB (\(leaf))"), b.source)

        // No limit anywhere: MemAvailable.
        files[leaf + "/memory.max"] = "max\n"
        files["/sys/fs/cgroup/system.slice/memory.max"] = "max\n"
        XCTAssertEqual(budget(files).bytes, 23_956_928 * 1024)
    }

    func testByteCountText() {
        XCTAssertEqual(ByteCount.text(512), "512 bytes")
        XCTAssertEqual(ByteCount.text(812 * 1_048_576), "812 MiB")
        XCTAssertEqual(ByteCount.text(2_684_354_560), "2.50 GiB")
        XCTAssertEqual(ByteCount.text(Int(21.3 * 1_073_741_824)), "21.3 GiB")
    }

    /// On this machine, through the real files: something positive, no more than the machine has.
    func testCurrentIsPositiveHere() throws {
        let budget = AvailableMemory.current()
        XCTAssertGreaterThan(budget.bytes, 0, budget.source)
        XCTAssertLessThanOrEqual(UInt64(budget.bytes), ProcessInfo.processInfo.physicalMemory, budget.source)
        XCTAssertFalse(budget.source.isEmpty)
        #if os(Linux)
        let resident = try XCTUnwrap(AvailableMemory.residentBytes())
        let peak = try XCTUnwrap(AvailableMemory.peakResidentBytes())
        XCTAssertGreaterThan(resident, 0)
        XCTAssertGreaterThanOrEqual(peak, resident)
        #endif
    }
}
