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

    @Test("mutations are deterministic in the seed")
    func deterministic() {
        var a = FuzzRandom(state: 7), b = FuzzRandom(state: 7)
        let input = Array("A,1,2,3\nB,4,5,6\n".utf8)
        for _ in 0..<50 { #expect(Fuzzer.mutate(input, &a) == Fuzzer.mutate(input, &b)) }
    }

    @Test("48 cases run through the kiln executable under a 4 GB and 30 s cap: no crash, hang or memory blow-up")
    func subprocess() throws {
        // The tool built next to this test bundle (`swift build --build-tests` builds it too).
        let kiln = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("kiln").path
        let sibling = ((Bundle.main.bundlePath as NSString).deletingLastPathComponent as NSString).appendingPathComponent("kiln")
        let candidates = [kiln, sibling, (Bundle(for: Marker.self).bundlePath as NSString).deletingLastPathComponent + "/kiln"]
        let executable = try #require(candidates.first { FileManager.default.isExecutableFile(atPath: $0) },
                                      "no kiln executable next to the tests (looked at \(candidates))")
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
