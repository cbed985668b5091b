import Foundation
import KilnGraph

/// Writes a Kiln inference graph as an ONNX model (opset 17): one ONNX node per Kiln node,
/// parameters and state as initializers with their Kiln names, inputs and outputs with Kiln's
/// names and a named batch axis `N`.
///
/// The graph is built at some batch size B (1 is best); the file accepts any batch: a Reshape
/// whose target's first entry equals its input's first extent writes 0 (copy that extent), and an
/// Expand whose target's first entry equals its input's writes 1 (keep it). This holds for graphs
/// whose every activation carries the batch on axis 0 and whose parameters do not mix with it,
/// as in the zoo's classifiers and decoders; a graph that reduces over the batch (a loss) is
/// refused by the op check below only where an op is missing, so export inference graphs only.
public enum ONNXExport {
    public static let opset: Int64 = 17

    /// The ONNX model of `graph`. `weights(name)` gives each parameter's and state's values.
    public static func model(graph: Graph, weights: (String) -> [Float]?, graphName: String) throws -> ONNXModelProto {
        var nodes: [ONNXNode] = []
        var initializers: [ONNXTensor] = []
        var inputs: [ONNXValueInfo] = []
        var names: [String] = []
        func name(_ id: ValueID) -> String { names[id] }
        func dims(_ shape: Shape) -> [Int] { shape.dims }
        func constant(_ label: String, int64s: [Int64]) -> String {
            let out = "\(label)_const\(nodes.count)"
            nodes.append(ONNXNode("Constant", [], [out], name: out,
                                  attributes: [ONNXAttribute(name: "value", tensor: ONNXTensor(name: "", dims: [int64s.count], int64s: int64s))]))
            return out
        }
        func batchDims(_ shape: Shape) -> [ONNXValueInfo.Dimension] {
            shape.dims.enumerated().map { $0 == 0 ? .parameter("N") : .value(Int64($1)) }
        }

        for (id, node) in graph.nodes.enumerated() {
            let out = "v\(id)"
            let ins = node.inputs.map(name)
            let type = node.type
            func fail(_ message: String) -> ONNXError {
                ONNXError("node %\(id) (\(node.op.name)) cannot be exported: \(message)")
            }
            guard type.dtype == .float32 else { throw fail("ONNX export writes float32 graphs only (found \(type.dtype))") }
            func add(_ op: String, _ attributes: [ONNXAttribute] = [], inputs: [String]? = nil) {
                nodes.append(ONNXNode(op, inputs ?? ins, [out], name: "\(op)_\(id)", attributes: attributes))
            }
            var nodeName = out
            switch node.op {
            case let .input(inputName):
                guard !type.shape.dims.isEmpty else { throw fail("a scalar input has no batch axis") }
                inputs.append(ONNXValueInfo(name: inputName, dims: batchDims(type.shape)))
                nodeName = inputName
            case let .parameter(leaf, _), let .state(leaf, _):
                guard let values = weights(leaf), values.count == type.shape.count else {
                    throw fail("no values of \(type.shape.count) floats for \"\(leaf)\"")
                }
                initializers.append(ONNXTensor(name: leaf, dims: dims(type.shape), floats: values))
                nodeName = leaf
            case let .constant(values):
                let floats = values.count == 1 ? [Float](repeating: Float(values[0]), count: type.shape.count) : values.map(Float.init)
                nodes.append(ONNXNode("Constant", [], [out], name: "Constant_\(id)",
                                      attributes: [ONNXAttribute(name: "value", tensor: ONNXTensor(name: "", dims: dims(type.shape), floats: floats))]))
            case let .unary(f):
                let op: [UnaryFunction: String] = [.neg: "Neg", .exp: "Exp", .log: "Log", .sqrt: "Sqrt", .tanh: "Tanh",
                                                   .sigmoid: "Sigmoid", .relu: "Relu", .softplus: "Softplus", .abs: "Abs",
                                                   .reciprocal: "Reciprocal"]
                if f == .square { add("Mul", inputs: [ins[0], ins[0]]) }
                else if let o = op[f] { add(o) }
                else { throw fail("no ONNX export for \(f)") }
            case let .binary(f):
                let op: [BinaryFunction: String] = [.add: "Add", .sub: "Sub", .mul: "Mul", .div: "Div", .maximum: "Max", .minimum: "Min"]
                guard let o = op[f] else { throw fail("no ONNX export for \(f)") }
                add(o)
            case let .power(exponent):
                let e = "\(out)_exponent"
                nodes.append(ONNXNode("Constant", [], [e], name: e,
                                      attributes: [ONNXAttribute(name: "value", tensor: ONNXTensor(name: "", dims: [], floats: [Float(exponent)]))]))
                add("Pow", inputs: [ins[0], e])
            case let .matmul(ta, tb):
                add("Gemm", [ONNXAttribute(name: "transA", int: ta ? 1 : 0), ONNXAttribute(name: "transB", int: tb ? 1 : 0)])
            case let .reduce(f, axes, keep):
                let op: [ReduceFunction: String] = [.mean: "ReduceMean", .max: "ReduceMax"]
                if f == .sum {  // ReduceSum takes its axes as an input since opset 13
                    add("ReduceSum", [ONNXAttribute(name: "keepdims", int: keep ? 1 : 0)],
                        inputs: [ins[0], constant(out, int64s: axes.map(Int64.init))])
                } else {
                    add(op[f]!, [ONNXAttribute(name: "axes", ints: axes), ONNXAttribute(name: "keepdims", int: keep ? 1 : 0)])
                }
            case .stopGradient:
                add("Identity")
            case let .reshape(shape):
                let input = graph[node.inputs[0]].type.shape
                var target = shape.dims.map(Int64.init)
                if let first = input.dims.first, !target.isEmpty, target[0] == Int64(first) { target[0] = 0 }
                add("Reshape", inputs: [ins[0], constant(out, int64s: target)])
            case let .broadcast(shape):
                let input = graph[node.inputs[0]].type.shape
                var target = shape.dims.map(Int64.init)
                if input.rank == shape.rank, let first = input.dims.first, target[0] == Int64(first) { target[0] = 1 }
                add("Expand", inputs: [ins[0], constant(out, int64s: target)])
            case let .transpose(permutation):
                add("Transpose", [ONNXAttribute(name: "perm", ints: permutation)])
            case let .pad(low, high):
                add("Pad", [ONNXAttribute(name: "mode", string: "constant")],
                    inputs: [ins[0], constant(out, int64s: (low + high).map(Int64.init))])
            case let .concat(axis):
                add("Concat", [ONNXAttribute(name: "axis", int: axis)])
            case let .conv2d(a):
                let w = graph[node.inputs[1]].type.shape
                add("Conv", [ONNXAttribute(name: "kernel_shape", ints: [w[2], w[3]]),
                             ONNXAttribute(name: "strides", ints: [a.strideH, a.strideW]),
                             ONNXAttribute(name: "pads", ints: [a.padH, a.padW, a.padH, a.padW])])
            case let .conv2dBackwardData(a, inputShape):  // a transposed convolution
                let (x, w) = (graph[node.inputs[0]].type.shape, graph[node.inputs[1]].type.shape)
                let padding = [0, 1].map { inputShape[2 + $0] - ((x[2 + $0] - 1) * [a.strideH, a.strideW][$0] - 2 * [a.padH, a.padW][$0] + w[2 + $0]) }
                add("ConvTranspose", [ONNXAttribute(name: "kernel_shape", ints: [w[2], w[3]]),
                                      ONNXAttribute(name: "strides", ints: [a.strideH, a.strideW]),
                                      ONNXAttribute(name: "pads", ints: [a.padH, a.padW, a.padH, a.padW]),
                                      ONNXAttribute(name: "output_padding", ints: padding)])
            case let .maxPool2d(p), let .avgPool2d(p):
                let isMax: Bool
                if case .maxPool2d = node.op { isMax = true } else { isMax = false }
                add(isMax ? "MaxPool" : "AveragePool", [ONNXAttribute(name: "kernel_shape", ints: [p.kernelH, p.kernelW]),
                                                        ONNXAttribute(name: "strides", ints: [p.strideH, p.strideW])])
            case let .softmax(axis):
                add("Softmax", [ONNXAttribute(name: "axis", int: axis)])
            case let .logSoftmax(axis):
                add("LogSoftmax", [ONNXAttribute(name: "axis", int: axis)])
            default:
                throw fail("Kiln does not export \(node.op.name) to ONNX (an inference graph of the zoo's layers exports)")
            }
            names.append(nodeName)
        }
        var outputs: [ONNXValueInfo] = []
        for output in graph.outputs {
            nodes.append(ONNXNode("Identity", [name(output.value)], [output.name], name: "output_\(output.name)"))
            outputs.append(ONNXValueInfo(name: output.name, dims: batchDims(graph[output.value].type.shape)))
        }
        var model = ONNXModelProto()
        model.irVersion = 8
        model.opsetImports = [("", opset)]
        model.producerName = "kiln"
        model.producerVersion = "0.2"
        model.hasGraph = true
        model.graph.name = graphName
        model.graph.nodes = nodes
        model.graph.initializers = initializers
        model.graph.inputs = inputs
        model.graph.outputs = outputs
        return model
    }
}
