import Foundation
import Kiln

/// Hand-rolled argument parsing: positionals, `--name value` options and `--flag` switches.
/// Anything not declared by the command is an error.
struct Arguments {
    var positionals: [String] = []
    var options: [String: String] = [:]
    var flags: Set<String> = []

    init(_ words: [String], options allowedOptions: Set<String>, flags allowedFlags: Set<String>, command: String) throws {
        var i = 0
        while i < words.count {
            let word = words[i]
            if word.hasPrefix("-") && word.count > 1 && Double(word) == nil {
                var name = word
                var inlineValue: String?
                if let eq = word.firstIndex(of: "=") {
                    name = String(word[..<eq])
                    inlineValue = String(word[word.index(after: eq)...])
                }
                if allowedFlags.contains(name) {
                    flags.insert(name)
                } else if allowedOptions.contains(name) {
                    if let inlineValue { options[name] = inlineValue } else {
                        guard i + 1 < words.count else { throw KilnError.argument("\(command): \(name) needs a value") }
                        i += 1
                        options[name] = words[i]
                    }
                } else {
                    let known = (allowedOptions.union(allowedFlags)).sorted().joined(separator: " ")
                    throw KilnError.argument("\(command): unknown option \(excerpt(name)) (known: \(known))")
                }
            } else {
                positionals.append(word)
            }
            i += 1
        }
    }

    /// The integer value of option `name` (or `value` when absent), which must lie in `range`:
    /// every count and size is bounded here, before anything is allocated from it.
    func int(_ name: String, default value: Int, in range: ClosedRange<Int>) throws -> Int {
        guard let text = options[name] else { return value }
        guard let n = Int(text), range.contains(n) else {
            throw KilnError.argument("\(name) needs an integer from \(range.lowerBound) to \(range.upperBound), found \"\(excerpt(text))\"")
        }
        return n
    }

    /// The number value of option `name` (or `value` when absent), which must lie in `range`.
    func double(_ name: String, default value: Double, in range: NumberRange) throws -> Double {
        guard let text = options[name] else { return value }
        guard let x = Double(text), range.contains(x) else {
            throw KilnError.argument("\(name) needs a number \(range), found \"\(excerpt(text))\"")
        }
        return x
    }

    /// `--threads T` (1 to `Limits.threads`; more threads than cores is allowed but gains nothing).
    func threads() throws -> Int {
        try int("--threads", default: Swift.min(Environment.threads, Limits.threads.upperBound), in: Limits.threads)
    }

    func seed() throws -> UInt64 {
        guard let text = options["--seed"] else { return 0 }
        guard let s = UInt64(text) else {
            throw KilnError.argument("--seed needs an integer from 0 to \(UInt64.max), found \"\(excerpt(text))\"")
        }
        return s
    }
}

/// A range of real numbers whose ends may be open, with its wording for messages.
struct NumberRange: CustomStringConvertible {
    var lower: Double, lowerIncluded: Bool
    var upper: Double, upperIncluded: Bool

    static func closed(_ lower: Double, _ upper: Double) -> NumberRange { NumberRange(lower: lower, lowerIncluded: true, upper: upper, upperIncluded: true) }
    /// lower < x <= upper.
    static func aboveUpTo(_ lower: Double, _ upper: Double) -> NumberRange { NumberRange(lower: lower, lowerIncluded: false, upper: upper, upperIncluded: true) }
    /// lower <= x < upper.
    static func fromBelow(_ lower: Double, _ upper: Double) -> NumberRange { NumberRange(lower: lower, lowerIncluded: true, upper: upper, upperIncluded: false) }

    func contains(_ x: Double) -> Bool {
        x.isFinite && (lowerIncluded ? x >= lower : x > lower) && (upperIncluded ? x <= upper : x < upper)
    }

    var description: String {
        (lowerIncluded ? "of at least \(Self.text(lower))" : "greater than \(Self.text(lower))")
            + (upperIncluded ? " and at most \(Self.text(upper))" : " and below \(Self.text(upper))")
    }

    private static func text(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : String(x) }
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

/// At most `limit` characters of `text`, marked when cut (messages never quote a huge value whole).
func excerpt(_ text: String, limit: Int = 40) -> String {
    let scalars = text.unicodeScalars
    var cut = String.UnicodeScalarView()
    // Control characters and line or paragraph separators are escaped: the message stays one line.
    for scalar in scalars.prefix(limit) {
        switch scalar.properties.generalCategory {
        case .control, .lineSeparator, .paragraphSeparator: cut.append(contentsOf: scalar.escaped(asASCII: true).unicodeScalars)
        default: cut.append(scalar)
        }
    }
    guard scalars.count > limit else { return String(cut) }
    return String(cut) + "… (\(text.utf8.count) bytes)"
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

