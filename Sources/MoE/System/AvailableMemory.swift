import Foundation

/// How much memory this process may still take, read from Linux's own accounting: the
/// memory cgroup the process runs in (a container's or a systemd unit's limit) when it has
/// one, else `MemAvailable` from `/proc/meminfo`. Physical memory is the wrong figure for a
/// process in a container: the kernel kills it at its cgroup limit, however much the
/// machine has free.
///
/// The parsing is in pure functions over file contents, so it is tested on fixture text;
/// `current()` only reads the files.
public enum AvailableMemory {
    /// Bytes this process may still use, and where the figure came from (for the message
    /// that says why the experts are or are not all loaded).
    public struct Budget: Sendable, Equatable {
        public var bytes: Int
        /// e.g. "cgroup v1 limit 2.50 GiB (/sys/fs/cgroup/memory/x)", "MemAvailable 21.3 GiB".
        public var source: String

        public init(bytes: Int, source: String) {
            self.bytes = bytes
            self.source = source
        }
    }

    /// Where this process sits in the cgroup hierarchies (`/proc/self/cgroup`).
    struct CgroupPaths: Equatable {
        /// The path in the v1 hierarchy that has the `memory` controller.
        var v1Memory: String?
        /// The path in the unified (v2) hierarchy (`0::/path`).
        var v2: String?
    }

    /// A cgroup's memory limit and the part of it already taken by memory that cannot be
    /// reclaimed (anonymous pages; the page cache would be dropped to make room).
    struct CgroupLimit: Equatable {
        var limit: Int
        var unreclaimable: Int
        var description: String
    }

    public static let cgroupRoot = "/sys/fs/cgroup"

    /// v1 reports "no limit" as the largest page-aligned signed 64-bit value (about 2^63);
    /// anything from 2^62 up is that, whatever the page size.
    static let unlimitedV1 = 1 << 62

    /// The memory this process may use now: its cgroup's limit (v2 `memory.max`, v1
    /// `memory.limit_in_bytes`, the tightest of the cgroup and its ancestors) less what the
    /// cgroup already holds that cannot be reclaimed, and never more than `MemAvailable`;
    /// without a cgroup limit, `MemAvailable`.
    public static func current() -> Budget {
        current { try? String(contentsOfFile: $0, encoding: .utf8) }
    }

    /// `current()` over files read by `read` (path → contents, nil when absent), so tests can
    /// stand in a whole /proc and /sys.
    static func current(read: (String) -> String?) -> Budget {
        let meminfo = read("/proc/meminfo") ?? ""
        let available = parseMeminfo(meminfo)
        let physical = meminfoField("MemTotal", in: meminfo) ?? Int(clamping: ProcessInfo.processInfo.physicalMemory)
        let paths = parseCgroupPaths(read("/proc/self/cgroup") ?? "")
        let limit = paths.v2.flatMap { cgroupV2Limit(path: $0, read: read) }
            ?? paths.v1Memory.flatMap { cgroupV1Limit(path: $0, physical: physical, read: read) }
        if let limit {
            let headroom = max(0, limit.limit - limit.unreclaimable)
            var source = limit.description
            if limit.unreclaimable > 0 { source += ", \(ByteCount.text(limit.unreclaimable)) of it in use" }
            if let available, available < headroom {
                return Budget(bytes: available, source: "MemAvailable \(ByteCount.text(available)), below the \(source)")
            }
            return Budget(bytes: headroom, source: source)
        }
        if let available { return Budget(bytes: available, source: "MemAvailable \(ByteCount.text(available))") }
        return Budget(bytes: physical, source: "physical memory \(ByteCount.text(physical)) (no MemAvailable in /proc/meminfo)")
    }

    /// The process's resident set now (`VmRSS`), in bytes; nil where /proc is not there.
    public static func residentBytes() -> Int? {
        (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)).flatMap { parseStatus("VmRSS", in: $0) }
    }

    /// The largest resident set the process has had (`VmHWM`), in bytes.
    public static func peakResidentBytes() -> Int? {
        (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)).flatMap { parseStatus("VmHWM", in: $0) }
    }

    // MARK: Parsing

    /// `MemAvailable` of /proc/meminfo in bytes: the kernel's estimate of what can be
    /// allocated without swapping, page cache included.
    static func parseMeminfo(_ text: String) -> Int? { meminfoField("MemAvailable", in: text) }

    /// A `Name:   1234 kB` line of /proc/meminfo, in bytes.
    static func meminfoField(_ name: String, in text: String) -> Int? { kilobyteField(name, in: text) }

    /// A `VmRSS:   1234 kB` line of /proc/self/status, in bytes.
    static func parseStatus(_ name: String, in text: String) -> Int? { kilobyteField(name, in: text) }

    private static func kilobyteField(_ name: String, in text: String) -> Int? {
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, parts[0] == name else { continue }
            let fields = parts[1].split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let value = fields.first.flatMap({ Int($0) }) else { return nil }
            // Both files write kB (meaning KiB); a bare number would be bytes.
            return fields.count > 1 && fields[1].lowercased() == "kb" ? value * 1024 : value
        }
        return nil
    }

    /// The memory-controller paths of `/proc/self/cgroup`: lines `hierarchy:controllers:path`,
    /// `0::/path` for the unified hierarchy, `N:memory:/path` (or `N:cpu,memory:/path`) for v1.
    static func parseCgroupPaths(_ text: String) -> CgroupPaths {
        var paths = CgroupPaths()
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            if parts[0] == "0" && parts[1].isEmpty {
                paths.v2 = String(parts[2])
            } else if parts[1].split(separator: ",").contains("memory") {
                paths.v1Memory = String(parts[2])
            }
        }
        return paths
    }

    /// A limit file's value: nil for v2's "max" and for anything unreadable.
    static func parseLimit(_ text: String) -> Int? {
        let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return value == "max" ? nil : Int(value)
    }

    /// A v1 limit, nil when it stands for "unlimited": the huge sentinel, or anything above
    /// the machine's memory (which could never bind).
    static func parseV1Limit(_ text: String, physical: Int) -> Int? {
        guard let value = parseLimit(text), value < unlimitedV1, value <= physical else { return nil }
        return value
    }

    /// A `name value` line of a cgroup's `memory.stat`.
    static func statField(_ name: String, in text: String) -> Int? {
        for line in text.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.count == 2, fields[0] == name { return Int(fields[1]) }
        }
        return nil
    }

    // MARK: Cgroups

    /// The tightest `memory.max` of the cgroup and its ancestors, each less that cgroup's
    /// anonymous memory (`anon` in its memory.stat). Under a v1 memory controller the
    /// unified hierarchy has no memory files, so this finds nothing there.
    static func cgroupV2Limit(path: String, read: (String) -> String?) -> CgroupLimit? {
        var best: CgroupLimit?
        var components = path.split(separator: "/").map(String.init)
        while true {
            let directory = ([cgroupRoot] + components).joined(separator: "/")
            if let limit = read(directory + "/memory.max").flatMap(parseLimit) {
                let anon = read(directory + "/memory.stat").flatMap { statField("anon", in: $0) } ?? 0
                if best.map({ limit - anon < $0.limit - $0.unreclaimable }) ?? true {
                    best = CgroupLimit(limit: limit, unreclaimable: anon,
                                       description: "cgroup v2 memory.max \(ByteCount.text(limit)) (\(directory))")
                }
            }
            guard !components.isEmpty else { break }
            components.removeLast()
        }
        return best
    }

    /// The v1 limit of the process's memory cgroup, tightened by its ancestors'
    /// (`hierarchical_memory_limit` in memory.stat), less its resident anonymous memory
    /// (`total_rss`, or `rss` where the kernel gives no hierarchical figures). A container
    /// without its own cgroup namespace sees the host's path in /proc/self/cgroup but has its
    /// own cgroup mounted at the root, so the root is tried when the path is not there.
    static func cgroupV1Limit(path: String, physical: Int, read: (String) -> String?) -> CgroupLimit? {
        let base = cgroupRoot + "/memory"
        let trimmed = path.split(separator: "/").joined(separator: "/")
        let candidates = trimmed.isEmpty ? [base] : [base + "/" + trimmed, base]
        for directory in candidates {
            guard let limitText = read(directory + "/memory.limit_in_bytes") else { continue }
            let stat = read(directory + "/memory.stat") ?? ""
            let own = parseV1Limit(limitText, physical: physical)
            let hierarchical = statField("hierarchical_memory_limit", in: stat).flatMap { parseV1Limit(String($0), physical: physical) }
            guard let limit = [own, hierarchical].compactMap({ $0 }).min() else { return nil }
            let used = statField("total_rss", in: stat) ?? statField("rss", in: stat) ?? 0
            let which = own == limit ? "" : " of an ancestor"
            return CgroupLimit(limit: limit, unreclaimable: used,
                               description: "cgroup v1 limit\(which) \(ByteCount.text(limit)) (\(directory))")
        }
        return nil
    }
}
