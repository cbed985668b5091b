import KilnGraph

// Losses as graph ops, one value per example (or per element where noted) like
// `softmaxCrossEntropy`: the caller reduces, usually with `.mean()`, as PyTorch's default
// `reduction="mean"` does. `binaryCrossEntropy(logits:targets:)` lives with the core ops.

/// Squared error per example: the mean over every axis but the first of (prediction − target)²;
/// `.mean()` of it is PyTorch's `MSELoss`. A rank-1 input gives the elementwise squares.
public func meanSquaredError(_ predictions: Tensor, _ targets: Tensor, file: String = #fileID, line: Int = #line) -> Tensor {
    let squared = square(predictions.subtracting(targets, file: file, line: line), file: file, line: line)
    guard squared.rank > 1 else { return squared }
    return squared.mean(axes: Array(1..<squared.rank), file: file, line: line)
}

/// Binary hinge loss per example, max(0, 1 − y·s), for scores `s` [N] and targets y ∈ {−1, +1} [N]
/// (a linear SVM's loss; PyTorch's `HingeEmbeddingLoss` is a different function).
public func hingeLoss(scores: Tensor, targets: Tensor, file: String = #fileID, line: Int = #line) -> Tensor {
    relu(1 - scores.multiplied(by: targets, file: file, line: line), file: file, line: line)
}

/// Multi-class hinge loss per example as PyTorch's `MultiMarginLoss` (p = 1):
/// Σ_{c ≠ y} max(0, margin − x_y + x_c) / C, for `logits` [N, C] and int32 `labels` [N].
public func multiClassHingeLoss(logits: Tensor, labels: Tensor, margin: Double = 1,
                                file: String = #fileID, line: Int = #line) -> Tensor {
    let classes = logits.shape[1]
    let target = oneHot(labels, depth: classes, dtype: logits.dtype, file: file, line: line)
    let correct = logits.multiplied(by: target, file: file, line: line).sum(axis: 1, keepDims: true, file: file, line: line)
    let violations = relu(logits.subtracting(correct, file: file, line: line) + margin, file: file, line: line)
    return violations.multiplied(by: 1 - target, file: file, line: line).sum(axis: 1, file: file, line: line) / Double(classes)
}

/// Elementwise binary cross-entropy of probabilities p ∈ [0, 1] against targets t:
/// −[t·log p + (1 − t)·log(1 − p)], with p clamped to [1e-7, 1 − 1e-7] so that log and its
/// gradient stay finite (PyTorch's `BCELoss` clamps the log at −100 instead; the two agree for
/// p inside the clamp). Prefer `binaryCrossEntropy(logits:targets:)` when the logits are at hand.
public func binaryCrossEntropy(probabilities: Tensor, targets: Tensor, file: String = #fileID, line: Int = #line) -> Tensor {
    let g = probabilities.builder
    let dtype = probabilities.dtype
    let p = minimum(maximum(probabilities, g.constant(1e-7, dtype: dtype), file: file, line: line),
                    g.constant(1 - 1e-7, dtype: dtype), file: file, line: line)
    let positive = targets.multiplied(by: log(p, file: file, line: line), file: file, line: line)
    let negative = (1 - targets).multiplied(by: log(1 - p, file: file, line: line), file: file, line: line)
    return -(positive.adding(negative, file: file, line: line))
}

/// Softmax cross-entropy per example with label smoothing ε (Szegedy et al. 2016, §7), as
/// PyTorch's `CrossEntropyLoss(label_smoothing: ε)`: (1 − ε)·(−log p_y) + ε·mean_c(−log p_c).
/// ε = 0 is `softmaxCrossEntropy`.
public func crossEntropy(logits: Tensor, labels: Tensor, labelSmoothing epsilon: Double = 0,
                         file: String = #fileID, line: Int = #line) -> Tensor {
    let hard = softmaxCrossEntropy(logits, labels: labels, file: file, line: line)
    guard epsilon > 0 else { return hard }
    if epsilon > 1 { logits.builder.record("cross_entropy", "label smoothing must be in [0, 1], found \(epsilon)", file, line) }
    let uniform = -logSoftmax(logits, axis: 1, file: file, line: line).mean(axis: 1, file: file, line: line)
    return (1 - epsilon) * hard + epsilon * uniform
}
