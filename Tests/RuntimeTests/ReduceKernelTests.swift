import Foundation
import Testing
import KilnGraph
import KilnRuntime

/// Batch-norm-shaped reductions over axes (0, 2, 3) of NCHW, compiled: the plain reduce kernel
/// (rows cut into fixed parts, wide accumulators) and the fused reduction sink, against naive
/// float64 loops, and bit-identical on 1, 2 and 3 threads.
@Suite("Compiled channel reductions")
struct ReduceKernelTests {
    @Test("sum, mean of squares and max over (0, 2, 3) against naive loops, same bits on 1, 2 and 3 threads",
          arguments: [[10, 5, 37, 37], [600, 7, 4, 4], [1200, 14, 2, 2], [3, 4, 5, 5], [70, 3, 1, 1], [2, 130, 17, 16]])
    func channelReductions(_ dims: [Int]) throws {
        let shape = Shape(dims)
        let (n, c, hw) = (dims[0], dims[1], dims[2] * dims[3])
        var values = [Float](repeating: 0, count: shape.count)
        for i in values.indices {
            let wave: Double = sin(Double(i) * 0.61) * 3
            values[i] = Float(wave + Double(i % 7) * 0.25)
        }
        var expectedSum = [Double](repeating: 0, count: c), expectedSquares = [Double](repeating: 0, count: c)
        var expectedMax = [Float](repeating: -.infinity, count: c), magnitude = [Double](repeating: 0, count: c)
        for image in 0..<n {
            for channel in 0..<c {
                for i in 0..<hw {
                    let v = values[(image * c + channel) * hw + i]
                    expectedSum[channel] += Double(v)
                    expectedSquares[channel] += Double(v * v)
                    expectedMax[channel] = Swift.max(expectedMax[channel], v)
                    magnitude[channel] += Double(v.magnitude)
                }
            }
        }
        var results: [[[UInt32]]] = []
        for threads in [1, 2, 3] {
            let g = GraphBuilder()
            let x = g.input("x", shape)
            g.output("sum", x.sum(axes: [0, 2, 3]))
            g.output("squares", square(x).mean(axes: [0, 2, 3]))
            g.output("max", x.max(axes: [0, 2, 3]))
            g.output("pooled", square(x).mean(axes: [2, 3]))  // many outputs of one row each
            let program = try Executable(graph: try g.build(), store: ParameterStore(seed: 1), threads: threads)
            try program.setInput("x", values)
            try program.run()
            let sum = try program.output("sum"), squares = try program.output("squares"), max = try program.output("max")
            let count = Double(n * hw)
            for channel in 0..<c {
                let bound = 1e-6 * magnitude[channel] + 1e-6
                #expect(abs(Double(sum[channel]) - expectedSum[channel]) <= bound, "\(dims) sum, channel \(channel)")
                let squaresBound = 1e-6 * expectedSquares[channel] / count + 1e-7
                #expect(abs(Double(squares[channel]) - expectedSquares[channel] / count) <= squaresBound,
                        "\(dims) mean of squares, channel \(channel)")
                #expect(max[channel] == expectedMax[channel], "\(dims) max, channel \(channel)")
            }
            let pooled = try program.output("pooled")
            for plane in 0..<(n * c) {
                var exact = 0.0
                for i in 0..<hw { exact += Double(values[plane * hw + i] * values[plane * hw + i]) }
                exact /= Double(hw)
                #expect(abs(Double(pooled[plane]) - exact) <= 1e-6 * exact + 1e-7, "\(dims) pooled squares, plane \(plane)")
            }
            results.append([sum, squares, max, pooled].map { $0.map(\.bitPattern) })
        }
        #expect(results[0] == results[1], "\(dims): 1 and 2 threads differ")
        #expect(results[0] == results[2], "\(dims): 1 and 3 threads differ")
    }

    /// Reductions whose rows fall into blocks that share no output (an upsampling's gradient:
    /// [N, C, H, 2, W, 2] summed over the 2s; a sum over channels; over two middle axes), run in
    /// parallel blocks: against naive float64 sums, and the same bits on 1, 2 and 3 threads.
    @Test("block-parallel sums (an upsampling's gradient, middle axes) against naive loops, same bits on 1, 2 and 3 threads",
          arguments: [([7, 5, 6, 2, 9, 2], [3, 5]), ([40, 33, 4, 4], [1]), ([3, 4, 5, 6, 7], [1, 3]), ([200, 64, 3, 2, 5, 2], [3, 5]),
                      ([40, 40, 3, 2, 19, 2], [3, 5]), ([30, 20, 4, 3, 11, 3], [3, 5])])
    func blockParallelSums(_ dims: [Int], _ axes: [Int]) throws {
        let shape = Shape(dims)
        let values = (0..<shape.count).map { (i: Int) -> Float in
            let wave: Double = sin(Double(i) * 0.37) * 2
            return Float(wave + Double(i % 5) * 0.125)
        }
        var outDims = dims
        for axis in axes { outDims[axis] = 1 }
        let outCount = outDims.reduce(1, *)
        var expected = [Double](repeating: 0, count: outCount), magnitude = expected
        let strides = shape.strides, outStrides = Shape(outDims).strides
        for i in 0..<shape.count {
            var out = 0
            for axis in dims.indices where !axes.contains(axis) { out += (i / strides[axis]) % dims[axis] * outStrides[axis] }
            expected[out] += Double(values[i]); magnitude[out] += Double(values[i].magnitude)
        }
        var results: [[UInt32]] = []
        for threads in [1, 2, 3] {
            let g = GraphBuilder()
            let x = g.input("x", shape)
            g.output("sum", x.sum(axes: axes))
            g.output("mean", x.mean(axes: axes))
            let program = try Executable(graph: try g.build(), store: ParameterStore(seed: 1), threads: threads)
            try program.setInput("x", values)
            try program.run()
            let sum = try program.output("sum"), mean = try program.output("mean")
            let count = Double(shape.count / outCount)
            for o in 0..<outCount {
                #expect(abs(Double(sum[o]) - expected[o]) <= 1e-6 * magnitude[o] + 1e-7, "\(dims) \(axes) sum, output \(o)")
                #expect(abs(Double(mean[o]) - expected[o] / count) <= (1e-6 * magnitude[o] + 1e-7) / count,
                        "\(dims) \(axes) mean, output \(o)")
            }
            results.append((sum + mean).map(\.bitPattern))
        }
        #expect(results[0] == results[1] && results[0] == results[2], "\(dims) \(axes): thread counts differ")
    }

    /// Nearest upsampling written as reshape, broadcast and reshape (the zoo's
    /// `upsampleNearest2x`, and ×3): each source float repeated in place, on 1, 2 and 3 threads.
    @Test("broadcast that repeats each float side by side (nearest upsampling) copies exactly on 1, 2 and 3 threads",
          arguments: [([6, 5, 7, 19], 2), ([2, 3, 4, 8], 2), ([3, 4, 5, 6], 3)])
    func upsamplingBroadcast(_ dims: [Int], _ factor: Int) throws {
        let (n, c, h, w) = (dims[0], dims[1], dims[2], dims[3])
        let values = (0..<(n * c * h * w)).map { Float($0) * 0.5 - 3 }
        for threads in [1, 2, 3] {
            let g = GraphBuilder()
            let x = g.input("x", Shape(dims))
            let up = x.reshaped([n, c, h, 1, w, 1]).broadcast(to: [n, c, h, factor, w, factor])
            g.output("up", up.reshaped([n, c, h * factor, w * factor]))
            let program = try Executable(graph: try g.build(), store: ParameterStore(seed: 1), threads: threads)
            try program.setInput("x", values)
            try program.run()
            let out = try program.output("up")
            var expected = [Float]()
            for plane in 0..<(n * c) {
                for row in 0..<(h * factor) {
                    for column in 0..<(w * factor) { expected.append(values[(plane * h + row / factor) * w + column / factor]) }
                }
            }
            #expect(out == expected, "\(dims) ×\(factor) threads=\(threads)")
        }
    }
}
