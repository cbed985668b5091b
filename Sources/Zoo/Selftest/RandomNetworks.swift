import KilnGraph
import KilnRuntime

/// A random network of the kind users write, with its training step and the values to feed it.
public struct RandomNetwork: Sendable {
    /// The seed it was made from (`RandomNetworks.make(seed:)` gives the same network again).
    public var seed: UInt64
    /// One line per layer, for failure reports: "conv 3→7 k3 s2 p1 → [2, 7, 4, 4]; relu; …".
    public var summary: String
    /// The training step: forward pass, loss, gradients, optimizer updates; outputs `loss` and `logits`.
    public var graph: Graph
    /// A value for every input of `graph`, by name (labels within range).
    public var feeds: [String: HostTensor]

    public init(seed: UInt64, summary: String, graph: Graph, feeds: [String: HostTensor]) {
        self.seed = seed; self.summary = summary; self.graph = graph; self.feeds = feeds
    }
}

/// Makes random networks shaped like user code: convolutions with random channels, kernel,
/// stride and padding, pooling, batch norm, residual adds and channel concatenations, dense
/// layers, dropout, then one of the losses and one of the optimizers, with float32 images and
/// int32 or float32 targets. Small enough that the reference interpreter runs each in
/// milliseconds.
public enum RandomNetworks {
    /// The network for `seed`.
    public static func make(seed: UInt64) throws -> RandomNetwork {
        var random = SplitMix64(seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ 0x5EED)
        var layers: [String] = []
        let g = GraphBuilder()
        let batch = random.int(1...4)
        let classes = random.int(2...6)
        var feeds: [String: HostTensor] = [:]
        var layerIndex = 0
        func name(_ kind: String) -> String { layerIndex += 1; return "\(kind)\(layerIndex)" }
        /// Batch statistics need at least two values per feature.
        func normalizable(_ x: Tensor) -> Bool { x.shape.count / max(x.shape[1], 1) >= 2 }
        func activation(_ x: Tensor) -> Tensor {
            switch random.int(0...4) {
            case 0: layers.append("relu"); return relu(x)
            case 1: layers.append("tanh"); return tanh(x)
            case 2: layers.append("sigmoid"); return sigmoid(x)
            case 3: layers.append("softplus"); return softplus(x)
            default: return x
            }
        }
        /// A convolution whose output keeps at least one pixel.
        /// (`bias` off before a batch norm, as users write it: the norm's shift makes a bias's
        /// gradient zero in exact arithmetic, and Adam or AdaGrad would then amplify rounding noise.)
        func convolution(_ x: Tensor, outChannels: Int, keepSize: Bool, bias: Bool = true) -> Tensor {
            let (h, w) = (x.shape[2], x.shape[3])
            var kernel = random.int(1...min(5, h + 2, w + 2)), stride = keepSize ? 1 : random.int(1...2)
            var padding = keepSize ? (kernel - 1) / 2 : random.int(0...((kernel - 1) / 2 + (random.bool() ? 1 : 0)))
            if keepSize && kernel % 2 == 0 { kernel = 1; padding = 0 }
            if h + 2 * padding < kernel || w + 2 * padding < kernel { kernel = 1; padding = 0; stride = 1 }
            let y = g.conv2d(x, outChannels: outChannels, kernel: kernel, stride: stride, padding: padding, name: name("conv"),
                             bias: bias && random.int(0...3) > 0)
            layers.append("conv \(x.shape[1])→\(outChannels) k\(kernel) s\(stride) p\(padding) → \(y.shape.dims)")
            return y
        }

        let useImages = random.int(0...4) > 0
        var h: Tensor
        if useImages {
            let channels = random.int(1...4), height = random.int(3...10), width = random.int(3...10)
            let x = g.input("x", [batch, channels, height, width])
            feeds["x"] = HostTensor(shape: [batch, channels, height, width], scalars: (0..<(batch * channels * height * width)).map { _ in random.uniform(-1, 1) })
            layers.append("input [\(batch), \(channels), \(height), \(width)]")
            h = x
            for _ in 0..<random.int(1...4) {
                let channels = h.shape[1]
                switch random.int(0...6) {
                case 0, 1:
                    h = activation(convolution(h, outChannels: random.int(1...8), keepSize: false))
                case 2:
                    // A residual block: y = act(x + conv(act(conv(x)))) at the same shape.
                    let inner = activation(convolution(h, outChannels: channels, keepSize: true))
                    let normalized = random.bool() && normalizable(inner)
                    var branch = convolution(inner, outChannels: channels, keepSize: true, bias: !normalized)
                    if normalized { branch = g.batchNorm(branch, name: name("bn"), training: true); layers.append("batchnorm") }
                    layers.append("residual add")
                    h = activation(h + branch)
                case 3:
                    // Two branches joined along the channels.
                    let a = convolution(h, outChannels: random.int(1...4), keepSize: true)
                    let b = random.bool() ? activation(convolution(h, outChannels: random.int(1...4), keepSize: true)) : h
                    layers.append("concat channels")
                    h = concat([a, b], axis: 1)
                case 4:
                    if h.shape[2] >= 2 && h.shape[3] >= 2 {
                        let kernel = random.int(2...min(3, h.shape[2], h.shape[3]))
                        let stride = random.int(1...kernel)
                        if random.bool() { h = maxPool(h, kernel, stride: stride); layers.append("maxpool k\(kernel) s\(stride)") }
                        else { h = avgPool(h, kernel, stride: stride); layers.append("avgpool k\(kernel) s\(stride)") }
                    }
                case 5 where normalizable(h):
                    // conv (no bias) → batch norm → ReLU, the usual block.
                    h = convolution(h, outChannels: random.int(1...8), keepSize: random.bool(), bias: false)
                    if normalizable(h) { h = g.batchNorm(h, name: name("bn"), training: true); layers.append("batchnorm") }
                    layers.append("relu")
                    h = relu(h)
                case 5:
                    h = activation(h)
                default:
                    let rate = [0.1, 0.25, 0.5][random.int(0...2)]
                    h = dropout(h, rate: rate)
                    layers.append("dropout \(rate)")
                }
            }
            if random.bool() {
                h = h.mean(axes: [2, 3])
                layers.append("global average pool → \(h.shape.dims)")
            } else {
                h = h.flatten()
                layers.append("flatten → \(h.shape.dims)")
            }
        } else {
            let features = random.int(1...24)
            let x = g.input("x", [batch, features])
            feeds["x"] = HostTensor(shape: [batch, features], scalars: (0..<(batch * features)).map { _ in random.uniform(-1, 1) })
            layers.append("input [\(batch), \(features)]")
            h = x
        }
        for _ in 0..<random.int(0...2) {
            let width = random.int(1...16)
            let normalized = random.int(0...3) == 0 && h.shape[0] >= 2
            h = g.dense(h, width, name: name("fc"), bias: !normalized && random.int(0...3) > 0)
            layers.append("dense \(width)")
            if normalized { h = g.batchNorm(h, name: name("bn"), training: true); layers.append("batchnorm") }
            h = activation(h)
            if random.int(0...4) == 0 { h = dropout(h, rate: 0.2); layers.append("dropout 0.2") }
        }
        let logits = g.dense(h, classes, name: name("fc"))
        layers.append("dense \(classes) (logits)")

        // A loss, with targets of its kind.
        let loss: Tensor
        func intLabels() -> Tensor {
            let labels = g.input("labels", [batch], dtype: .int32)
            feeds["labels"] = HostTensor(shape: [batch], dtype: .int32, scalars: (0..<batch).map { _ in Double(random.int(0...(classes - 1))) })
            return labels
        }
        func floatTargets(_ shape: [Int], _ values: () -> Double) -> Tensor {
            let t = g.input("targets", Shape(shape))
            feeds["targets"] = HostTensor(shape: Shape(shape), scalars: (0..<shape.reduce(1, *)).map { _ in values() })
            return t
        }
        switch random.int(0...5) {
        case 0: loss = softmaxCrossEntropy(logits, labels: intLabels()).mean(); layers.append("softmax cross-entropy")
        case 1:
            let smoothing = [0.05, 0.1, 0.2][random.int(0...2)]
            loss = crossEntropy(logits: logits, labels: intLabels(), labelSmoothing: smoothing).mean()
            layers.append("cross-entropy, label smoothing \(smoothing)")
        case 2: loss = multiClassHingeLoss(logits: logits, labels: intLabels()).mean(); layers.append("multi-class hinge")
        case 3:
            loss = meanSquaredError(logits, floatTargets([batch, classes]) { random.uniform(-1, 1) }).mean()
            layers.append("mean squared error")
        case 4:
            loss = binaryCrossEntropy(logits: logits, targets: floatTargets([batch, classes]) { random.uniform(0, 1) }).mean()
            layers.append("binary cross-entropy (logits)")
        default:
            let scores = logits.slice(axis: 1, 0..<1).reshaped([batch])
            loss = hingeLoss(scores: scores, targets: floatTargets([batch]) { random.bool() ? 1 : -1 }).mean()
            layers.append("hinge on the first score")
        }

        // Adam and AdaGrad divide a gradient by its own magnitude, so a gradient that is zero in
        // exact arithmetic (a bias before a batch norm, a batch of two through a batch norm) turns
        // float rounding into a step of ±lr that no two summation orders agree on. ε = 1e-3 keeps
        // such noise negligible and leaves every real gradient's update as the optimizer defines it.
        let optimizer: Optimizer
        switch random.int(0...6) {
        case 0: optimizer = .sgd()
        case 1: optimizer = .sgd(momentum: 0.9)
        case 2: optimizer = .sgd(momentum: 0.9, nesterov: true, weightDecay: 1e-3)
        case 3: optimizer = .adam(epsilon: 1e-3)
        case 4: optimizer = .adam(epsilon: 1e-3, weightDecay: 1e-2, decoupledWeightDecay: true)
        case 5: optimizer = .adagrad(epsilon: 1e-3)
        default: optimizer = .sgd(weightDecay: 1e-2)
        }
        layers.append("\(optimizer)")
        let lr = g.input("lr", .scalar)
        feeds["lr"] = HostTensor(shape: .scalar, scalars: [[0.001, 0.01, 0.05][random.int(0...2)]])
        let parameters = g.parameters
        let gradients = g.gradients(of: loss, withRespectTo: parameters)
        optimizer.appendUpdates(to: g, parameters: parameters, gradients: gradients, learningRate: lr)
        g.output("loss", loss)
        g.output("logits", logits)
        return RandomNetwork(seed: seed, summary: layers.joined(separator: "; "), graph: try g.build(), feeds: feeds)
    }
}

extension RandomNetworks {
    /// Seeded values for every input of `graph`: int32 inputs (labels) in `0..<classes`, an input
    /// named `lr` 0.01, other float inputs uniform in [0, 1) (images) or, named `noise`, in [-1, 1).
    public static func feeds(for graph: Graph, classes: Int, seed: UInt64) -> [String: HostTensor] {
        var random = SplitMix64(seed: seed)
        var feeds: [String: HostTensor] = [:]
        for id in graph.inputIDs {
            let name = graph.leafName(id)!, type = graph.nodes[id].type
            let values: [Double]
            if type.dtype == .int32 {
                values = (0..<type.shape.count).map { _ in Double(random.int(0...(max(classes, 1) - 1))) }
            } else if name == "lr" {
                values = [Double](repeating: 0.01, count: type.shape.count)
            } else if name == "noise" {
                values = (0..<type.shape.count).map { _ in random.uniform(-1, 1) }
            } else {
                values = (0..<type.shape.count).map { _ in random.uniform(0, 1) }
            }
            feeds[name] = HostTensor(type, values)
        }
        return feeds
    }
}

extension SplitMix64 {
    mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.count))
    }
    mutating func bool() -> Bool { next() & 1 == 1 }
}
