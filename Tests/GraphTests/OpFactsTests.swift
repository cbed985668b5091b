import Testing
import KilnGraph

/// One op of every case, in declaration order. `caseIndex` below switches over `Op` without a
/// `default:`, so adding a case to `Op` stops this file from compiling until the case is listed
/// here, and the test then asks every fact of it.
let everyOp: [Op] = {
    let conv = Conv2DAttributes(stride: 1, padding: 1), pool = PoolAttributes(kernel: 2)
    return [
        .input(name: "x"), .parameter(name: "w", initializer: .zeros), .state(name: "s", initializer: .ones),
        .constant(values: [1]), .randomUniform(stream: 0), .randomNormal(stream: 1),
        .unary(.exp), .binary(.add), .power(exponent: 2), .select, .adamUpdate(.firstMoment), .cast(.float32),
        .reduce(.sum, axes: [0], keepDims: false), .matmul(transposeA: false, transposeB: false),
        .reshape([4]), .stopGradient, .transpose(permutation: [1, 0]), .broadcast([2, 2]), .slice(start: [0], size: [1]),
        .pad(low: [1], high: [1]), .concat(axis: 0),
        .conv2d(conv), .conv2dBackwardData(conv, inputShape: [1, 1, 4, 4]), .conv2dBackwardFilter(conv, filterShape: [1, 1, 3, 3]),
        .maxPool2d(pool), .maxPool2dBackward(pool), .maxPool2dGather(pool), .avgPool2d(pool),
        .avgPool2dBackward(pool, inputShape: [1, 1, 4, 4]),
        .softmax(axis: 1), .logSoftmax(axis: 1), .softmaxCrossEntropy, .oneHot(depth: 3, dtype: .float32),
    ]
}()

/// The position of `op`'s case in `Op`'s declaration (no `default:`).
func caseIndex(_ op: Op) -> Int {
    switch op {
    case .input: return 0
    case .parameter: return 1
    case .state: return 2
    case .constant: return 3
    case .randomUniform: return 4
    case .randomNormal: return 5
    case .unary: return 6
    case .binary: return 7
    case .power: return 8
    case .select: return 9
    case .adamUpdate: return 10
    case .cast: return 11
    case .reduce: return 12
    case .matmul: return 13
    case .reshape: return 14
    case .stopGradient: return 15
    case .transpose: return 16
    case .broadcast: return 17
    case .slice: return 18
    case .pad: return 19
    case .concat: return 20
    case .conv2d: return 21
    case .conv2dBackwardData: return 22
    case .conv2dBackwardFilter: return 23
    case .maxPool2d: return 24
    case .maxPool2dBackward: return 25
    case .maxPool2dGather: return 26
    case .avgPool2d: return 27
    case .avgPool2dBackward: return 28
    case .softmax: return 29
    case .logSoftmax: return 30
    case .softmaxCrossEntropy: return 31
    case .oneHot: return 32
    }
}

@Suite("Op facts")
struct OpFactsTests {
    @Test("the list has every case of Op once")
    func everyCaseListed() {
        #expect(everyOp.map(caseIndex) == Array(0...32))
    }

    @Test("every fact is declared for every op, and the facts agree with one another", arguments: everyOp)
    func factsAgree(op: Op) {
        #expect(!op.name.isEmpty)
        _ = op.attributeText
        // Storage: leaves are inputs, persistent or constant (or random draws, which a kernel
        // computes); only a reshape and a stop-gradient are views; exactly the computed ops need a kernel.
        switch op.storage {
        case .input, .persistent, .constant: #expect(op.isLeaf && !op.needsKernel)
        case .view: #expect(!op.isLeaf && op.isView && op.fusionCategory == .injective)
        case .computed: #expect(op.needsKernel && !op.isView)
        }
        #expect(op.livesOutsideArena == (op.storage == .persistent || op.storage == .constant))
        // In-place eligibility only for ops the fused evaluator runs element by element.
        if op.isSameIndexElementwise { #expect(op.fusionCategory == .elementwise && op.needsKernel) }
        // Named leaves and random draws never merge in CSE; every computed op but the draws may.
        let isRandomDraw = op.isLeaf && op.storage == .computed
        #expect(op.isFunctionOfInputs == !(op.storage == .input || op.storage == .persistent || isRandomDraw))
        #expect((op.randomStream != nil) == isRandomDraw)
        #expect((op.bindingName != nil) == (op.storage == .input || op.storage == .persistent))
        // The pooled kernel's roles belong to epilogue roots and opaque pools.
        switch op.pooledKernelRole {
        case .convolution: #expect(op.fusionCategory == .outElementwiseFusable)
        case .pooling: #expect(op.fusionCategory == .opaque)
        case .none: break
        }
        // FLOPs: only matmuls and convolutions count (shapes where every op's formula is defined).
        let flops = op.multiplyAddFlops(inputs: [[2, 3, 4, 4], [5, 3, 3, 3]], output: [2, 5, 4, 4])
        switch caseIndex(op) {
        case 13, 21, 22, 23: #expect(flops > 0)
        default: #expect(flops == 0)
        }
    }

    @Test("FLOPs of a matmul and a convolution, by hand")
    func flops() throws {
        let g = GraphBuilder()
        let a = g.input("a", [4, 8]), b = g.input("b", [3, 8])
        let x = g.input("x", [2, 3, 6, 6]), w = g.parameter("w", [5, 3, 3, 3], initializer: .zeros)
        let m = a.matmul(b, transposeOther: true)   // [4, 3]: 2·4·3·8
        let y = conv2d(x, w)                         // [2, 5, 4, 4]: 2·(2·5·4·4)·3·3·3
        g.output("m", m)
        g.output("y", y)
        let graph = try g.build()
        #expect(graph.multiplyAddFlops(of: m.id) == 192)
        #expect(graph.multiplyAddFlops(of: y.id) == 2 * 160 * 27)
        #expect(graph.multiplyAddFlops == 192 + 2 * 160 * 27)
    }

    @Test("kahnOrder takes the ready item with the smallest key, and reports a cycle")
    func kahn() {
        // 2 needs 0 and 1; 1 needs 3.
        let sources: [Set<Int>] = [[], [3], [0, 1], []]
        #expect(kahnOrder(sources: sources, key: { $0 }) == [0, 3, 1, 2])
        #expect(kahnOrder(sources: sources, key: { -$0 }) == [3, 1, 0, 2])
        #expect(kahnOrder(sources: [[1], [0]], key: { $0 }) == nil)
    }
}
