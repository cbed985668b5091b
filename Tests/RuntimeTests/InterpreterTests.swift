import Foundation
import Testing
import KilnGraph
@testable import KilnRuntime

/// Builds a graph with `build`, runs it on `feeds`, and returns the value `build` returned.
private func evaluate(_ feeds: [String: HostTensor] = [:], seed: UInt64 = 0, step: UInt64 = 0,
                      _ build: (GraphBuilder) -> Tensor) throws -> HostTensor {
    let builder = GraphBuilder()
    let result = build(builder)
    let graph = try builder.build()
    return try Interpreter(graph: graph).run(inputs: feeds, seed: seed, step: step)[result.id]
}

private func f64(_ shape: Shape, _ scalars: [Double]) -> HostTensor { HostTensor(shape: shape, dtype: .float64, scalars: scalars) }
private func i32(_ shape: Shape, _ scalars: [Double]) -> HostTensor { HostTensor(shape: shape, dtype: .int32, scalars: scalars) }

private func close(_ a: [Double], _ b: [Double], tolerance: Double = 1e-12) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0 == $1 || Swift.abs($0 - $1) <= tolerance * Swift.max(1, Swift.abs($1)) }
}

/// Integer-valued pseudo-random scalars in -3...3: sums of their products are exact in Double,
/// so adjoint identities can be checked with ==.
private func integers(_ count: Int, seed: UInt64) -> [Double] {
    let random = CounterRandom(seed: seed)
    return (0..<count).map { (Double(random.uniform(stream: 0, step: 0, index: $0)) * 7).rounded(.down) - 3 }
}

private func inner(_ a: HostTensor, _ b: HostTensor) -> Double {
    zip(a.scalars, b.scalars).reduce(0) { $0 + $1.0 * $1.1 }
}

@Suite("Interpreter")
struct InterpreterTests {
    // MARK: Elementwise

    static let unaryCases: [(UnaryFunction, [Double])] = [
        (.neg, [2, 0.5, 0, -1.5]),
        (.exp, [Foundation.exp(-2), Foundation.exp(-0.5), 1, Foundation.exp(1.5)]),
        (.square, [4, 0.25, 0, 2.25]),
        (.tanh, [Foundation.tanh(-2), Foundation.tanh(-0.5), 0, Foundation.tanh(1.5)]),
        (.sigmoid, [1 / (1 + Foundation.exp(2)), 1 / (1 + Foundation.exp(0.5)), 0.5, 1 / (1 + Foundation.exp(-1.5))]),
        (.relu, [0, 0, 0, 1.5]),
        (.softplus, [Foundation.log(1 + Foundation.exp(-2)), Foundation.log(1 + Foundation.exp(-0.5)), Foundation.log(2),
                     Foundation.log(1 + Foundation.exp(1.5))]),
        (.abs, [2, 0.5, 0, 1.5]),
        (.sign, [-1, -1, 0, 1]),
        (.reciprocal, [-0.5, -2, .infinity, 1 / 1.5]),
    ]

    @Test("unary functions on [-2, -0.5, 0, 1.5] in float64", arguments: unaryCases)
    func unary(function: UnaryFunction, expected: [Double]) throws {
        let y = try evaluate(["x": f64([4], [-2, -0.5, 0, 1.5])]) { g in
            g.apply(.unary(function), [g.input("x", [4], dtype: .float64)])
        }
        #expect(close(y.scalars, expected), "\(function): \(y.scalars)")
    }

    @Test("log and sqrt of positive values; softplus stays finite for large inputs")
    func logSqrtSoftplus() throws {
        let feeds = ["x": f64([3], [1, 4, 800])]
        let logY = try evaluate(feeds) { log($0.input("x", [3], dtype: .float64)) }
        let sqrtY = try evaluate(feeds) { sqrt($0.input("x", [3], dtype: .float64)) }
        let softplusY = try evaluate(["x": f64([2], [800, -800])]) { softplus($0.input("x", [2], dtype: .float64)) }
        #expect(close(logY.scalars, [0, Foundation.log(4), Foundation.log(800)]))
        #expect(sqrtY.scalars == [1, 2, Double(800).squareRoot()])
        #expect(softplusY.scalars == [800, Foundation.log1p(Foundation.exp(-800))])
    }

    @Test("float32 results are rounded to Float, float64 results are not")
    func float32Rounding() throws {
        let third = 1.0 / 3.0
        let y32 = try evaluate(["x": HostTensor(shape: [1], scalars: [third])]) { exp($0.input("x", [1])) }
        let y64 = try evaluate(["x": f64([1], [third])]) { exp($0.input("x", [1], dtype: .float64)) }
        let fedThird = Double(Float(third))
        #expect(y32.scalars == [Double(Float(Foundation.exp(fedThird)))])
        #expect(y64.scalars == [Foundation.exp(third)])
    }

    @Test("power with integer and fractional exponents")
    func power() throws {
        let feeds = ["x": f64([3], [2, 4, 9])]
        #expect(try evaluate(feeds) { pow($0.input("x", [3], dtype: .float64), 3) }.scalars == [8, 64, 729])
        #expect(try evaluate(feeds) { pow($0.input("x", [3], dtype: .float64), 0.5) }.scalars == [Double(2).squareRoot(), 2, 3])
    }

    static let broadcastCases: [(Shape, Shape, Shape)] = [
        ([2, 3], [3], [2, 3]),
        ([2, 1], [1, 3], [2, 3]),
        ([], [2, 3], [2, 3]),
        ([3, 1, 2], [4, 1], [3, 4, 2]),
        ([], [], []),
        ([1], [5], [5]),
        ([2, 3], [1, 1], [2, 3]),
    ]

    @Test("binary ops broadcast numpy-style", arguments: broadcastCases)
    func broadcasting(a: Shape, b: Shape, result: Shape) throws {
        let av = (0..<a.count).map { Double($0 + 1) }, bv = (0..<b.count).map { Double(10 * ($0 + 1)) }
        let y = try evaluate(["a": f64(a, av), "b": f64(b, bv)]) { g in
            g.input("a", a, dtype: .float64) + g.input("b", b, dtype: .float64)
        }
        #expect(y.shape == result)
        // Check every element against the numpy definition: index each operand with its
        // trailing coordinates, using 0 on its size-1 axes.
        let strides = result.strides
        for flat in 0..<result.count {
            let index = (0..<result.rank).map { flat / strides[$0] % result[$0] }
            func read(_ shape: Shape, _ values: [Double]) -> Double {
                let offset = result.rank - shape.rank
                var position = 0
                for axis in 0..<shape.rank { position = position * shape[axis] + (shape[axis] == 1 ? 0 : index[axis + offset]) }
                return values[position]
            }
            #expect(y.scalars[flat] == read(a, av) + read(b, bv))
        }
    }

    @Test("arithmetic, extrema and comparisons on known numbers")
    func binaryFunctions() throws {
        let feeds = ["a": f64([4], [1, 2, 3, -4]), "b": f64([4], [2, 2, -1, 8])]
        let expected: [(BinaryFunction, [Double])] = [
            (.add, [3, 4, 2, 4]), (.sub, [-1, 0, 4, -12]), (.mul, [2, 4, -3, -32]), (.div, [0.5, 1, -3, -0.5]),
            (.maximum, [2, 2, 3, 8]), (.minimum, [1, 2, -1, -4]),
            (.less, [1, 0, 0, 1]), (.lessEqual, [1, 1, 0, 1]), (.greater, [0, 0, 1, 0]),
            (.greaterEqual, [0, 1, 1, 0]), (.equal, [0, 1, 0, 0]),
        ]
        for (f, values) in expected {
            let y = try evaluate(feeds) { g in g.apply(.binary(f), [g.input("a", [4], dtype: .float64), g.input("b", [4], dtype: .float64)]) }
            #expect(y.scalars == values, "\(f)")
        }
    }

    @Test("int32 division truncates toward zero; division by zero throws")
    func integerDivision() throws {
        let y = try evaluate(["a": i32([4], [7, -7, 7, -7]), "b": i32([4], [2, 2, -2, -2])]) { g in
            g.input("a", [4], dtype: .int32) / g.input("b", [4], dtype: .int32)
        }
        #expect(y.scalars == [3, -3, -3, 3])
        #expect(throws: KilnError.self) {
            try evaluate(["a": i32([1], [1]), "b": i32([1], [0])]) { g in g.input("a", [1], dtype: .int32) / g.input("b", [1], dtype: .int32) }
        }
    }

    @Test("select broadcasts condition and both branches")
    func selectBroadcasts() throws {
        let y = try evaluate(["c": f64([2, 1], [1, 0]), "a": f64([3], [1, 2, 3]), "b": f64([], [-1])]) { g in
            select(g.input("c", [2, 1], dtype: .float64), g.input("a", [3], dtype: .float64), g.input("b", [], dtype: .float64))
        }
        #expect(y.shape == [2, 3])
        #expect(y.scalars == [1, 2, 3, -1, -1, -1])
    }

    @Test("cast truncates floats toward zero and converts ints exactly")
    func cast() throws {
        let toInt = try evaluate(["x": f64([4], [-1.7, 2.9, 0.4, -0.4])]) { $0.input("x", [4], dtype: .float64).cast(to: .int32) }
        #expect(toInt.type == TensorType([4], .int32))
        #expect(toInt.scalars == [-1, 2, 0, 0])
        let toFloat = try evaluate(["x": i32([2], [16_777_217, -3])]) { $0.input("x", [2], dtype: .int32).cast(to: .float32) }
        #expect(toFloat.scalars == [16_777_216, -3])  // 2^24 + 1 is not a Float
    }

    @Test("constants splat one value or hold one value per element")
    func constants() throws {
        #expect(try evaluate { $0.constant(2.5, shape: [2, 2]) }.scalars == [2.5, 2.5, 2.5, 2.5])
        #expect(try evaluate { $0.constant(values: [1, 2, 3], shape: [3], dtype: .int32) }.scalars == [1, 2, 3])
        #expect(try evaluate { $0.constant(0.1, shape: [1]) }.scalars == [Double(Float(0.1))])
    }

    // MARK: Reductions and matmul

    @Test("sum, mean and max over axes, with and without kept dims")
    func reductions() throws {
        let feeds = ["x": f64([2, 3], [1, 2, 3, 4, 5, 6])]
        let x: (GraphBuilder) -> Tensor = { $0.input("x", [2, 3], dtype: .float64) }
        let sum0 = try evaluate(feeds) { x($0).sum(axis: 0) }
        let mean1 = try evaluate(feeds) { x($0).mean(axis: 1, keepDims: true) }
        let maxAll = try evaluate(feeds) { x($0).max() }
        let meanAll = try evaluate(feeds) { x($0).mean(keepDims: true) }
        #expect(sum0.shape == [3] && sum0.scalars == [5, 7, 9])
        #expect(mean1.shape == [2, 1] && mean1.scalars == [2, 5])
        #expect(maxAll.shape == [] && maxAll.scalars == [6])
        #expect(meanAll.shape == [1, 1] && meanAll.scalars == [3.5])
        let max3 = try evaluate(["x": f64([2, 2, 2], [1, -8, 3, 4, -5, 6, 7, -2])]) { $0.input("x", [2, 2, 2], dtype: .float64).max(axes: [0, 2]) }
        #expect(max3.scalars == [6, 7])  // max of {1, -8, -5, 6} and {3, 4, 7, -2}
    }

    @Test("matmul in all four transpose variants", arguments: [(false, false), (true, false), (false, true), (true, true)])
    func matmulVariants(transposeA: Bool, transposeB: Bool) throws {
        let y = try evaluate(["a": f64([2, 2], [1, 2, 3, 4]), "b": f64([2, 2], [5, 6, 7, 8])]) { g in
            matmul(g.input("a", [2, 2], dtype: .float64), g.input("b", [2, 2], dtype: .float64), transposeA: transposeA, transposeB: transposeB)
        }
        let expected: [Double] = switch (transposeA, transposeB) {
        case (false, false): [19, 22, 43, 50]
        case (true, false): [26, 30, 38, 44]
        case (false, true): [17, 23, 39, 53]
        case (true, true): [23, 31, 34, 46]
        }
        #expect(y.scalars == expected)
    }

    @Test("matmul of non-square operands, transposed")
    func matmulRectangular() throws {
        // aᵀ is [[1, 2, 3]] (1×3), b is 3×2.
        let y = try evaluate(["a": f64([3, 1], [1, 2, 3]), "b": f64([3, 2], [1, 0, 0, 1, 1, 1])]) { g in
            matmul(g.input("a", [3, 1], dtype: .float64), g.input("b", [3, 2], dtype: .float64), transposeA: true)
        }
        #expect(y.shape == [1, 2] && y.scalars == [4, 5])
    }

    // MARK: Data movement

    @Test("reshape keeps order; transpose moves input axis perm[i] to result axis i")
    func reshapeTranspose() throws {
        let values = (0..<24).map(Double.init)
        let feeds = ["x": f64([2, 3, 4], values)]
        let reshaped = try evaluate(feeds) { $0.input("x", [2, 3, 4], dtype: .float64).reshaped([6, 4]) }
        #expect(reshaped.shape == [6, 4] && reshaped.scalars == values)
        let y = try evaluate(feeds) { $0.input("x", [2, 3, 4], dtype: .float64).transposed([2, 0, 1]) }
        #expect(y.shape == [4, 2, 3])
        for a in 0..<4 { for b in 0..<2 { for c in 0..<3 {
            #expect(y.scalars[(a * 2 + b) * 3 + c] == values[(b * 3 + c) * 4 + a])
        } } }
        let t = try evaluate(["m": f64([2, 3], [1, 2, 3, 4, 5, 6])]) { $0.input("m", [2, 3], dtype: .float64).T }
        #expect(t.scalars == [1, 4, 2, 5, 3, 6])
    }

    @Test("broadcast, slice, pad and concat on known numbers")
    func dataMovement() throws {
        let feeds = ["x": f64([2, 3], [1, 2, 3, 4, 5, 6]), "r": f64([3], [7, 8, 9])]
        let x: (GraphBuilder) -> Tensor = { $0.input("x", [2, 3], dtype: .float64) }
        let b = try evaluate(feeds) { $0.input("r", [3], dtype: .float64).broadcast(to: [2, 3]) }
        #expect(b.scalars == [7, 8, 9, 7, 8, 9])
        let column = try evaluate(["c": f64([2, 1], [1, 2])]) { $0.input("c", [2, 1], dtype: .float64).broadcast(to: [2, 2]) }
        #expect(column.scalars == [1, 1, 2, 2])
        let s = try evaluate(feeds) { x($0).slice(start: [1, 1], size: [1, 2]) }
        #expect(s.shape == [1, 2] && s.scalars == [5, 6])
        let p = try evaluate(feeds) { x($0).padded(low: [1, 0], high: [0, 1]) }
        #expect(p.shape == [3, 4] && p.scalars == [0, 0, 0, 0, 1, 2, 3, 0, 4, 5, 6, 0])
        let c1 = try evaluate(feeds) { g in concat([x(g), g.input("r", [3], dtype: .float64).reshaped([1, 3]).T.reshaped([3, 1]).reshaped([1, 3]).broadcast(to: [2, 3])], axis: 1) }
        #expect(c1.shape == [2, 6] && c1.scalars == [1, 2, 3, 7, 8, 9, 4, 5, 6, 7, 8, 9])
        let c0 = try evaluate(feeds) { g in concat([x(g), g.input("r", [3], dtype: .float64).reshaped([1, 3])], axis: 0) }
        #expect(c0.shape == [3, 3] && c0.scalars == [1, 2, 3, 4, 5, 6, 7, 8, 9])
    }

    // MARK: Convolution and pooling

    @Test("conv2d on a hand-checked 3×3 image, without and with padding and stride")
    func conv2dKnown() throws {
        let feeds = ["x": f64([1, 1, 3, 3], (1...9).map(Double.init)), "w": f64([1, 1, 2, 2], [1, 0, 0, 1])]
        func conv(_ stride: Int, _ padding: Int) throws -> HostTensor {
            try evaluate(feeds) { g in
                conv2d(g.input("x", [1, 1, 3, 3], dtype: .float64), g.input("w", [1, 1, 2, 2], dtype: .float64), stride: stride, padding: padding)
            }
        }
        // y[i, j] = x[i, j] + x[i+1, j+1] over the zero-padded image.
        #expect(try conv(1, 0).scalars == [6, 8, 12, 14])
        #expect(try conv(2, 1).scalars == [1, 3, 7, 14])
    }

    @Test("conv2d with different strides and paddings along H and W on a hand-checked case")
    func conv2dAsymmetric() throws {
        // x rows [1 2 3 4], [5 6 7 8], [9 10 11 12]; w [[1, 2], [3, 4]]; stride 1×2, padding 0×1:
        // y[oh, ow] = Σ w[kh, kw] · x[oh + kh, 2·ow − 1 + kw], reading zeros outside the image.
        let attributes = Conv2DAttributes(strideH: 1, strideW: 2, padH: 0, padW: 1)
        let y = try evaluate(["x": f64([1, 1, 3, 4], (1...12).map(Double.init)), "w": f64([1, 1, 2, 2], [1, 2, 3, 4])]) { g in
            g.apply(.conv2d(attributes), [g.input("x", [1, 1, 3, 4], dtype: .float64), g.input("w", [1, 1, 2, 2], dtype: .float64)])
        }
        #expect(y.shape == [1, 1, 2, 3])
        #expect(y.scalars == [22, 54, 28, 46, 94, 44])
    }

    @Test("conv2d sums over input channels and keeps output channels apart")
    func conv2dChannels() throws {
        // Two 2×2 input channels, a 1×1 kernel: output channel o is Σ_c w[o,c]·x[c].
        let y = try evaluate(["x": f64([1, 2, 2, 2], [1, 2, 3, 4, 10, 20, 30, 40]), "w": f64([2, 2, 1, 1], [1, 1, 2, -1])]) { g in
            conv2d(g.input("x", [1, 2, 2, 2], dtype: .float64), g.input("w", [2, 2, 1, 1], dtype: .float64))
        }
        #expect(y.scalars == [11, 22, 33, 44, -8, -16, -24, -32])
    }

    static let convCases: [(x: Shape, w: Shape, Conv2DAttributes)] = [
        ([2, 3, 5, 5], [4, 3, 3, 3], Conv2DAttributes(stride: 1, padding: 0)),
        ([2, 3, 7, 6], [2, 3, 3, 2], Conv2DAttributes(stride: 2, padding: 1)),
        ([1, 2, 6, 7], [3, 2, 5, 3], Conv2DAttributes(strideH: 1, strideW: 3, padH: 2, padW: 1)),
        ([3, 1, 4, 4], [2, 1, 1, 1], Conv2DAttributes(stride: 3, padding: 0)),
        // Padding wider than the kernel: some outputs see only zeros.
        ([1, 2, 3, 3], [2, 2, 1, 2], Conv2DAttributes(strideH: 2, strideW: 1, padH: 2, padW: 3)),
    ]

    @Test("conv2d backward ops are its exact adjoints: <conv(x,w),dy> = <x,bwdData(dy,w)> = <w,bwdFilter(x,dy)>",
          arguments: convCases)
    func convAdjoints(xShape: Shape, wShape: Shape, attributes: Conv2DAttributes) throws {
        let builder = GraphBuilder()
        let x = builder.input("x", xShape, dtype: .float64), w = builder.input("w", wShape, dtype: .float64)
        let y = builder.apply(.conv2d(attributes), [x, w])
        let dy = builder.input("dy", y.shape, dtype: .float64)
        let dx = builder.apply(.conv2dBackwardData(attributes, inputShape: xShape), [dy, w])
        let dw = builder.apply(.conv2dBackwardFilter(attributes, filterShape: wShape), [x, dy])
        let values = try Interpreter(graph: builder.build()).run(inputs: [
            "x": f64(xShape, integers(xShape.count, seed: 1)), "w": f64(wShape, integers(wShape.count, seed: 2)),
            "dy": f64(y.shape, integers(y.shape.count, seed: 3)),
        ])
        let forward = inner(values[y.id], values[dy.id])
        #expect(forward == inner(values[x.id], values[dx.id]))
        #expect(forward == inner(values[w.id], values[dw.id]))
        #expect(forward != 0)  // the identity is not vacuous
    }

    @Test("max pooling takes window maxima; backward routes dy to the first maximum, summing overlaps")
    func maxPooling() throws {
        // 3×3 with ties: windows 2×2 stride 1. The 9 is the maximum of all four windows.
        let x = f64([1, 1, 3, 3], [1, 5, 5, 5, 9, 2, 3, 4, 0])
        let p = PoolAttributes(kernel: 2, stride: 1)
        let builder = GraphBuilder()
        let xi = builder.input("x", [1, 1, 3, 3], dtype: .float64)
        let pooled = builder.apply(.maxPool2d(p), [xi])
        let dy = builder.input("dy", [1, 1, 2, 2], dtype: .float64)
        let dx = builder.apply(.maxPool2dBackward(p), [xi, dy])
        let g = builder.input("g", [1, 1, 3, 3], dtype: .float64)
        let gathered = builder.apply(.maxPool2dGather(p), [xi, g])
        let dyValues = f64([1, 1, 2, 2], [1, 2, 3, 4]), gValues = f64([1, 1, 3, 3], (1...9).map { Double($0 * 10) })
        let values = try Interpreter(graph: builder.build()).run(inputs: ["x": x, "dy": dyValues, "g": gValues])
        #expect(values[pooled.id].scalars == [9, 9, 9, 9])
        #expect(values[dx.id].scalars == [0, 0, 0, 0, 10, 0, 0, 0, 0])
        #expect(values[gathered.id].scalars == [50, 50, 50, 50])
        #expect(inner(values[dx.id], gValues) == inner(dyValues, values[gathered.id]))

        // Ties without overlap: the first maximum in row-major order wins.
        let tie = try evaluate(["x": f64([1, 1, 2, 4], [1, 7, 7, 2, 7, 0, 3, 7]), "dy": f64([1, 1, 1, 2], [1, 2])]) { b in
            b.apply(.maxPool2dBackward(PoolAttributes(kernel: 2)), [b.input("x", [1, 1, 2, 4], dtype: .float64),
                                                                    b.input("dy", [1, 1, 1, 2], dtype: .float64)])
        }
        #expect(tie.scalars == [0, 1, 2, 0, 0, 0, 0, 0])
    }

    @Test("max-pool backward and gather are adjoint in dy on random data", arguments: [(2, 2), (3, 2), (2, 1)])
    func maxPoolAdjoint(kernel: Int, stride: Int) throws {
        let p = PoolAttributes(kernel: kernel, stride: stride)
        let shape: Shape = [2, 3, 7, 6]
        let (oh, ow) = p.outputSize(height: 7, width: 6)
        let builder = GraphBuilder()
        let x = builder.input("x", shape, dtype: .float64)
        let dy = builder.input("dy", [2, 3, oh, ow], dtype: .float64), g = builder.input("g", shape, dtype: .float64)
        let dx = builder.apply(.maxPool2dBackward(p), [x, dy]), gathered = builder.apply(.maxPool2dGather(p), [x, g])
        let values = try Interpreter(graph: builder.build()).run(inputs: [
            "x": f64(shape, integers(shape.count, seed: 4)), "dy": f64([2, 3, oh, ow], integers(2 * 3 * oh * ow, seed: 5)),
            "g": f64(shape, integers(shape.count, seed: 6)),
        ])
        #expect(inner(values[dx.id], values[g.id]) == inner(values[dy.id], values[gathered.id]))
    }

    @Test("average pooling and its backward on known numbers, and their adjoint identity")
    func averagePooling() throws {
        let p = PoolAttributes(kernel: 2, stride: 1)
        let builder = GraphBuilder()
        let x = builder.input("x", [1, 1, 3, 3], dtype: .float64)
        let y = builder.apply(.avgPool2d(p), [x])
        let dy = builder.input("dy", [1, 1, 2, 2], dtype: .float64)
        let dx = builder.apply(.avgPool2dBackward(p, inputShape: [1, 1, 3, 3]), [dy])
        let values = try Interpreter(graph: builder.build()).run(inputs: [
            "x": f64([1, 1, 3, 3], (1...9).map(Double.init)), "dy": f64([1, 1, 2, 2], [4, 8, 12, 16]),
        ])
        #expect(values[y.id].scalars == [3, 4, 6, 7])
        #expect(values[dx.id].scalars == [1, 3, 2, 4, 10, 6, 3, 7, 4])
        #expect(inner(values[y.id], values[dy.id]) == inner(values[x.id], values[dx.id]))
    }

    // MARK: Softmax and losses

    @Test("softmax and log-softmax on known numbers, stable for large logits")
    func softmaxes() throws {
        let e = [Foundation.exp(1.0), Foundation.exp(2.0), Foundation.exp(3.0)]
        let total = e.reduce(0, +)
        let feeds = ["x": f64([2, 3], [1, 2, 3, 1001, 1002, 1003])]
        let s = try evaluate(feeds) { softmax($0.input("x", [2, 3], dtype: .float64)) }
        let ls = try evaluate(feeds) { logSoftmax($0.input("x", [2, 3], dtype: .float64)) }
        let expected = e.map { $0 / total }
        #expect(close(s.scalars, expected + expected))
        let logExpected = [1.0, 2, 3].map { $0 - Foundation.log(total) }
        #expect(close(ls.scalars, logExpected + logExpected, tolerance: 1e-12))
        // Along axis 0: each column normalised on its own.
        let columns = try evaluate(["x": f64([2, 2], [0, 5, 0, 5])]) { softmax($0.input("x", [2, 2], dtype: .float64), axis: 0) }
        #expect(columns.scalars == [0.5, 0.5, 0.5, 0.5])
    }

    @Test("softmax cross-entropy is logsumexp minus the label's logit; a bad label throws")
    func crossEntropy() throws {
        let build: (GraphBuilder) -> Tensor = { g in
            softmaxCrossEntropy(g.input("logits", [2, 3], dtype: .float64), labels: g.input("labels", [2], dtype: .int32))
        }
        let logits = f64([2, 3], [0, 0, 0, 1, 2, 3])
        let y = try evaluate(["logits": logits, "labels": i32([2], [1, 2])], build)
        let lse = Foundation.log(Foundation.exp(1.0) + Foundation.exp(2.0) + Foundation.exp(3.0))
        #expect(close(y.scalars, [Foundation.log(3), lse - 3]))
        #expect(throws: KilnError.self) { try evaluate(["logits": logits, "labels": i32([2], [1, 3])], build) }
        #expect(throws: KilnError.self) { try evaluate(["logits": logits, "labels": i32([2], [-1, 0])], build) }
    }

    @Test("one-hot rows in the requested dtype")
    func oneHotRows() throws {
        let y = try evaluate(["l": i32([2], [2, 0])]) { oneHot($0.input("l", [2], dtype: .int32), depth: 3, dtype: .int32) }
        #expect(y.type == TensorType([2, 3], .int32))
        #expect(y.scalars == [0, 0, 1, 1, 0, 0])
    }

    // MARK: Leaves, feeds and randomness

    @Test("missing feeds and wrong shapes or dtypes throw KilnError.feed naming the value")
    func feedErrors() throws {
        let builder = GraphBuilder()
        let x = builder.input("pixels", [2, 2])
        builder.output("y", x * 2)
        let interpreter = Interpreter(graph: try builder.build())
        func message(_ feeds: [String: HostTensor], parameters: [String: HostTensor] = [:]) -> String? {
            do { _ = try interpreter.run(inputs: feeds, parameters: parameters); return nil } catch let error as KilnError {
                guard case let .feed(text) = error else { return "not a feed error: \(error)" }
                return text
            } catch { return "unexpected \(error)" }
        }
        #expect(message([:])?.contains("\"pixels\"") == true)
        #expect(message(["pixels": HostTensor(shape: [4], scalars: [1, 2, 3, 4])])?.contains("\"pixels\"") == true)
        #expect(message(["pixels": f64([2, 2], [1, 2, 3, 4])])?.contains("\"pixels\"") == true)
        #expect(message(["pixels": HostTensor(shape: [2, 2], scalars: [1, 2, 3, 4])]) == nil)

        let labelled = GraphBuilder()
        _ = labelled.input("labels", [2], dtype: .int32)
        #expect(throws: KilnError.self) {
            try Interpreter(graph: labelled.build()).run(inputs: ["labels": i32([2], [1, 0.5])])
        }
        let withParameter = GraphBuilder()
        _ = withParameter.parameter("w", [2], initializer: .zeros)
        #expect(throws: KilnError.self) {
            try Interpreter(graph: withParameter.build()).run(inputs: [:], parameters: ["w": HostTensor(shape: [3], scalars: [1, 2, 3])])
        }
    }

    @Test("parameters and state come from the dictionaries or from their initialisers")
    func initialisation() throws {
        let builder = GraphBuilder()
        let ones = builder.parameter("ones", [2], initializer: .ones)
        let fed = builder.parameter("fed", [2], initializer: .zeros)
        let constant = builder.state("c", [2], initializer: .constant(0.25))
        let uniform = builder.parameter("u", [1000], initializer: .uniform(low: -2, high: 2))
        let normal = builder.state("n", [1000], dtype: .float64, initializer: .normal(mean: 3, std: 0.5))
        let interpreter = Interpreter(graph: try builder.build())
        let values = try interpreter.run(inputs: [:], parameters: ["fed": HostTensor(shape: [2], scalars: [7, 8])], seed: 11)
        #expect(values[ones.id].scalars == [1, 1])
        #expect(values[fed.id].scalars == [7, 8])
        #expect(values[constant.id].scalars == [0.25, 0.25])
        let random = CounterRandom(seed: 11)
        #expect(values[uniform.id].scalars[5] == Double(Float(-2 + 4 * Double(random.uniform(stream: -1 - uniform.id, step: 0, index: 5)))))
        #expect(values[uniform.id].scalars.allSatisfy { $0 >= -2 && $0 < 2 })
        #expect(values[normal.id].scalars[9] == 3 + 0.5 * Double(random.normal(stream: -1 - normal.id, step: 0, index: 9)))
        let mean = values[normal.id].scalars.reduce(0, +) / 1000
        #expect(Swift.abs(mean - 3) < 0.1)  // standard error 0.016
        // The same seed reproduces the initial values; another seed changes them; `step` does not.
        #expect(try interpreter.run(inputs: [:], seed: 11, step: 5)[uniform.id] == values[uniform.id])
        #expect(try interpreter.run(inputs: [:], seed: 12)[uniform.id] != values[uniform.id])
    }

    @Test("random ops draw from CounterRandom with their stream, the seed and the step")
    func randomOps() throws {
        let builder = GraphBuilder()
        let u = builder.randomUniform([3, 5])
        let n = builder.randomNormal([7], dtype: .float64)
        let interpreter = Interpreter(graph: try builder.build())
        let values = try interpreter.run(inputs: [:], seed: 3, step: 4)
        guard case let .randomUniform(uStream) = builder.graph[u.id].op, case let .randomNormal(nStream) = builder.graph[n.id].op else {
            Issue.record("unexpected ops"); return
        }
        #expect(uStream != nStream)
        let random = CounterRandom(seed: 3)
        #expect(values[u.id].scalars == (0..<15).map { Double(random.uniform(stream: uStream, step: 4, index: $0)) })
        #expect(values[n.id].scalars == (0..<7).map { Double(random.normal(stream: nStream, step: 4, index: $0)) })
        #expect(try interpreter.run(inputs: [:], seed: 3, step: 5)[u.id] != values[u.id])
        #expect(try interpreter.run(inputs: [:], seed: 3, step: 4)[u.id] == values[u.id])
    }

    @Test("outputs() returns named outputs and update:NAME values")
    func namedOutputs() throws {
        let builder = GraphBuilder()
        let x = builder.input("x", [2])
        let w = builder.parameter("w", [2], initializer: .ones)
        let m = builder.state("m", [2], initializer: .zeros)
        let y = x * w
        builder.output("y", y)
        builder.update(w, to: w - x * 0.5)
        builder.update(m, to: m + y)
        let result = try Interpreter(graph: try builder.build()).outputs(inputs: ["x": HostTensor(shape: [2], scalars: [2, 4])],
                                                                       state: ["m": HostTensor(shape: [2], scalars: [1, 1])])
        #expect(Set(result.keys) == ["y", "update:w", "update:m"])
        #expect(result["y"]?.scalars == [2, 4])
        #expect(result["update:w"]?.scalars == [0, -1])
        #expect(result["update:m"]?.scalars == [3, 5])
    }
}
