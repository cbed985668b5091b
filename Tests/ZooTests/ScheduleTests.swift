import Foundation
import Testing
@testable import KilnZoo
import KilnGraph

@Suite("Learning-rate schedules")
struct ScheduleTests {
    func rates(_ schedule: LearningRateSchedule, base: Double = 0.1, stepsPerEpoch: Int = 10, total: Int = 100, at steps: [Int]) -> [Double] {
        steps.map { schedule.rate(base: base, step: $0, stepsPerEpoch: stepsPerEpoch, totalSteps: total) }
    }
    func close(_ a: [Double], _ b: [Double]) -> Bool { zip(a, b).allSatisfy { abs($0 - $1) <= 1e-12 * max(1, abs($1)) } && a.count == b.count }

    @Test("constant, step and cosine give their formulas' values at given steps")
    func simpleSchedules() {
        #expect(close(rates(.constant, at: [0, 55, 99]), [0.1, 0.1, 0.1]))
        // × 0.5 per epoch of 10 steps: epochs 0, 1, 3.
        #expect(close(rates(.step(factor: 0.5, everyEpochs: 1), at: [0, 9, 10, 35]), [0.1, 0.1, 0.05, 0.0125]))
        #expect(close(rates(.step(factor: 0.1, everyEpochs: 2), at: [19, 20, 45]), [0.1, 0.01, 0.001]))
        // Half a cosine over steps 0…99: the middle of the run (step 49.5) is the mean of the ends.
        #expect(close(rates(.cosine(minimumFactor: 0), at: [0, 99]), [0.1, 0]))
        #expect(close(rates(.cosine(minimumFactor: 0.1), total: 3, at: [1]), [0.1 * (0.1 + 0.9 * 0.5)]))
    }

    @Test("linear warm-up rises to the base rate and then hands over to the next schedule")
    func warmup() {
        #expect(close(rates(.warmup(steps: 4, then: .constant), at: [0, 1, 3, 4, 50]), [0.025, 0.05, 0.1, 0.1, 0.1]))
        // After 10 warm-up steps, cosine runs over the remaining 90 steps (its step 0 = global step 10).
        #expect(close(rates(.warmup(steps: 10, then: .cosine(minimumFactor: 0)), at: [10, 99]), [0.1, 0]))
    }

    @Test("one-cycle matches PyTorch's OneCycleLR (pct_start 0.3, div 25, final div 1e4) at given steps")
    func oneCycle() {
        // torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=100): lr before steps 0, 29, 50, 99
        // = 0.004, 0.1, 0.0775014..., 4e-7 (phase ends at step 29 = 0.3·100 − 1).
        let values = rates(.oneCycle(rampFraction: 0.3), at: [0, 29, 50, 99])
        #expect(abs(values[0] - 0.004) < 1e-12 && abs(values[1] - 0.1) < 1e-12 && abs(values[3] - 4e-7) < 1e-15)
        let t = (50.0 - 29) / (99 - 29)
        #expect(abs(values[2] - (4e-7 + (0.1 - 4e-7) / 2 * (1 + cos(Double.pi * t)))) < 1e-12)
        let rising = rates(.oneCycle(rampFraction: 0.3), at: Array(0...29))
        #expect(zip(rising, rising.dropFirst()).allSatisfy { $0 < $1 })
    }

    @Test("--schedule text parses to the schedule and prints back", arguments: [
        ("constant", LearningRateSchedule.constant),
        ("step:0.5", .step(factor: 0.5, everyEpochs: 1)),
        ("step:0.1:3", .step(factor: 0.1, everyEpochs: 3)),
        ("cosine", .cosine(minimumFactor: 0)),
        ("cosine:0.01", .cosine(minimumFactor: 0.01)),
        ("warmup:500", .warmup(steps: 500, then: .constant)),
        ("warmup:100+cosine", .warmup(steps: 100, then: .cosine(minimumFactor: 0))),
        ("onecycle", .oneCycle(rampFraction: 0.3)),
        ("onecycle:0.25", .oneCycle(rampFraction: 0.25)),
    ])
    func parsing(_ text: String, _ expected: LearningRateSchedule) throws {
        let parsed = try LearningRateSchedule.parse(text)
        #expect(parsed == expected)
        #expect(parsed.description == text)
    }

    @Test("bad --schedule text is an error naming it", arguments: ["linear", "step", "step:-1", "step:0.5:0", "cosine:2", "warmup:0", "warmup:x", "onecycle:1", "constant:3"])
    func badSchedules(_ text: String) {
        #expect(throws: KilnError.self) { try LearningRateSchedule.parse(text) }
        do { _ = try LearningRateSchedule.parse(text) } catch { #expect("\(error)".contains("\"\(text)\"")) }
    }
}

@Suite("Schedules in classifier fits")
struct FitScheduleTests {
    @Test("a step schedule changes what a fit learns; a constant one equals no schedule")
    func fitFollowsSchedule() throws {
        let data = halvesDataset(count: 8)
        func fit(_ schedule: LearningRateSchedule?) throws -> [Float] {
            let trainer = ClassifierTrainer(model: logisticRegression(inputShape: [1, 8, 8], classes: 2), optimizer: .sgd(), seed: 1, threads: 1)
            var options = FitOptions(epochs: 3, batchSize: 4, learningRate: 0.1)
            if let schedule { options.schedule = schedule }
            try trainer.fit(data, options: options)
            return trainer.store["fc.weight"]!.values
        }
        let plain = try fit(nil)
        #expect(try fit(.constant) == plain)
        #expect(try fit(.step(factor: 0.1, everyEpochs: 1)) != plain)
        // Rate 0 after the first epoch: the same as one epoch at the base rate.
        let oneEpoch: [Float] = try {
            let trainer = ClassifierTrainer(model: logisticRegression(inputShape: [1, 8, 8], classes: 2), optimizer: .sgd(), seed: 1, threads: 1)
            try trainer.fit(data, options: FitOptions(epochs: 1, batchSize: 4, learningRate: 0.1))
            return trainer.store["fc.weight"]!.values
        }()
        #expect(try fit(.step(factor: 0, everyEpochs: 1)) == oneEpoch)
    }
}
