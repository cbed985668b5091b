/// The peers' initial weights (`bench/common.py`, `lenet5_weights`/`mlp_weights`/`vae_weights`/`mnist_cnn_weights`):
/// PyTorch's default U(±1/√fan_in) for every weight and bias, drawn from numpy's
/// `default_rng([seed, 1000 + k])` in the peers' order. With them Kiln starts a benchmark from
/// exactly the weights PyTorch, JAX and tinygrad start from.
public enum PeerInitialization {
    /// Parameter values by Kiln's (PyTorch's) names for `lenet5`, `mlp`/`mlp-dropout`, `vae` or `mnist-cnn`, or nil for other models.
    public static func parameters(model: String, seed: UInt64) -> [(name: String, values: [Float])]? {
        // (generator stream, layers as (name, fan_in, weight count, bias count))
        let layers: [(String, Int, Int, Int)]
        let stream: UInt64
        switch model {
        case "lenet5":
            stream = 1000
            layers = [("conv1", 25, 6 * 25, 6), ("conv2", 150, 16 * 150, 16), ("fc1", 400, 120 * 400, 120),
                      ("fc2", 120, 84 * 120, 84), ("fc3", 84, 10 * 84, 10)]
        case "mlp", "mlp-dropout":
            stream = 1001
            layers = [("fc1", 784, 200 * 784, 200), ("fc2", 200, 200 * 200, 200), ("fc3", 200, 10 * 200, 10)]
        case "vae":
            stream = 1002
            layers = [("enc", 784, 400 * 784, 400), ("mu", 400, 20 * 400, 20), ("logvar", 400, 20 * 400, 20),
                      ("dec1", 20, 400 * 20, 400), ("dec2", 400, 784 * 400, 784)]
        case "mnist-cnn":
            stream = 1004
            layers = [("conv1", 9, 32 * 9, 32), ("conv2", 288, 64 * 288, 64), ("fc1", 9216, 128 * 9216, 128),
                      ("fc2", 128, 10 * 128, 10)]
        default:
            return nil
        }
        var rng = NumpyGenerator(seed: [seed, stream])
        var result: [(String, [Float])] = []
        for (name, fanIn, weights, biases) in layers {
            let bound = 1 / Double(fanIn).squareRoot()
            result.append(("\(name).weight", rng.uniform(low: -bound, high: bound, count: weights).map { Float($0) }))
            result.append(("\(name).bias", rng.uniform(low: -bound, high: bound, count: biases).map { Float($0) }))
        }
        return result
    }
}

extension NumpyGenerator {
    /// `Generator.uniform(low, high, size=count)`: low + (high − low)·u with u the top 53 bits of
    /// a 64-bit draw over 2⁵³, in float64 (numpy's `random_uniform` / `next_double`).
    public mutating func uniform(low: Double, high: Double, count: Int) -> [Double] {
        let range = high - low
        return (0..<count).map { _ in low + range * (Double(bitGenerator.next64() >> 11) * (1.0 / 9_007_199_254_740_992.0)) }
    }
}
