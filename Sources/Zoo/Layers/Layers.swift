import KilnGraph

/// Layer helpers: each creates its parameters with PyTorch's names and layouts (`NAME.weight`
/// [out, in] or [out, in, kh, kw], `NAME.bias` [out]) and, unless `initialization` says
/// otherwise, PyTorch's default initialisation (weights and biases uniform in ±1/√fan_in).
/// `initializer` overrides the weight's initializer alone.
extension GraphBuilder {
    /// A fully connected layer y = x Wᵀ + b on `x` [N, in].
    public func dense(_ x: Tensor, _ outFeatures: Int, name: String, bias: Bool = true,
                      initializer: Initializer? = nil, initialization: WeightInitialization = .pytorch,
                      file: String = #fileID, line: Int = #line) -> Tensor {
        guard x.rank == 2 else {
            record("dense \"\(name)\"", "expects input [N, features], found \(x.shape)", file, line)
            return x
        }
        let inFeatures = x.shape[1]
        let weight = parameter("\(name).weight", [outFeatures, inFeatures],
                               initializer: initializer ?? initialization.weight(fanIn: inFeatures, fanOut: outFeatures), file: file, line: line)
        var y = x.matmul(weight, transposeOther: true, file: file, line: line)
        if bias {
            let b = parameter("\(name).bias", [outFeatures], initializer: initialization.bias(fanIn: inFeatures), file: file, line: line)
            y = y.adding(b, file: file, line: line)
        }
        return y
    }

    /// A 2-D convolution layer over `x` [N, C, H, W] with a bias per output channel.
    public func conv2d(_ x: Tensor, outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0, name: String,
                       bias: Bool = true, initializer: Initializer? = nil, initialization: WeightInitialization = .pytorch,
                       file: String = #fileID, line: Int = #line) -> Tensor {
        convolutionLayer("conv2d", x, outChannels: outChannels, name: name, bias: bias, initializer: initializer,
                         initialization: initialization, file: file, line: line,
                         fans: { (in: $0 * kernel * kernel, out: outChannels * kernel * kernel) },
                         weightShape: { [outChannels, $0, kernel, kernel] }) {
            KilnGraph.conv2d(x, $0, stride: stride, padding: padding, file: file, line: line)
        }
    }

    /// A transposed 2-D convolution layer (PyTorch's `ConvTranspose2d`) over `x` [N, C_in, H, W]
    /// with a bias per output channel: weight `NAME.weight` [C_in, C_out, k, k], PyTorch's layout.
    /// PyTorch initialises it with fan-in C_out·k·k (its weight's second axis), and so does this.
    public func convTranspose2d(_ x: Tensor, outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                                outputPadding: Int = 0, name: String, bias: Bool = true, initializer: Initializer? = nil,
                                initialization: WeightInitialization = .pytorch,
                                file: String = #fileID, line: Int = #line) -> Tensor {
        convolutionLayer("conv_transpose2d", x, outChannels: outChannels, name: name, bias: bias, initializer: initializer,
                         initialization: initialization, file: file, line: line,
                         fans: { (in: outChannels * kernel * kernel, out: $0 * kernel * kernel) },
                         weightShape: { [$0, outChannels, kernel, kernel] }) {
            KilnGraph.convTranspose2d(x, $0, stride: stride, padding: padding, outputPadding: outputPadding,
                                      file: file, line: line)
        }
    }

    /// A convolution layer's parameters around `apply(weight)`: `x` must be [N, C, H, W]; the
    /// weight `NAME.weight` has `weightShape(C)` and fans `fans(C)`, the bias `NAME.bias` one
    /// value per output channel, added after.
    private func convolutionLayer(_ op: String, _ x: Tensor, outChannels: Int, name: String, bias: Bool,
                                  initializer: Initializer?, initialization: WeightInitialization, file: String, line: Int,
                                  fans: (Int) -> (in: Int, out: Int), weightShape: (Int) -> [Int],
                                  apply: (Tensor) -> Tensor) -> Tensor {
        guard x.rank == 4 else {
            record("\(op) \"\(name)\"", "expects input [N, C, H, W], found \(x.shape)", file, line)
            return x
        }
        let (fanIn, fanOut) = fans(x.shape[1])
        let weight = parameter("\(name).weight", Shape(weightShape(x.shape[1])),
                               initializer: initializer ?? initialization.weight(fanIn: fanIn, fanOut: fanOut), file: file, line: line)
        var y = apply(weight)
        if bias {
            let b = parameter("\(name).bias", [outChannels], initializer: initialization.bias(fanIn: fanIn), file: file, line: line)
            y = y.adding(b.reshaped([outChannels, 1, 1], file: file, line: line), file: file, line: line)
        }
        return y
    }
}
