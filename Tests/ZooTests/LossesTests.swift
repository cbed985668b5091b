import Foundation
import Testing
@testable import KilnZoo
import KilnGraph
import KilnRuntime

@Suite("Losses")
struct LossesTests {
    /// Runs `build` on float64 inputs through the reference interpreter; returns output "loss" and "grad" (d Σloss / d first input).
    func run(_ inputs: [(String, [Int], [Double])], labels: [Int32]? = nil,
             _ build: ([Tensor], Tensor?) -> Tensor) throws -> (loss: [Double], grad: [Double]) {
        let g = GraphBuilder()
        let tensors = inputs.map { g.input($0.0, Shape($0.1), dtype: .float64) }
        let labelTensor = labels.map { g.input("labels", [$0.count], dtype: .int32) }
        let loss = build(tensors, labelTensor)
        g.output("loss", loss)
        g.output("grad", g.gradients(of: loss.sum(), withRespectTo: [tensors[0]])[0])
        var feeds = Dictionary(uniqueKeysWithValues: inputs.map { ($0.0, HostTensor(shape: Shape($0.1), dtype: .float64, scalars: $0.2)) })
        if let labels { feeds["labels"] = HostTensor(shape: [labels.count], dtype: .int32, scalars: labels.map(Double.init)) }
        let out = try Interpreter(graph: try g.build()).outputs(inputs: feeds)
        return (out["loss"]!.scalars, out["grad"]!.scalars)
    }
    func close(_ a: [Double], _ b: [Double], _ tolerance: Double = 1e-12) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tolerance * max(1, abs($1)) }
    }

    @Test("MSE per example is the mean of the squared differences; its gradient 2(p − t)/features")
    func mse() throws {
        let r = try run([("p", [2, 3], [1, 2, 3, 0, 0, 0]), ("t", [2, 3], [1, 0, 0, 1, 2, 2])]) { t, _ in meanSquaredError(t[0], t[1]) }
        #expect(close(r.loss, [13.0 / 3, 9.0 / 3]))
        let expectedGrad: [Double] = [0, 4, 6, -2, -4, -4].map { $0 / 3 }
        #expect(close(r.grad, expectedGrad))
    }

    @Test("binary hinge is max(0, 1 − y·s)")
    func hinge() throws {
        let r = try run([("s", [4], [2, 0.5, -1, 0.25]), ("y", [4], [1, 1, 1, -1])]) { t, _ in hingeLoss(scores: t[0], targets: t[1]) }
        #expect(close(r.loss, [0, 0.5, 2, 1.25]))
        #expect(close(r.grad, [0, -1, -1, 1]))
    }

    @Test("multi-class hinge matches PyTorch's MultiMarginLoss by hand")
    func multiClassHinge() throws {
        // Row 0, label 1: x = (0.1, 0.2, 0.4, 0.8): (1 − 0.2 + 0.1) + (1 − 0.2 + 0.4) + (1 − 0.2 + 0.8) = 3.7, / 4 = 0.925.
        // Row 1, label 0: x = (3, 0, 2.5, 1): 0 + (1 − 3 + 2.5) + 0 = 0.5, / 4 = 0.125.
        let r = try run([("x", [2, 4], [0.1, 0.2, 0.4, 0.8, 3, 0, 2.5, 1])], labels: [1, 0]) {
            multiClassHingeLoss(logits: $0[0], labels: $1!)
        }
        #expect(close(r.loss, [0.925, 0.125]))
        #expect(close(r.grad, [0.25, -0.75, 0.25, 0.25, -0.25, 0, 0.25, 0]))
    }

    @Test("BCE on probabilities: −[t log p + (1 − t) log(1 − p)], finite at p = 0 and 1")
    func bce() throws {
        let r = try run([("p", [4], [0.9, 0.2, 0.5, 0]), ("t", [4], [1, 0, 0.5, 1])]) { t, _ in binaryCrossEntropy(probabilities: t[0], targets: t[1]) }
        #expect(close(Array(r.loss.prefix(3)), [-log(0.9), -log(0.8), log(2)]))
        #expect(abs(r.loss[3] + log(1e-7)) < 1e-9)
        #expect(r.grad.allSatisfy { $0.isFinite })
        #expect(close(Array(r.grad.prefix(2)), [-1 / 0.9, 1 / 0.8]))
    }

    @Test("label smoothing: (1 − ε)·CE + ε·mean of −log softmax; ε = 0 is plain cross-entropy")
    func labelSmoothing() throws {
        let logits: [Double] = [2, 1, 0.1, 0, 0, 3]
        func logSoftmax(_ row: ArraySlice<Double>) -> [Double] {
            let m = row.max()!, s = log(row.reduce(0) { $0 + exp($1 - m) }) + m
            return row.map { $0 - s }
        }
        let rows = [logSoftmax(logits[0..<3]), logSoftmax(logits[3..<6])]
        let labels: [Int32] = [0, 2]
        var expected: [Double] = []
        for i in 0..<2 {
            let hard = -rows[i][Int(labels[i])]
            let uniform = -rows[i].reduce(0, +) / 3
            expected.append(0.9 * hard + 0.1 * uniform)
        }
        let smoothed = try run([("x", [2, 3], logits)], labels: labels) { crossEntropy(logits: $0[0], labels: $1!, labelSmoothing: 0.1) }
        #expect(close(smoothed.loss, expected, 1e-12))
        // Gradient of row 0: softmax − (0.9·onehot + 0.1/3).
        let p0 = rows[0].map(exp)
        #expect(close(Array(smoothed.grad.prefix(3)), [p0[0] - 0.9 - 0.1 / 3, p0[1] - 0.1 / 3, p0[2] - 0.1 / 3], 1e-12))
        let plain = try run([("x", [2, 3], logits)], labels: labels) { crossEntropy(logits: $0[0], labels: $1!) }
        #expect(close(plain.loss, [-rows[0][0], -rows[1][2]], 1e-12))
    }
}
