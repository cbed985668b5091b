#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnGraph

/// Runs a Graph node by node in Double: slow, obvious, and the oracle every optimised path is tested against.
///
/// Every node is computed in Double and then stored at its dtype's precision: float32 results
/// are rounded to Float, int32 results truncated toward zero. Kernels are plain loops over the
/// index relation each op defines, written for clarity, not speed.
public struct Interpreter {
    /// The graph this interpreter runs.
    public let graph: Graph

    /// An interpreter for `graph` (assumed verified).
    public init(graph: Graph) { self.graph = graph }

    /// Evaluates every node. Inputs by input name; parameters and state by name; a parameter or state
    /// missing from the dictionaries is initialised from its Initializer (uniform/normal drawn with
    /// CounterRandom(seed:) using stream = -1 - nodeID, step 0). Random ops use CounterRandom(seed: seed)
    /// with the op's stream and `step`. Returns one HostTensor per node, indexed by ValueID.
    /// Missing inputs or wrong shapes/dtypes of fed values throw KilnError.feed naming the value.
    ///
    /// Initial values are `low + (high − low)·Double(u)` and `mean + std·Double(z)` for the Float
    /// draws u, z of element i (index i), then rounded to the dtype like every other result.
    /// Fed int32 values must be integers; fed float32 values are rounded to Float.
    public func run(inputs: [String: HostTensor], parameters: [String: HostTensor] = [:],
                    state: [String: HostTensor] = [:], seed: UInt64 = 0, step: UInt64 = 0) throws -> [HostTensor] {
        let random = CounterRandom(seed: seed)
        var values: [HostTensor] = []
        values.reserveCapacity(graph.nodes.count)
        for (id, node) in graph.nodes.enumerated() {
            let scalars: [Double]
            switch node.op {
            case let .input(name):
                scalars = try fed(inputs[name], kind: "input", name: name, type: node.type, required: true)!
            case let .parameter(name, initializer):
                scalars = try fed(parameters[name], kind: "parameter", name: name, type: node.type, required: false)
                    ?? initialValues(initializer, count: node.type.shape.count, stream: -1 - id, random: random)
            case let .state(name, initializer):
                scalars = try fed(state[name], kind: "state", name: name, type: node.type, required: false)
                    ?? initialValues(initializer, count: node.type.shape.count, stream: -1 - id, random: random)
            default:
                scalars = try evaluate(node, id: id, inputs: node.inputs.map { values[$0] }, random: random, step: step)
            }
            values.append(HostTensor(node.type, try rounded(scalars, to: node.type.dtype, what: "%\(id) \(node.op.name)")))
        }
        return values
    }

    /// Convenience: runs and returns the graph's named outputs plus, under "update:NAME", the new value
    /// of every updated parameter/state NAME.
    public func outputs(inputs: [String: HostTensor], parameters: [String: HostTensor] = [:],
                        state: [String: HostTensor] = [:], seed: UInt64 = 0, step: UInt64 = 0) throws -> [String: HostTensor] {
        let values = try run(inputs: inputs, parameters: parameters, state: state, seed: seed, step: step)
        var result: [String: HostTensor] = [:]
        for output in graph.outputs { result[output.name] = values[output.value] }
        for update in graph.updates {
            let name = graph.leafName(update.target) ?? "%\(update.target)"
            result["update:\(name)"] = values[update.value]
        }
        return result
    }

    // MARK: Leaves

    /// The scalars of a fed value after checking its type, or nil when an optional value is absent.
    private func fed(_ tensor: HostTensor?, kind: String, name: String, type: TensorType, required: Bool) throws -> [Double]? {
        guard let tensor else {
            if required { throw KilnError.feed("\(kind) \"\(name)\" (\(type)) is not fed") }
            return nil
        }
        guard tensor.type == type else {
            throw KilnError.feed("\(kind) \"\(name)\" expects \(type), found \(tensor.type)")
        }
        // An int32 value that is not an integer cannot have come from an int32 buffer.
        if type.dtype == .int32, let bad = tensor.scalars.first(where: { $0 != $0.rounded(.towardZero) || !fitsInt32($0) }) {
            throw KilnError.feed("\(kind) \"\(name)\" is \(type) but holds \(bad)")
        }
        return tensor.scalars
    }

    private func initialValues(_ initializer: Initializer, count: Int, stream: Int, random: CounterRandom) -> [Double] {
        switch initializer {
        case .zeros: return [Double](repeating: 0, count: count)
        case .ones: return [Double](repeating: 1, count: count)
        case let .constant(v): return [Double](repeating: v, count: count)
        case let .uniform(low, high):
            return (0..<count).map { low + (high - low) * Double(random.uniform(stream: stream, step: 0, index: $0)) }
        case let .normal(mean, std):
            return (0..<count).map { mean + std * Double(random.normal(stream: stream, step: 0, index: $0)) }
        }
    }

    // MARK: Ops

    /// The unrounded result of a non-leaf-fed node.
    private func evaluate(_ node: Node, id: ValueID, inputs x: [HostTensor], random: CounterRandom, step: UInt64) throws -> [Double] {
        let outShape = node.type.shape
        switch node.op {
        case .input, .parameter, .state:
            preconditionFailure("leaves are handled by run")

        case let .constant(values):
            return values.count == 1 ? [Double](repeating: values[0], count: outShape.count) : values
        case let .randomUniform(stream):
            return (0..<outShape.count).map { Double(random.uniform(stream: stream, step: step, index: $0)) }
        case let .randomNormal(stream):
            return (0..<outShape.count).map { Double(random.normal(stream: stream, step: step, index: $0)) }

        case let .unary(f):
            return x[0].scalars.map { unary(f, $0) }
        case let .binary(f):
            let a = broadcastIndices(from: x[0].shape, to: outShape), b = broadcastIndices(from: x[1].shape, to: outShape)
            let av = x[0].scalars, bv = x[1].scalars
            return (0..<outShape.count).map { binary(f, av[a[$0]], bv[b[$0]]) }
        case let .power(exponent):
            return x[0].scalars.map { pow($0, exponent) }
        case let .adamUpdate(formula):
            let index = x.map { broadcastIndices(from: $0.shape, to: outShape) }
            return (0..<outShape.count).map { i in
                let a = x.indices.map { x[$0].scalars[index[$0][i]] }
                switch formula {
                case .firstMoment: return a[0] + a[2] * (a[1] - a[0])
                case .secondMoment: return a[2] * a[0] + a[3] * (a[1] * a[1])
                case .parameter: return a[0] - (a[3] * a[1]) / (a[2].squareRoot() * a[4] + a[5])
                }
            }
        case .select:
            let c = broadcastIndices(from: x[0].shape, to: outShape)
            let a = broadcastIndices(from: x[1].shape, to: outShape), b = broadcastIndices(from: x[2].shape, to: outShape)
            return (0..<outShape.count).map { x[0].scalars[c[$0]] != 0 ? x[1].scalars[a[$0]] : x[2].scalars[b[$0]] }
        case .cast:
            return x[0].scalars

        case let .reduce(f, axes, _):
            return reduce(f, x[0], axes: axes)
        case let .matmul(ta, tb):
            return matmul(x[0], x[1], transposeA: ta, transposeB: tb)

        case .reshape, .stopGradient:
            return x[0].scalars
        case let .transpose(permutation):
            let strides = x[0].shape.strides
            let source = stridedIndices(shape: outShape, strides: permutation.map { strides[$0] }, offset: 0)
            return source.map { x[0].scalars[$0] }
        case .broadcast:
            return broadcastIndices(from: x[0].shape, to: outShape).map { x[0].scalars[$0] }
        case let .slice(start, _):
            let strides = x[0].shape.strides
            let source = stridedIndices(shape: outShape, strides: strides, offset: dot(start, strides))
            return source.map { x[0].scalars[$0] }
        case let .pad(low, _):
            var result = [Double](repeating: 0, count: outShape.count)
            let strides = outShape.strides
            let target = stridedIndices(shape: x[0].shape, strides: strides, offset: dot(low, strides))
            for (i, t) in target.enumerated() { result[t] = x[0].scalars[i] }
            return result
        case let .concat(axis):
            var result = [Double](repeating: 0, count: outShape.count)
            let strides = outShape.strides
            var position = 0
            for part in x {
                let target = stridedIndices(shape: part.shape, strides: strides, offset: position * strides[axis])
                for (i, t) in target.enumerated() { result[t] = part.scalars[i] }
                position += part.shape[axis]
            }
            return result

        case let .conv2d(a):
            var (xv, wv, y) = (x[0].scalars, x[1].scalars, [Double](repeating: 0, count: outShape.count))
            convolve(.forward, x: &xv, w: &wv, y: &y, xShape: x[0].shape, wShape: x[1].shape, yShape: outShape, a)
            return y
        case let .conv2dBackwardData(a, inputShape):
            var (dx, wv, dy) = ([Double](repeating: 0, count: inputShape.count), x[1].scalars, x[0].scalars)
            convolve(.backwardData, x: &dx, w: &wv, y: &dy, xShape: inputShape, wShape: x[1].shape, yShape: x[0].shape, a)
            return dx
        case let .conv2dBackwardFilter(a, filterShape):
            var (xv, dw, dy) = (x[0].scalars, [Double](repeating: 0, count: filterShape.count), x[1].scalars)
            convolve(.backwardFilter, x: &xv, w: &dw, y: &dy, xShape: x[0].shape, wShape: filterShape, yShape: x[1].shape, a)
            return dw

        case let .maxPool2d(p):
            return firstMaxima(x[0], p).map { x[0].scalars[$0] }
        case let .maxPool2dBackward(p):
            var dx = [Double](repeating: 0, count: x[0].shape.count)
            for (window, position) in firstMaxima(x[0], p).enumerated() { dx[position] += x[1].scalars[window] }
            return dx
        case let .maxPool2dGather(p):
            return firstMaxima(x[0], p).map { x[1].scalars[$0] }
        case let .avgPool2d(p):
            var y = [Double](repeating: 0, count: outShape.count)
            forEachPoolTap(input: x[0].shape, p) { xi, yi in y[yi] += x[0].scalars[xi] }
            let size = Double(p.kernelH * p.kernelW)
            return y.map { $0 / size }
        case let .avgPool2dBackward(p, inputShape):
            var dx = [Double](repeating: 0, count: inputShape.count)
            let size = Double(p.kernelH * p.kernelW)
            forEachPoolTap(input: inputShape, p) { xi, yi in dx[xi] += x[0].scalars[yi] / size }
            return dx

        case let .softmax(axis):
            return normalisedExponential(x[0], axis: axis, log: false)
        case let .logSoftmax(axis):
            return normalisedExponential(x[0], axis: axis, log: true)
        case .softmaxCrossEntropy:
            let logits = x[0], labels = x[1]
            let (n, c) = (logits.shape[0], logits.shape[1])
            return try (0..<n).map { row in
                let label = Int(labels.scalars[row])
                guard label >= 0, label < c else {
                    throw KilnError.feed("%\(id) softmax_cross_entropy: label \(label) of example \(row) is outside 0..<\(c)")
                }
                let values = logits.scalars[(row * c)..<(row * c + c)]
                let m = values.max() ?? 0
                return m + log(values.reduce(0) { $0 + exp($1 - m) }) - values[row * c + label]
            }
        case let .oneHot(depth, _):
            var result = [Double](repeating: 0, count: outShape.count)
            for (row, value) in x[0].scalars.enumerated() {
                let label = Int(value)
                guard label >= 0, label < depth else {
                    throw KilnError.feed("%\(id) one_hot: label \(label) at index \(row) is outside 0..<\(depth)")
                }
                result[row * depth + label] = 1
            }
            return result
        }
    }

    private func unary(_ f: UnaryFunction, _ x: Double) -> Double {
        switch f {
        case .neg: return -x
        case .exp: return exp(x)
        case .log: return log(x)
        case .sqrt: return x.squareRoot()
        case .square: return x * x
        case .tanh: return tanh(x)
        case .sigmoid: return 1 / (1 + exp(-x))
        case .relu: return x > 0 ? x : 0
        // Stable form: never exponentiates a large positive number.
        case .softplus: return log1p(exp(-Swift.abs(x))) + Swift.max(x, 0)
        case .abs: return Swift.abs(x)
        case .sign: return x > 0 ? 1 : x < 0 ? -1 : x  // keeps 0 (and NaN) as is
        case .reciprocal: return 1 / x
        }
    }

    private func binary(_ f: BinaryFunction, _ a: Double, _ b: Double) -> Double {
        switch f {
        case .add: return a + b
        case .sub: return a - b
        case .mul: return a * b
        case .div: return a / b
        // NaN propagates, as in PyTorch's maximum/minimum.
        case .maximum: return a.isNaN || b.isNaN ? .nan : Swift.max(a, b)
        case .minimum: return a.isNaN || b.isNaN ? .nan : Swift.min(a, b)
        case .less: return a < b ? 1 : 0
        case .lessEqual: return a <= b ? 1 : 0
        case .greater: return a > b ? 1 : 0
        case .greaterEqual: return a >= b ? 1 : 0
        case .equal: return a == b ? 1 : 0
        }
    }

    private func reduce(_ f: ReduceFunction, _ x: HostTensor, axes: [Int]) -> [Double] {
        // Strides of the kept-dims result, zero on reduced axes: every input element's target.
        var keptDims = x.shape.dims
        for axis in axes { keptDims[axis] = 1 }
        var strides = Shape(keptDims).strides
        for axis in axes { strides[axis] = 0 }
        let target = stridedIndices(shape: x.shape, strides: strides, offset: 0)
        let count = Shape(keptDims).count
        switch f {
        case .sum, .mean:
            var result = [Double](repeating: 0, count: count)
            for (i, t) in target.enumerated() { result[t] += x.scalars[i] }
            if f == .sum { return result }
            let extent = Double(axes.reduce(1) { $0 * x.shape[$1] })
            return result.map { $0 / extent }
        case .max:
            var result = [Double](repeating: -.infinity, count: count)
            for (i, t) in target.enumerated() where x.scalars[i] > result[t] || x.scalars[i].isNaN { result[t] = x.scalars[i] }
            return result
        }
    }

    private func matmul(_ a: HostTensor, _ b: HostTensor, transposeA: Bool, transposeB: Bool) -> [Double] {
        let (m, k) = transposeA ? (a.shape[1], a.shape[0]) : (a.shape[0], a.shape[1])
        let n = transposeB ? b.shape[0] : b.shape[1]
        var c = [Double](repeating: 0, count: m * n)
        a.scalars.withUnsafeBufferPointer { a in
            b.scalars.withUnsafeBufferPointer { b in
                for i in 0..<m {
                    for j in 0..<n {
                        var sum = 0.0
                        for p in 0..<k {
                            sum += a[transposeA ? p * m + i : i * k + p] * b[transposeB ? j * k + p : p * n + j]
                        }
                        c[i * n + j] = sum
                    }
                }
            }
        }
        return c
    }

    /// Softmax or log-softmax along `axis`, subtracting the maximum first so exp never overflows.
    private func normalisedExponential(_ x: HostTensor, axis: Int, log logarithm: Bool) -> [Double] {
        let n = x.shape[axis]
        let inner = x.shape.dims[(axis + 1)...].reduce(1, *)
        let outer = x.shape.dims[..<axis].reduce(1, *)
        var y = [Double](repeating: 0, count: x.scalars.count)
        for o in 0..<outer {
            for i in 0..<inner {
                let indices = (0..<n).map { (o * n + $0) * inner + i }
                let m = indices.map { x.scalars[$0] }.max() ?? 0
                let sum = indices.reduce(0) { $0 + exp(x.scalars[$1] - m) }
                for index in indices {
                    y[index] = logarithm ? x.scalars[index] - m - log(sum) : exp(x.scalars[index] - m) / sum
                }
            }
        }
        return y
    }
}

// MARK: Index relations shared by the kernels

/// Whether `v` truncates to a value an Int32 can hold.
private func fitsInt32(_ v: Double) -> Bool {
    v.isFinite && v.rounded(.towardZero) >= Double(Int32.min) && v.rounded(.towardZero) <= Double(Int32.max)
}

/// Stores values at a dtype's precision: Float for float32, truncation toward zero for int32.
/// An int32 result that does not fit (division by zero, overflow) is a user error, not a clamp.
private func rounded(_ values: [Double], to dtype: DType, what: String) throws -> [Double] {
    switch dtype {
    case .float64: return values
    case .float32: return values.map { Double(Float($0)) }
    case .int32:
        return try values.map { v in
            guard fitsInt32(v) else { throw KilnError.feed("\(what): result \(v) does not fit int32") }
            return v.rounded(.towardZero)
        }
    }
}

private func dot(_ a: [Int], _ b: [Int]) -> Int { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }

/// For every element of `shape` (row-major), `offset + Σ index[i] · strides[i]`.
/// Broadcast, transpose, slice, pad, concat and reduce are all this map with different strides.
func stridedIndices(shape: Shape, strides: [Int], offset: Int) -> [Int] {
    precondition(strides.count == shape.rank)
    let count = shape.count
    var result = [Int]()
    result.reserveCapacity(count)
    var index = [Int](repeating: 0, count: shape.rank)
    var flat = offset
    for _ in 0..<count {
        result.append(flat)
        var axis = shape.rank - 1
        while axis >= 0 {
            index[axis] += 1
            flat += strides[axis]
            if index[axis] < shape[axis] { break }
            flat -= strides[axis] * index[axis]
            index[axis] = 0
            axis -= 1
        }
    }
    return result
}

/// The flat index in `source` read by every element of `target` under numpy broadcasting.
func broadcastIndices(from source: Shape, to target: Shape) -> [Int] {
    precondition(source.broadcasts(to: target), "\(source) does not broadcast to \(target)")
    let offset = target.rank - source.rank
    let sourceStrides = source.strides
    var strides = [Int](repeating: 0, count: target.rank)
    for axis in 0..<source.rank where source[axis] != 1 { strides[axis + offset] = sourceStrides[axis] }
    return stridedIndices(shape: target, strides: strides, offset: 0)
}

/// `lower ..< upper` intersected with `0 ..< extent` (empty, not inverted, when they miss).
private func clampedRange(from lower: Int, to upper: Int, within extent: Int) -> Range<Int> {
    let low = min(max(0, lower), extent)
    return low..<max(low, min(extent, upper))
}

/// Which of the three tensors of conv2d a `convolve` call writes.
private enum ConvolutionRole { case forward, backwardData, backwardFilter }

/// Walks every product term of conv2d: y[n,o,oh,ow] gets x[n,c,oh·sh−ph+kh, ow·sw−pw+kw] ·
/// w[o,c,kh,kw] where the x position is inside the image. `role` picks the tensor accumulated
/// into (y forward; x for backward data; w for backward filter) from the other two. All three
/// ops walk this one relation, so they are exact adjoints of each other by construction.
///
/// Pointers rather than a per-term closure: debug test builds run this 10× faster.
private func convolve(_ role: ConvolutionRole, x: UnsafeMutablePointer<Double>, w: UnsafeMutablePointer<Double>,
                      y: UnsafeMutablePointer<Double>, xShape: Shape, wShape: Shape, yShape: Shape, _ a: Conv2DAttributes) {
    let (batch, channels, height, width) = (xShape[0], xShape[1], xShape[2], xShape[3])
    let (outChannels, kernelH, kernelW) = (wShape[0], wShape[2], wShape[3])
    let (outH, outW) = (yShape[2], yShape[3])
    precondition(wShape[1] == channels && yShape[0] == batch && yShape[1] == outChannels)
    for n in 0..<batch {
        for o in 0..<outChannels {
            for oh in 0..<outH {
                // Kernel rows whose input row lies inside the image (the rest read padding zeros).
                let top = oh * a.strideH - a.padH
                let rows = clampedRange(from: -top, to: height - top, within: kernelH)
                for ow in 0..<outW {
                    let left = ow * a.strideW - a.padW
                    let columns = clampedRange(from: -left, to: width - left, within: kernelW)
                    guard !rows.isEmpty, !columns.isEmpty else { continue }
                    let yi = ((n * outChannels + o) * outH + oh) * outW + ow
                    var sum = 0.0
                    for c in 0..<channels {
                        for kh in rows {
                            let xRow = x + ((n * channels + c) * height + top + kh) * width  // a row inside the image
                            let wRow = w + ((o * channels + c) * kernelH + kh) * kernelW
                            switch role {
                            case .forward: for kw in columns { sum += xRow[left + kw] * wRow[kw] }
                            case .backwardData: for kw in columns { xRow[left + kw] += y[yi] * wRow[kw] }
                            case .backwardFilter: for kw in columns { wRow[kw] += xRow[left + kw] * y[yi] }
                            }
                        }
                    }
                    if role == .forward { y[yi] = sum }
                }
            }
        }
    }
}

/// Calls `body(xIndex, yIndex)` for every input element of every pooling window, windows in
/// row-major order and elements row-major within each window.
private func forEachPoolTap(input x: Shape, _ p: PoolAttributes, _ body: (Int, Int) -> Void) {
    let (planes, height, width) = (x[0] * x[1], x[2], x[3])
    let (outH, outW) = p.outputSize(height: height, width: width)
    for plane in 0..<planes {
        for oh in 0..<outH {
            for ow in 0..<outW {
                let yi = (plane * outH + oh) * outW + ow
                for kh in 0..<p.kernelH {
                    for kw in 0..<p.kernelW {
                        body((plane * height + oh * p.strideH + kh) * width + ow * p.strideW + kw, yi)
                    }
                }
            }
        }
    }
}

/// For every pooling window, the flat input index of its first maximum (row-major within the
/// window; a later equal value does not replace it).
private func firstMaxima(_ x: HostTensor, _ p: PoolAttributes) -> [Int] {
    let (outH, outW) = p.outputSize(height: x.shape[2], width: x.shape[3])
    var best = [Int](repeating: -1, count: x.shape[0] * x.shape[1] * outH * outW)
    forEachPoolTap(input: x.shape, p) { xi, yi in
        if best[yi] < 0 || x.scalars[xi] > x.scalars[best[yi]] { best[yi] = xi }
    }
    return best
}
