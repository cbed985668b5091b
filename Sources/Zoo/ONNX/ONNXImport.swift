import Foundation
import KilnGraph
import KilnRuntime

/// An ONNX model turned into Kiln graph ops: `ONNXModel.load(path:)` reads and checks the file,
/// `emit` appends its nodes to a `GraphBuilder`, `classifier()` wraps an image classifier as a
/// zoo-style `ClassifierModel`, and `weights` holds the initializers' values by name.
///
/// - Operator set 13 to 21 of the default domain; static shapes, except that the leading (batch)
///   dimension of the graph inputs is set by the caller (a Reshape target whose first entry is
///   the file's batch size follows the caller's batch).
/// - Initializers become Kiln parameters with the same names (PyTorch's exporter names them
///   after the module path: `conv1.weight`, `layer1.0.bn1.running_mean`, …), except the
///   running mean and variance of a BatchNormalization, which become state. Integer
///   initializers and Constant nodes are constants (shapes, pads).
/// - A BatchNormalization whose inputs are named `P.weight`, `P.bias`, `P.running_mean`,
///   `P.running_var` is Kiln's `batchNorm(name: P)`: batch statistics when fine-tuning, running
///   statistics in inference. Others are the inference formula alone.
/// - An op outside `supportedOps` is one error naming the op, the node and the opset.
public struct ONNXModel: Sendable {
    /// The ops the importer turns into Kiln ops.
    public static let supportedOps: Set<String> = [
        "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Softmax",
        "LogSoftmax", "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization", "Flatten", "Reshape",
        "Transpose", "Concat", "Pad", "Dropout", "Identity", "Constant",
        // Also what `kiln export` writes for Kiln graphs, so that exported files import again.
        "Exp", "Log", "Sqrt", "Neg", "Abs", "Reciprocal", "Max", "Min", "Pow", "Softplus", "Expand",
        "ReduceMean", "ReduceSum", "ReduceMax",
    ]
    /// The operator set versions of the default domain Kiln reads.
    public static let opsetRange: ClosedRange<Int64> = 13...21
    /// Largest extent of one axis, and element count of one value, an imported graph may have
    /// (checked before any shape is built, so hostile attributes cannot overflow).
    static let maximumExtent = 1 << 24
    static let maximumElements = 1 << 32
    /// The zoo name a Kiln model file of an imported model carries.
    public static let modelName = "onnx"

    /// The parsed file.
    public var proto: ONNXModelProto
    /// The default domain's operator set version.
    public var opset: Int64
    /// Where it was read from (for messages).
    public var path: String
    /// Float initializers by name: shape and values.
    public var weights: [String: (shape: [Int], values: [Float])]
    /// Names of the initializers that are BatchNormalization running statistics (Kiln state).
    public var stateNames: Set<String>
    /// The graph inputs that are not initializers, with their dimensions (nil for a named one).
    public var inputs: [(name: String, dims: [Int?])]
    /// The graph outputs' names.
    public var outputNames: [String]

    /// Reads and checks an ONNX file.
    public static func load(path: String) throws -> ONNXModel {
        let bytes: [UInt8]
        do {
            bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw KilnError.file(path: path, message: "cannot read: \(error.localizedDescription)")
        }
        return try parse(bytes, path: path)
    }

    /// Checks a serialized ModelProto; `path` names it in messages.
    public static func parse(_ bytes: [UInt8], path: String) throws -> ONNXModel {
        do {
            let proto = try ONNXModelProto.parse(bytes)
            return try ONNXModel(proto: proto, path: path)
        } catch let error as ProtobufError {
            throw KilnError.file(path: path, message: "not a valid ONNX file: \(error)")
        } catch let error as ONNXError {
            throw KilnError.file(path: path, message: printable(error.message))
        }
    }

    /// A message on one line of bounded length: names from the file may hold control characters
    /// or be megabytes long.
    static func printable(_ message: String, limit: Int = 1500) -> String {
        var out = ""
        for scalar in message.unicodeScalars.prefix(limit) {
            out.unicodeScalars.append(scalar.properties.generalCategory == .control ? "?" : scalar)
        }
        return message.unicodeScalars.count > limit ? out + "…" : out
    }

    /// Checks a parsed model: opset, ops, inputs, initializers.
    public init(proto: ONNXModelProto, path: String) throws {
        self.proto = proto
        self.path = path
        guard proto.hasGraph else { throw ONNXError("the model has no graph (is this an ONNX model file?)") }
        guard let opset = proto.defaultOpset else {
            throw ONNXError("the model imports no version of the default operator set (ai.onnx)")
        }
        guard Self.opsetRange.contains(opset) else {
            throw ONNXError("operator set \(opset); Kiln imports opsets \(Self.opsetRange.lowerBound)–\(Self.opsetRange.upperBound) (re-export with opset_version=17)")
        }
        self.opset = opset
        let graph = proto.graph
        if graph.hasSparseInitializers { throw ONNXError("the graph has sparse initializers, which Kiln does not read") }
        for node in graph.nodes {
            guard node.domain.isEmpty || node.domain == "ai.onnx", Self.supportedOps.contains(node.opType) else {
                let domain = node.domain.isEmpty ? "" : " of domain \(node.domain)"
                throw ONNXError("unsupported op \(node.opType)\(domain) (node \"\(node.name)\", opset \(opset)); Kiln imports \(Self.supportedOps.sorted().joined(separator: ", "))")
            }
            if node.attributes.contains(where: \.hasGraph) {
                throw ONNXError("node \"\(node.name)\" (\(node.opType)) has a subgraph attribute, which Kiln does not import")
            }
        }
        var stateNames = Set<String>()
        for node in graph.nodes where node.opType == "BatchNormalization" && node.inputs.count == 5 {
            stateNames.insert(node.inputs[3])
            stateNames.insert(node.inputs[4])
        }
        self.stateNames = stateNames
        var weights: [String: (shape: [Int], values: [Float])] = [:]
        for t in graph.initializers {
            guard !t.name.isEmpty else { throw ONNXError("an initializer has no name") }
            guard weights[t.name] == nil else { throw ONNXError("two initializers are called \"\(t.name)\"") }
            if t.dataType == ONNXDataType.float.rawValue || t.dataType == ONNXDataType.double.rawValue {
                let values = try t.floats()
                weights[t.name] = (try t.shape(limit: Swift.max(values.count, 1)), values)
            }
        }
        self.weights = weights
        let initializerNames = Set(graph.initializers.map(\.name))
        inputs = try graph.inputs.filter { !initializerNames.contains($0.name) }.map { info in
            guard info.elementType == ONNXDataType.float.rawValue else {
                throw ONNXError("graph input \"\(info.name)\" is \(ONNXDataType.name(info.elementType)); Kiln imports float inputs")
            }
            guard let dims = info.dims else { throw ONNXError("graph input \"\(info.name)\" has no shape (Kiln needs static shapes)") }
            return (info.name, try dims.enumerated().map { axis, d -> Int? in
                switch d {
                case let .value(v) where v > 0 && v <= 1 << 24: return Int(v)
                case .value(let v): throw ONNXError("graph input \"\(info.name)\" has dimension \(v)")
                default:
                    guard axis == 0 else { throw ONNXError("graph input \"\(info.name)\" has a named or unknown dimension at axis \(axis); only the batch axis (0) may vary") }
                    return nil
                }
            })
        }
        guard !inputs.isEmpty else { throw ONNXError("the graph has no inputs") }
        for info in inputs where (try? Self.checkedCount(info.dims.map { $0 ?? 1 })) == nil {
            throw ONNXError("graph input \"\(info.name)\" of \(info.dims.map { $0.map(String.init) ?? "N" }) is too large")
        }
        outputNames = graph.outputs.map(\.name)
        guard !outputNames.isEmpty else { throw ONNXError("the graph has no outputs") }
        // Build once at the file's batch size (1 where it is named) to check every node's shapes now.
        _ = try forwardGraph(batch: inputs[0].dims.first.flatMap { $0 } ?? 1)
    }

    /// The element count of `dims`, or an error if an extent or the count exceeds the limits.
    static func checkedCount(_ dims: [Int]) throws -> Int {
        var count = 1
        for d in dims {
            guard d >= 0, d <= maximumExtent else { throw ONNXError("extent \(d) is out of range") }
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, product <= maximumElements else { throw ONNXError("shape \(dims) is too large") }
            count = product
        }
        return count
    }

    /// The batch size the file states for its first input (nil when the axis is named).
    public var fileBatch: Int? { inputs[0].dims.first.flatMap { $0 } }

    /// The first input's shape without its batch axis.
    public var exampleShape: [Int] { inputs[0].dims.dropFirst().map { $0! } }

    // MARK: - Emitting Kiln ops

    /// A value during import: a graph tensor, or a constant known now (shape arithmetic, pads).
    private enum Value {
        case tensor(Tensor)
        case constant(shape: [Int], values: [Double])
    }

    /// Appends the model's nodes to `g`: `inputs` are the graph inputs in order (their leading
    /// axis is the batch); returns the graph outputs in order. `training` turns dropout on and
    /// makes named batch norms use batch statistics.
    public func emit(into g: GraphBuilder, inputs given: [Tensor], training: Bool) throws -> [Tensor] {
        guard given.count == inputs.count else { throw ONNXError("the model takes \(inputs.count) inputs, given \(given.count)") }
        var values: [String: Value] = [:]
        var parameters: [String: Tensor] = [:]
        let graph = proto.graph
        let initializers = Dictionary(graph.initializers.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let batch = given[0].rank > 0 ? given[0].shape[0] : 1
        let fileBatch = self.fileBatch

        for (info, tensor) in zip(inputs, given) {
            let expected = info.dims.enumerated().map { $0 == 0 ? tensor.shape.dims.first ?? 0 : $1! }
            guard tensor.shape.dims == expected else {
                throw ONNXError("input \"\(info.name)\" needs shape \(info.dims.map { $0.map(String.init) ?? "N" }), given \(tensor.shape)")
            }
            values[info.name] = .tensor(tensor)
        }

        func value(_ name: String, _ node: ONNXNode) throws -> Value {
            if let v = values[name] { return v }
            if let t = initializers[name] {
                if let w = weights[name] {
                    if let p = parameters[name] { return .tensor(p) }
                    let p = stateNames.contains(name)
                        ? g.state(name, Shape(w.shape), initializer: .zeros)
                        : g.parameter(name, Shape(w.shape), initializer: .zeros)
                    parameters[name] = p
                    return .tensor(p)
                }
                let ints = try t.integers()
                return .constant(shape: try t.shape(limit: Swift.max(ints.count, 1)), values: ints.map(Double.init))
            }
            throw ONNXError("node \"\(node.name)\" (\(node.opType)) reads \"\(name)\", which no earlier node, input or initializer makes")
        }
        func tensor(_ name: String, _ node: ONNXNode) throws -> Tensor {
            switch try value(name, node) {
            case let .tensor(t): return t
            case let .constant(shape, vals): return g.constant(values: vals, shape: Shape(shape))
            }
        }
        func constantInts(_ name: String, _ node: ONNXNode, what: String) throws -> [Int] {
            guard case let .constant(_, vals) = try value(name, node) else {
                throw ONNXError("\(node.opType) node \"\(node.name)\" (opset \(opset)): its \(what) \"\(name)\" must be a constant (an initializer or Constant node); Kiln imports static shapes")
            }
            return try vals.map { v in
                guard let i = Int(exactly: v), i.magnitude <= 1 << 40 else { throw ONNXError("\(node.opType) node \"\(node.name)\" (opset \(opset)): \(what) value \(String(format: "%.0f", v)) is out of range") }
                return i
            }
        }
        func fail(_ node: ONNXNode, _ message: String) -> ONNXError {
            ONNXError("\(node.opType) node \"\(node.name)\" (opset \(opset)): \(message)")
        }
        func ints(_ node: ONNXNode, _ name: String) -> [Int]? { node.attribute(name).map { $0.ints.map { Int(clamping: $0) } } }
        func int(_ node: ONNXNode, _ name: String, _ fallback: Int) -> Int { node.attribute(name).map { Int(clamping: $0.i) } ?? fallback }
        func float(_ node: ONNXNode, _ name: String, _ fallback: Float) -> Float { node.attribute(name)?.f ?? fallback }
        func axis(_ a: Int, rank: Int, _ node: ONNXNode) throws -> Int {
            let r = a < 0 ? a + rank : a
            guard r >= 0, r < Swift.max(rank, 1) else { throw fail(node, "axis \(a) is out of range for rank \(rank)") }
            return r
        }
        /// Pool and conv attributes shared by Conv, MaxPool and AveragePool (2-D only).
        func windowAttributes(_ node: ONNXNode, kernel: [Int]?) throws -> (kernel: [Int], strides: [Int], pads: [Int]) {
            guard let kernel, kernel.count == 2 else { throw fail(node, "Kiln imports 2-D windows only (kernel_shape \(kernel ?? []))") }
            let autoPad = node.attribute("auto_pad").map { String(decoding: $0.s, as: UTF8.self) } ?? "NOTSET"
            guard autoPad == "NOTSET" || autoPad == "VALID" else { throw fail(node, "auto_pad \(autoPad) is not imported; export with explicit pads") }
            let strides = ints(node, "strides") ?? [1, 1]
            let pads = ints(node, "pads") ?? [0, 0, 0, 0]
            let dilations = ints(node, "dilations") ?? [1, 1]
            guard strides.count == 2, strides.allSatisfy({ $0 > 0 }), pads.count == 4, pads.allSatisfy({ $0 >= 0 }) else {
                throw fail(node, "strides \(strides) and pads \(pads) must be 2 positive strides and 4 pads ≥ 0")
            }
            guard (strides + pads + kernel).allSatisfy({ $0 <= Self.maximumExtent }) else {
                throw fail(node, "kernel \(kernel), strides \(strides) or pads \(pads) out of range")
            }
            guard dilations == [1, 1] else { throw fail(node, "dilations \(dilations) are not imported (Kiln has no dilated windows)") }
            return (kernel, strides, pads)
        }
        /// Checks that ceil_mode makes no difference for this input (Kiln's windows round down).
        func checkFloorMode(_ node: ONNXNode, _ x: Tensor, _ w: (kernel: [Int], strides: [Int], pads: [Int])) throws {
            guard int(node, "ceil_mode", 0) != 0 else { return }
            for i in 0..<2 where (x.shape[2 + i] + w.pads[i] + w.pads[i + 2] - w.kernel[i]) % w.strides[i] != 0 {
                throw fail(node, "ceil_mode 1 changes the output size here; Kiln's pools round down")
            }
        }
        func padded(_ x: Tensor, _ pads: [Int]) -> Tensor {
            pads.allSatisfy({ $0 == 0 }) ? x : x.padded(low: [0, 0, pads[0], pads[1]], high: [0, 0, pads[2], pads[3]])
        }
        func checkRank(_ node: ONNXNode, _ x: Tensor, _ rank: Int) throws {
            guard x.rank == rank else { throw fail(node, "expects a rank-\(rank) input, found \(x.shape)") }
        }

        for node in graph.nodes {
            let errorsBefore = g.errors.count
            let inputNames = node.inputs
            func input(_ i: Int) throws -> Tensor {
                guard i < inputNames.count, !inputNames[i].isEmpty else { throw fail(node, "input \(i) is missing") }
                return try tensor(inputNames[i], node)
            }
            func optionalName(_ i: Int) -> String? { i < inputNames.count && !inputNames[i].isEmpty ? inputNames[i] : nil }
            var result: Value
            switch node.opType {
            case "Identity":
                guard let name = optionalName(0) else { throw fail(node, "input 0 is missing") }
                result = try value(name, node)
            case "Constant":
                if let t = node.attribute("value")?.t {
                    if t.dataType == ONNXDataType.float.rawValue || t.dataType == ONNXDataType.double.rawValue {
                        let f = try t.floats()
                        result = .constant(shape: try t.shape(limit: Swift.max(f.count, 1)), values: f.map(Double.init))
                    } else {
                        let i = try t.integers()
                        result = .constant(shape: try t.shape(limit: Swift.max(i.count, 1)), values: i.map(Double.init))
                    }
                } else if let a = node.attribute("value_float") {
                    result = .constant(shape: [], values: [Double(a.f)])
                } else if let a = node.attribute("value_floats") {
                    result = .constant(shape: [a.floats.count], values: a.floats.map(Double.init))
                } else if let a = node.attribute("value_int") {
                    result = .constant(shape: [], values: [Double(a.i)])
                } else if let a = node.attribute("value_ints") {
                    result = .constant(shape: [a.ints.count], values: a.ints.map(Double.init))
                } else {
                    throw fail(node, "Kiln imports Constant with value, value_float(s) or value_int(s)")
                }
            case "Add", "Sub", "Mul", "Div", "Max", "Min":
                let (a, b) = (try input(0), try input(1))
                let f: BinaryFunction = ["Add": .add, "Sub": .sub, "Mul": .mul, "Div": .div, "Max": .maximum, "Min": .minimum][node.opType]!
                if node.inputs.count != 2 { throw fail(node, "Kiln imports \(node.opType) of two inputs") }
                result = .tensor(g.apply(.binary(f), [a, b]))
            case "Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Neg", "Abs", "Reciprocal", "Softplus":
                let f: UnaryFunction = ["Relu": .relu, "Sigmoid": .sigmoid, "Tanh": .tanh, "Exp": .exp, "Log": .log, "Sqrt": .sqrt,
                                        "Neg": .neg, "Abs": .abs, "Reciprocal": .reciprocal, "Softplus": .softplus][node.opType]!
                result = .tensor(g.apply(.unary(f), [try input(0)]))
            case "Pow":
                guard let name = optionalName(1), case let .constant(_, e) = try value(name, node), e.count == 1 else {
                    throw fail(node, "Kiln imports Pow with a constant scalar exponent")
                }
                result = .tensor(pow(try input(0), e[0]))
            case "LeakyRelu":
                let x = try input(0)
                let alpha = Double(float(node, "alpha", 0.01))
                result = .tensor((0...1).contains(alpha) ? maximum(x, x * alpha) : select(x.greater(0), x, x * alpha))
            case "Softmax", "LogSoftmax":
                let x = try input(0)
                let a = try axis(int(node, "axis", -1), rank: x.rank, node)
                result = .tensor(node.opType == "Softmax" ? softmax(x, axis: a) : logSoftmax(x, axis: a))
            case "Gemm":
                let (a, b) = (try input(0), try input(1))
                try checkRank(node, a, 2)
                try checkRank(node, b, 2)
                var y = matmul(a, b, transposeA: int(node, "transA", 0) != 0, transposeB: int(node, "transB", 0) != 0)
                let alpha = Double(float(node, "alpha", 1)), beta = Double(float(node, "beta", 1))
                if alpha != 1 { y = y * alpha }
                if optionalName(2) != nil {
                    let c = try input(2)
                    y = y + (beta == 1 ? c : c * beta)
                }
                result = .tensor(y)
            case "MatMul":
                let (a, b) = (try input(0), try input(1))
                guard a.rank == 2, b.rank == 2 else { throw fail(node, "Kiln imports MatMul of two matrices, found \(a.shape) · \(b.shape)") }
                result = .tensor(matmul(a, b))
            case "Conv":
                let (x, w) = (try input(0), try input(1))
                try checkRank(node, x, 4)
                try checkRank(node, w, 4)
                guard int(node, "group", 1) == 1 else { throw fail(node, "group \(int(node, "group", 1)) is not imported (Kiln has no grouped convolution)") }
                let window = try windowAttributes(node, kernel: ints(node, "kernel_shape") ?? Array(w.shape.dims[2...]))
                guard window.kernel == Array(w.shape.dims[2...]) else { throw fail(node, "kernel_shape \(window.kernel) differs from the weight's \(w.shape)") }
                let p = window.pads
                let symmetric = p[0] == p[2] && p[1] == p[3]
                var y = g.apply(.conv2d(Conv2DAttributes(strideH: window.strides[0], strideW: window.strides[1],
                                                         padH: symmetric ? p[0] : 0, padW: symmetric ? p[1] : 0)),
                                [symmetric ? x : padded(x, p), w])
                if optionalName(2) != nil {
                    let b = try input(2)
                    guard b.rank == 1 else { throw fail(node, "bias must have rank 1, found \(b.shape)") }
                    y = y + b.reshaped([b.shape[0], 1, 1])
                }
                result = .tensor(y)
            case "ConvTranspose":
                // Kiln's conv2d_backward_data is the transposed convolution: (x, w [C_in, C_out, kH, kW])
                // → the input of the convolution with w, stride and pads whose output is x.
                let (x, w) = (try input(0), try input(1))
                try checkRank(node, x, 4)
                try checkRank(node, w, 4)
                guard int(node, "group", 1) == 1 else { throw fail(node, "group \(int(node, "group", 1)) is not imported") }
                guard x.shape[1] == w.shape[0] else { throw fail(node, "input \(x.shape) does not match weight \(w.shape)") }
                let window = try windowAttributes(node, kernel: ints(node, "kernel_shape") ?? Array(w.shape.dims[2...]))
                guard window.kernel == Array(w.shape.dims[2...]) else { throw fail(node, "kernel_shape \(window.kernel) differs from the weight's \(w.shape)") }
                let p = window.pads, s = window.strides
                guard p[0] == p[2] && p[1] == p[3] else { throw fail(node, "asymmetric pads \(p) are not imported") }
                let outputPadding = ints(node, "output_padding") ?? [0, 0]
                guard outputPadding.count == 2, (0..<2).allSatisfy({ outputPadding[$0] >= 0 && outputPadding[$0] < s[$0] }) else {
                    throw fail(node, "output_padding \(outputPadding) must be 2 values below the strides \(s)")
                }
                let size = (0..<2).map { (x.shape[2 + $0] - 1) * s[$0] - 2 * p[$0] + window.kernel[$0] + outputPadding[$0] }
                if let wanted = ints(node, "output_shape"), wanted.suffix(2) != size[...] {
                    throw fail(node, "output_shape \(wanted) is not imported (Kiln computes \(size) from the pads)")
                }
                guard size.allSatisfy({ $0 > 0 }), (try? Self.checkedCount([x.shape[0], w.shape[1]] + size)) != nil else {
                    throw fail(node, "output size \(size) is out of range")
                }
                var y = g.apply(.conv2dBackwardData(Conv2DAttributes(strideH: s[0], strideW: s[1], padH: p[0], padW: p[1]),
                                                    inputShape: Shape([x.shape[0], w.shape[1]] + size)), [x, w])
                if optionalName(2) != nil {
                    let b = try input(2)
                    guard b.rank == 1 else { throw fail(node, "bias must have rank 1, found \(b.shape)") }
                    y = y + b.reshaped([b.shape[0], 1, 1])
                }
                result = .tensor(y)
            case "MaxPool", "AveragePool":
                let x = try input(0)
                try checkRank(node, x, 4)
                if node.outputs.count > 1 && !node.outputs[1].isEmpty { throw fail(node, "the Indices output is not imported") }
                let window = try windowAttributes(node, kernel: ints(node, "kernel_shape"))
                try checkFloorMode(node, x, window)
                let pool = PoolAttributes(kernelH: window.kernel[0], kernelW: window.kernel[1],
                                          strideH: window.strides[0], strideW: window.strides[1])
                let hasPads = window.pads.contains { $0 != 0 }
                if node.opType == "MaxPool" {
                    guard !hasPads else { throw fail(node, "padded max pooling is not imported (Kiln pads with zeros)") }
                    guard int(node, "storage_order", 0) == 0 else { throw fail(node, "storage_order 1 is not imported") }
                    result = .tensor(g.apply(.maxPool2d(pool), [x]))
                } else {
                    guard !hasPads || int(node, "count_include_pad", 0) != 0 else {
                        throw fail(node, "padding with count_include_pad 0 is not imported (Kiln averages over the whole window)")
                    }
                    result = .tensor(g.apply(.avgPool2d(pool), [padded(x, window.pads)]))
                }
            case "GlobalAveragePool":
                let x = try input(0)
                try checkRank(node, x, 4)
                result = .tensor(x.mean(axes: [2, 3], keepDims: true))
            case "ReduceMean", "ReduceSum", "ReduceMax":
                let x = try input(0)
                var axes = ints(node, "axes")
                if let name = optionalName(1) { axes = try constantInts(name, node, what: "axes") }
                let keep = int(node, "keepdims", 1) != 0
                let all = axes?.isEmpty ?? true
                if all && int(node, "noop_with_empty_axes", 0) != 0 {
                    result = .tensor(x)
                } else {
                    let list = all ? Array(0..<x.rank) : try axes!.map { try axis($0, rank: x.rank, node) }
                    let f: ReduceFunction = node.opType == "ReduceMean" ? .mean : node.opType == "ReduceSum" ? .sum : .max
                    result = .tensor(g.apply(.reduce(f, axes: Array(Set(list)).sorted(), keepDims: keep), [x]))
                }
            case "BatchNormalization":
                let x = try input(0)
                guard node.inputs.count == 5, x.rank == 2 || x.rank == 4 else {
                    throw fail(node, "Kiln imports BatchNormalization of [N, C] or [N, C, H, W] with scale, bias, mean and variance")
                }
                guard int(node, "training_mode", 0) == 0, node.outputs.count == 1 || node.outputs.dropFirst().allSatisfy(\.isEmpty) else {
                    throw fail(node, "Kiln imports the inference form only (training_mode 0, one output)")
                }
                let epsilon = Double(float(node, "epsilon", 1e-5))
                let names = Array(node.inputs[1...4])
                let prefix = names[0].hasSuffix(".weight") ? String(names[0].dropLast(".weight".count)) : nil
                if let prefix, names == ["weight", "bias", "running_mean", "running_var"].map({ "\(prefix).\($0)" }),
                   names.allSatisfy({ weights[$0] != nil && values[$0] == nil && parameters[$0] == nil }) {
                    // Kiln's own batch norm: PyTorch's momentum m is ONNX's 1 − m.
                    let momentum = 1 - Double(float(node, "momentum", 0.9))
                    let y = g.batchNorm(x, name: prefix, training: training, momentum: momentum, epsilon: epsilon)
                    for name in names {
                        parameters[name] = g.graph.nodes.indices.last { g.graph.leafName($0) == name }.map(g.tensor)
                    }
                    result = .tensor(y)
                } else {
                    let c = x.shape[1]
                    let statShape: Shape = x.rank == 4 ? [c, 1, 1] : [c]
                    let (scale, bias, mean, variance) = (try input(1), try input(2), try input(3), try input(4))
                    for t in [scale, bias, mean, variance] where t.shape.dims != [c] {
                        throw fail(node, "scale, bias, mean and variance must be [\(c)], found \(t.shape)")
                    }
                    let normalized = (x - mean.reshaped(statShape)) / sqrt(variance.reshaped(statShape) + epsilon)
                    result = .tensor(normalized * scale.reshaped(statShape) + bias.reshaped(statShape))
                }
            case "Flatten":
                let x = try input(0)
                let a = int(node, "axis", 1)
                let split = a < 0 ? a + x.rank : a
                guard split >= 0, split <= x.rank else { throw fail(node, "axis \(a) is out of range for \(x.shape)") }
                let dims = x.shape.dims
                result = .tensor(x.reshaped([dims[..<split].reduce(1, *), dims[split...].reduce(1, *)]))
            case "Reshape":
                let x = try input(0)
                guard let name = optionalName(1) else { throw fail(node, "the shape input is missing") }
                var target = try constantInts(name, node, what: "shape")
                let allowZero = int(node, "allowzero", 0) != 0
                for (i, d) in target.enumerated() where d == 0 && !allowZero {
                    guard i < x.rank else { throw fail(node, "shape \(target) copies axis \(i) of \(x.shape)") }
                    target[i] = x.shape[i]
                }
                if let fileBatch, fileBatch != batch, target.first == fileBatch, x.shape.dims.first == batch {
                    target[0] = batch
                }
                let known = target.filter { $0 != -1 }
                guard target.filter({ $0 == -1 }).count <= 1, known.allSatisfy({ $0 >= 0 }),
                      (try? Self.checkedCount(known)) != nil else {
                    throw fail(node, "shape \(target) is not a valid target")
                }
                if let i = target.firstIndex(of: -1) {
                    let rest = known.reduce(1, *)
                    guard rest > 0, x.shape.count % rest == 0 else { throw fail(node, "cannot reshape \(x.shape) to \(target)") }
                    target[i] = x.shape.count / rest
                }
                guard target.reduce(1, *) == x.shape.count else { throw fail(node, "cannot reshape \(x.shape) to \(target)") }
                result = .tensor(x.reshaped(Shape(target)))
            case "Expand":
                let x = try input(0)
                guard let name = optionalName(1) else { throw fail(node, "the shape input is missing") }
                let target = try constantInts(name, node, what: "shape")
                let rank = Swift.max(target.count, x.rank)
                let xs = [Int](repeating: 1, count: rank - x.rank) + x.shape.dims
                let ts = [Int](repeating: 1, count: rank - target.count) + target
                var out: [Int] = []
                for (a, b) in zip(xs, ts) {
                    guard a == b || a == 1 || b == 1 else { throw fail(node, "cannot expand \(x.shape) to \(target)") }
                    out.append(a == 1 ? b : a)
                }
                guard (try? Self.checkedCount(out)) != nil else { throw fail(node, "cannot expand \(x.shape) to \(target)") }
                result = .tensor(out == x.shape.dims ? x : x.broadcast(to: Shape(out)))
            case "Transpose":
                let x = try input(0)
                let perm = ints(node, "perm") ?? Array((0..<x.rank).reversed())
                guard perm.sorted() == Array(0..<x.rank) else { throw fail(node, "perm \(perm) is not a permutation of \(x.rank) axes") }
                result = .tensor(x.transposed(perm))
            case "Concat":
                let parts = try node.inputs.filter { !$0.isEmpty }.map { try tensor($0, node) }
                guard let first = parts.first else { throw fail(node, "no inputs") }
                if case .constant = try value(node.inputs[0], node), parts.count == node.inputs.count,
                   try node.inputs.allSatisfy({ if case .constant = try value($0, node) { return true } else { return false } }), first.rank == 1 {
                    // Shape arithmetic on constants stays a constant.
                    var all: [Double] = []
                    for name in node.inputs { if case let .constant(_, v) = try value(name, node) { all += v } }
                    result = .constant(shape: [all.count], values: all)
                } else {
                    result = .tensor(concat(parts, axis: try axis(int(node, "axis", 0), rank: first.rank, node)))
                }
            case "Pad":
                let x = try input(0)
                let mode = node.attribute("mode").map { String(decoding: $0.s, as: UTF8.self) } ?? "constant"
                guard mode == "constant" else { throw fail(node, "mode \(mode) is not imported (Kiln pads with zeros)") }
                guard let name = optionalName(1) else { throw fail(node, "the pads input is missing") }
                let pads = try constantInts(name, node, what: "pads")
                if let c = optionalName(2) {
                    guard case let .constant(_, v) = try value(c, node), v.allSatisfy({ $0 == 0 }) else {
                        throw fail(node, "constant_value must be 0 (Kiln pads with zeros)")
                    }
                }
                var axes = Array(0..<x.rank)
                if let a = optionalName(3) { axes = try constantInts(a, node, what: "axes").map { try axis($0, rank: x.rank, node) } }
                guard pads.count == 2 * axes.count, pads.allSatisfy({ $0 >= 0 && $0 <= Self.maximumExtent }) else {
                    throw fail(node, "pads \(pads) must be 2 × \(axes.count) values ≥ 0")
                }
                var low = [Int](repeating: 0, count: x.rank), high = low
                for (i, a) in axes.enumerated() { low[a] = pads[i]; high[a] = pads[i + axes.count] }
                guard (try? Self.checkedCount(zip(x.shape.dims, zip(low, high)).map { $0 + $1.0 + $1.1 })) != nil else {
                    throw fail(node, "pads \(pads) make \(x.shape) too large")
                }
                result = .tensor(x.padded(low: low, high: high))
            case "Dropout":
                let x = try input(0)
                if node.outputs.count > 1 && !node.outputs[1].isEmpty { throw fail(node, "the mask output is not imported") }
                var ratio = 0.5
                if let name = optionalName(1) {
                    guard case let .constant(_, v) = try value(name, node), v.count == 1 else { throw fail(node, "ratio must be a constant") }
                    ratio = v[0]
                }
                if let name = optionalName(2) {
                    guard case let .constant(_, v) = try value(name, node), v.allSatisfy({ $0 == 0 }) else {
                        throw fail(node, "training_mode must be a constant false (Kiln turns dropout on when fine-tuning)")
                    }
                }
                guard (0..<1).contains(ratio) else { throw fail(node, "ratio \(ratio) is outside [0, 1)") }
                result = .tensor(training && ratio > 0 ? dropout(x, rate: ratio) : x)
            default:
                throw fail(node, "unsupported op")
            }
            guard let out = node.outputs.first, !out.isEmpty else { throw fail(node, "has no output") }
            if node.opType != "Dropout" && node.opType != "MaxPool" && node.outputs.dropFirst().contains(where: { !$0.isEmpty }) {
                throw fail(node, "Kiln imports only the first output")
            }
            if g.errors.count > errorsBefore, case let .shape(op, message, _, _) = g.errors[errorsBefore] {
                throw fail(node, "\(op): \(message)")
            }
            values[out] = result
        }
        return try outputNames.map { name in
            guard let v = values[name] else { throw ONNXError("graph output \"\(name)\" is made by no node") }
            switch v {
            case let .tensor(t): return t
            case let .constant(shape, vals): return g.constant(values: vals, shape: Shape(shape))
            }
        }
    }

    /// The inference graph at one batch size: inputs and outputs named as in the file.
    public func forwardGraph(batch: Int) throws -> Graph {
        let g = GraphBuilder()
        let given = inputs.map { info in g.input(info.name, Shape([batch] + info.dims.dropFirst().map { $0! })) }
        let outputs = try emit(into: g, inputs: given, training: false)
        for (name, t) in zip(outputNames, outputs) { g.output(name, t) }
        do { return try g.build() } catch { throw ONNXError("\(error)") }
    }

    /// Whether the model is an image classifier Kiln's trainers take: one input [N, C, H, W],
    /// one output [N, classes]. The class count, or an explanation.
    public func classifierShape() throws -> (inputShape: [Int], classes: Int) {
        guard inputs.count == 1, inputs[0].dims.count == 4, outputNames.count == 1 else {
            throw ONNXError("not an image classifier: Kiln's classifiers take one input [N, C, H, W] and give one output [N, classes] (this model: inputs \(inputs.map { "\($0.name) [\($0.dims.map { $0.map(String.init) ?? "N" }.joined(separator: ", "))]" }.joined(separator: ", ")), \(outputNames.count) output(s))")
        }
        let graph = try forwardGraph(batch: 2)
        let out = graph[graph.outputs[0].value].type.shape
        guard out.rank == 2, out[0] == 2 else { throw ONNXError("not an image classifier: its output has shape \(out) at batch 2, not [N, classes]") }
        return (exampleShape, out[1])
    }

    /// The model as a zoo-style classifier (name `onnx`) with the file's parameter names. Its
    /// parameters start at zero: `loadWeights(into:)` sets them from the file.
    public func classifier() throws -> ClassifierModel {
        let (shape, classes) = try classifierShape()
        let model = self
        var classifier = ClassifierModel(name: Self.modelName, summary: "ONNX model \(URL(fileURLWithPath: path).lastPathComponent) (opset \(opset), \(proto.graph.nodes.count) nodes)",
                                         inputShape: shape, classes: classes) { images, training in
            let g = images.builder
            do {
                return try model.emit(into: g, inputs: [images], training: training)[0]
            } catch {
                g.record("onnx", "\(error)", model.path, 0)
                return images
            }
        }
        classifier.definition = try definitionMetadata()
        return classifier
    }

    /// Copies the file's initializers into the parameters and state of `store` that have their names.
    public func loadWeights(into store: ParameterStore) throws {
        for name in store.names {
            guard let w = weights[name], let tensor = store[name] else { continue }
            guard tensor.type.shape.dims == w.shape else {
                throw KilnError.file(path: path, message: "initializer \"\(name)\" has shape \(w.shape), the graph needs \(tensor.type.shape)")
            }
            tensor.values = w.values
        }
    }

    // MARK: - Kiln model files of imported models

    /// Metadata key of a Kiln model file that holds the ONNX graph (without its weights, base64).
    public static let graphMetadataKey = "kiln.onnx"

    /// The file without the float initializers' data (the model file holds them as tensors), base64.
    func definitionMetadata() throws -> [String: String] {
        var stripped = proto
        stripped.graph.initializers = proto.graph.initializers.map { t in
            guard weights[t.name] != nil else { return t }
            var empty = ONNXTensor()
            empty.name = t.name
            empty.dims = t.dims
            empty.dataType = ONNXDataType.float.rawValue
            empty.rawData = []
            return empty
        }
        return [Self.graphMetadataKey: Data(stripped.serialized()).base64EncodedString()]
    }

    /// The model a Kiln model file made by `kiln import` describes (its weights come from the file's tensors).
    public static func fromModelFile(metadata: [String: String], path: String, weights: [String: [Int]]) throws -> ONNXModel {
        guard let text = metadata[graphMetadataKey], let data = Data(base64Encoded: text) else {
            throw KilnError.file(path: path, message: "model \"\(modelName)\" needs metadata \"\(graphMetadataKey)\" (the ONNX graph, base64)")
        }
        do {
            var proto = try ONNXModelProto.parse(Array(data))
            // Put back zero-filled float initializers of the recorded shapes so the graph checks.
            proto.graph.initializers = try proto.graph.initializers.map { t in
                guard t.dataType == ONNXDataType.float.rawValue, t.rawData == [] else { return t }
                let shape = try t.shape(limit: 1 << 31)
                guard weights[t.name] == shape else {
                    throw ONNXError("tensor \"\(t.name)\" of the ONNX graph (\(shape)) is missing or has another shape in the file")
                }
                return ONNXTensor(name: t.name, dims: shape, floats: [Float](repeating: 0, count: shape.reduce(1, *)))
            }
            return try ONNXModel(proto: proto, path: path)
        } catch let error as ProtobufError {
            throw KilnError.file(path: path, message: "metadata \"\(graphMetadataKey)\" is not a valid ONNX graph: \(error)")
        } catch let error as ONNXError {
            throw KilnError.file(path: path, message: "metadata \"\(graphMetadataKey)\": \(printable(error.message))")
        }
    }
}

extension ClassifierTrainer {
    /// A trainer for an imported ONNX classifier whose parameters and running statistics are the file's.
    public static func importing(_ onnx: ONNXModel, optimizer: Optimizer = .sgd(), seed: UInt64 = 0,
                                 threads: Int = defaultThreadCount()) throws -> ClassifierTrainer {
        let model: ClassifierModel
        do { model = try onnx.classifier() } catch let error as ONNXError {
            throw KilnError.file(path: onnx.path, message: error.message)
        }
        let trainer = ClassifierTrainer(model: model, optimizer: optimizer, seed: seed, threads: threads)
        try trainer.store.register(ClassifierTrainer.forwardGraph(model: model, batch: 1))
        try onnx.loadWeights(into: trainer.store)
        return trainer
    }
}
