import KilnGraph

/// A classifier in the zoo: a function from an image batch [N, C, H, W] to logits [N, classes].
public struct ClassifierModel: Sendable {
    /// The zoo name (`mlp`, `lenet5`, …).
    public var name: String
    /// One line on what it is.
    public var summary: String
    /// Input shape of one example, [C, H, W].
    public var inputShape: [Int]
    public var classes: Int
    /// Builds the forward graph: images [N, C, H, W] → logits [N, classes]. `training` turns dropout on.
    public var forward: @Sendable (_ images: Tensor, _ training: Bool) -> Tensor
    /// Model-file metadata that rebuilds a model the zoo cannot make from its name (an imported
    /// ONNX graph: `ONNXModel`); empty for zoo models.
    public var definition: [String: String] = [:]

    public init(name: String, summary: String, inputShape: [Int], classes: Int,
                forward: @escaping @Sendable (Tensor, Bool) -> Tensor) {
        self.name = name; self.summary = summary; self.inputShape = inputShape; self.classes = classes; self.forward = forward
    }
}

/// Multi-layer perceptron with ReLU: flatten → hidden layers → classes; optional inverted dropout after each hidden layer.
public func mlp(inputShape: [Int] = [1, 28, 28], hidden: [Int] = [200, 200], classes: Int = 10, dropout rate: Double = 0) -> ClassifierModel {
    ClassifierModel(name: "mlp", summary: "MLP \(inputShape.reduce(1, *))-\(hidden.map(String.init).joined(separator: "-"))-\(classes), ReLU" + (rate > 0 ? ", dropout \(rate)" : ""),
                    inputShape: inputShape, classes: classes) { images, training in
        let g = images.builder
        var h = images.flatten()
        for (i, width) in hidden.enumerated() {
            h = relu(g.dense(h, width, name: "fc\(i + 1)"))
            if training && rate > 0 { h = dropout(h, rate: rate) }
        }
        return g.dense(h, classes, name: "fc\(hidden.count + 1)")
    }
}

/// LeNet-5 as in the peers' recipe: conv 1→6 5×5 pad 2, ReLU, max-pool 2; conv 6→16 5×5, ReLU,
/// max-pool 2; 400 → 120 → 84 → classes with ReLU.
public func lenet5(inputShape: [Int] = [1, 28, 28], classes: Int = 10) -> ClassifierModel {
    ClassifierModel(name: "lenet5", summary: "LeNet-5: conv 6@5x5, pool, conv 16@5x5, pool, 120-84-\(classes)",
                    inputShape: inputShape, classes: classes) { images, _ in
        let g = images.builder
        var h = maxPool(relu(g.conv2d(images, outChannels: 6, kernel: 5, padding: 2, name: "conv1")), 2)
        h = maxPool(relu(g.conv2d(h, outChannels: 16, kernel: 5, name: "conv2")), 2)
        h = relu(g.dense(h.flatten(), 120, name: "fc1"))
        h = relu(g.dense(h, 84, name: "fc2"))
        return g.dense(h, classes, name: "fc3")
    }
}

/// A small CNN for 28×28 glyphs: two conv blocks (16 and 32 channels), a 64-unit hidden layer.
public func glyphCNN(inputShape: [Int] = [1, 28, 28], classes: Int = 3) -> ClassifierModel {
    ClassifierModel(name: "glyph-cnn", summary: "small CNN: conv 16@3x3, pool, conv 32@3x3, pool, 64-\(classes)",
                    inputShape: inputShape, classes: classes) { images, _ in
        let g = images.builder
        var h = maxPool(relu(g.conv2d(images, outChannels: 16, kernel: 3, padding: 1, name: "conv1")), 2)
        h = maxPool(relu(g.conv2d(h, outChannels: 32, kernel: 3, padding: 1, name: "conv2")), 2)
        h = relu(g.dense(h.flatten(), 64, name: "fc1"))
        return g.dense(h, classes, name: "fc2")
    }
}

/// The network of PyTorch's MNIST example (`pytorch/examples`, `mnist/main.py`), the first CNN
/// many users write: conv 1→32 3×3, ReLU; conv 32→64 3×3, ReLU; max-pool 2; dropout 0.25;
/// 9216 → 128, ReLU; dropout 0.5; → classes. No padding: 28 → 26 → 24 → 12.
public func mnistCNN(inputShape: [Int] = [1, 28, 28], classes: Int = 10) -> ClassifierModel {
    ClassifierModel(name: "mnist-cnn", summary: "PyTorch's MNIST example: conv 32@3x3, conv 64@3x3, pool, dropout, 128-\(classes)",
                    inputShape: inputShape, classes: classes) { images, training in
        let g = images.builder
        var h = relu(g.conv2d(images, outChannels: 32, kernel: 3, name: "conv1"))
        h = maxPool(relu(g.conv2d(h, outChannels: 64, kernel: 3, name: "conv2")), 2)
        if training { h = dropout(h, rate: 0.25) }
        h = relu(g.dense(h.flatten(), 128, name: "fc1"))
        if training { h = dropout(h, rate: 0.5) }
        return g.dense(h, classes, name: "fc2")
    }
}

/// Multinomial logistic regression: one dense layer on the flattened pixels.
public func logisticRegression(inputShape: [Int] = [1, 28, 28], classes: Int = 10) -> ClassifierModel {
    ClassifierModel(name: "logreg", summary: "logistic regression \(inputShape.reduce(1, *))-\(classes)",
                    inputShape: inputShape, classes: classes) { images, _ in
        images.builder.dense(images.flatten(), classes, name: "fc")
    }
}

/// The zoo's classifiers by name, for the given input shape and class count.
public enum Zoo {
    public static let classifierNames = ["mlp", "lenet5", "mnist-cnn", "glyph-cnn", "logreg", "resnet18", "resnet20"]

    /// The input shape a classifier is listed and benchmarked with: 3×32×32 for the CIFAR
    /// ResNets, 1×28×28 for the others (any model takes other shapes through `classifier`).
    public static func defaultInputShape(_ name: String) -> [Int] {
        name.hasPrefix("resnet") ? [3, 32, 32] : [1, 28, 28]
    }

    public static func classifier(_ name: String, inputShape: [Int] = [1, 28, 28], classes: Int = 10) throws -> ClassifierModel {
        switch name {
        case "mlp": return mlp(inputShape: inputShape, classes: classes)
        case "mlp-dropout": return mlp(inputShape: inputShape, classes: classes, dropout: 0.3)
        case "lenet5": return lenet5(inputShape: inputShape, classes: classes)
        case "mnist-cnn": return mnistCNN(inputShape: inputShape, classes: classes)
        case "glyph-cnn": return glyphCNN(inputShape: inputShape, classes: classes)
        case "logreg": return logisticRegression(inputShape: inputShape, classes: classes)
        case "resnet18": return resnet18(inputShape: inputShape, classes: classes)
        case "resnet20": return resnet20(inputShape: inputShape, classes: classes)
        default: throw KilnError.argument("unknown model \"\(excerpt(name))\"; the zoo has \(classifierNames.joined(separator: ", "))")
        }
    }
}
