import Foundation
import Testing
@testable import CLI

/// `kiln bench`'s workloads and the peers' harness (`bench/`) name the same set: a workload added
/// on one side only would give `missing` cells in every compare run.
@Suite("bench workload lists")
struct BenchWorkloadListTests {
    /// The repository's `bench` folder, from this file's path.
    static let benchFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("bench")

    /// The quoted names on the lines from the one that starts with `start` to the one that closes it.
    static func names(in file: String, from start: String, closing: Character) throws -> [String] {
        let text = try String(contentsOf: benchFolder.appendingPathComponent(file), encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let first = try #require(lines.firstIndex { $0.hasPrefix(start) }, "\(file) has no line starting \(start)")
        var block = ""
        for line in lines[first...] {
            block += line + "\n"
            if line.contains(closing) { break }
        }
        let body = block.drop { $0 != "(" && $0 != "[" }
        return body.split(separator: "\"").enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
    }

    @Test("kiln bench, bench/common.py, bench/compare.py and compare.sh's default list the same workloads")
    func sameWorkloads() throws {
        let kiln = benchWorkloads.filter { $0 != "peak" && $0 != "conv" }
        #expect(try Self.names(in: "common.py", from: "ALL_WORKLOADS = (", closing: ")") == kiln)
        #expect(try Self.names(in: "compare.py", from: "WORKLOADS = [", closing: "]") == kiln)
        let script = try String(contentsOf: Self.benchFolder.appendingPathComponent("compare.sh"), encoding: .utf8)
        let line = try #require(script.split(separator: "\n").first { $0.hasPrefix("WORKLOADS=\"${WORKLOADS:-") })
        let list = line.dropFirst("WORKLOADS=\"${WORKLOADS:-".count).prefix { $0 != "}" }
        #expect(list.split(separator: " ").map(String.init) == kiln)
    }

    @Test("compare.py shows a training run that learned nothing as INVALID and never as the fastest peer")
    func invalidRunsAreNotFastest() throws {
        let python = try #require(["/usr/bin/python3", "/usr/local/bin/python3"].first(where: FileManager.default.isExecutableFile),
                                  "python3 is installed by .ci/run")
        // The fastest peer in each row learned nothing: chance accuracy, no ELBO, a NaN accuracy.
        func record(_ system: String, _ workload: String, _ value: Double, _ result: String) -> String {
            "{\"system\": \"\(system)\", \"workload\": \"\(workload)\", \"metric\": \"epoch_seconds\", \"value\": \(value), "
                + "\(result), \"host\": \"test host\", \"isa\": \"avx2\"}"
        }
        let lines = [
            record("pytorch-compile", "lenet5-train", 1.0, "\"test_accuracy\": 0.1"),
            record("pytorch-eager", "lenet5-train", 5.0, "\"test_accuracy\": 0.87"),
            record("kiln", "lenet5-train", 2.0, "\"test_accuracy\": 0.87"),
            record("pytorch-compile", "vae-train", 1.0, "\"test_neg_elbo\": null"),
            record("jax-jit", "vae-train", 3.0, "\"test_neg_elbo\": 262.9"),
            record("kiln", "vae-train", 1.5, "\"test_neg_elbo\": 261.9"),
            record("pytorch-compile", "mlp-b16", 0.5, "\"test_accuracy\": NaN"),
            record("jax-jit", "mlp-b16", 1.0, "\"test_accuracy\": 0.79"),
            record("kiln", "mlp-b16", 0.6, "\"test_accuracy\": 0.10"),
        ]
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-compare-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("records.jsonl")
        try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [Self.benchFolder.appendingPathComponent("compare.py").path, file.path, "--kiln", "--text"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        func row(_ workload: String) -> [String] {
            let line = output.split(separator: "\n").first { $0.hasPrefix(workload + " ") } ?? ""
            return line.split(separator: " ").map(String.init)
        }
        let lenet = row("lenet5-train"), vae = row("vae-train"), mlp = row("mlp-b16")
        #expect(lenet.contains("INVALID") && lenet.contains("pytorch-eager") && lenet.contains("2.50×"), "\(lenet)")
        #expect(vae.contains("INVALID") && vae.contains("jax-jit") && vae.contains("2.00×"), "\(vae)")
        // Kiln's own run at chance is INVALID too, with no ratio.
        #expect(mlp.filter { $0 == "INVALID" }.count == 2 && mlp.contains("jax-jit") && !mlp.contains { $0.hasSuffix("×") }, "\(mlp)")
        #expect(output.contains("invalid: test accuracy 0.1 (chance is 0.10)"))
    }
}
