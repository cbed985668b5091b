import Foundation
import Testing
import KilnBench
import KilnGraph
import KilnRuntime

/// The `gemm` workload that `kiln bench gemm` and `kiln-gemm` share (`GEMMWorkload`).
@Suite("The gemm workload")
struct GEMMWorkloadTests {
    @Test("shapes parse as MxNxK with optional transposes; anything else is one error")
    func shapes() throws {
        var settings = GEMMWorkload.Settings(threads: 1, seed: 0, process: "test")
        #expect((settings.m, settings.n, settings.k, settings.transposeA, settings.transposeB) == (1024, 1024, 1024, false, false))
        try settings.setShape("12x34x56:atbt")
        #expect((settings.m, settings.n, settings.k, settings.transposeA, settings.transposeB) == (12, 34, 56, true, true))
        try settings.setShape("7x8x9:bt")
        #expect((settings.m, settings.n, settings.k, settings.transposeA, settings.transposeB) == (7, 8, 9, false, true))
        for bad in ["12x34", "0x1x1", "1x1x16385", "1x1x1:ta", "axbxc", ""] {
            #expect(throws: KilnError.self, "\(bad)") { try settings.setShape(bad) }
        }
    }

    @Test("a small product gives a record that names its process and parses as JSON")
    func record() throws {
        var settings = GEMMWorkload.Settings(threads: 2, seed: 3, process: "kiln-gemm (test)")
        try settings.setShape("24x40x16:at")
        settings.measurePeak = false
        let record = GEMMWorkload.run(settings)
        #expect(record.workload == "gemm" && record.metric == "gflops" && record.value > 0 && record.value.isFinite)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(record.json().utf8)) as? [String: Any])
        let extra = try #require(json["extra"] as? [String: Any])
        #expect(extra["process"] as? String == "kiln-gemm (test)")
        #expect(extra["shape"] as? String == "24x40x16 A transposed")
        #expect((json["peak_rss_mb"] as? Double ?? 0) > 0)
        let date = try #require(json["date"] as? String)
        #expect(date.count == 25 && date.hasSuffix("+00:00"))
        #expect(record.summaryLine().hasPrefix("[kiln 0.1] gemm: gflops="))
    }

    @Test("records append to a JSONL file, one line each; an unwritable path is an error naming it")
    func jsonl() throws {
        let path = NSTemporaryDirectory() + "kiln-gemm-\(getpid()).jsonl"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let record = BenchRecord(workload: "gemm", threads: 1, seed: 0, metric: "gflops", value: 1.5, compileSeconds: nil,
                                 testAccuracy: nil, extra: [("process", "a \"quoted\" name")])
        try record.append(toJSONL: path)
        try record.append(toJSONL: path)
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 2)
        for line in lines { _ = try JSONSerialization.jsonObject(with: Data(line.utf8)) }
        #expect(throws: KilnError.self) { try record.append(toJSONL: "/nonexistent/kiln/records.jsonl") }
    }
}
