/// Bit-exact re-implementations of the parts of `numpy.random` the peer benchmarks use, so Kiln
/// visits the training data in the same order as every peer: `default_rng(seed).permutation(n)`.
///
/// Three layers, each as numpy has them (numpy 2.x, `numpy/random/bit_generator.pyx`,
/// `_pcg64.pyx`, `pcg64.h`, `_generator.pyx`, `distributions.c`):
/// * `NumpySeedSequence`: `SeedSequence(entropy)` with the default pool of four 32-bit words;
/// * `NumpyPCG64`: the PCG64 bit generator (128-bit LCG, XSL-RR output) seeded from it;
/// * `NumpyGenerator`: `Generator.permutation`/`shuffle` (Fisher–Yates from the end, indices drawn
///   by `random_interval`, i.e. masked rejection on 32-bit draws).
///
/// numpy gives no stream-compatibility promise across versions; these match numpy 2.4.

/// numpy's `SeedSequence` with an integer entropy list and no spawn key.
public struct NumpySeedSequence: Sendable, Equatable {
    /// The mixed entropy pool (`SeedSequence.pool`), four 32-bit words.
    public private(set) var pool: [UInt32]

    private static let poolSize = 4
    private static let initA: UInt32 = 0x43b0_d7e5
    private static let multA: UInt32 = 0x931e_8875
    private static let initB: UInt32 = 0x8b51_f9dd
    private static let multB: UInt32 = 0x58f3_8ded
    private static let mixMultL: UInt32 = 0xca01_f9dd
    private static let mixMultR: UInt32 = 0x4973_f715
    private static let xShift: UInt32 = 16

    /// `SeedSequence([e0, e1, ...])`: every integer contributes its 32-bit words, least significant
    /// first (zero contributes one zero word), as numpy's `_coerce_to_uint32_array` does.
    public init(entropy: [UInt64]) {
        var words: [UInt32] = []
        for value in entropy {
            if value == 0 { words.append(0); continue }
            var rest = value
            while rest > 0 {
                words.append(UInt32(truncatingIfNeeded: rest))
                rest >>= 32
            }
        }
        pool = Self.mixEntropy(words)
    }

    /// `SeedSequence(seed)` for one integer.
    public init(entropy: UInt64) { self.init(entropy: [entropy]) }

    private static func hashmix(_ value: UInt32, _ hashConstant: inout UInt32) -> UInt32 {
        var v = value ^ hashConstant
        hashConstant = hashConstant &* multA
        v = v &* hashConstant
        return v ^ (v >> xShift)
    }

    private static func mix(_ x: UInt32, _ y: UInt32) -> UInt32 {
        let r = mixMultL &* x &- mixMultR &* y
        return r ^ (r >> xShift)
    }

    private static func mixEntropy(_ entropy: [UInt32]) -> [UInt32] {
        var hashConstant = initA
        var mixer = (0..<poolSize).map { i in hashmix(i < entropy.count ? entropy[i] : 0, &hashConstant) }
        for source in 0..<poolSize {
            for destination in 0..<poolSize where source != destination {
                mixer[destination] = mix(mixer[destination], hashmix(mixer[source], &hashConstant))
            }
        }
        if entropy.count > poolSize {
            for source in poolSize..<entropy.count {
                for destination in 0..<poolSize {
                    mixer[destination] = mix(mixer[destination], hashmix(entropy[source], &hashConstant))
                }
            }
        }
        return mixer
    }

    /// `generate_state(count, np.uint32)`.
    public func generateState32(count: Int) -> [UInt32] {
        var hashConstant = Self.initB
        return (0..<count).map { i in
            var value = pool[i % Self.poolSize] ^ hashConstant
            hashConstant = hashConstant &* Self.multB
            value = value &* hashConstant
            return value ^ (value >> Self.xShift)
        }
    }

    /// `generate_state(count, np.uint64)`: pairs of 32-bit words, the first one low (little-endian view).
    public func generateState64(count: Int) -> [UInt64] {
        let words = generateState32(count: 2 * count)
        return (0..<count).map { UInt64(words[2 * $0]) | UInt64(words[2 * $0 + 1]) << 32 }
    }
}

/// numpy's PCG64 bit generator: a 128-bit LCG whose output is the XSL-RR permutation of the state.
public struct NumpyPCG64: Sendable {
    private var stateHigh: UInt64
    private var stateLow: UInt64
    private let incrementHigh: UInt64
    private let incrementLow: UInt64
    /// numpy hands out 64-bit draws as two 32-bit values, low half first; the high half waits here.
    private var pendingUInt32: UInt32?

    private static let multiplierHigh: UInt64 = 2_549_297_995_355_413_924
    private static let multiplierLow: UInt64 = 4_865_540_595_714_422_341

    /// Seeds as `PCG64(seed_sequence)`: four 64-bit state words; words 0–1 are the initial state,
    /// 2–3 the stream (high word first), then PCG's `srandom`: inc = stream·2+1, step, add state, step.
    public init(_ seedSequence: NumpySeedSequence) {
        let words = seedSequence.generateState64(count: 4)
        let (initHigh, initLow) = (words[0], words[1])
        let (sequenceHigh, sequenceLow) = (words[2], words[3])
        incrementHigh = sequenceHigh << 1 | sequenceLow >> 63
        incrementLow = sequenceLow << 1 | 1
        stateHigh = 0
        stateLow = 0
        step()
        let (low, carry) = stateLow.addingReportingOverflow(initLow)
        stateLow = low
        stateHigh = stateHigh &+ initHigh &+ (carry ? 1 : 0)
        step()
    }

    /// state = state · multiplier + increment (mod 2¹²⁸).
    private mutating func step() {
        let product = stateLow.multipliedFullWidth(by: Self.multiplierLow)
        var high = product.high &+ stateLow &* Self.multiplierHigh &+ stateHigh &* Self.multiplierLow
        let (low, carry) = product.low.addingReportingOverflow(incrementLow)
        high = high &+ incrementHigh &+ (carry ? 1 : 0)
        stateHigh = high
        stateLow = low
    }

    /// The next 64-bit output (`random_raw`): advance, then XSL-RR of the new state.
    public mutating func next64() -> UInt64 {
        step()
        let rotation = stateHigh >> 58
        let folded = stateHigh ^ stateLow
        return (folded >> rotation) | (folded << ((64 &- rotation) & 63))
    }

    /// The next 32-bit output: halves of one 64-bit draw, low half first (numpy's `pcg64_next32`).
    public mutating func next32() -> UInt32 {
        if let pending = pendingUInt32 {
            pendingUInt32 = nil
            return pending
        }
        let value = next64()
        pendingUInt32 = UInt32(truncatingIfNeeded: value >> 32)
        return UInt32(truncatingIfNeeded: value)
    }
}

/// numpy's `Generator` on PCG64, with the methods Kiln needs to reproduce peer runs.
public struct NumpyGenerator: Sendable {
    /// The underlying bit generator.
    public var bitGenerator: NumpyPCG64

    /// `numpy.random.default_rng([s0, s1, ...])` for non-negative integers.
    public init(seed: [UInt64]) { bitGenerator = NumpyPCG64(NumpySeedSequence(entropy: seed)) }

    /// `numpy.random.default_rng(s)`.
    public init(seed: UInt64) { self.init(seed: [seed]) }

    /// A uniform integer in 0...max, numpy's `random_interval`: draw under the smallest covering
    /// bit mask, reject values above `max` (32-bit draws while `max` fits in 32 bits).
    public mutating func randomInterval(_ max: UInt64) -> UInt64 {
        if max == 0 { return 0 }
        var mask = max
        mask |= mask >> 1; mask |= mask >> 2; mask |= mask >> 4
        mask |= mask >> 8; mask |= mask >> 16; mask |= mask >> 32
        if max <= 0xFFFF_FFFF {
            while true {
                let value = UInt64(bitGenerator.next32()) & mask
                if value <= max { return value }
            }
        }
        while true {
            let value = bitGenerator.next64() & mask
            if value <= max { return value }
        }
    }

    /// Shuffles in place like `Generator.shuffle` on a 1-D array: for i = n−1 down to 1, swap
    /// element i with element `randomInterval(i)`.
    public mutating func shuffle<T>(_ values: inout [T]) {
        guard values.count > 1 else { return }
        for i in stride(from: values.count - 1, through: 1, by: -1) {
            let j = Int(randomInterval(UInt64(i)))
            values.swapAt(i, j)
        }
    }

    /// `Generator.permutation(n)`: a shuffled `0..<n`.
    public mutating func permutation(_ count: Int) -> [Int] {
        precondition(count >= 0, "permutation of a negative count")
        var values = Array(0..<count)
        shuffle(&values)
        return values
    }
}

/// The peers' data order for one epoch: `numpy.random.default_rng([seed, epoch]).permutation(count)`.
public func numpyEpochOrder(count: Int, seed: UInt64, epoch: Int) -> [Int] {
    precondition(epoch >= 0, "negative epoch")
    var generator = NumpyGenerator(seed: [seed, UInt64(epoch)])
    return generator.permutation(count)
}
