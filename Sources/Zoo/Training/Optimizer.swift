import Foundation
import KilnGraph

/// An optimizer as update ops in the training graph: one compiled step does forward,
/// backward and update. The learning rate is a scalar graph input (`lr`) so schedules need
/// no recompilation. Formulas follow PyTorch's `torch.optim`.
public enum Optimizer: Sendable, Equatable, CustomStringConvertible {
    /// v = μ·v + g (+ wd·p in g); p −= lr·v (Nesterov: p −= lr·(g + μ·v)). μ = 0 is plain SGD.
    case sgd(momentum: Double = 0, nesterov: Bool = false, weightDecay: Double = 0)
    /// Adam with bias correction; `decoupledWeightDecay` gives AdamW.
    case adam(beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-8, weightDecay: Double = 0,
              decoupledWeightDecay: Bool = false)
    /// s += g²; p −= lr·g / (√s + ε).
    case adagrad(epsilon: Double = 1e-10, weightDecay: Double = 0)

    public var description: String {
        switch self {
        case let .sgd(m, nesterov, wd): return m == 0 ? "sgd" + (wd > 0 ? " wd=\(wd)" : "") : "sgd momentum=\(m)" + (nesterov ? " nesterov" : "") + (wd > 0 ? " wd=\(wd)" : "")
        case let .adam(b1, b2, eps, wd, decoupled): return (decoupled ? "adamw" : "adam") + " betas=(\(b1), \(b2)) eps=\(eps)" + (wd > 0 ? " wd=\(wd)" : "")
        case let .adagrad(eps, wd): return "adagrad eps=\(eps)" + (wd > 0 ? " wd=\(wd)" : "")
        }
    }

    /// Appends the update of every parameter: state tensors named `PARAM.momentum`, `PARAM.adam_m`, … and,
    /// for Adam, a step counter `counterName` (two optimizers sharing one store, such as a GAN's,
    /// need different counters).
    public func appendUpdates(to g: GraphBuilder, parameters: [Tensor], gradients: [Tensor], learningRate lr: Tensor,
                              counterName: String = "optimizer.step") {
        var stepCount: Tensor?
        if case .adam = self {
            let step = g.state(counterName, .scalar)
            let next = step + 1
            g.update(step, to: next)
            stepCount = next
        }
        for (p, gradient) in zip(parameters, gradients) {
            let name = g.graph.leafName(p.id) ?? "p\(p.id)"
            var grad = gradient
            switch self {
            case let .sgd(momentum, nesterov, weightDecay):
                if weightDecay > 0 { grad = grad + weightDecay * p }
                if momentum == 0 {
                    g.update(p, to: p - lr * grad)
                } else {
                    let v = g.state("\(name).momentum", p.shape)
                    let newV = momentum * v + grad
                    g.update(v, to: newV)
                    g.update(p, to: p - lr * (nesterov ? grad + momentum * newV : newV))
                }
            case let .adam(beta1, beta2, epsilon, weightDecay, decoupled):
                var decayed = p
                if weightDecay > 0 {
                    if decoupled { decayed = p - lr * weightDecay * p } else { grad = grad + weightDecay * p }
                }
                // m′ = m + (1 − β₁)(g − m), v′ = β₂v + (1 − β₂)g², p′ = p − (lr/c₁)·m′ / (√v′·(1/√c₂) + ε),
                // as three `adamUpdate` ops the compiler fuses into one pass (scalars computed once per step).
                let m = g.state("\(name).adam_m", p.shape), v = g.state("\(name).adam_v", p.shape)
                let newM = adamUpdate(.firstMoment, [m, grad, g.constant(1 - beta1)])
                let newV = adamUpdate(.secondMoment, [v, grad, g.constant(beta2), g.constant(1 - beta2)])
                let t = stepCount!
                let correction1 = 1 - exp(t * Foundation.log(beta1))
                let correction2 = 1 - exp(t * Foundation.log(beta2))
                g.update(m, to: newM)
                g.update(v, to: newV)
                g.update(p, to: adamUpdate(.parameter, [decayed, newM, newV, lr / correction1, 1 / sqrt(correction2),
                                                        g.constant(epsilon)]))
            case let .adagrad(epsilon, weightDecay):
                if weightDecay > 0 { grad = grad + weightDecay * p }
                let s = g.state("\(name).adagrad_sum", p.shape)
                let newS = s + square(grad)
                g.update(s, to: newS)
                g.update(p, to: p - lr * grad / (sqrt(newS) + epsilon))
            }
        }
    }
}
