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
        guard x.rank == 4 else {
            record("conv2d \"\(name)\"", "expects input [N, C, H, W], found \(x.shape)", file, line)
            return x
        }
        let inChannels = x.shape[1]
        let (fanIn, fanOut) = (inChannels * kernel * kernel, outChannels * kernel * kernel)
        let weight = parameter("\(name).weight", [outChannels, inChannels, kernel, kernel],
                               initializer: initializer ?? initialization.weight(fanIn: fanIn, fanOut: fanOut), file: file, line: line)
        var y = KilnGraph.conv2d(x, weight, stride: stride, padding: padding, file: file, line: line)
        if bias {
            let b = parameter("\(name).bias", [outChannels], initializer: initialization.bias(fanIn: fanIn), file: file, line: line)
            y = y.adding(b.reshaped([outChannels, 1, 1], file: file, line: line), file: file, line: line)
        }
        return y
    }

    /// A transposed 2-D convolution layer (PyTorch's `ConvTranspose2d`) over `x` [N, C_in, H, W]
    /// with a bias per output channel: weight `NAME.weight` [C_in, C_out, k, k], PyTorch's layout.
    /// PyTorch initialises it with fan-in C_out·k·k (its weight's second axis), and so does this.
    public func convTranspose2d(_ x: Tensor, outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                                outputPadding: Int = 0, name: String, bias: Bool = true, initializer: Initializer? = nil,
                                initialization: WeightInitialization = .pytorch,
                                file: String = #fileID, line: Int = #line) -> Tensor {
        guard x.rank == 4 else {
            record("conv_transpose2d \"\(name)\"", "expects input [N, C, H, W], found \(x.shape)", file, line)
            return x
        }
        let inChannels = x.shape[1]
        let (fanIn, fanOut) = (outChannels * kernel * kernel, inChannels * kernel * kernel)
        let weight = parameter("\(name).weight", [inChannels, outChannels, kernel, kernel],
                               initializer: initializer ?? initialization.weight(fanIn: fanIn, fanOut: fanOut), file: file, line: line)
        var y = KilnGraph.convTranspose2d(x, weight, stride: stride, padding: padding, outputPadding: outputPadding,
                                          file: file, line: line)
        if bias {
            let b = parameter("\(name).bias", [outChannels], initializer: initialization.bias(fanIn: fanIn), file: file, line: line)
            y = y.adding(b.reshaped([outChannels, 1, 1], file: file, line: line), file: file, line: line)
        }
        return y
    }
}
