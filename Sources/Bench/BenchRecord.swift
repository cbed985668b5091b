#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnGraph
import KilnRuntime

/// One `kiln bench` result in the peers' JSONL record format (`bench/README.md`), plus the
/// machine facts every record carries: host, peak RSS, date, load average and CPU pressure.
public struct BenchRecord {
    public var workload: String
    public var threads: Int
    public var seed: UInt64
    /// `epoch_seconds`, `images_per_second` or `gflops`.
    public var metric: String
    public var value: Double
    public var compileSeconds: Double?
    public var testAccuracy: Double?
    public var testNegativeELBO: Double? = nil
    /// Free-form details, in order; `loadavg_1m` and `cpu_pressure_60s` are appended when written.
    public var extra: [(String, Any)] = []

    public init(workload: String, threads: Int, seed: UInt64, metric: String, value: Double, compileSeconds: Double?,
                testAccuracy: Double?, testNegativeELBO: Double? = nil, extra: [(String, Any)] = []) {
        self.workload = workload; self.threads = threads; self.seed = seed; self.metric = metric; self.value = value
        self.compileSeconds = compileSeconds; self.testAccuracy = testAccuracy; self.testNegativeELBO = testNegativeELBO
        self.extra = extra
    }

    public static let system = "kiln"
    public static let version = "0.1"

    /// Appends the record's JSON line to the JSONL file at `path` (created if needed).
    public func append(toJSONL path: String) throws {
        guard Platform.append(json() + "\n", toFile: path) else {
            throw KilnError.file(path: path, message: "cannot open or write (\(String(cString: strerror(errno))))")
        }
    }

    /// The record as one JSON line, with the machine facts measured now (end of the run, like the peers).
    public func json() -> String {
        var extra = self.extra
        if let load = loadAverage1m() { extra.append(("loadavg_1m", rounded(load, 2))) }
        if let pressure = cpuPressure60s() { extra.append(("cpu_pressure_60s", pressure)) }
        let fields = jsonObject([
            ("system", Self.system), ("version", Self.version), ("workload", workload), ("threads", threads),
            ("metric", metric), ("value", rounded(value, 4)),
            ("compile_seconds", compileSeconds.map { rounded($0, 4) } as Any),
            ("test_accuracy", testAccuracy.map { rounded($0, 5) } as Any),
            ("test_neg_elbo", testNegativeELBO.map { rounded($0, 3) } as Any),
            ("peak_rss_mb", peakRSSMegabytes()), ("date", Platform.isoDateNowUTC()), ("host", hostDescription()),
            ("seed", Int(seed)),
        ])
        // `jsonObject` encodes a nested [(String, Any)] value as an array (its `[Any]` case matches
        // first), so the nested object is serialised on its own and spliced in.
        return String(fields.dropLast()) + ", \"extra\": " + jsonObject(extra) + "}"
    }

    /// The peers' one-line summary: `[kiln 0.1] WORKLOAD: METRIC=VALUE compile_s=… test_acc=… peak_rss=…MB threads=N`.
    public func summaryLine() -> String {
        var line = "[\(Self.system) \(Self.version)] \(workload): \(metric)=" +
            Platform.format(abs(value) < 1e4 ? "%.4g" : "%.0f", value)
        if let compileSeconds { line += " compile_s=" + Platform.fixed(compileSeconds, 2) }
        if let testAccuracy { line += " test_acc=" + Platform.fixed(testAccuracy, 4) }
        if let testNegativeELBO { line += " test_neg_elbo=" + Platform.fixed(testNegativeELBO, 2) }
        line += " peak_rss=\(peakRSSMegabytes())MB threads=\(threads)"
        return line + " " + jsonObject(extra)
    }
}

/// Rounds to `digits` decimals, as the peers' records do.
public func rounded(_ value: Double, _ digits: Int) -> Double {
    let scale = pow(10, Double(digits))
    return (value * scale).rounded() / scale
}

/// Seconds on a monotonic clock.
public func monotonicSeconds() -> Double { Platform.monotonicSeconds() }

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
public func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    let mid = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/// `ru_maxrss` of the whole process in MiB (Linux reports KiB, Darwin bytes), one decimal.
public func peakRSSMegabytes() -> Double {
    var usage = rusage()
    #if os(Linux)
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return rounded(Double(usage.ru_maxrss) / 1024, 1)
    #else
    getrusage(RUSAGE_SELF, &usage)
    return rounded(Double(usage.ru_maxrss) / 1_048_576, 1)  // bytes on Darwin
    #endif
}

/// The 1-minute load average.
public func loadAverage1m() -> Double? {
    var loads = [Double](repeating: 0, count: 3)
    return getloadavg(&loads, 3) >= 1 ? loads[0] : nil
}

/// Linux PSI: % of the last 60 s in which some runnable task waited for a CPU (`/proc/pressure/cpu`, "some avg60").
public func cpuPressure60s() -> Double? {
    guard let text = Platform.readTextFile("/proc/pressure/cpu"),
          let first = text.split(separator: "\n").first else { return nil }
    let fields = first.split(separator: " ")
    guard fields.count > 2, let equals = fields[2].firstIndex(of: "=") else { return nil }
    return Double(fields[2][fields[2].index(after: equals)...])
}

/// `/proc/cpuinfo`'s first "model name", with family and model appended for generic names like
/// "AMD EPYC" (as the peers' `host_string`).
public func hostDescription() -> String {
    var model: String?, family: String?, modelNumber: String?
    func trimmed(_ text: Substring) -> String {
        String(text.drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())
    }
    if let text = Platform.readTextFile("/proc/cpuinfo") {
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let key = trimmed(parts[0]), value = trimmed(parts[1])
            if key == "model name" && model == nil { model = value }
            if key == "cpu family" && family == nil { family = value }
            if key == "model" && modelNumber == nil { modelNumber = value }
        }
    }
    var host = model ?? Platform.hostName
    if let family, host.split(separator: " ").count <= 3 { host += " (family \(family) model \(modelNumber ?? "?"))" }
    return host
}

/// The record fields every workload reports: achieved GFLOP/s, the machine's FP32 FMA peak on the
/// same threads with the vectors of the ISA this binary was compiled for (`PeakFMA`, measured now,
/// about a second), their ratio, and the cores' round trip (`CoreRoundTrip`, a few milliseconds).
/// Without `measurePeak` (`--no-peak`) only the achieved figure.
public func throughputFields(achievedGFLOPs: Double, threads: Int, measurePeak: Bool) -> [(String, Any)] {
    var fields: [(String, Any)] = [("achieved_gflops", rounded(achievedGFLOPs, 3)), ("isa", ISA.summary)]
    if measurePeak {
        let peak = PeakFMA.measure(threads: threads)
        fields += [("peak_gflops", rounded(peak.gflops, 2)), ("fraction_of_peak", rounded(achievedGFLOPs / peak.gflops, 4)),
                   ("peak_source", peak.description)]
        if let roundTrip = CoreRoundTrip.measure() { fields.append(("core_round_trip_ns", rounded(roundTrip, 1))) }
    }
    return fields
}

/// Serialises a flat JSON object with keys in the given order.
public func jsonObject(_ pairs: [(String, Any)]) -> String {
    func encode(_ value: Any) -> String {
        switch value {
        case let s as String: return jsonStringLiteral(s)
        case let b as Bool: return b ? "true" : "false"
        case let i as Int: return String(i)
        case let d as Double: return d.isFinite ? String(d) : "null"
        case let f as Float: return f.isFinite ? String(Double(f)) : "null"
        case let o as [(String, Any)]: return jsonObject(o)
        case let a as [Any]: return "[" + a.map(encode).joined(separator: ", ") + "]"
        default: return "null"
        }
    }
    return "{" + pairs.map { "\(encode($0.0)): \(encode($0.1))" }.joined(separator: ", ") + "}"
}
