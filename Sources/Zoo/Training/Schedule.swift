import Foundation
import KilnGraph

/// A learning-rate schedule: the rate of every optimizer step as a function of the step number,
/// fed to the training program's `lr` input per step (no recompilation).
///
/// Text forms for `--schedule` (epochs count from 0, steps from 0):
/// - `constant`
/// - `step:F` or `step:F:E` — multiply by F every E epochs (default 1): "annealed"
/// - `cosine` or `cosine:M` — half a cosine from the base rate to M × base over all steps
///   (Loshchilov & Hutter 2017, one cycle, no restarts)
/// - `warmup:N+S` — rise linearly from base/N to base over the first N steps, then schedule S
///   counted from the end of the warm-up (Goyal et al. 2017); `warmup:N` means `warmup:N+constant`
/// - `onecycle` or `onecycle:P` — PyTorch's OneCycleLR with max = base: cosine rise from base/25
///   over the first P (0.3) of the steps, then cosine fall to base/(25·10⁴) (Smith & Topin 2017)
public indirect enum LearningRateSchedule: Sendable, Equatable, CustomStringConvertible {
    case constant
    case step(factor: Double, everyEpochs: Int)
    case cosine(minimumFactor: Double)
    case warmup(steps: Int, then: LearningRateSchedule)
    case oneCycle(rampFraction: Double)

    /// The rate at `step` (0-based) of a run of `totalSteps` with `stepsPerEpoch` steps per epoch.
    public func rate(base: Double, step: Int, stepsPerEpoch: Int, totalSteps: Int) -> Double {
        switch self {
        case .constant:
            return base
        case let .step(factor, every):
            let epoch = step / Swift.max(stepsPerEpoch, 1)
            return base * Foundation.pow(factor, Double(epoch / Swift.max(every, 1)))
        case let .cosine(minimum):
            let progress = Swift.min(Double(step) / Double(Swift.max(totalSteps - 1, 1)), 1)
            return base * (minimum + (1 - minimum) * 0.5 * (1 + Foundation.cos(Double.pi * progress)))
        case let .warmup(steps, then):
            if step < steps { return base * Double(step + 1) / Double(steps) }
            return then.rate(base: base, step: step - steps, stepsPerEpoch: stepsPerEpoch, totalSteps: Swift.max(totalSteps - steps, 1))
        case let .oneCycle(fraction):
            // torch.optim.lr_scheduler.OneCycleLR (anneal_strategy "cos", div_factor 25, final_div_factor 1e4).
            let initial = base / 25, final = initial / 1e4
            let rampEnd = fraction * Double(totalSteps) - 1
            func cosineAnneal(_ from: Double, _ to: Double, _ t: Double) -> Double { to + (from - to) / 2 * (1 + Foundation.cos(Double.pi * t)) }
            let s = Double(step)
            if s <= rampEnd { return cosineAnneal(initial, base, rampEnd > 0 ? s / rampEnd : 1) }
            let fallLength = Double(totalSteps - 1) - rampEnd
            return cosineAnneal(base, final, fallLength > 0 ? Swift.min((s - rampEnd) / fallLength, 1) : 1)
        }
    }

    public var description: String {
        func number(_ v: Double) -> String { v == v.rounded() && Swift.abs(v) < 1e9 ? String(Int(v)) : String(v) }
        switch self {
        case .constant: return "constant"
        case let .step(factor, every): return "step:\(number(factor))" + (every == 1 ? "" : ":\(every)")
        case let .cosine(minimum): return minimum == 0 ? "cosine" : "cosine:\(number(minimum))"
        case let .warmup(steps, then): return "warmup:\(steps)" + (then == .constant ? "" : "+\(then)")
        case let .oneCycle(fraction): return fraction == 0.3 ? "onecycle" : "onecycle:\(number(fraction))"
        }
    }

    /// Parses the text forms listed on the type; a bad form is a `KilnError.argument` naming it.
    public static func parse(_ text: String) throws -> LearningRateSchedule {
        func fail(_ why: String) -> KilnError {
            KilnError.argument("--schedule \"\(excerpt(text))\": \(why) (forms: constant, step:F[:E], cosine[:M], warmup:N[+S], onecycle[:P])")
        }
        guard text.utf8.count <= 200 else { throw fail("longer than any schedule") }
        if text.hasPrefix("warmup:") {
            let rest = text.dropFirst("warmup:".count)
            let parts = rest.split(separator: "+", maxSplits: 1).map(String.init)
            guard let steps = Int(parts.first ?? ""), steps > 0 else { throw fail("warm-up needs a positive step count") }
            // One warm-up, then a schedule that has none (a chain of warm-ups is not a schedule).
            if parts.count > 1 && parts[1].hasPrefix("warmup:") { throw fail("a warm-up is followed by another schedule, not another warm-up") }
            return .warmup(steps: steps, then: parts.count > 1 ? try parse(parts[1]) : .constant)
        }
        let fields = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        func value(_ i: Int, default d: Double, _ valid: (Double) -> Bool, _ what: String) throws -> Double {
            guard i < fields.count else { return d }
            guard let v = Double(fields[i]), v.isFinite, valid(v) else { throw fail("\(what), found \"\(excerpt(fields[i]))\"") }
            return v
        }
        switch fields[0] {
        case "constant" where fields.count == 1: return .constant
        case "step", "annealed":
            guard fields.count >= 2, fields.count <= 3 else { throw fail("step needs a factor") }
            let factor = try value(1, default: 1, { $0 > 0 }, "the factor must be positive")
            let every = try value(2, default: 1, { $0 >= 1 && $0 == $0.rounded() }, "the epoch interval must be a positive integer")
            return .step(factor: factor, everyEpochs: Int(every))
        case "cosine" where fields.count <= 2:
            return .cosine(minimumFactor: try value(1, default: 0, { $0 >= 0 && $0 <= 1 }, "the minimum factor must be in [0, 1]"))
        case "onecycle" where fields.count <= 2:
            return .oneCycle(rampFraction: try value(1, default: 0.3, { $0 > 0 && $0 < 1 }, "the ramp fraction must be in (0, 1)"))
        default:
            throw fail("unknown schedule")
        }
    }
}
