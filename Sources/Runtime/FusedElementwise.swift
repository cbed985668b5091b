import KilnGraph
import KilnPasses

/// The compiled form of a fused elementwise kernel: a short program of elementwise instructions
/// evaluated tile by tile over the kernel's iteration space. Values that leave the kernel are
/// written straight to their buffers; the rest live in per-thread scratch rows of one tile.
/// Operands that broadcast are read with stride 0, never materialised. A tile reads all of its
/// inputs before writing its outputs, so an output may share an input's buffer (in place).
///
/// With reduction sinks, the values of members are summed (or maxed) into the reductions'
/// outputs as each tile is computed: reductions with an elementwise prologue, several over the
/// same axes in one pass (a member is stored too only when it leaves the kernel).
final class FusedElementwise {
    enum Source { case operand(Int), slot(Int) }
    enum Operation {
        case unary(UnaryFunction)
        case binary(BinaryFunction)
        case power(Float)
        case select
        case adam(AdamFormula)
        /// Adam's three formulas for one parameter in one pass (`AdamKernel.step`), at the
        /// parameter formula's instruction; the two moments' instructions before it become
        /// `.adamMomentDeferred` (their destinations are written by the step).
        case adamStep
        case adamMomentDeferred
    }
    /// Plain values only (inputs are a range of `inputPool`), so the tile loop reads them
    /// without reference counting: two threads retaining one shared array on every tile made
    /// every fused kernel slower on 2 threads than on 1.
    struct Instruction {
        var operation: Operation
        var inputStart: Int
        var inputCount: Int
        var slot: Int
        /// Buffer of the value when it leaves the kernel (written at the output offset of the row).
        var output: UnsafeMutablePointer<Float>?
    }
    struct Sink {
        var function: ReduceFunction
        var source: Source
        var output: UnsafeMutablePointer<Float>
        var outputCount: Int
        /// Per row: offset in the reduction's output; inner stride 0 (row collapses) or 1.
        var rowOffsets: UnsafeMutablePointer<Int>
        var innerStride: Int
        var scale: Double
        /// Per part, per output: `width` doubles.
        var accumulator: UnsafeMutablePointer<Double>
        /// 16 for a sum whose rows collapse to one output (wide accumulators, `ReduceKernel.addRow`), else 1.
        var width: Int
    }

    static let tile = 256

    let inner: Int
    let rowCount: Int
    let operandCount: Int
    /// Per operand: its buffer, its inner stride, and (at `k * rowCount + r`) its offset in row r.
    let operandBases: UnsafeMutablePointer<UnsafePointer<Float>>
    let operandStrides: UnsafeMutablePointer<Int>
    let operandOffsets: UnsafeMutablePointer<Int>
    /// Per row: offset of the outputs.
    let outputOffsets: UnsafeMutablePointer<Int>
    let instructions: UnsafeMutableBufferPointer<Instruction>
    /// Every instruction's inputs, one after another.
    let inputPool: UnsafeMutableBufferPointer<Source>
    let slotCount: Int
    let threads: Int
    /// The reductions, all over the same axes (empty without one). Plain values in a buffer, so
    /// the tile loop reads them without reference counting.
    let sinks: UnsafeMutableBufferPointer<Sink>
    /// Parts a reduction's rows are split into (1 without a reduction).
    let sinkParts: Int
    /// Per thread: slotCount scratch rows of `tile` floats.
    private let scratch: UnsafeMutablePointer<Float>
    private let scratchPerThread: Int

    /// Builds the program for `members` (in graph order) over `space`. `pointer` gives the buffer
    /// of any value read from outside; `outputs` lists members that leave the kernel, with their buffers.
    /// With `reductions`, each reduce member `root` consumes its input member as a sink (the
    /// input is stored only when it is also in `outputs`); all reduce the same axes.
    /// With `batchSlice`, members have shape `space` but for their first dimension (the batch):
    /// the kernel runs over that many images of them (operands must not vary along the batch).
    init(graph: Graph, members: [ValueID], space: Shape, outputs: [ValueID: UnsafeMutablePointer<Float>],
         pointer: (ValueID) -> UnsafeMutablePointer<Float>, threads: Int,
         reductions: [(root: ValueID, output: UnsafeMutablePointer<Float>)] = [], batchSlice: Bool = false) {
        let memberSet = Set(members)
        var operandIndex: [ValueID: Int] = [:]
        var bases: [UnsafePointer<Float>] = []
        var strides: [[Int]] = []
        var slotOf: [ValueID: Int] = [:]
        func source(_ id: ValueID) -> Source {
            if let slot = slotOf[id] { return .slot(slot) }
            // An absorbed broadcast reads its input with broadcast strides.
            var value = id, shape = graph.nodes[id].type.shape
            if memberSet.contains(id), case .broadcast = graph.nodes[id].op {
                value = graph.nodes[id].inputs[0]
                shape = graph.nodes[value].type.shape
            }
            precondition(!memberSet.contains(value), "fused kernel reads member %\(value) before computing it")
            if let index = operandIndex[value] { return .operand(index) }
            operandIndex[value] = bases.count
            bases.append(UnsafePointer(pointer(value)))
            strides.append(StridedLoops.broadcastStrides(shape, to: space))
            return .operand(bases.count - 1)
        }
        var program: [Instruction] = []
        var programInputs: [Source] = []
        for id in members {
            let node = graph.nodes[id]
            let operation: Operation
            switch node.op {
            case let .unary(f): operation = .unary(f)
            case let .binary(f): operation = .binary(f)
            case let .power(e): operation = .power(Float(e))
            case .select: operation = .select
            case let .adamUpdate(formula): operation = .adam(formula)
            case .cast: operation = .power(1)  // float32 to float32: a copy
            case .broadcast, .reduce: continue
            case .input, .parameter, .state, .constant, .randomUniform, .randomNormal, .matmul, .reshape, .stopGradient, .transpose,
                 .slice, .pad, .concat, .conv2d, .conv2dBackwardData, .conv2dBackwardFilter, .maxPool2d, .maxPool2dBackward,
                 .maxPool2dGather, .avgPool2d, .avgPool2dBackward, .softmax, .logSoftmax, .softmaxCrossEntropy, .oneHot:
                preconditionFailure("\(node.op.name) is not elementwise")
            }
            precondition(node.type.shape == space || (batchSlice && Array(node.type.shape.dims.dropFirst()) == Array(space.dims.dropFirst())),
                         "member %\(id) has shape \(node.type.shape), kernel space is \(space)")
            let inputs = node.inputs.map(source)
            slotOf[id] = program.count
            program.append(Instruction(operation: operation, inputStart: programInputs.count, inputCount: inputs.count,
                                       slot: program.count, output: outputs[id]))
            programInputs += inputs
        }
        Self.combineAdamSteps(&program, programInputs)
        // The reduction's output strides join the row decomposition so rows never straddle outputs.
        var sinkStrides: [[Int]] = []
        var reducedShape = space
        if let first = reductions.first, case let .reduce(_, axes, _) = graph.nodes[first.root].op {
            for axis in axes { reducedShape.dims[axis] = 1 }
            sinkStrides = [StridedLoops.broadcastStrides(reducedShape, to: space)]
            for reduction in reductions {
                guard case let .reduce(_, otherAxes, _) = graph.nodes[reduction.root].op, otherAxes.sorted() == axes.sorted() else {
                    preconditionFailure("fused reductions %\(first.root) and %\(reduction.root) reduce different axes")
                }
            }
        }
        let rows = StridedLoops.rows(shape: space, operandStrides: strides + [space.strides] + sinkStrides)
        inner = rows.inner
        rowCount = rows.rowCount
        operandCount = bases.count
        operandBases = .allocate(capacity: Swift.max(1, bases.count))
        operandBases.initialize(from: bases, count: bases.count)
        operandStrides = .allocate(capacity: Swift.max(1, bases.count))
        operandStrides.initialize(from: rows.innerStrides, count: bases.count)
        operandOffsets = .allocate(capacity: Swift.max(1, bases.count * rows.rowCount))
        for k in bases.indices { (operandOffsets + k * rows.rowCount).initialize(from: rows.offsets[k], count: rows.rowCount) }
        outputOffsets = .allocate(capacity: rows.rowCount)
        outputOffsets.initialize(from: rows.offsets[bases.count], count: rows.rowCount)
        instructions = .allocate(capacity: program.count)
        _ = instructions.initialize(from: program)
        inputPool = .allocate(capacity: programInputs.count)
        _ = inputPool.initialize(from: programInputs)
        slotCount = program.count
        self.threads = threads
        scratchPerThread = Swift.max(1, slotCount) * Self.tile
        // A reduction splits its rows into a fixed number of parts (from the problem size, never
        // the thread count), each with its own accumulator, added in part order at the end.
        sinkParts = !reductions.isEmpty && rows.rowCount * rows.inner >= 65536 ? 8 : 1
        // One scratch block per chunk `run` can use (never more than the elements allow, whatever the thread count).
        // Aligned to a cache line, like the arena: each thread's rows are whole lines of its own.
        scratch = GEMM.allocateFloats(scratchPerThread * Swift.max(1, Swift.min(threads, rows.rowCount * rows.inner / 8192), sinkParts))
        var sinkList: [Sink] = []
        for reduction in reductions {
            guard case let .reduce(function, axes, _) = graph.nodes[reduction.root].op else { continue }
            let value = graph.nodes[reduction.root].inputs[0]
            let reducedCount = axes.reduce(1) { $0 * space[$1] }
            let rowOffsets = UnsafeMutablePointer<Int>.allocate(capacity: rows.rowCount)
            rowOffsets.initialize(from: rows.offsets[bases.count + 1], count: rows.rowCount)
            let innerStride = rows.innerStrides[bases.count + 1]
            let width = function != .max && innerStride == 0
                && ReduceKernel.fitsWide(outputs: reducedShape.count, parts: sinkParts) ? ReduceKernel.lanes : 1
            guard let slot = slotOf[value] else { preconditionFailure("reduction %\(reduction.root) reads %\(value), which the kernel does not compute") }
            sinkList.append(Sink(function: function, source: .slot(slot), output: reduction.output,
                                 outputCount: reducedShape.count, rowOffsets: rowOffsets,
                                 innerStride: innerStride,
                                 scale: function == .mean ? 1 / Double(Swift.max(reducedCount, 1)) : 1,
                                 accumulator: .allocate(capacity: Swift.max(reducedShape.count, 1) * sinkParts * width), width: width))
        }
        sinks = .allocate(capacity: sinkList.count)
        _ = sinks.initialize(from: sinkList)
    }

    deinit {
        scratch.deallocate()
        operandBases.deallocate()
        operandStrides.deallocate()
        operandOffsets.deallocate()
        outputOffsets.deallocate()
        instructions.deallocate()
        inputPool.deallocate()
        for sink in sinks {
            sink.accumulator.deallocate()
            sink.rowOffsets.deallocate()
        }
        sinks.deallocate()
    }

    /// Runs the whole iteration space.
    func run() {
        if !sinks.isEmpty {
            for sink in sinks {
                let initial: Double = sink.function == .max ? -.infinity : 0
                sink.accumulator.update(repeating: initial, count: sink.outputCount * sinkParts * sink.width)
            }
            let parts = sinkParts
            Parallel.forEach(chunks: parts, threads: threads) { part in
                if self.rowCount >= parts {
                    self.runRows(part * self.rowCount / parts..<(part + 1) * self.rowCount / parts, thread: part, part: part)
                } else {
                    // Few long rows: each part takes a fixed slice of every row's columns.
                    let start = part * self.inner / parts / 16 * 16
                    let end = part + 1 == parts ? self.inner : (part + 1) * self.inner / parts / 16 * 16
                    self.runRows(0..<self.rowCount, thread: part, part: part, columns: start..<end)
                }
            }
            for sink in sinks { finish(sink) }
            return
        }
        let total = rowCount * inner
        let chunks = Swift.max(1, Swift.min(threads, total / 8192))
        if chunks == 1 { runRows(0..<rowCount, thread: 0); return }
        if rowCount >= chunks {
            // Even parts (sizes differ by at most one row): a ceiling-sized part per chunk ran
            // past the last row once chunks came close to the row count (64 threads: a start
            // beyond the end, an invalid range, a crash).
            Parallel.forEach(chunks: chunks, threads: threads) { chunk in
                self.runRows(chunk * self.rowCount / chunks..<(chunk + 1) * self.rowCount / chunks, thread: chunk)
            }
        } else {
            // Few long rows (a contiguous space collapses to one row, e.g. an optimizer update):
            // split every row's columns instead, at multiples of 16 floats. Elements are
            // independent, so the split never changes a result.
            Parallel.forEach(chunks: chunks, threads: threads) { chunk in
                let start = chunk * self.inner / chunks / 16 * 16
                let end = chunk + 1 == chunks ? self.inner : (chunk + 1) * self.inner / chunks / 16 * 16
                self.runRows(0..<self.rowCount, thread: chunk, columns: start..<end)
            }
        }
    }

    /// Each sink's parts added in part order into its output.
    private func finish(_ sink: Sink) {
        let count = sink.outputCount, width = sink.width
        if width > 1 {
            for i in 0..<count {
                var value = 0.0
                for part in 0..<sinkParts { value += ReduceKernel.laneTotal(sink.accumulator + (part * count + i) * width) }
                sink.output[i] = Float(value * sink.scale)
            }
            return
        }
        for i in 0..<count {
            var value = sink.accumulator[i]
            for part in 1..<sinkParts {
                let other = sink.accumulator[part * count + i]
                value = sink.function == .max ? Swift.max(value, other) : value + other
            }
            sink.output[i] = Float(value * sink.scale)
        }
    }

    /// Computes `rows` (`columns` of each), with the sinks' accumulators of `part` when given.
    private func runRows(_ rows: Range<Int>, thread: Int, part: Int? = nil, columns: Range<Int>? = nil) {
        let columns = columns ?? 0..<inner
        let scratch = self.scratch + thread * scratchPerThread
        // Pointers of the current tile: one per slot (stride 1) and one per operand (with its stride).
        withUnsafeTemporaryAllocation(of: UnsafeMutablePointer<Float>.self, capacity: Swift.max(1, slotCount)) { slots in
            withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: Swift.max(1, operandCount)) { operands in
                for r in rows {
                    var j = columns.lowerBound
                    while j < columns.upperBound {
                        let length = Swift.min(Self.tile, columns.upperBound - j)
                        for k in 0..<operandCount {
                            operands[k] = operandBases[k] + operandOffsets[k * rowCount + r] + j * operandStrides[k]
                        }
                        for index in 0..<instructions.count {
                            let instruction = instructions[index]
                            let destination = instruction.output.map { $0 + outputOffsets[r] + j } ?? (scratch + index * Self.tile)
                            slots[index] = destination
                            execute(instruction, index, destination, length, slots, operands)
                        }
                        if let part {
                            for sink in sinks {
                                accumulate(sink, sink.accumulator + part * sink.outputCount * sink.width, r, j, length, slots, operands)
                            }
                        }
                        j += length
                    }
                }
            }
        }
    }

    /// Marks every first moment, second moment and parameter formula that follow each other
    /// for one parameter (the parameter formula reading the two moments just computed, both
    /// moments reading the same gradient) as one Adam step.
    private static func combineAdamSteps(_ program: inout [Instruction], _ inputs: [Source]) {
        func isSlot(_ source: Source, _ slot: Int) -> Bool { if case .slot(slot) = source { return true } else { return false } }
        func same(_ a: Source, _ b: Source) -> Bool {
            switch (a, b) {
            case let (.slot(x), .slot(y)), let (.operand(x), .operand(y)): return x == y
            default: return false
            }
        }
        for i in program.indices.dropFirst(2) {
            guard case .adam(.parameter) = program[i].operation, case .adam(.firstMoment) = program[i - 2].operation,
                  case .adam(.secondMoment) = program[i - 1].operation else { continue }
            let parameter = program[i].inputStart, first = program[i - 2].inputStart, second = program[i - 1].inputStart
            guard isSlot(inputs[parameter + 1], i - 2), isSlot(inputs[parameter + 2], i - 1),
                  same(inputs[first + 1], inputs[second + 1]) else { continue }
            program[i - 2].operation = .adamMomentDeferred
            program[i - 1].operation = .adamMomentDeferred
            program[i].operation = .adamStep
        }
    }

    /// Input `i` of `instruction`.
    @inline(__always)
    private func resolve(_ instruction: Instruction, _ i: Int, _ slots: UnsafeMutableBufferPointer<UnsafeMutablePointer<Float>>,
                         _ operands: UnsafeMutableBufferPointer<UnsafePointer<Float>>) -> (UnsafePointer<Float>, Int) {
        resolve(inputPool[instruction.inputStart + i], slots, operands)
    }

    @inline(__always)
    private func resolve(_ source: Source, _ slots: UnsafeMutableBufferPointer<UnsafeMutablePointer<Float>>,
                         _ operands: UnsafeMutableBufferPointer<UnsafePointer<Float>>) -> (UnsafePointer<Float>, Int) {
        switch source {
        case let .slot(s): return (UnsafePointer(slots[s]), 1)
        case let .operand(k): return (operands[k], operandStrides[k])
        }
    }

    private func execute(_ instruction: Instruction, _ index: Int, _ y: UnsafeMutablePointer<Float>, _ n: Int,
                         _ slots: UnsafeMutableBufferPointer<UnsafeMutablePointer<Float>>,
                         _ operands: UnsafeMutableBufferPointer<UnsafePointer<Float>>) {
        switch instruction.operation {
        case let .unary(f):
            let (x, sx) = resolve(instruction, 0, slots, operands)
            if sx == 0 {
                var value: Float = 0
                ElementwiseKernel.unary(f, x, &value, count: 1)
                y.update(repeating: value, count: n)
            } else {
                ElementwiseKernel.unary(f, x, y, count: n)
            }
        case let .power(e):
            let (x, sx) = resolve(instruction, 0, slots, operands)
            if sx == 0 {
                var value: Float = 0
                ElementwiseKernel.power(e, x, &value, count: 1)
                y.update(repeating: value, count: n)
            } else {
                ElementwiseKernel.power(e, x, y, count: n)
            }
        case let .binary(f):
            let (a, sa) = resolve(instruction, 0, slots, operands)
            let (b, sb) = resolve(instruction, 1, slots, operands)
            ElementwiseKernel.binary(f, a, sa, b, sb, y, count: n)
        case .select:
            let (c, sc) = resolve(instruction, 0, slots, operands)
            let (a, sa) = resolve(instruction, 1, slots, operands)
            let (b, sb) = resolve(instruction, 2, slots, operands)
            ElementwiseKernel.select(c, sc, a, sa, b, sb, y, count: n)
        case let .adam(formula):
            executeAdam(formula, instruction, y, n, slots, operands)
        case .adamStep:
            executeAdamStep(index, n, slots, operands)
        case .adamMomentDeferred:
            break
        }
    }

    /// An Adam formula (kept out of `execute`, whose small switch over the common operations
    /// the tile loop inlines).
    @inline(never)
    private func executeAdam(_ formula: AdamFormula, _ instruction: Instruction, _ y: UnsafeMutablePointer<Float>, _ n: Int,
                             _ slots: UnsafeMutableBufferPointer<UnsafeMutablePointer<Float>>,
                             _ operands: UnsafeMutableBufferPointer<UnsafePointer<Float>>) {
        let x0 = resolve(instruction, 0, slots, operands), x1 = resolve(instruction, 1, slots, operands)
        let x2 = resolve(instruction, 2, slots, operands)
        switch formula {
        case .firstMoment:
            AdamKernel.firstMoment(x0.0, x0.1, x1.0, x1.1, x2.0, x2.1, y, count: n)
        case .secondMoment:
            let x3 = resolve(instruction, 3, slots, operands)
            AdamKernel.secondMoment(x0.0, x0.1, x1.0, x1.1, x2.0, x2.1, x3.0, x3.1, y, count: n)
        case .parameter:
            let x3 = resolve(instruction, 3, slots, operands), x4 = resolve(instruction, 4, slots, operands)
            let x5 = resolve(instruction, 5, slots, operands)
            AdamKernel.parameter(x0.0, x0.1, x1.0, x1.1, x2.0, x2.1, x3.0, x3.1, x4.0, x4.1, x5.0, x5.1, y, count: n)
        }
    }

    /// The Adam step whose parameter formula is instruction `index` (moments at index − 2 and − 1).
    @inline(never)
    private func executeAdamStep(_ index: Int, _ n: Int, _ slots: UnsafeMutableBufferPointer<UnsafeMutablePointer<Float>>,
                                 _ operands: UnsafeMutableBufferPointer<UnsafePointer<Float>>) {
        let first = instructions[index - 2], second = instructions[index - 1], parameter = instructions[index]
        let m = resolve(first, 0, slots, operands), g = resolve(first, 1, slots, operands), c1 = resolve(first, 2, slots, operands)
        let v = resolve(second, 0, slots, operands), beta2 = resolve(second, 2, slots, operands)
        let c2 = resolve(second, 3, slots, operands)
        let p = resolve(parameter, 0, slots, operands), alpha = resolve(parameter, 3, slots, operands)
        let r = resolve(parameter, 4, slots, operands), epsilon = resolve(parameter, 5, slots, operands)
        let mOut = slots[index - 2], vOut = slots[index - 1], pOut = slots[index]
        if m.1 == 1 && g.1 == 1 && v.1 == 1 && p.1 == 1 && c1.1 == 0 && beta2.1 == 0 && c2.1 == 0 && alpha.1 == 0
            && r.1 == 0 && epsilon.1 == 0 {
            AdamKernel.step(m: m.0, g: g.0, v: v.0, p: p.0, c1: c1.0[0], beta2: beta2.0[0], c2: c2.0[0], alpha: alpha.0[0],
                            r: r.0[0], epsilon: epsilon.0[0], mOut: mOut, vOut: vOut, pOut: pOut, count: n)
        } else {
            AdamKernel.firstMoment(m.0, m.1, g.0, g.1, c1.0, c1.1, mOut, count: n)
            AdamKernel.secondMoment(v.0, v.1, g.0, g.1, beta2.0, beta2.1, c2.0, c2.1, vOut, count: n)
            AdamKernel.parameter(p.0, p.1, UnsafePointer(mOut), 1, UnsafePointer(vOut), 1, alpha.0, alpha.1, r.0, r.1,
                                 epsilon.0, epsilon.1, pOut, count: n)
        }
    }

    private func accumulate(_ sink: Sink, _ accumulator: UnsafeMutablePointer<Double>, _ r: Int, _ j: Int, _ n: Int,
                            _ slots: UnsafeMutableBufferPointer<UnsafeMutablePointer<Float>>,
                            _ operands: UnsafeMutableBufferPointer<UnsafePointer<Float>>) {
        let (x, sx) = resolve(sink.source, slots, operands)
        if sink.width > 1 {
            // Sum into the output's wide accumulator (lane 0 for a broadcast source).
            let base = accumulator + sink.rowOffsets[r] * sink.width
            if sx == 1 {
                ReduceKernel.addRow(x, n, into: base)
            } else {
                for _ in 0..<n { base[0] += Double(x[0]) }
            }
            return
        }
        let base = accumulator + sink.rowOffsets[r]
        if sink.innerStride == 0 {
            switch sink.function {
            case .sum, .mean:
                if sx == 1 {
                    base[0] += ReduceKernel.rowSum(x, n)
                } else {
                    var s = 0.0
                    for i in 0..<n { s += Double(x[i * sx]) }
                    base[0] += s
                }
            case .max:
                var m = base[0]
                for i in 0..<n where Double(x[i * sx]) > m { m = Double(x[i * sx]) }
                base[0] = m
            }
        } else {
            let acc = base + j
            switch sink.function {
            case .sum, .mean: for i in 0..<n { acc[i] += Double(x[i * sx]) }
            case .max: for i in 0..<n where Double(x[i * sx]) > acc[i] { acc[i] = Double(x[i * sx]) }
            }
        }
    }
}
