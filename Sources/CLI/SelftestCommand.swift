import Foundation
import Kiln
import KilnCommandLine
import KilnBench

/// `kiln selftest --networks N [--seed S] [--threads T] [--runs R]`: makes N random user-style
/// networks (seeds S, S+1, …), compiles each training step through the full pipeline and checks
/// R consecutive `run()` calls with the inputs set once against the reference interpreter and
/// the fed bytes (`DifferentialCheck`). Prints each failure, then one summary line; exits 1 on
/// any failure.
func selftestCommand(_ words: [String]) throws {
    let args = try Arguments(words, options: ["--networks", "--seed", "--threads", "--runs", "--disable", "--model", "--batch", "--image-size"], flags: ["--json"], command: "selftest")
    guard args.positionals.isEmpty else { throw KilnError.argument("selftest: unexpected \(args.positionals[0])") }
    let count = try args.int("--networks", default: 200, in: 1...1_000_000)
    let threads = try args.threads()
    let runs = try args.int("--runs", default: 2, in: 1...100)
    let seed = try args.seed()
    let json = args.flags.contains("--json")
    let start = Date()
    var pipeline = standardPipeline()
    pipeline.disabled = Set((args.options["--disable"] ?? "").split(separator: ",").map(String.init))
    if let name = args.options["--model"] {
        // One zoo classifier's training step (SGD with momentum), checked the same way.
        let batch = try args.int("--batch", default: 3, in: 1...1024)
        let side = try args.int("--image-size", default: 0, in: 0...512)
        var shape = Zoo.defaultInputShape(name)
        if side > 0 { shape = [1, side, side] }
        let model = try Zoo.classifier(name, inputShape: shape, classes: 5)
        let graph = try ClassifierTrainer.trainingGraph(model: model, batch: batch, optimizer: .sgd(momentum: 0.9))
        let network = RandomNetwork(seed: seed, summary: "\(name) \(shape) batch \(batch)", graph: graph,
                                    feeds: RandomNetworks.feeds(for: graph, classes: 5, seed: seed))
        let start = Date()
        do {
            try DifferentialCheck.check(network, threads: threads, runs: runs, pipeline: pipeline)
            print(String(format: "selftest: %@ agrees with the interpreter over %d runs (%.1f s)", network.summary, runs, Date().timeIntervalSince(start)))
        } catch {
            print("FAIL \(error)")
            for step in 0..<runs {
                if let node = try? DifferentialCheck.firstDivergentNode(network, step: step) {
                    print("  first node that differs, unoptimised, in run \(step + 1): \(node)")
                    break
                }
            }
            exit(1)
        }
        return
    }
    let failures = DifferentialCheck.run(count: count, firstSeed: seed, threads: threads, runs: runs, pipeline: pipeline) { done, failed in
        if !json && (done % 50 == 0 || done == count) {
            showProgress("selftest", done: done, total: count, detail: "\(failed) failures")
        }
    }
    let seconds = Date().timeIntervalSince(start)
    if json {
        print(jsonObject([("networks", count), ("first_seed", Int(seed)), ("threads", threads), ("runs", runs),
                          ("failures", failures.count), ("seconds", seconds),
                          ("failed", failures.map { "\($0)" })]))
    } else {
        for failure in failures {
            print("FAIL \(failure)")
            if let mismatch = failure as? DifferentialMismatch,
               let node = try? DifferentialCheck.firstDivergentNode(RandomNetworks.make(seed: mismatch.seed)) {
                print("  first node that differs, unoptimised: \(node)")
            }
        }
        print(String(format: "selftest: %d networks from seed %llu, %d runs each on %d threads: %d failures, %.1f s",
                     count, seed, runs, threads, failures.count, seconds))
    }
    if !failures.isEmpty { exit(1) }
}
