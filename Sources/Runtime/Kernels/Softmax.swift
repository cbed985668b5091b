#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Row-wise softmax, log-softmax and softmax cross-entropy in float32 with float64 sums.
public enum SoftmaxKernel {
    /// Softmax (or log-softmax) of `x` viewed as [outer, length, inner] along the middle axis.
    public static func softmax(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                               outer: Int, length: Int, inner: Int, log logarithm: Bool) {
        for o in 0..<outer {
            for i in 0..<inner {
                let base = o * length * inner + i
                var m = -Float.infinity
                for j in 0..<length { m = Swift.max(m, x[base + j * inner]) }
                var sum = 0.0
                for j in 0..<length { sum += Double(exp(x[base + j * inner] - m)) }
                if logarithm {
                    let logSum = Float(log(sum))
                    for j in 0..<length { y[base + j * inner] = x[base + j * inner] - m - logSum }
                } else {
                    let scale = Float(1 / sum)
                    for j in 0..<length { y[base + j * inner] = exp(x[base + j * inner] - m) * scale }
                }
            }
        }
    }

    /// Per-row loss logsumexp(logits[r]) − logits[r, label[r]]. A label out of range gives NaN
    /// in its row; the first such row is returned (nil when every label is valid).
    @discardableResult
    public static func crossEntropy(_ logits: UnsafePointer<Float>, _ labels: UnsafePointer<Int32>,
                                    _ loss: UnsafeMutablePointer<Float>, rows: Int, classes: Int) -> Int? {
        var firstBad: Int?
        for r in 0..<rows {
            let row = logits + r * classes
            var m = -Float.infinity
            for j in 0..<classes { m = Swift.max(m, row[j]) }
            var sum = 0.0
            for j in 0..<classes { sum += Double(exp(row[j] - m)) }
            let label = Int(labels[r])
            if label >= 0 && label < classes {
                loss[r] = Float(log(sum)) + m - row[label]
            } else {
                loss[r] = .nan
                if firstBad == nil { firstBad = r }
            }
        }
        return firstBad
    }
}
