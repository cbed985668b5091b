import Foundation
import Testing
@testable import KilnZoo
@testable import KilnBench

/// Reference values printed by numpy 2.4.6 (`python3 -c "import numpy as np; ..."`).
@Suite("NumpyRandom")
struct NumpyRandomTests {
    @Test("SeedSequence pools match numpy, including a list and a word above 32 bits")
    func seedSequencePool() {
        // np.random.SeedSequence([0, 0]).pool
        #expect(NumpySeedSequence(entropy: [0, 0]).pool == [4_265_667_335, 1_328_953_910, 1_320_288_413, 3_365_567_143])
        // np.random.SeedSequence(1234).pool
        #expect(NumpySeedSequence(entropy: 1234).pool == [2_708_132_060, 1_122_953_978, 1_431_643_488, 1_771_436])
        // np.random.SeedSequence([5, 2**40 + 3]).pool: the big integer contributes two words
        #expect(NumpySeedSequence(entropy: [5, (1 << 40) + 3]).pool == [4_267_541_898, 4_207_421_547, 1_726_832_019, 4_270_782_882])
    }

    @Test("generate_state(4, uint64) and PCG64 raw draws match numpy")
    func pcg64RawDraws() {
        let sequence = NumpySeedSequence(entropy: [0, 0])
        #expect(sequence.generateState64(count: 4) ==
            [0xdb2c_d7e7_b0f4_78be, 0xabf4_641a_2c71_ba49, 0x20c6_ed6d_9d7b_8d41, 0x2c40_99de_223c_39d4])
        // np.random.default_rng([0, 0]).bit_generator.random_raw(3)
        var pcg = NumpyPCG64(sequence)
        #expect([pcg.next64(), pcg.next64(), pcg.next64()] == [0xa30f_ebcf_d9c2_825f, 0x4510_bdf8_82d9_d721, 0x0a7d_3da9_4ecd_e8b8])
        // 32-bit draws are the halves of one 64-bit draw, low half first.
        var halves = NumpyPCG64(sequence)
        #expect([halves.next32(), halves.next32()] == [0xd9c2_825f, 0xa30f_ebcf])
    }

    @Test("small permutations match numpy's Generator.permutation")
    func smallPermutations() {
        var a = NumpyGenerator(seed: [0, 0])
        #expect(a.permutation(10) == [4, 6, 2, 7, 3, 5, 9, 0, 8, 1])
        var b = NumpyGenerator(seed: [3, 1])
        #expect(b.permutation(20) == [7, 17, 16, 2, 13, 6, 4, 9, 0, 3, 11, 12, 1, 10, 5, 14, 15, 18, 8, 19])
        var c = NumpyGenerator(seed: 42)
        #expect(c.permutation(7) == [3, 2, 6, 4, 1, 5, 0])
        var d = NumpyGenerator(seed: [7, 2])
        #expect(d.permutation(100) == [
            9, 11, 63, 0, 12, 37, 51, 40, 88, 85, 21, 50, 49, 61, 35, 57, 66, 82, 86, 91, 27, 68, 1, 42, 94,
            19, 93, 92, 22, 25, 99, 46, 96, 83, 6, 79, 53, 33, 73, 18, 65, 24, 76, 23, 7, 64, 38, 20, 13, 58,
            62, 84, 90, 4, 8, 54, 16, 17, 48, 89, 55, 34, 45, 5, 59, 2, 43, 47, 71, 52, 32, 87, 77, 10, 44,
            74, 75, 95, 72, 36, 98, 15, 39, 97, 14, 3, 31, 81, 67, 69, 80, 30, 70, 60, 56, 78, 26, 29, 41, 28,
        ])
        var empty = NumpyGenerator(seed: 1)
        #expect(empty.permutation(0) == [] && empty.permutation(1) == [0])
    }

    @Test("the 60k epoch orders match numpy at both ends, for epochs 0 and 1")
    func epochOrders() {
        let epoch0 = numpyEpochOrder(count: 60000, seed: 0, epoch: 0)
        #expect(Array(epoch0.prefix(8)) == [4013, 23840, 29603, 43011, 58703, 2290, 55984, 52800])
        #expect(Array(epoch0.suffix(4)) == [59576, 48632, 55073, 33375])
        #expect(Set(epoch0).count == 60000)
        #expect(Array(numpyEpochOrder(count: 60000, seed: 0, epoch: 1).prefix(6)) == [48620, 20956, 45422, 160, 38118, 21607])
    }

    @Test("the PyTorch fixtures' batch indices are slices of the epoch-0 order", arguments: ["lenet5-sgdm", "mlp-sgd"])
    func fixtureBatchIndices(fixture: String) throws {
        let path = fixtureDirectory + "/\(fixture).safetensors"
        let indices = try #require(try Safetensors.read(path: path).tensors["batch_indices"])
        let stored = indices.int32s().map(Int.init)
        #expect(stored.count == indices.shape.reduce(1, *) && stored.count > 100)
        #expect(Array(numpyEpochOrder(count: 60000, seed: 0, epoch: 0).prefix(stored.count)) == stored)
    }
}
