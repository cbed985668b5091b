import Foundation
import Testing
@testable import KilnRuntime

@Suite("CounterRandom")
struct CounterRandomTests {
    /// Random123's kat_vectors (counter, key → output) for philox4x32 with 10 rounds.
    static let knownAnswers: [([UInt32], [UInt32], [UInt32])] = [
        ([0, 0, 0, 0], [0, 0], [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]),
        ([.max, .max, .max, .max], [.max, .max], [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]),
        ([0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344], [0xa409_3822, 0x299f_31d0],
         [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]),
    ]

    @Test("Philox4x32-10 reproduces Random123's known-answer vectors", arguments: knownAnswers)
    func knownAnswer(counter: [UInt32], key: [UInt32], expected: [UInt32]) {
        let out = CounterRandom.philox4x32(counter: (counter[0], counter[1], counter[2], counter[3]), key: (key[0], key[1]))
        #expect([out.0, out.1, out.2, out.3] == expected)
    }

    private func uniforms(_ random: CounterRandom, stream: Int, step: UInt64, count: Int = 64) -> [Float] {
        (0..<count).map { random.uniform(stream: stream, step: step, index: $0) }
    }

    @Test("the same seed, stream, step and index give the same draw, in any order")
    func determinism() {
        let a = CounterRandom(seed: 42), b = CounterRandom(seed: 42)
        let forward = uniforms(a, stream: 3, step: 7)
        let backward = (0..<64).reversed().map { b.uniform(stream: 3, step: 7, index: $0) }.reversed()
        #expect(forward == Array(backward))
        #expect((0..<64).map { a.normal(stream: 1, step: 2, index: $0) } == (0..<64).map { b.normal(stream: 1, step: 2, index: $0) })
    }

    @Test("different seeds, streams and steps give different draws")
    func independence() {
        let base = uniforms(CounterRandom(seed: 1), stream: 0, step: 0)
        let others = [uniforms(CounterRandom(seed: 2), stream: 0, step: 0),
                      uniforms(CounterRandom(seed: 1), stream: 1, step: 0),
                      uniforms(CounterRandom(seed: 1), stream: -1, step: 0),
                      uniforms(CounterRandom(seed: 1), stream: 0, step: 1),
                      uniforms(CounterRandom(seed: 1 << 32), stream: 0, step: 0),
                      uniforms(CounterRandom(seed: 1), stream: 0, step: 1 << 32)]
        for other in others {
            // Two independent sequences of 64 24-bit draws agree in at most a stray element.
            #expect(zip(base, other).filter { $0 == $1 }.count <= 1)
        }
        // Within one sequence the draws are not repeated either.
        #expect(Set(base).count >= 63)
    }

    @Test("fills equal the per-index functions, including partial blocks", arguments: [1, 2, 3, 4, 5, 7, 13, 33])
    func fillsMatchPerIndex(count: Int) {
        let random = CounterRandom(seed: 0xDEAD_BEEF_1234)
        var uniform = [Float](repeating: -1, count: count), normal = [Float](repeating: -1, count: count)
        uniform.withUnsafeMutableBufferPointer { random.fillUniform($0, stream: 5, step: 9) }
        normal.withUnsafeMutableBufferPointer { random.fillNormal($0, stream: 5, step: 9) }
        #expect(uniform == (0..<count).map { random.uniform(stream: 5, step: 9, index: $0) })
        #expect(normal == (0..<count).map { random.normal(stream: 5, step: 9, index: $0) })
    }

    @Test("a fill split into ranges gives the same values as one fill", arguments: [(4100, [0, 1024, 2052, 4100]), (13, [0, 4, 13])])
    func rangedFills(count: Int, cuts: [Int]) {
        let random = CounterRandom(seed: 99)
        var whole = [Float](repeating: 0, count: count), pieces = [Float](repeating: -1, count: count)
        var wholeUniform = whole, piecesUniform = pieces
        whole.withUnsafeMutableBufferPointer { random.fillNormal($0, stream: 2, step: 3) }
        wholeUniform.withUnsafeMutableBufferPointer { random.fillUniform($0, stream: 2, step: 3) }
        for (start, end) in zip(cuts, cuts.dropFirst()) {
            pieces.withUnsafeMutableBufferPointer { random.fillNormal($0, stream: 2, step: 3, range: start..<end) }
            piecesUniform.withUnsafeMutableBufferPointer { random.fillUniform($0, stream: 2, step: 3, range: start..<end) }
        }
        #expect(pieces == whole)
        #expect(piecesUniform == wholeUniform)
    }

    @Test("uniform draws lie in [0, 1) with mean 0.5 and variance 1/12 over 100k draws")
    func uniformMoments() {
        var draws = [Float](repeating: 0, count: 100_000)
        draws.withUnsafeMutableBufferPointer { CounterRandom(seed: 7).fillUniform($0, stream: 0, step: 0) }
        #expect(draws.allSatisfy { $0 >= 0 && $0 < 1 })
        let mean = draws.reduce(0.0) { $0 + Double($1) } / Double(draws.count)
        let variance = draws.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(draws.count)
        // Standard errors: 0.0009 for the mean, 0.0003 for the variance; tolerances are > 5 of them.
        #expect(Swift.abs(mean - 0.5) < 0.005)
        #expect(Swift.abs(variance - 1.0 / 12) < 0.002)
    }

    @Test("normal draws are Box–Muller of their Philox words: within 1e-6 of it in double precision over 100k draws")
    func normalAccuracy() {
        let seed: UInt64 = 0x0123_4567_89AB, stream = 3, step: UInt64 = 11
        var draws = [Float](repeating: 0, count: 100_000)
        draws.withUnsafeMutableBufferPointer { CounterRandom(seed: seed).fillNormal($0, stream: stream, step: step) }
        var worst = 0.0
        for index in draws.indices {
            let words = CounterRandom.philox4x32(counter: (UInt32(index / 2), UInt32(stream), UInt32(step), 0),
                                                 key: (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)))
            let (a, b) = index % 2 == 0 ? (words.0, words.1) : (words.2, words.3)
            let u1 = (Double(a >> 8) + 1) * 0x1p-24, u2 = Double(b >> 8) * 0x1p-24
            let exact = (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
            worst = Swift.max(worst, Swift.abs(Double(draws[index]) - exact))
        }
        #expect(worst < 1e-6, "largest difference from double-precision Box–Muller: \(worst)")
    }

    @Test("normal draws have mean 0, variance 1 and symmetric tails over 100k draws")
    func normalMoments() {
        var draws = [Float](repeating: 0, count: 100_000)
        draws.withUnsafeMutableBufferPointer { CounterRandom(seed: 7).fillNormal($0, stream: 0, step: 0) }
        let n = Double(draws.count)
        let mean = draws.reduce(0.0) { $0 + Double($1) } / n
        let variance = draws.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / n
        // Standard errors: 0.0032 for the mean, 0.0045 for the variance; tolerances are > 5 of them.
        #expect(Swift.abs(mean) < 0.02)
        #expect(Swift.abs(variance - 1) < 0.03)
        // P(|z| > 2) = 0.0455: expect 4550 ± 66 draws beyond 2 standard deviations.
        let tails = draws.filter { Swift.abs($0) > 2 }.count
        #expect(tails > 4200 && tails < 4900)
        #expect(draws.allSatisfy { $0.isFinite && Swift.abs($0) < 6 })
    }
}
