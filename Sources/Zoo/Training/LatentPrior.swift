import Foundation
import KilnGraph
import KilnRuntime

/// A Gaussian per class over a VAE's latent codes, fitted after training to the encoder's means
/// of the training images (one Gaussian for an unconditional model): the "ex-post density
/// estimation" of Ghosh et al. 2020 (§4). Sampling z from it instead of N(0, I) draws codes
/// where the decoder has seen data of that class, so a conditional model's samples look like
/// their class even when its decoder leans on z more than on the label.
public struct LatentPrior: Sendable, Equatable {
    /// Per row (class, or one row): the mean [rows × latent] and a lower-triangular factor L of
    /// the covariance (L Lᵀ = Σ + 10⁻⁴ I) [rows × latent × latent], row-major.
    public var means: [Float]
    public var factors: [Float]
    public var rows: Int
    public var latent: Int

    /// Tensor names in a model file.
    public static let meanName = "prior.mean"
    public static let factorName = "prior.scale"

    /// Fits one Gaussian per row of `groups` (each a list of codes of `latent` values).
    public static func fit(codes: [[Float]], groups: [[Int]], latent: Int) -> LatentPrior {
        var means: [Float] = [], factors: [Float] = []
        for members in groups {
            let n = Double(Swift.max(members.count, 1))
            var mean = [Double](repeating: 0, count: latent)
            for i in members { for j in 0..<latent { mean[j] += Double(codes[i][j]) / n } }
            var cov = [Double](repeating: 0, count: latent * latent)
            for i in members {
                for a in 0..<latent {
                    let da = Double(codes[i][a]) - mean[a]
                    for b in 0...a { cov[a * latent + b] += da * (Double(codes[i][b]) - mean[b]) / Swift.max(n - 1, 1) }
                }
            }
            if members.count < 2 { for a in 0..<latent { cov[a * latent + a] = 1 } }  // too few codes: unit spread
            for a in 0..<latent { cov[a * latent + a] += 1e-4 }
            // Cholesky of the lower triangle.
            var l = [Double](repeating: 0, count: latent * latent)
            for a in 0..<latent {
                for b in 0...a {
                    var sum = cov[a * latent + b]
                    for k in 0..<b { sum -= l[a * latent + k] * l[b * latent + k] }
                    l[a * latent + b] = a == b ? Swift.max(sum, 1e-8).squareRoot() : sum / l[b * latent + b]
                }
            }
            means += mean.map(Float.init)
            factors += l.map(Float.init)
        }
        return LatentPrior(means: means, factors: factors, rows: groups.count, latent: latent)
    }

    /// z = mean[row] + L[row] · ε for one code ε (in place).
    public func transform(_ z: UnsafeMutablePointer<Float>, row: Int) {
        var out = [Float](repeating: 0, count: latent)
        for a in 0..<latent {
            var sum = means[row * latent + a]
            for b in 0...a { sum += factors[(row * latent + a) * latent + b] * z[b] }
            out[a] = sum
        }
        for a in 0..<latent { z[a] = out[a] }
    }

    /// Reads the prior from a model file's tensors; nil when the file has none.
    static func read(_ tensors: [String: Safetensors.Entry], latent: Int, rows: Int, path: String) throws -> LatentPrior? {
        guard let mean = tensors[meanName], let factor = tensors[factorName] else { return nil }
        guard mean.rawDType == "F32", factor.rawDType == "F32", mean.shape == [rows, latent], factor.shape == [rows, latent, latent] else {
            throw KilnError.file(path: path, message: "latent prior tensors are \(mean.rawDType) \(mean.shape) and \(factor.rawDType) \(factor.shape), the model needs F32 [\(rows), \(latent)] and [\(rows), \(latent), \(latent)]")
        }
        return LatentPrior(means: mean.floats(), factors: factor.floats(), rows: rows, latent: latent)
    }

    var entries: [Safetensors.Entry] {
        [Safetensors.Entry(name: Self.meanName, shape: [rows, latent], floats: means),
         Safetensors.Entry(name: Self.factorName, shape: [rows, latent, latent], floats: factors)]
    }
}

extension GenerativeTrainer {
    /// The encoder's means (evaluation mode) of every image of `data` (with its label, for a conditional model).
    public func encoderMeans(_ data: ImageDataset, batchSize: Int = 500) throws -> [[Float]] {
        precondition(model.family == .vae, "\(model.name) has no encoder")
        let latent = model.latentSize
        var rows: [[Float]] = []
        var start = 0
        let indices = Array(0..<data.count)
        while start < data.count {
            let end = Swift.min(data.count, start + batchSize)
            let program = try core.program("vae-encode-\(end - start)", seedOffset: 0) {
                let g = GraphBuilder()
                let x = g.input("x", Shape([end - start] + model.imageShape))
                let condition = model.isConditional ? oneHot(g.input("labels", [end - start], dtype: .int32), depth: model.classes) : nil
                g.output("mean", model.encode!(x, condition, false).mean)
                return try g.build()
            }
            let labels = model.isConditional ? try program.inputPointer("labels").assumingMemoryBound(to: Int32.self) : nil
            data.fillBatch(indices: indices[start..<end], into: try program.inputPointer("x").assumingMemoryBound(to: Float.self), labels: labels)
            try program.run()
            let means = try program.outputPointer("mean")
            for r in 0..<(end - start) { rows.append(Array(UnsafeBufferPointer(start: means + r * latent, count: latent))) }
            start = end
        }
        return rows
    }

    /// Fits `latentPrior` to `data`: per class for a conditional model, one Gaussian otherwise.
    public func fitLatentPrior(_ data: ImageDataset) throws {
        let codes = try encoderMeans(data)
        let groups = model.isConditional
            ? (0..<model.classes).map { c in (0..<data.count).filter { Int(data.labels[$0]) == c } }
            : [Array(0..<data.count)]
        latentPrior = LatentPrior.fit(codes: codes, groups: groups, latent: model.latentSize)
    }
}
