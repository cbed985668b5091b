#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CPlatform

/// What the runtime (and the benchmark records) need from the operating system, through the C
/// library alone.
///
/// Kiln's core (KilnGraph, KilnPasses, KilnRuntime) does not import Foundation, so a program that
/// links only the core does not load Foundation, FoundationEssentials and ICU: about 8 MB less
/// resident memory on Linux (the zoo, the data loaders and the command-line tool use Foundation
/// and pay it; `kiln-gemm` does not).
public enum Platform {
    /// Physical memory in bytes.
    public static var physicalMemory: Int {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
        return pages > 0 && size > 0 ? pages * size : Int.max
    }

    /// The processors this process may use: its affinity mask (`taskset`, a container's cpuset),
    /// capped on Linux by a cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`, rounded up;
    /// `docker --cpus`), at least 1. Foundation's `ProcessInfo.activeProcessorCount` reports the
    /// online processors whatever the mask or quota (measured: 2 under `taskset -c 0` and under a
    /// one-CPU v1 quota on a 2-vCPU machine), which would have Kiln spin more workers than it
    /// may run.
    public static var activeProcessorCount: Int {
        var count = Int(kiln_affinity_processor_count())
        if count <= 0 { count = Swift.max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))) }
        #if os(Linux)
        if let quota = cgroupCPULimit() { count = Swift.min(count, quota) }
        #endif
        return Swift.max(1, count)
    }

    /// The size in bytes of the largest cache level of CPU 0 (L3 on x86-64 servers), read from
    /// Linux's `/sys/devices/system/cpu/cpu0/cache`; nil where it cannot be read. Read once.
    /// (glibc's `sysconf(_SC_LEVEL3_CACHE_SIZE)` is not used: on an AMD EPYC family 25 model 17
    /// under KVM it answered 320 MB for a 32 MB L3.)
    public static let lastLevelCacheBytes: Int? = cacheLevels.max { $0.level < $1.level }?.bytes

    /// The size in bytes of CPU 0's unified (or data) level-2 cache, from the same files; nil
    /// where it cannot be read.
    public static let level2CacheBytes: Int? = cacheLevels.first { $0.level == 2 }?.bytes

    /// CPU 0's caches as sysfs lists them (level, size), instruction caches left out.
    static let cacheLevels: [(level: Int, bytes: Int)] = {
        #if os(Linux)
        var levels: [(level: Int, bytes: Int)] = []
        for index in 0..<16 {
            let directory = "/sys/devices/system/cpu/cpu0/cache/index\(index)/"
            guard let levelText = readTextFile(directory + "level"),
                  let level = Int(levelText.split(whereSeparator: { $0 == "\n" || $0 == " " }).first ?? ""),
                  let sizeText = readTextFile(directory + "size"), let bytes = cacheSizeBytes(sizeText) else { continue }
            if readTextFile(directory + "type")?.hasPrefix("Instruction") == true { continue }
            levels.append((level, bytes))
        }
        return levels
        #else
        return []
        #endif
    }()

    /// Bytes from a sysfs cache size such as `32768K`, `1M` or `512` (a trailing newline allowed).
    static func cacheSizeBytes(_ text: String) -> Int? {
        var digits = Substring(text.split(whereSeparator: { $0 == "\n" || $0 == " " }).first ?? "")
        var scale = 1
        switch digits.last {
        case "K", "k": scale = 1 << 10
        case "M", "m": scale = 1 << 20
        case "G", "g": scale = 1 << 30
        default: break
        }
        if scale > 1 { digits = digits.dropLast() }
        guard let value = Int(digits), value > 0 else { return nil }
        return value * scale
    }

    #if os(Linux)
    /// The tightest CPU quota of this process's cgroups (`/proc/self/cgroup`), in whole processors.
    static func cgroupCPULimit() -> Int? {
        guard let membership = readTextFile("/proc/self/cgroup") else { return nil }
        var limits: [Int] = []
        for line in membership.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let controllers = fields[1], path = fields[2] == "/" ? "" : String(fields[2])
            if fields[0] == "0" && controllers.isEmpty {
                for directory in ["/sys/fs/cgroup" + path, "/sys/fs/cgroup"] {
                    if let text = readTextFile(directory + "/cpu.max") {
                        if let limit = cgroupV2Limit(text) { limits.append(limit) }
                        break
                    }
                }
            } else if controllers.split(separator: ",").contains("cpu") {
                for directory in ["/sys/fs/cgroup/\(controllers)" + path, "/sys/fs/cgroup/\(controllers)"] {
                    if let quota = readTextFile(directory + "/cpu.cfs_quota_us"),
                       let period = readTextFile(directory + "/cpu.cfs_period_us") {
                        if let limit = cgroupV1Limit(quota: quota, period: period) { limits.append(limit) }
                        break
                    }
                }
            }
        }
        return limits.min()
    }
    #endif

    /// Whole processors from a cgroup v2 `cpu.max` ("QUOTA PERIOD", or "max PERIOD" for none).
    static func cgroupV2Limit(_ text: String) -> Int? {
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count >= 2, let quota = Int(fields[0]), let period = Int(fields[1]) else { return nil }
        return wholeProcessors(quota: quota, period: period)
    }

    /// Whole processors from cgroup v1 `cpu.cfs_quota_us` (-1 for none) and `cpu.cfs_period_us`.
    static func cgroupV1Limit(quota: String, period: String) -> Int? {
        func number(_ text: String) -> Int? { Int(text.split(whereSeparator: { $0 == " " || $0 == "\n" }).first ?? "") }
        guard let quota = number(quota), let period = number(period) else { return nil }
        return wholeProcessors(quota: quota, period: period)
    }

    /// ⌈quota / period⌉, or nil for no quota (a non-positive one).
    private static func wholeProcessors(quota: Int, period: Int) -> Int? {
        guard quota > 0, period > 0 else { return nil }
        return Swift.max(1, (quota + period - 1) / period)
    }

    /// A text file's contents (UTF-8), or nil where it cannot be read. Reads to the end, so it
    /// also serves `/proc` files, whose size reads as 0.
    public static func readTextFile(_ path: String) -> String? {
        let file = open(path, O_RDONLY)
        guard file >= 0 else { return nil }
        defer { close(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            let length = chunk.withUnsafeMutableBytes { read(file, $0.baseAddress, $0.count) }
            if length < 0 { return nil }
            if length == 0 { break }
            bytes += chunk[0..<length]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends `text` to the file at `path`, creating it (mode 0644) if needed; false where it
    /// cannot be opened or written.
    public static func append(_ text: String, toFile path: String) -> Bool {
        let file = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard file >= 0 else { return false }
        defer { close(file) }
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(file, $0.baseAddress! + offset, $0.count - offset) }
            if written <= 0 { return false }
            offset += written
        }
        return true
    }

    /// This machine's host name.
    public static var hostName: String {
        var name = [CChar](repeating: 0, count: 256)
        guard gethostname(&name, name.count - 1) == 0 else { return "localhost" }
        return String(decoding: name.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Now in UTC as ISO-8601 with seconds and a `+00:00` offset (Python's `isoformat()`).
    public static func isoDateNowUTC() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))+00:00"
    }

    /// Monotonic seconds.
    public static func monotonicSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + 1e-9 * Double(time.tv_nsec)
    }

    /// Starts a detached thread running `body`.
    public static func startThread(name: String, stackSize: Int, _ body: @escaping () -> Void) {
        final class Box { let body: () -> Void; init(_ body: @escaping () -> Void) { self.body = body } }
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, stackSize)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let context = Unmanaged.passRetained(Box({
            kiln_name_current_thread(name)
            body()
        })).toOpaque()
        // Glibc's pthread_t is an integer and the start routine's argument optional; Darwin's
        // (not built here) an optional pointer and a non-optional argument.
        #if os(Linux)
        var thread = pthread_t()
        let status = pthread_create(&thread, &attributes, { context in
            Unmanaged<Box>.fromOpaque(context!).takeRetainedValue().body()
            return nil
        }, context)
        #else
        var thread: pthread_t? = nil
        let status = pthread_create(&thread, &attributes, { context in
            Unmanaged<Box>.fromOpaque(context).takeRetainedValue().body()
            return nil
        }, context)
        #endif
        precondition(status == 0, "pthread_create failed (\(status))")
    }

    /// Writes `text` to standard error.
    public static func writeToStandardError(_ text: String) {
        fputs(text, stderr)
    }

    /// `value` in fixed point with `decimals` digits after the point (C's `%.Nf`), right-aligned in
    /// `width` characters.
    public static func fixed(_ value: Double, _ decimals: Int, width: Int = 0) -> String {
        padded(format("%.\(decimals)f", value), width: width)
    }

    /// One double through a C conversion such as `%.4g` or `%.0f` (`String(format:)` for one number).
    public static func format(_ conversion: String, _ value: Double) -> String {
        var buffer = [CChar](repeating: 0, count: 512)
        let written = withVaList([value]) { arguments in
            buffer.withUnsafeMutableBufferPointer { vsnprintf($0.baseAddress, $0.count, conversion, arguments) }
        }
        guard written >= 0 else { return "\(value)" }
        return String(decoding: buffer.prefix(Int(Swift.min(Int(written), buffer.count - 1))).map { UInt8(bitPattern: $0) },
                      as: UTF8.self)
    }

    /// `text` right-aligned in `width` characters (C's `%Ns`).
    public static func padded(_ text: String, width: Int) -> String {
        let count = text.count
        return count >= width ? text : String(repeating: " ", count: width - count) + text
    }
}

/// A mutual-exclusion lock on `pthread_mutex_t` (Foundation's `NSLock` without Foundation).
final class PlatformLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    init() {
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }

    func unlock() { pthread_mutex_unlock(mutex) }
}
