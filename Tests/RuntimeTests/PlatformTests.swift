import Foundation
import Testing
@testable import KilnRuntime

/// `Platform` stands in for the few Foundation calls the core made; each answer is checked against
/// Foundation's own (the test target may load Foundation; the core may not).
@Suite("Platform (the core without Foundation)")
struct PlatformTests {
    @Test("physical memory agrees with ProcessInfo; the processor count is the affinity mask's within the quota")
    func machineFacts() throws {
        #expect(Platform.physicalMemory == Int(clamping: ProcessInfo.processInfo.physicalMemory))
        // The mask from /proc (Cpus_allowed_list, e.g. "0-3,8"), independently of sched_getaffinity.
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") })
        var allowed = 0
        for range in line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces).split(separator: ",") {
            let ends = range.split(separator: "-").compactMap { Int($0) }
            allowed += ends.count == 2 ? ends[1] - ends[0] + 1 : 1
        }
        let expected = min(allowed, Platform.cgroupCPULimit() ?? allowed)
        #expect(Platform.activeProcessorCount == max(1, expected))
        #expect(Platform.activeProcessorCount <= ProcessInfo.processInfo.activeProcessorCount)
        #expect(defaultThreadCount() == min(Platform.activeProcessorCount, Parallel.maximumThreads))
    }

    @Test("cgroup quotas in whole processors, rounded up; no quota is nil")
    func cgroupQuotas() {
        #expect(Platform.cgroupV2Limit("max 100000\n") == nil)
        #expect(Platform.cgroupV2Limit("200000 100000\n") == 2)
        #expect(Platform.cgroupV2Limit("150000 100000") == 2)
        #expect(Platform.cgroupV2Limit("50000 100000") == 1)
        #expect(Platform.cgroupV2Limit("garbage") == nil)
        #expect(Platform.cgroupV1Limit(quota: "-1\n", period: "100000\n") == nil)
        #expect(Platform.cgroupV1Limit(quota: "100000\n", period: "100000\n") == 1)
        #expect(Platform.cgroupV1Limit(quota: "350000\n", period: "100000\n") == 4)
        #expect(Platform.cgroupV1Limit(quota: "", period: "100000") == nil)
    }

    @Test("cache sizes read as sysfs writes them; the last-level cache is the highest level's")
    func cacheSizes() throws {
        #expect(Platform.cacheSizeBytes("32768K\n") == 32 << 20)
        #expect(Platform.cacheSizeBytes("1M") == 1 << 20)
        #expect(Platform.cacheSizeBytes("512") == 512)
        #expect(Platform.cacheSizeBytes("") == nil && Platform.cacheSizeBytes("K") == nil && Platform.cacheSizeBytes("-1K") == nil)
        // Against sysfs read here independently (where it exists): the size of the highest level.
        let root = "/sys/devices/system/cpu/cpu0/cache"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: root) else {
            #expect(Platform.lastLevelCacheBytes == nil)
            return
        }
        var expected: (Int, Int)? = nil, level2: Int? = nil
        for entry in entries where entry.hasPrefix("index") {
            guard let level = Int((try? String(contentsOfFile: "\(root)/\(entry)/level", encoding: .utf8))?
                    .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""),
                  let size = try? String(contentsOfFile: "\(root)/\(entry)/size", encoding: .utf8) else { continue }
            let trimmed = size.trimmingCharacters(in: .whitespacesAndNewlines)
            let bytes = trimmed.hasSuffix("K") ? Int(trimmed.dropLast())! * 1024 : trimmed.hasSuffix("M") ? Int(trimmed.dropLast())! << 20 : Int(trimmed)!
            if expected == nil || level > expected!.0 { expected = (level, bytes) }
            let type = (try? String(contentsOfFile: "\(root)/\(entry)/type", encoding: .utf8)) ?? ""
            if level == 2 && !type.hasPrefix("Instruction") { level2 = bytes }
        }
        #expect(Platform.lastLevelCacheBytes == expected?.1)
        #expect(Platform.level2CacheBytes == level2)
    }

    @Test("C conversions give String(format:)'s text", arguments: ["%.4g", "%.0f", "%.1f", "%.3f", "%.2f"])
    func conversions(conversion: String) {
        for value in [0, 1, -1, 0.5, 2.5, 3.14159, 1234.5678, 9999.95, 1e4, 123_456.789, 1e-7, -0.0001234, .infinity, .nan] {
            #expect(Platform.format(conversion, value) == String(format: conversion, value), "\(conversion) of \(value)")
        }
        #expect(Platform.fixed(3.14159, 1, width: 8) == String(format: "%8.1f", 3.14159))
        #expect(Platform.fixed(123_456.5, 1, width: 5) == String(format: "%5.1f", 123_456.5))
        #expect(Platform.padded("ab", width: 5) == "   ab" && Platform.padded("abcdef", width: 3) == "abcdef")
    }

    @Test("the UTC date reads as Python's isoformat and as Foundation's clock")
    func isoDate() throws {
        let before = Date()
        let text = Platform.isoDateNowUTC()
        let after = Date()
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd'T'HH:mm:ssxxx"
        #expect(text.count == 25 && text.hasSuffix("+00:00"))
        let parsed = try #require(formatter.date(from: text))
        #expect(parsed.timeIntervalSince(before) > -1.01 && parsed.timeIntervalSince(after) <= 0)
    }

    @Test("files: a /proc file read to its end, appends that create and extend, a missing file")
    func files() throws {
        let cpuinfo = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let read = try #require(Platform.readTextFile("/proc/self/status"))
        // Both read the calling process's status; its first lines (name, state, ids) do not change.
        #expect(read.split(separator: "\n").prefix(3) == cpuinfo.split(separator: "\n").prefix(3))
        #expect(Platform.readTextFile("/nonexistent/kiln") == nil)
        let path = NSTemporaryDirectory() + "kiln-platform-\(getpid()).txt"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let long = String(repeating: "é0123456789", count: 4_000)  // more than one 16 KiB read
        #expect(Platform.append("first\n", toFile: path))
        #expect(Platform.append(long + "\n", toFile: path))
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "first\n" + long + "\n")
        #expect(Platform.readTextFile(path) == "first\n" + long + "\n")
        #expect(!Platform.append("x", toFile: "/nonexistent/kiln/file"))
    }

    @Test("a started thread runs its body")
    func thread() {
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var ran = false
        Platform.startThread(name: "kiln-test-thread-with-a-long-name", stackSize: 1 << 20) {
            ran = true
            done.signal()
        }
        done.wait()
        #expect(ran)
    }

    @Test("the core, the benchmark records and the command-line parsing import no Foundation")
    func noFoundation() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources")
        var checked = 0
        for directory in ["Graph", "Passes", "Runtime", "Bench", "CommandLine", "GEMMTool"] {
            let root = sources.appendingPathComponent(directory)
            let files = try #require(FileManager.default.enumerator(atPath: root.path)).compactMap { $0 as? String }
            for file in files where file.hasSuffix(".swift") {
                let text = try String(contentsOf: root.appendingPathComponent(file), encoding: .utf8)
                let imports = text.split(separator: "\n").filter { $0.hasPrefix("import ") || $0.hasPrefix("@testable import ") }
                #expect(!imports.contains { $0.contains("Foundation") }, "\(directory)/\(file) imports Foundation")
                checked += 1
            }
        }
        #expect(checked > 60)
    }
}
