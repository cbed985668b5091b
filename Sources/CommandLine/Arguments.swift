import KilnGraph

/// Hand-rolled argument parsing: positionals, `--name value` options and `--flag` switches.
/// Anything not declared by the command is an error. Shared by `kiln` and `kiln-gemm`, and
/// Foundation-free like Kiln's core.
public struct Arguments {
    public var positionals: [String] = []
    public var options: [String: String] = [:]
    public var flags: Set<String> = []

    public init(_ words: [String], options allowedOptions: Set<String>, flags allowedFlags: Set<String>, command: String) throws {
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
    public func int(_ name: String, default value: Int, in range: ClosedRange<Int>) throws -> Int {
        guard let text = options[name] else { return value }
        guard let n = Int(text), range.contains(n) else {
            throw KilnError.argument("\(name) needs an integer from \(range.lowerBound) to \(range.upperBound), found \"\(excerpt(text))\"")
        }
        return n
    }

    /// The number value of option `name` (or `value` when absent), which must lie in `range`.
    public func double(_ name: String, default value: Double, in range: NumberRange) throws -> Double {
        guard let text = options[name] else { return value }
        guard let x = Double(text), range.contains(x) else {
            throw KilnError.argument("\(name) needs a number \(range), found \"\(excerpt(text))\"")
        }
        return x
    }

    public func seed() throws -> UInt64 {
        guard let text = options["--seed"] else { return 0 }
        guard let s = UInt64(text) else {
            throw KilnError.argument("--seed needs an integer from 0 to \(UInt64.max), found \"\(excerpt(text))\"")
        }
        return s
    }
}

/// A range of real numbers whose ends may be open, with its wording for messages.
public struct NumberRange: CustomStringConvertible {
    public var lower: Double, lowerIncluded: Bool
    public var upper: Double, upperIncluded: Bool

    public init(lower: Double, lowerIncluded: Bool, upper: Double, upperIncluded: Bool) {
        self.lower = lower; self.lowerIncluded = lowerIncluded; self.upper = upper; self.upperIncluded = upperIncluded
    }

    public static func closed(_ lower: Double, _ upper: Double) -> NumberRange { NumberRange(lower: lower, lowerIncluded: true, upper: upper, upperIncluded: true) }
    /// lower < x <= upper.
    public static func aboveUpTo(_ lower: Double, _ upper: Double) -> NumberRange { NumberRange(lower: lower, lowerIncluded: false, upper: upper, upperIncluded: true) }
    /// lower <= x < upper.
    public static func fromBelow(_ lower: Double, _ upper: Double) -> NumberRange { NumberRange(lower: lower, lowerIncluded: true, upper: upper, upperIncluded: false) }

    public func contains(_ x: Double) -> Bool {
        x.isFinite && (lowerIncluded ? x >= lower : x > lower) && (upperIncluded ? x <= upper : x < upper)
    }

    public var description: String {
        (lowerIncluded ? "of at least \(Self.text(lower))" : "greater than \(Self.text(lower))")
            + (upperIncluded ? " and at most \(Self.text(upper))" : " and below \(Self.text(upper))")
    }

    private static func text(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : String(x) }
}

