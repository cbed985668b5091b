#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny seeded generator, the same on every platform.
/// Data-set generators, augmentation and property tests use it so every draw is reproducible
/// from a printed seed. (Kernels use the counter-based `CounterRandom` instead.)
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [low, high) from the top 53 bits (the same value `Double.random(in:using:)` gives).
    public mutating func uniform(_ low: Double, _ high: Double) -> Double {
        low + (high - low) * Double(next() >> 11) * 0x1p-53
    }

    /// Standard normal by Box–Muller (one of the pair; simplicity over speed).
    public mutating func normal() -> Double {
        let u = 1 - uniform(0, 1)  // (0, 1], so the log is finite
        let v = uniform(0, 1)
        return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * v)
    }
}
