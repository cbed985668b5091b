import KilnGraph
import KilnPasses

/// Lowers a scheduled program to closures, one (or two, for an epilogue group) per kernel group:
/// pointers, shapes and loop bounds are fixed here, so a step looks nothing up and allocates
/// nothing. `lowerNode` is one exhaustive switch over ops; the pooled convolution is in
/// PooledConvolution.swift, the kernels themselves in Kernels/.
final class Lowering {
    let graph: Graph
    let buffers: ProgramBuffers
    let threads: Int
    let seed: UInt64
    let state: StepState
    /// The accumulators of every plain sum/mean kernel: kernels run one after another, so one
    /// buffer (as large as the largest needs) serves them all.
    let reduceAccumulators = SharedDoubles()
    /// The closures in run order, and for each the index of its scheduled group (`-1` for
    /// closures outside every group: constants need none, so today there are none).
    private(set) var kernels: [() -> Void] = []
    private(set) var groupOfKernel: [Int] = []
    private var currentGroup = -1

    init(graph: Graph, buffers: ProgramBuffers, threads: Int, seed: UInt64, state: StepState) {
        self.graph = graph
        self.buffers = buffers
        self.threads = threads
        self.seed = seed
        self.state = state
    }

    /// Fills constants, then lowers every scheduled group in order.
    func lower(_ program: Program) throws {
        for (id, node) in graph.nodes.enumerated() where !node.op.needsKernel { try lowerNode(id) }
        for (index, group) in program.schedule.enumerated() {
            currentGroup = index
            try lowerGroup(group)
        }
        currentGroup = -1
    }

    func emit(_ kernel: @escaping () -> Void) {
        kernels.append(kernel)
        groupOfKernel.append(currentGroup)
    }

    private func outputBuffers(_ group: KernelGroup) -> [ValueID: UnsafeMutablePointer<Float>] {
        var result: [ValueID: UnsafeMutablePointer<Float>] = [:]
        for output in group.outputs { result[output] = buffers.floats(output) }
        return result
    }

    /// Builds the closure of one kernel.
    func lowerGroup(_ group: KernelGroup) throws {
        switch group.kind {
        case .single:
            // A result nothing reads gets no buffer from the memory plan; its kernel has no effect.
            if !buffers.isStored(group.root) && group.outputs.isEmpty { return }
            try lowerNode(group.root)
        case .elementwise:
            let fused = FusedElementwise(graph: graph, members: group.evaluationOrder, space: graph.nodes[group.root].type.shape,
                                         outputs: outputBuffers(group), pointer: buffers.floats, threads: threads)
            emit { fused.run() }
        case .reduction:
            // One pass computes every reduction of the kernel (all over the same axes of one space).
            let reductions = group.members.filter { graph.nodes[$0].op.fusionCategory == .reduction }
            let space = graph.nodes[graph.nodes[group.root].inputs[0]].type.shape
            let fused = FusedElementwise(graph: graph, members: group.nonRootEvaluationOrder, space: space,
                                         outputs: outputBuffers(group).filter { !reductions.contains($0.key) }, pointer: buffers.floats,
                                         threads: threads, reductions: reductions.map { ($0, buffers.floats($0)) })
            emit { fused.run() }
        case .pooled:
            try lowerPooled(group)
        case .epilogue:
            if try lowerGradientStep(group) { return }
            // The root writes into its own buffer when it has one (it leaves the kernel, or a late
            // member reads it), else into the output the epilogue then updates in place.
            let root = group.root
            if !buffers.isStored(root) {
                guard let destination = group.rootDestination(in: graph) else {
                    preconditionFailure("epilogue kernel of %\(root) has neither a root buffer nor an output of its shape")
                }
                buffers.share(root, with: destination)
            }
            try lowerNode(root)
            let fused = FusedElementwise(graph: graph, members: group.nonRootEvaluationOrder,
                                         space: graph.nodes[root].type.shape,
                                         outputs: outputBuffers(group).filter { $0.key != root }, pointer: buffers.floats, threads: threads)
            emit { fused.run() }
        }
    }

    /// A plain gradient step on a product, `P ← P − s·(A·B)`: a matmul, then `mul` by a scalar
    /// `s`, then `sub` from P, the kernel's only output, which is P's update. Nil for any other
    /// kernel. The memory plan decides whether the update is written in place (`lowerGradientStep`).
    struct GradientStep { let rate: ValueID, target: ValueID, update: ValueID }

    static func gradientStep(_ group: KernelGroup, in graph: Graph) -> GradientStep? {
        let root = group.root
        guard group.kind == .epilogue, case .matmul = graph.nodes[root].op, group.outputs.count == 1, group.outputs[0] != root
        else { return nil }
        let members = group.nonRootEvaluationOrder.filter { if case .broadcast = graph.nodes[$0].op { return false } else { return true } }
        guard members.count == 2, case .binary(.mul) = graph.nodes[members[0]].op, case .binary(.sub) = graph.nodes[members[1]].op
        else { return nil }
        let product = graph.nodes[members[0]], step = graph.nodes[members[1]]
        guard step.inputs.count == 2, step.inputs[1] == members[0], group.outputs[0] == members[1],
              product.inputs.count == 2, product.inputs.contains(root) else { return nil }
        // The rate: a scalar, maybe through a broadcast member.
        var rate = product.inputs[0] == root ? product.inputs[1] : product.inputs[0]
        if group.members.contains(rate), case .broadcast = graph.nodes[rate].op { rate = graph.nodes[rate].inputs[0] }
        let target = step.inputs[0]
        guard rate != root, !group.members.contains(rate), !group.members.contains(target),
              graph.nodes[rate].type.shape.count == 1, graph.nodes[rate].type.dtype == .float32,
              graph.nodes[target].type == graph.nodes[root].type,
              graph.updates.contains(Update(target: target, value: members[1])) else { return nil }
        return GradientStep(rate: rate, target: target, update: members[1])
    }

    /// Lowers a `gradientStep` kernel as one product that adds into P, with the smaller operand
    /// scaled by −s first (at run time, so a changing rate is read each step): the gradient is
    /// never stored and no second pass runs over it (MLP b16, AVX-512 Xeon, in a profile: the
    /// 200×784 step from 66–84 to 47–66 µs, the 200×200 one from 18 to 8). The sum differs from
    /// the unfused one only in rounding (−s multiplies the operand, not the sum) and is the same
    /// for any thread count. Needs the update written in place into P, and P sharing no bytes
    /// with A or B (the product reads them while it adds into P); returns false otherwise.
    private func lowerGradientStep(_ group: KernelGroup) throws -> Bool {
        guard let match = Self.gradientStep(group, in: graph), case let .matmul(ta, tb) = graph.nodes[group.root].op,
              let written = buffers.raw(match.update), written == buffers.raw(match.target) else { return false }
        func bytes(_ id: ValueID) -> Range<UInt> {
            let base = UInt(bitPattern: Int(bitPattern: buffers.raw(id)))
            return base..<base + UInt(graph.nodes[id].type.byteCount)
        }
        let node = graph.nodes[group.root]
        let inputs = node.inputs
        guard !inputs.contains(where: { bytes($0).overlaps(bytes(match.target)) }) else { return false }
        let a = buffers.floats(inputs[0]), b = buffers.floats(inputs[1])
        let c = buffers.floats(match.target), s = buffers.floats(match.rate)
        let (aType, bType) = (graph.nodes[inputs[0]].type, graph.nodes[inputs[1]].type)
        let (m, n) = (node.type.shape[0], node.type.shape[1])
        let k = ta ? aType.shape[0] : aType.shape[1]
        let lda = aType.shape[1], ldb = bType.shape[1]
        let scaleA = aType.shape.count <= bType.shape.count
        let scaledCount = scaleA ? aType.shape.count : bType.shape.count
        let scaled = buffers.scratchFloats(scaledCount)
        let workspace = GEMM.Workspace(transposeA: ta, transposeB: tb, m: m, n: n, k: k)
        let threads = self.threads
        emit {
            let alpha = -s[0], source = scaleA ? a : b
            for i in 0..<scaledCount { scaled[i] = alpha * source[i] }
            GEMM.sgemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, a: scaleA ? scaled : a, lda: lda,
                       b: scaleA ? b : scaled, ldb: ldb, c: c, ldc: n, accumulate: true, threads: threads, workspace: workspace)
        }
        return true
    }

    func lowerNode(_ id: ValueID) throws {
        let node = graph.nodes[id]
        let type = node.type
        let count = type.shape.count
        let inputTypes = node.inputs.map { graph.nodes[$0].type }
        let allowsInt: Bool
        switch node.op {
        case .input, .cast, .oneHot, .softmaxCrossEntropy, .reshape, .stopGradient, .constant: allowsInt = true
        case .parameter, .state, .randomUniform, .randomNormal, .unary, .binary, .power, .select, .adamUpdate, .reduce, .matmul,
             .transpose, .broadcast, .slice, .pad, .concat, .conv2d, .conv2dBackwardData, .conv2dBackwardFilter,
             .maxPool2d, .maxPool2dBackward, .maxPool2dGather, .avgPool2d, .avgPool2dBackward, .softmax, .logSoftmax:
            allowsInt = false
        }
        if !allowsInt, type.dtype != .float32 || inputTypes.contains(where: { $0.dtype != .float32 }) {
            throw KilnError.feed("%\(id) \(node.op.name) on \(([type] + inputTypes).map { "\($0)" }.joined(separator: ", ")): the compiled runtime runs float32 (int32 only for labels); use the Interpreter for other dtypes")
        }
        let y = buffers.floats(id)
        let threads = self.threads
        switch node.op {
        case .input, .parameter, .state, .reshape, .stopGradient:
            return

        case let .constant(values):
            if type.dtype == .int32 {
                let p = buffers.ints(id)
                for i in 0..<count { p[i] = Int32(values.count == 1 ? values[0] : values[i]) }
            } else {
                for i in 0..<count { y[i] = Float(values.count == 1 ? values[0] : values[i]) }
            }

        case let .randomUniform(stream), let .randomNormal(stream):
            let random = CounterRandom(seed: seed)
            let state = self.state
            let buffer = UnsafeMutableBufferPointer(start: y, count: count)
            let uniform: Bool
            if case .randomUniform = node.op { uniform = true } else { uniform = false }
            // A normal draw costs ~9 ns (Philox, then Box–Muller a vector at a time), so a few
            // thousand are worth two threads; parts start at multiples of 4, and each element's
            // value depends only on its index.
            let parts = Swift.max(1, Swift.min(threads, count / 1024))
            emit {
                Parallel.forEach(chunks: parts, threads: parts) { part in
                    let range = (part * count / parts / 4 * 4)..<(part + 1 == parts ? count : (part + 1) * count / parts / 4 * 4)
                    if uniform {
                        random.fillUniform(buffer, stream: stream, step: state.step, range: range)
                    } else {
                        random.fillNormal(buffer, stream: stream, step: state.step, range: range)
                    }
                }
            }

        case let .unary(f):
            let x = buffers.floats(node.inputs[0])
            emit(Parallel.chunkedKernel(count, threads) { range in
                ElementwiseKernel.unary(f, x + range.lowerBound, y + range.lowerBound, count: range.count)
            })

        case let .power(exponent):
            let x = buffers.floats(node.inputs[0]), e = Float(exponent)
            emit(Parallel.chunkedKernel(count, threads) { range in
                ElementwiseKernel.power(e, x + range.lowerBound, y + range.lowerBound, count: range.count)
            })

        case let .binary(f):
            let a = buffers.floats(node.inputs[0]), b = buffers.floats(node.inputs[1])
            let rows = StridedLoops.rows(shape: type.shape, operandStrides: [
                StridedLoops.broadcastStrides(inputTypes[0].shape, to: type.shape),
                StridedLoops.broadcastStrides(inputTypes[1].shape, to: type.shape),
                type.shape.strides])
            let inner = rows.inner, sa = rows.innerStrides[0], sb = rows.innerStrides[1]
            let oa = rows.offsets[0], ob = rows.offsets[1], oy = rows.offsets[2]
            emit(Parallel.chunkedKernel(rows.rowCount, threads, grain: Swift.max(1, 32768 / Swift.max(inner, 1))) { range in
                for r in range { ElementwiseKernel.binary(f, a + oa[r], sa, b + ob[r], sb, y + oy[r], count: inner) }
            })

        case .select:
            let c = buffers.floats(node.inputs[0]), a = buffers.floats(node.inputs[1]), b = buffers.floats(node.inputs[2])
            let sc = StridedLoops.broadcastStrides(inputTypes[0].shape, to: type.shape)
            let sa = StridedLoops.broadcastStrides(inputTypes[1].shape, to: type.shape)
            let sb = StridedLoops.broadcastStrides(inputTypes[2].shape, to: type.shape)
            let rows = StridedLoops.rows(shape: type.shape, operandStrides: [sc, sa, sb, type.shape.strides])
            let inner = rows.inner, s = rows.innerStrides
            let o = rows.offsets
            emit {
                for r in 0..<rows.rowCount {
                    ElementwiseKernel.select(c + o[0][r], s[0], a + o[1][r], s[1], b + o[2][r], s[2], y + o[3][r], count: inner)
                }
            }

        case .adamUpdate:
            // Unfused, the formula is a one-member fused kernel (broadcast operands read with stride 0).
            let fused = FusedElementwise(graph: graph, members: [id], space: type.shape, outputs: [id: y],
                                         pointer: buffers.floats, threads: threads)
            emit { fused.run() }

        case let .cast(target):
            let source = inputTypes[0].dtype
            let input = node.inputs[0]
            switch (source, target) {
            case (.float32, .float32), (.int32, .int32):
                let from = buffers.raw(input)!, to = buffers.raw(id)!, bytes = type.byteCount
                emit { to.copyMemory(from: from, byteCount: bytes) }
            case (.int32, .float32):
                let from = buffers.ints(input)
                emit { for i in 0..<count { y[i] = Float(from[i]) } }
            case (.float32, .int32):
                let from = buffers.floats(input), to = buffers.ints(id)
                emit { for i in 0..<count { to[i] = Int32(from[i]) } }
            default:
                throw KilnError.feed("%\(id) cast from \(source) to \(target) is not supported by the compiled runtime")
            }

        case let .reduce(f, axes, _):
            try lowerReduce(id, f, axes)

        case let .matmul(ta, tb):
            let a = buffers.floats(node.inputs[0]), b = buffers.floats(node.inputs[1])
            let (m, n) = (type.shape[0], type.shape[1])
            let k = ta ? inputTypes[0].shape[0] : inputTypes[0].shape[1]
            let lda = inputTypes[0].shape[1], ldb = inputTypes[1].shape[1]
            // Packing buffers made once here, so a step allocates nothing.
            let workspace = GEMM.Workspace(transposeA: ta, transposeB: tb, m: m, n: n, k: k)
            emit {
                GEMM.sgemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                           c: y, ldc: n, accumulate: false, threads: threads, workspace: workspace)
            }

        case let .transpose(permutation):
            let x = buffers.floats(node.inputs[0])
            let sourceStrides = inputTypes[0].shape.strides
            let strides = permutation.map { sourceStrides[$0] }
            let dims = type.shape.dims, outStrides = type.shape.strides
            emit {
                StridedLoops.copy(shape: dims, source: x, sourceOffset: 0, sourceStrides: strides,
                                  destination: y, destinationOffset: 0, destinationStrides: outStrides)
            }

        case .broadcast:
            let x = buffers.floats(node.inputs[0])
            let rows = StridedLoops.rows(shape: type.shape, operandStrides: [
                StridedLoops.broadcastStrides(inputTypes[0].shape, to: type.shape), type.shape.strides])
            let inner = rows.inner, sx = rows.innerStrides[0], ox = rows.offsets[0], oy = rows.offsets[1]
            // Each of a run of source floats repeated `inner` times, side by side (an upsampling's
            // W): one pass over the run, pairs 8, then 4, at a time.
            let run = sx == 0 && inner < 16 ? ReduceKernel.runLength(ox, oy, steps: (1, inner), unit: rows.rowCount) : 1
            if run > 1 {
                // The runs' first offsets only: the rows' own arrays are as large as the data.
                let starts = stride(from: 0, to: rows.rowCount, by: run)
                let sources = starts.map { ox[$0] }, outs = starts.map { oy[$0] }
                emit(Parallel.chunkedKernel(sources.count, threads, grain: Swift.max(1, 32768 / (inner * run))) { range in
                    sources.withUnsafeBufferPointer { sourceOffsets in
                        outs.withUnsafeBufferPointer { outOffsets in
                            for r in range {
                                repeatFloats(x + sourceOffsets[r], times: inner, count: run, into: y + outOffsets[r])
                            }
                        }
                    }
                })
                return
            }
            emit(Parallel.chunkedKernel(rows.rowCount, threads, grain: Swift.max(1, 32768 / Swift.max(inner, 1))) { range in
                for r in range {
                    let xp = x + ox[r], yp = y + oy[r]
                    if sx == 0 { yp.update(repeating: xp[0], count: inner) } else { yp.update(from: xp, count: inner) }
                }
            })

        case let .slice(start, _):
            let x = buffers.floats(node.inputs[0])
            let sourceStrides = inputTypes[0].shape.strides
            let offset = zip(start, sourceStrides).map(*).reduce(0, +)
            let dims = type.shape.dims, outStrides = type.shape.strides
            emit {
                StridedLoops.copy(shape: dims, source: x, sourceOffset: offset, sourceStrides: sourceStrides,
                                  destination: y, destinationOffset: 0, destinationStrides: outStrides)
            }

        case let .pad(low, _):
            let x = buffers.floats(node.inputs[0])
            let outStrides = type.shape.strides
            let offset = zip(low, outStrides).map(*).reduce(0, +)
            let dims = inputTypes[0].shape.dims, inStrides = inputTypes[0].shape.strides
            emit {
                y.update(repeating: 0, count: count)
                StridedLoops.copy(shape: dims, source: x, sourceOffset: 0, sourceStrides: inStrides,
                                  destination: y, destinationOffset: offset, destinationStrides: outStrides)
            }

        case let .concat(axis):
            let outStrides = type.shape.strides
            var pieces: [(UnsafeMutablePointer<Float>, [Int], [Int], Int)] = []
            var position = 0
            for (input, inputType) in zip(node.inputs, inputTypes) {
                pieces.append((buffers.floats(input), inputType.shape.dims, inputType.shape.strides, position * outStrides[axis]))
                position += inputType.shape[axis]
            }
            emit {
                for (x, dims, strides, offset) in pieces {
                    StridedLoops.copy(shape: dims, source: x, sourceOffset: 0, sourceStrides: strides,
                                      destination: y, destinationOffset: offset, destinationStrides: outStrides)
                }
            }

        case let .conv2d(a):
            let x = buffers.floats(node.inputs[0]), w = buffers.floats(node.inputs[1])
            let g = Conv2DKernel.Geometry(a, input: inputTypes[0].shape, filter: inputTypes[1].shape)
            // Scratch made once here, so a step allocates nothing.
            let workspace = Conv2DKernel.Workspace(.forward, g, threads: threads)
            emit { Conv2DKernel.forward(g, x: x, weight: w, y: y, threads: threads, workspace: workspace) }

        case let .conv2dBackwardData(a, inputShape):
            let dy = buffers.floats(node.inputs[0]), w = buffers.floats(node.inputs[1])
            let g = Conv2DKernel.Geometry(a, input: inputShape, filter: inputTypes[1].shape)
            let workspace = Conv2DKernel.Workspace(.backwardData, g, threads: threads)
            emit { Conv2DKernel.backwardData(g, dy: dy, weight: w, dx: y, threads: threads, workspace: workspace) }

        case let .conv2dBackwardFilter(a, filterShape):
            let x = buffers.floats(node.inputs[0]), dy = buffers.floats(node.inputs[1])
            let g = Conv2DKernel.Geometry(a, input: inputTypes[0].shape, filter: filterShape)
            let workspace = Conv2DKernel.Workspace(.backwardFilter, g, threads: threads)
            emit { Conv2DKernel.backwardFilter(g, x: x, dy: dy, dw: y, threads: threads, workspace: workspace) }

        case let .maxPool2d(p):
            let x = buffers.floats(node.inputs[0]), g = Pool2DKernel.Geometry(p, input: inputTypes[0].shape)
            emit { Pool2DKernel.maxForward(g, x: x, y: y, threads: threads) }
        case let .maxPool2dBackward(p):
            let x = buffers.floats(node.inputs[0]), dy = buffers.floats(node.inputs[1]), g = Pool2DKernel.Geometry(p, input: inputTypes[0].shape)
            emit { Pool2DKernel.maxBackward(g, x: x, dy: dy, dx: y, threads: threads) }
        case let .maxPool2dGather(p):
            let x = buffers.floats(node.inputs[0]), source = buffers.floats(node.inputs[1]), g = Pool2DKernel.Geometry(p, input: inputTypes[0].shape)
            emit { Pool2DKernel.maxGather(g, x: x, source: source, out: y, threads: threads) }
        case let .avgPool2d(p):
            let x = buffers.floats(node.inputs[0]), g = Pool2DKernel.Geometry(p, input: inputTypes[0].shape)
            emit { Pool2DKernel.avgForward(g, x: x, y: y, threads: threads) }
        case let .avgPool2dBackward(p, inputShape):
            let dy = buffers.floats(node.inputs[0]), g = Pool2DKernel.Geometry(p, input: inputShape)
            emit { Pool2DKernel.avgBackward(g, dy: dy, dx: y, threads: threads) }

        case let .softmax(axis), let .logSoftmax(axis):
            let x = buffers.floats(node.inputs[0])
            let dims = type.shape.dims
            let outer = dims[..<axis].reduce(1, *), length = dims[axis], inner = dims[(axis + 1)...].reduce(1, *)
            let isLog: Bool
            if case .logSoftmax = node.op { isLog = true } else { isLog = false }
            emit {
                SoftmaxKernel.softmax(x, y, outer: outer, length: length, inner: inner, log: isLog)
            }

        case .softmaxCrossEntropy:
            let logits = buffers.floats(node.inputs[0]), labels = buffers.ints(node.inputs[1])
            let rows = inputTypes[0].shape[0], classes = inputTypes[0].shape[1]
            let state = self.state, place = graph.place(id)
            emit {
                if let bad = SoftmaxKernel.crossEntropy(logits, labels, y, rows: rows, classes: classes) {
                    state.fault = "softmax_cross_entropy \(place): label \(labels[bad]) of example \(bad) is outside 0..<\(classes) (step \(state.step))"
                }
            }

        case let .oneHot(depth, dtype):
            guard dtype == .float32 else { throw KilnError.feed("%\(id) one_hot to \(dtype) is not supported by the compiled runtime") }
            let labels = buffers.ints(node.inputs[0]), n = inputTypes[0].shape.count
            let state = self.state, place = graph.place(id)
            emit {
                y.update(repeating: 0, count: count)
                for i in 0..<n {
                    let label = Int(labels[i])
                    guard label >= 0 && label < depth else {
                        state.fault = "one_hot \(place): label \(label) at index \(i) is outside 0..<\(depth) (step \(state.step))"
                        return
                    }
                    y[i * depth + label] = 1
                }
            }
        }
    }

    func lowerReduce(_ id: ValueID, _ f: ReduceFunction, _ axes: [Int]) throws {
        let node = graph.nodes[id]
        let inputShape = graph.nodes[node.inputs[0]].type.shape
        let x = buffers.floats(node.inputs[0]), y = buffers.floats(id)
        let outCount = node.type.shape.count
        // Output strides viewed in the input's rank, 0 on reduced axes.
        var reducedShape = inputShape.dims
        for axis in axes { reducedShape[axis] = 1 }
        let outStrides = StridedLoops.broadcastStrides(Shape(reducedShape), to: inputShape)
        let rows = StridedLoops.rows(shape: inputShape, operandStrides: [inputShape.strides, outStrides])
        let inner = rows.inner, innerOut = rows.innerStrides[1]
        let ox = rows.offsets[0], oy = rows.offsets[1]
        let reducedCount = axes.reduce(1) { $0 * inputShape[$1] }
        let threads = self.threads
        switch f {
        case .sum where innerOut == 0 && ReduceKernel.fitsWide(outputs: outCount, parts: ReduceKernel.parts(rows: ox.count, inner: inner)),
             .mean where innerOut == 0 && ReduceKernel.fitsWide(outputs: outCount, parts: ReduceKernel.parts(rows: ox.count, inner: inner)):
            // Each row sums to one output (batch-norm statistics: rows of H·W floats). The rows
            // are cut into a fixed number of contiguous parts (from the problem size alone), each
            // part summed into its own wide accumulators (16 doubles per output), which are added
            // in part order at the end: the same bits for every thread count.
            let scale = f == .mean ? 1 / Double(Swift.max(reducedCount, 1)) : 1
            let rowCount = ox.count, lanes = ReduceKernel.lanes
            let parts = ReduceKernel.parts(rows: rowCount, inner: inner)
            let shared = reduceAccumulators
            shared.reserve(parts * outCount * lanes)
            emit {
                let accumulator = shared.pointer
                Parallel.forEach(chunks: parts, threads: threads) { part in
                    let partAccumulator = accumulator + part * outCount * lanes
                    partAccumulator.update(repeating: 0, count: outCount * lanes)
                    ox.withUnsafeBufferPointer { rowOffsets in
                        oy.withUnsafeBufferPointer { outOffsets in
                            for r in part * rowCount / parts..<(part + 1) * rowCount / parts {
                                ReduceKernel.addRow(x + rowOffsets[r], inner, into: partAccumulator + outOffsets[r] * lanes)
                            }
                        }
                    }
                }
                for o in 0..<outCount {
                    var total = 0.0
                    for part in 0..<parts { total += ReduceKernel.laneTotal(accumulator + (part * outCount + o) * lanes) }
                    y[o] = Float(total * scale)
                }
            }
        case .sum, .mean:
            let scale = f == .mean ? 1 / Double(Swift.max(reducedCount, 1)) : 1
            let accumulator = buffers.scratchDoubles(outCount)
            // Blocks of rows that share no output with other blocks: the rows of one index of
            // the axes before the first reduced one (an upsampling's gradient, [N, C, H, 2, W, 2]
            // summed over its two 2s: N·C·H blocks). Each output is still summed by one thread in
            // row order, so the bits do not depend on the thread count.
            let rowCount = ox.count
            let leading = inputShape.dims[..<(axes.min() ?? 0)].reduce(1, *)
            let blocks = ReduceKernel.independentBlocks(rows: rowCount, outputs: outCount, leading: leading,
                                                        inner: inner, innerOut: innerOut, outOffsets: oy)
            let rowsPerBlock = rowCount / blocks, outputsPerBlock = outCount / blocks
            // Short rows side by side that sum to outputs side by side (W of an upsampling's
            // gradient) are summed a run at a time: the same sums in the same order.
            let run = innerOut == 0 && inner < 16
                ? ReduceKernel.runLength(ox, oy, steps: (inner, 1), unit: rowsPerBlock) : 1
            // With runs, their first offsets only (the rows' own arrays are as large as the data).
            let runStarts = run > 1 ? Array(stride(from: 0, to: rowCount, by: run)) : []
            let runSources = runStarts.map { ox[$0] }, runOuts = runStarts.map { oy[$0] }
            emit(Parallel.chunkedKernel(blocks, threads, grain: Swift.max(1, 32768 / Swift.max(1, rowsPerBlock * inner))) { range in
                let outputs = range.lowerBound * outputsPerBlock..<range.upperBound * outputsPerBlock
                (accumulator + outputs.lowerBound).update(repeating: 0, count: outputs.count)
                if run > 1 {
                    runSources.withUnsafeBufferPointer { sources in
                        runOuts.withUnsafeBufferPointer { outs in
                            for r in range.lowerBound * rowsPerBlock / run..<range.upperBound * rowsPerBlock / run {
                                ReduceKernel.addShortRowSums(x + sources[r], inner: inner, count: run, into: accumulator + outs[r])
                            }
                        }
                    }
                    for i in outputs { y[i] = Float(accumulator[i] * scale) }
                    return
                }
                ox.withUnsafeBufferPointer { rowOffsets in
                    oy.withUnsafeBufferPointer { outOffsets in
                        let rows = range.lowerBound * rowsPerBlock..<range.upperBound * rowsPerBlock
                        for r in rows {
                            let xp = x + rowOffsets[r], ap = accumulator + outOffsets[r]
                            if innerOut == 0 {
                                ap[0] += ReduceKernel.rowSum(xp, inner)
                            } else {
                                for i in 0..<inner { ap[i] += Double(xp[i]) }
                            }
                        }
                    }
                }
                for i in outputs { y[i] = Float(accumulator[i] * scale) }
            })
        case .max:
            emit {
                y.update(repeating: -.infinity, count: outCount)
                for r in 0..<ox.count {
                    let xp = x + ox[r], yp = y + oy[r]
                    if innerOut == 0 {
                        var m = yp[0]
                        for i in 0..<inner where xp[i] > m { m = xp[i] }
                        yp[0] = m
                    } else {
                        for i in 0..<inner where xp[i] > yp[i] { yp[i] = xp[i] }
                    }
                }
            }
        }
    }

}

/// `out[j·times + i] = x[j]` for j in 0..<count, i in 0..<times; pairs 8, then 4, source floats at a time.
@inline(__always)
private func repeatFloats(_ x: UnsafePointer<Float>, times: Int, count: Int, into out: UnsafeMutablePointer<Float>) {
    var j = 0
    if times == 2 {
        while j + 8 <= count {
            let v = UnsafeRawPointer(x + j).loadUnaligned(as: SIMD8<Float>.self)
            var pairs = SIMD16<Float>()
            pairs.evenHalf = v
            pairs.oddHalf = v
            UnsafeMutableRawPointer(out + 2 * j).storeBytes(of: pairs, as: SIMD16<Float>.self)
            j += 8
        }
        if j + 4 <= count {
            let v = UnsafeRawPointer(x + j).loadUnaligned(as: SIMD4<Float>.self)
            var pairs = SIMD8<Float>()
            pairs.evenHalf = v
            pairs.oddHalf = v
            UnsafeMutableRawPointer(out + 2 * j).storeBytes(of: pairs, as: SIMD8<Float>.self)
            j += 4
        }
        while j < count {
            out[2 * j] = x[j]
            out[2 * j + 1] = x[j]
            j += 1
        }
        return
    }
    while j < count {
        for i in 0..<times { out[j * times + i] = x[j] }
        j += 1
    }
}

/// A buffer of doubles that kernels running one at a time share, grown while lowering (never in a step).
final class SharedDoubles {
    private(set) var pointer = UnsafeMutablePointer<Double>.allocate(capacity: 1)
    private var capacity = 1

    func reserve(_ count: Int) {
        guard count > capacity else { return }
        pointer.deallocate()
        pointer = .allocate(capacity: count)
        capacity = count
    }

    deinit { pointer.deallocate() }
}

extension Graph {
    /// "%12" and, when known, where user code made the node: "%12 (Model.swift:30)".
    func place(_ id: ValueID) -> String {
        nodes[id].location.map { "%\(id) (\($0))" } ?? "%\(id)"
    }
}
