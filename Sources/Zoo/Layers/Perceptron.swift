import KilnGraph

/// The multi-class perceptron criterion per example, max_c s_c − s_y, for `logits` [N, C] and
/// int32 `labels` [N]: zero when the label's score is the largest, and its gradient with
/// respect to the scores is e_ŷ − e_y (ŷ the arg max), so SGD with learning rate 1 on a linear
/// model is Rosenblatt's update w_y += x, w_ŷ −= x. Tied maxima share the gradient equally (as
/// `max` does), so start from weights that break ties (e.g. tiny random ones) for the classic rule.
public func perceptronLoss(logits: Tensor, labels: Tensor, file: String = #fileID, line: Int = #line) -> Tensor {
    let classes = logits.shape[1]
    let target = oneHot(labels, depth: classes, dtype: logits.dtype, file: file, line: line)
    let correct = logits.multiplied(by: target, file: file, line: line).sum(axis: 1, file: file, line: line)
    return logits.max(axis: 1, file: file, line: line).subtracting(correct, file: file, line: line)
}
