import Testing
@testable import KilnBench
import KilnRuntime
import KilnGraph
@testable import CLI

/// `kiln bench conv`'s roofline column: the bytes counted per pass and the bandwidth it divides.
@Suite("bench conv roofline")
struct ConvRooflineTests {
    @Test("compulsory bytes: each tensor once, a strided 1x1 layer only the rows of x it reads")
    func compulsoryBytesCount() {
        // ResNet-18's layer2 shortcut: x 2x64x32x32, y 2x128x16x16, w 128x64.
        let shortcut = Conv2DKernel.Geometry(n: 2, c: 64, h: 32, w: 32, o: 128, kh: 1, kw: 1, strideH: 2, strideW: 2,
                                             padH: 0, padW: 0)
        let xRows = 2 * 64 * 16 * 32, x = 2 * 64 * 32 * 32, y = 2 * 128 * 16 * 16, w = 128 * 64
        #expect(compulsoryBytes(shortcut, .forward) == 4 * (xRows + w + y))
        #expect(compulsoryBytes(shortcut, .backwardData) == 4 * (y + w + x))
        #expect(compulsoryBytes(shortcut, .backwardFilter) == 4 * (xRows + y + w))
        // A padded 3x3 layer reads all of x.
        let conv = Conv2DKernel.Geometry(n: 2, c: 16, h: 8, w: 8, o: 32, kh: 3, kw: 3, strideH: 1, strideW: 1, padH: 1, padW: 1)
        #expect(compulsoryBytes(conv, .forward) == 4 * (2 * 16 * 64 + 32 * 16 * 9 + 2 * 32 * 64))
    }

    @Test("bench conv in rounds: each row is its best round, every round's best is in the record")
    func roundsKeepTheBest() throws {
        var settings = BenchSettings(workload: "conv", threads: 2, seed: 0, epochs: nil, limitSteps: nil, dataDirectory: nil,
                                     measurePeak: false)
        settings.convResNet20 = true
        settings.convLayer = "stage3 shortcut"
        settings.convRuns = 1
        settings.convRounds = 3
        let record = try benchConv(settings)
        let extra = Dictionary(uniqueKeysWithValues: record.extra.map { ($0.0, $0.1) })
        #expect(extra["rounds"] as? Int == 3 && extra["runs_per_round"] as? Int == 1)
        let columns = try #require(extra["layer_columns"] as? [String]), rows = try #require(extra["layers"] as? [[Any]])
        #expect(rows.map { $0[2] as? String } == ["forward", "bwd-data", "bwd-filter"])
        let best = try #require(columns.firstIndex(of: "best_ms")), rounds = try #require(columns.firstIndex(of: "round_best_ms"))
        for row in rows {
            let times = try #require(row[rounds] as? [Any]).compactMap { $0 as? Double }
            #expect(times.count == 3 && times.allSatisfy { $0 > 0 })
            #expect(row[best] as? Double == times.min())
        }
    }

    @Test("bench conv --shape times one layer of the user's, its padding and batch in the table and the record")
    func customLayer() throws {
        var settings = BenchSettings(workload: "conv", threads: 2, seed: 0, epochs: nil, limitSteps: nil, dataDirectory: nil,
                                     measurePeak: false)
        settings.convCustom = try ConvBenchLayer.parse("2x3x9x7-o5-k3-s2-p1")
        let g = try #require(settings.convCustom).geometry
        #expect([g.n, g.c, g.h, g.w, g.o, g.kh, g.kw, g.strideH, g.strideW, g.padH, g.padW] == [2, 3, 9, 7, 5, 3, 3, 2, 2, 1, 1])
        let defaults = try ConvBenchLayer.parse("1x4x6x6-o8-k5").geometry
        #expect([defaults.strideH, defaults.padH, defaults.oh] == [1, 0, 2])
        // ResNet's projection shortcut: a stride above the kernel is a layer users write.
        let shortcut = try ConvBenchLayer.parse("128x256x8x8-o512-k1-s2").geometry
        #expect([shortcut.kh, shortcut.strideH, shortcut.oh, shortcut.ow] == [1, 2, 4, 4])
        #expect(throws: KilnError.self) { try ConvBenchLayer.parse("1x4x6x6-o8-k1-s16") }
        settings.convRuns = 1
        settings.convRounds = 1
        let record = try benchConv(settings)
        let extra = Dictionary(uniqueKeysWithValues: record.extra.map { ($0.0, $0.1) })
        #expect(extra["batch"] as? Int == 2)
        let rows = try #require(extra["layers"] as? [[Any]])
        #expect(rows.map { $0[1] as? String } == Array(repeating: "2x3x9x7 -> 5, 3x3, s2 p1", count: 3))
        #expect(rows.map { $0[2] as? String } == ["forward", "bwd-data", "bwd-filter"])
    }

    @Test("the cores' round trip is measured on a machine of two cores or more, as a finite time above a nanosecond")
    func coreRoundTrip() throws {
        // Other tests share the cores while this one runs, so the time can be a scheduler's
        // (milliseconds) rather than a cache line's; each burst stops after 20 ms.
        let nanoseconds = try #require(CoreRoundTrip.measure(roundTrips: 2_000, bursts: 3), "CI machines have 2 cores")
        #expect(nanoseconds > 1 && nanoseconds < 1e9, "\(nanoseconds) ns")
    }

    @Test("the bandwidth measurement copies every byte and gives a finite positive figure")
    func bandwidthMeasures() {
        let m = MemoryBandwidth.measure(threads: 2, megabytesPerThread: 1, runs: 2)
        #expect(m.gigabytesPerSecond.isFinite && m.gigabytesPerSecond > 0)
        #expect(m.threads == 2 && m.bytesPerThread == 1 << 20)
        let count = 1000
        let source = UnsafeMutablePointer<Float>.allocate(capacity: count), target = UnsafeMutablePointer<Float>.allocate(capacity: count)
        defer { source.deallocate(); target.deallocate() }
        for i in 0..<count { source[i] = Float(i) }
        target.initialize(repeating: -1, count: count)
        MemoryBandwidth.scaledCopy(source, target, count, 2)
        #expect((0..<count).allSatisfy { target[$0] == 2 * Float($0) })
    }
}
