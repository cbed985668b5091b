import Foundation
import Kiln
import KilnCommandLine

extension Arguments {
    /// `--threads T` (1 to `Limits.threads`; more threads than cores is allowed but gains nothing).
    func threads() throws -> Int {
        try int("--threads", default: Swift.min(Environment.threads, Limits.threads.upperBound), in: Limits.threads)
    }
}

/// The range of every numeric flag, checked before the value is used.
enum Limits {
    /// Threads: more than the cores gains nothing; the cap bounds per-thread buffers.
    static let threads = 1...Parallel.maximumThreads
    static let epochs = 1...100_000
    /// Images per batch (a batch's activations are allocated at once).
    static let batch = 1...65_536
    /// Images to generate or draw per class, and in all (`generate --count`).
    static let perClass = 1...100_000
    static let count = 1...1_000_000
    /// Pixels per image pixel in a grid picture.
    static let scale = 1...16
    static let patience = 1...100_000
    /// Networks in an ensemble (`train --ensemble`).
    static let ensemble = 1...100
    /// Images `make-glyphs` writes per file.
    static let glyphs = 1...1_000_000
    static let learningRate = NumberRange.aboveUpTo(0, 10)
    static let momentum = NumberRange.fromBelow(0, 1)
    static let validationSplit = NumberRange.aboveUpTo(0, 0.9)
    static let temperature = NumberRange.aboveUpTo(0, 10)
    /// Seconds a generative run may train for (`--time-budget`).
    static let timeBudget = NumberRange.aboveUpTo(0, 1_000_000)
}

/// Writes to standard error.
func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Whether standard error is a terminal (progress bars go there only then).
let stderrIsTerminal = isatty(2) != 0

/// A one-line progress bar on standard error, redrawn in place on a terminal.
func showProgress(_ label: String, done: Int, total: Int, detail: String) {
    guard stderrIsTerminal else { return }
    let width = 30
    let filled = total > 0 ? width * done / total : width
    let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
    FileHandle.standardError.write(Data("\r\(label) [\(bar)] \(done)/\(total) \(detail)\u{1B}[K".utf8))
    if done >= total { FileHandle.standardError.write(Data("\n".utf8)) }
}

