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
}
