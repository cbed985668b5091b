import KilnGraph

/// Batch normalisation (Ioffe & Szegedy 2015) with PyTorch's conventions.
///
/// On [N, F] it normalises each feature (BatchNorm1d); on [N, C, H, W] each channel over N, H
/// and W (BatchNorm2d). Parameters `NAME.weight` (γ, ones) and `NAME.bias` (β, zeros); state
/// `NAME.running_mean` (zeros) and `NAME.running_var` (ones).
///
/// Training mode normalises with the batch's mean and biased variance and appends graph updates
/// running ← (1 − momentum)·running + momentum·batch statistic, the variance term unbiased
/// (× n/(n − 1), n values per channel), as `torch.nn.BatchNorm*d` does. Evaluation mode
/// normalises with the running statistics and updates nothing. Parameters and state take x's dtype.
extension GraphBuilder {
    public func batchNorm(_ x: Tensor, name: String, training: Bool, momentum: Double = 0.1, epsilon: Double = 1e-5,
                          file: String = #fileID, line: Int = #line) -> Tensor {
        let axes: [Int], statisticShape: Shape
        switch x.rank {
        case 2: (axes, statisticShape) = ([0], [x.shape[1]])
        case 4: (axes, statisticShape) = ([0, 2, 3], [x.shape[1], 1, 1])
        default:
            record("batch_norm \"\(name)\"", "expects [N, features] or [N, C, H, W], found \(x.shape)", file, line)
            return x
        }
        let features = x.shape[1]
        let valuesPerFeature = x.shape.count / Swift.max(features, 1)
        let weight = parameter("\(name).weight", [features], dtype: x.dtype, initializer: .ones, file: file, line: line)
        let bias = parameter("\(name).bias", [features], dtype: x.dtype, initializer: .zeros, file: file, line: line)
        let runningMean = state("\(name).running_mean", [features], dtype: x.dtype, initializer: .zeros, file: file, line: line)
        let runningVariance = state("\(name).running_var", [features], dtype: x.dtype, initializer: .ones, file: file, line: line)

        // y = (x − K) · s + (β − (mean − K) · s) with s = γ / √(var + ε): γ folds into one
        // per-channel scale, so no normalised x̂ of x's size is ever computed, and each element
        // costs one multiply-add after the subtraction.
        //
        // In training, K is the mean of a sample of the batch (the first image, or the first 64
        // rows), held constant to differentiation (`detached`): the batch's mean and variance then
        // come from one pass over d = x − K (var = E[d²] − E[d]², clamped at 0), and the backward
        // pass needs d only, never a gradient through the mean. That is two passes over x's size
        // each way where x − mean(x) took three forward and four backward (CHANGELOG, tenth
        // sitting). K lies within about a standard deviation of the mean, so the subtraction does
        // not cancel: float32's rounding of E[d²] costs var a relative error of about
        // 6·10⁻⁸·((mean − K)/std)², whatever the mean.
        let centered: Tensor, offset: Tensor?, deviation: Tensor
        if training {
            if valuesPerFeature < 2 {
                record("batch_norm \"\(name)\"", "training needs more than one value per channel, found \(x.shape)", file, line)
                return x
            }
            let sample = x.rank == 4 ? x.slice(axis: 0, 0..<1, file: file, line: line)
                : x.slice(axis: 0, 0..<Swift.min(x.shape[0], 64), file: file, line: line)
            let sampleMean = sample.mean(axes: axes, file: file, line: line).detached(file: file, line: line)
            centered = x.subtracting(sampleMean.reshaped(statisticShape), file: file, line: line)
            let shiftedMean = centered.mean(axes: axes, file: file, line: line)
            let meanSquare = square(centered, file: file, line: line).mean(axes: axes, file: file, line: line)
            let variance = relu(meanSquare - square(shiftedMean, file: file, line: line), file: file, line: line)
            deviation = sqrt(variance.reshaped(statisticShape) + epsilon, file: file, line: line)
            offset = shiftedMean.reshaped(statisticShape)
            let mean = sampleMean + shiftedMean
            let unbiased = Double(valuesPerFeature) / Double(valuesPerFeature - 1)
            update(runningMean, to: (1 - momentum) * runningMean + momentum * mean, file: file, line: line)
            update(runningVariance, to: (1 - momentum) * runningVariance + (momentum * unbiased) * variance,
                   file: file, line: line)
        } else {
            centered = x.subtracting(runningMean.reshaped(statisticShape), file: file, line: line)
            offset = nil
            deviation = sqrt(runningVariance.reshaped(statisticShape) + epsilon, file: file, line: line)
        }
        let scale = weight.reshaped(statisticShape).divided(by: deviation, file: file, line: line)
        let shift = offset.map { bias.reshaped(statisticShape) - $0 * scale } ?? bias.reshaped(statisticShape)
        return centered.multiplied(by: scale, file: file, line: line).adding(shift, file: file, line: line)
    }
}
