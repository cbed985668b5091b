import KilnGraph

/// Residual networks for 3×32×32 (CIFAR-shaped) images, built from basic blocks (He et al.,
/// "Deep residual learning for image recognition", 2016): two 3×3 convolutions without bias,
/// each followed by batch norm, the first by ReLU; the block's input is added before the
/// final ReLU, through a 1×1 convolution with stride and batch norm (a projection shortcut)
/// where the block changes the spatial size or the channel count. Parameter names follow
/// the course's PyTorch `ResNet18` (`conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.shortcut.0`,
/// `layer1.0.shortcut.1`, …, `linear`), so its `state_dict` maps one to one.
extension GraphBuilder {
    /// One basic block on `x` [N, C, H, W] → [N, planes, H/stride, W/stride].
    public func basicBlock(_ x: Tensor, planes: Int, stride: Int, name: String, training: Bool,
                           file: String = #fileID, line: Int = #line) -> Tensor {
        var h = conv2d(x, outChannels: planes, kernel: 3, stride: stride, padding: 1, name: "\(name).conv1", bias: false,
                       file: file, line: line)
        h = relu(batchNorm(h, name: "\(name).bn1", training: training, file: file, line: line), file: file, line: line)
        h = conv2d(h, outChannels: planes, kernel: 3, padding: 1, name: "\(name).conv2", bias: false, file: file, line: line)
        h = batchNorm(h, name: "\(name).bn2", training: training, file: file, line: line)
        var shortcut = x
        if stride != 1 || x.rank != 4 || x.shape[1] != planes {
            shortcut = conv2d(x, outChannels: planes, kernel: 1, stride: stride, name: "\(name).shortcut.0", bias: false,
                              file: file, line: line)
            shortcut = batchNorm(shortcut, name: "\(name).shortcut.1", training: training, file: file, line: line)
        }
        return relu(h.adding(shortcut, file: file, line: line), file: file, line: line)
    }

    /// Global average pooling: [N, C, H, W] → [N, C], the mean of each channel's plane.
    public func globalAveragePool(_ x: Tensor, file: String = #fileID, line: Int = #line) -> Tensor {
        guard x.rank == 4 else {
            record("global_average_pool", "expects [N, C, H, W], found \(x.shape)", file, line)
            return x
        }
        return x.mean(axes: [2, 3], file: file, line: line)
    }
}

/// A CIFAR residual network: 3×3 stem convolution to `widths[0]` channels with batch norm and
/// ReLU, then one stage per width of `blocksPerStage` basic blocks (the first block of every
/// stage after the first has stride 2), global average pooling and a linear layer.
func cifarResNet(name: String, summary: String, inputShape: [Int], classes: Int, widths: [Int],
                 blocksPerStage: Int) -> ClassifierModel {
    ClassifierModel(name: name, summary: summary, inputShape: inputShape, classes: classes) { images, training in
        let g = images.builder
        var h = g.conv2d(images, outChannels: widths[0], kernel: 3, padding: 1, name: "conv1", bias: false)
        h = relu(g.batchNorm(h, name: "bn1", training: training))
        for (stage, width) in widths.enumerated() {
            for block in 0..<blocksPerStage {
                h = g.basicBlock(h, planes: width, stride: stage > 0 && block == 0 ? 2 : 1,
                                 name: "layer\(stage + 1).\(block)", training: training)
            }
        }
        return g.dense(g.globalAveragePool(h), classes, name: "linear")
    }
}

/// ResNet-18 in the CIFAR form of the course's homework: 3×3 stem with 64 channels (no max
/// pool), stages of 64, 128, 256 and 512 channels with two basic blocks each (strides 1, 2, 2,
/// 2), projection shortcuts where the shape changes, global average pooling, `classes` outputs.
/// 11.2 M parameters for 10 classes.
public func resnet18(inputShape: [Int] = [3, 32, 32], classes: Int = 10) -> ClassifierModel {
    cifarResNet(name: "resnet18", summary: "ResNet-18 (CIFAR): 3x3 stem 64, stages 64-128-256-512 x 2 basic blocks, BN, GAP, \(classes)",
                inputShape: inputShape, classes: classes, widths: [64, 128, 256, 512], blocksPerStage: 2)
}

/// ResNet-20 of He et al. for CIFAR-10: 3×3 stem with 16 channels, stages of 16, 32 and 64
/// channels with three basic blocks each, global average pooling, `classes` outputs. Where the
/// shape changes the shortcut is a 1×1 projection with batch norm (the paper's option B; its
/// CIFAR runs used option A, zero-padded identity), 0.27 M parameters.
public func resnet20(inputShape: [Int] = [3, 32, 32], classes: Int = 10) -> ClassifierModel {
    cifarResNet(name: "resnet20", summary: "ResNet-20 (CIFAR): 3x3 stem 16, stages 16-32-64 x 3 basic blocks, BN, GAP, \(classes)",
                inputShape: inputShape, classes: classes, widths: [16, 32, 64], blocksPerStage: 3)
}
