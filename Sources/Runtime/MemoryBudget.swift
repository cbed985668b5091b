#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnGraph

/// Sizes computed from input (flags, file headers, model shapes) are checked here before anything
/// is allocated: overflow-checked products, and a refusal with the bytes needed when they exceed
/// what the process may use (physical memory, or a lower address-space limit such as `ulimit -v`).
public enum MemoryBudget {
    /// Bytes this process may allocate at most: the machine's memory, or the address-space limit when lower.
    public static var availableBytes: Int {
        var limit = rlimit()
        let physical = Platform.physicalMemory
        if getrlimit(Int32(RLIMIT_AS.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max {
            return Swift.min(physical, Int(clamping: limit.rlim_cur))
        }
        return physical
    }

    /// The product of `factors`, or nil when it overflows `Int` (or a factor is negative).
    public static func product(_ factors: [Int]) -> Int? {
        var result = 1
        for factor in factors {
            guard factor >= 0 else { return nil }
            let (p, overflow) = result.multipliedReportingOverflow(by: factor)
            if overflow { return nil }
            result = p
        }
        return result
    }

    /// The bytes of `factors` multiplied (elements × element size, say), checked against `availableBytes`:
    /// throws `KilnError.argument` saying what needs how many bytes when they overflow or do not fit.
    @discardableResult
    public static func check(_ factors: [Int], for what: String) throws -> Int {
        let available = availableBytes
        guard let bytes = product(factors) else {
            throw KilnError.argument("\(what) would need more than \(Int.max) bytes (\(factors.map(String.init).joined(separator: " × "))); this machine has \(available)")
        }
        guard bytes <= available else {
            throw KilnError.argument("\(what) would need \(bytes) bytes (\(describe(bytes))); this process may use \(available) (\(describe(available)))")
        }
        return bytes
    }

    /// Bytes in the largest binary unit that keeps the number ≥ 1 (`3.5 GiB`).
    public static func describe(_ bytes: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var value = Double(bytes), unit = 0
        while value >= 1024 && unit + 1 < units.count { value /= 1024; unit += 1 }
        return unit == 0 ? "\(bytes) B" : Platform.fixed(value, 1) + " " + units[unit]
    }
}
