import Foundation
import Testing
import Kiln
@testable import CLI

/// A small seeded run of `kiln fuzz` (the full run is `kiln fuzz --cases 4000`, figures in the README).
@Suite("Fuzzer, seeded quick run")
struct FuzzTests {
    @Test("300 mutated inputs per reader, parsed in process: each accepted or one KilnError line naming the file")
    func inProcess() throws {
        let results = try Fuzzer.inProcess(casesPerFormat: 300, seed: 16, verbose: false)
        #expect(results.count == 6)
        for (name, tally) in results {
            #expect(tally.cases == 300, "\(name)")
            #expect(tally.unclean == 0, "\(name): \(tally.unclean) rejections were not one KilnError line")
            #expect(tally.cleanErrors > 0, "\(name): no mutation was rejected, so the mutations do nothing")
        }
    }

    // Found by the 10^5 run (seed 1204, kiln-model case 48934): the mutator itself overflowed
    // shifting a tensor's offsets that an earlier edit had set to Int.max; the worker trapped (and
    // the parent, remaking the case). Kiln read that input cleanly once the mutator was fixed.
    @Test("the safetensors mutator takes extreme offsets without trapping")
    func mutatorExtremeOffsets() throws {
        let header = #"{"a":{"data_offsets":[9223372036854775807,9223372036854775807],"dtype":"F32","shape":[1]},"#
            + #""b":{"data_offsets":[-9223372036854775808,4],"dtype":"F32","shape":[1]}}"#
        let bytes = (0..<8).map { UInt8(truncatingIfNeeded: header.utf8.count >> (8 * $0)) } + Array(header.utf8) + [0, 0, 0, 0]
        for state in 0..<3000 as Range<UInt64> {
            var random = FuzzRandom(state: state)
            #expect(!FuzzCorpus.mutateSafetensors(bytes, &random).isEmpty)
        }
    }

    @Test("mutations are deterministic in the seed")
    func deterministic() {
        var a = FuzzRandom(state: 7), b = FuzzRandom(state: 7)
        let input = Array("A,1,2,3\nB,4,5,6\n".utf8)
        for _ in 0..<50 { #expect(Fuzzer.mutate(input, &a) == Fuzzer.mutate(input, &b)) }
    }

    /// The tool built next to this test bundle (`swift build --build-tests` builds it too).
    static func kilnExecutable() throws -> String {
        let kiln = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("kiln").path
        let sibling = ((Bundle.main.bundlePath as NSString).deletingLastPathComponent as NSString).appendingPathComponent("kiln")
        let candidates = [kiln, sibling, (Bundle(for: Marker.self).bundlePath as NSString).deletingLastPathComponent + "/kiln"]
        return try #require(candidates.first { FileManager.default.isExecutableFile(atPath: $0) },
                            "no kiln executable next to the tests (looked at \(candidates))")
    }

    @Test("kiln fuzz --all, quick: every format's cases in worker processes, none crashes, hangs, blows up or fails unclean")
    func allFormatsQuick() throws {
        let kiln = try Self.kilnExecutable()
        let directory = NSTemporaryDirectory() + "kiln-fuzz-all-test-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory + "/findings", withIntermediateDirectories: true)
        for format in FuzzFormat.allCases {
            // Model files are the slowest to read (a model is rebuilt for each); the rest get 300.
            let cases = format == .model ? 100 : 300
            let row = try fuzzFormat(format.rawValue, perFormat: cases, seed: 16, chunk: 150, caseTimeout: 60, kiln: kiln,
                                     directory: directory) { _ in nil }
            #expect(row.cases == cases, "\(format)")
            #expect(row.crashes == 0 && row.hangs == 0 && row.unclean == 0 && row.blowUps == 0,
                    "\(format): \(row.crashes) crashes, \(row.hangs) hangs, \(row.unclean) unclean errors, \(row.blowUps) blow-ups")
            #expect(row.clean > 0, "\(format): no case was rejected, so the mutations do nothing")
            if HeapBytes.available { #expect(row.maxPeak > 0, "\(format): the worker measured no heap bytes") }
        }
    }

    @Test("the fuzzer counts a worker's trap as a crash and a silent case as a hang, and goes on after each")
    func detectsCrashesAndHangs() throws {
        let kiln = try Self.kilnExecutable()
        let directory = NSTemporaryDirectory() + "kiln-fuzz-selftest-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory + "/findings", withIntermediateDirectories: true)
        let row = try fuzzFormat("selftest-crash", perFormat: 10, seed: 1, chunk: 10, caseTimeout: 3, kiln: kiln, directory: directory) { _ in nil }
        #expect(row.cases == 10)
        #expect(row.crashes == 1 && row.hangs == 1 && row.clean == 8, "\(row)")
        let kept = try FileManager.default.contentsOfDirectory(atPath: directory + "/findings").sorted()
        #expect(kept == ["selftest-crash-3.txt", "selftest-crash-6.txt"])
    }

    @Test("48 cases run through the kiln executable under a 4 GB and 30 s cap: no crash, hang or memory blow-up")
    func subprocess() throws {
        let executable = try Self.kilnExecutable()
        let directory = NSTemporaryDirectory() + "kiln-fuzz-test-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var fuzzer = try Fuzzer(kiln: executable, seed: 16, memoryMB: 4096, timeout: 30, keep: directory)
        let results = try fuzzer.run(cases: 48, formats: Fuzzer.Format.allCases, verbose: false)
        let total = results.values.reduce(FuzzTally()) { sum, t in
            var s = sum
            s.cases += t.cases; s.cleanErrors += t.cleanErrors; s.crashes += t.crashes; s.hangs += t.hangs; s.blowUps += t.blowUps
            s.unclean += t.unclean
            return s
        }
        #expect(total.cases == 48)
        #expect(total.crashes == 0 && total.hangs == 0 && total.blowUps == 0 && total.unclean == 0,
                "\(results) (findings under \(directory)/findings)")
        #expect(total.cleanErrors > 0)
    }
}

private final class Marker {}
