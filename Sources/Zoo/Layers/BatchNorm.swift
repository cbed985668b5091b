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

        // y = (x − mean) · (γ / √(var + ε)) + β: γ folds into one per-channel scale, so no
        // normalised x̂ of x's size is ever computed (nor stored for the backward pass, which
        // reads x − mean instead) and each element costs one multiply-add after the subtraction.
        let centered: Tensor, deviation: Tensor
        if training {
            if valuesPerFeature < 2 {
                record("batch_norm \"\(name)\"", "training needs more than one value per channel, found \(x.shape)", file, line)
                return x
            }
            let mean = x.mean(axes: axes, file: file, line: line)
            centered = x.subtracting(mean.reshaped(statisticShape), file: file, line: line)
            let variance = square(centered, file: file, line: line).mean(axes: axes, file: file, line: line)
            deviation = sqrt(variance.reshaped(statisticShape) + epsilon, file: file, line: line)
            let unbiased = Double(valuesPerFeature) / Double(valuesPerFeature - 1)
            update(runningMean, to: (1 - momentum) * runningMean + momentum * mean, file: file, line: line)
            update(runningVariance, to: (1 - momentum) * runningVariance + (momentum * unbiased) * variance,
                   file: file, line: line)
        } else {
            centered = x.subtracting(runningMean.reshaped(statisticShape), file: file, line: line)
            deviation = sqrt(runningVariance.reshaped(statisticShape) + epsilon, file: file, line: line)
        }
        let scale = weight.reshaped(statisticShape).divided(by: deviation, file: file, line: line)
        return centered.multiplied(by: scale, file: file, line: line).adding(bias.reshaped(statisticShape), file: file, line: line)
    }
}
