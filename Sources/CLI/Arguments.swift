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
                    throw KilnError.argument("\(command): unknown option \(name) (known: \(known))")
                }
            } else {
                positionals.append(word)
            }
            i += 1
        }
    }

    func int(_ name: String, default value: Int) throws -> Int {
        guard let text = options[name] else { return value }
        guard let n = Int(text), n > 0 else { throw KilnError.argument("\(name) needs a positive integer, found \"\(text)\"") }
        return n
    }

    func double(_ name: String, default value: Double) throws -> Double {
        guard let text = options[name] else { return value }
        guard let x = Double(text), x.isFinite, x >= 0 else { throw KilnError.argument("\(name) needs a non-negative number, found \"\(text)\"") }
        return x
    }

    func seed() throws -> UInt64 {
        guard let text = options["--seed"] else { return 0 }
        guard let s = UInt64(text) else { throw KilnError.argument("--seed needs a non-negative integer, found \"\(text)\"") }
        return s
    }
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

/// Serialises a flat JSON object with keys in the given order.
func jsonObject(_ pairs: [(String, Any)]) -> String {
    func encode(_ value: Any) -> String {
        switch value {
        case let s as String:
            var out = "\""
            for scalar in s.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                default: out += scalar.value < 0x20 ? String(format: "\\u%04x", scalar.value) : String(scalar)
                }
            }
            return out + "\""
        case let b as Bool: return b ? "true" : "false"
        case let i as Int: return String(i)
        case let d as Double: return d.isFinite ? String(d) : "null"
        case let f as Float: return f.isFinite ? String(Double(f)) : "null"
        case let o as [(String, Any)]: return jsonObject(o)
        case let a as [Any]: return "[" + a.map(encode).joined(separator: ", ") + "]"
        default: return "null"
        }
    }
    return "{" + pairs.map { "\(encode($0.0)): \(encode($0.1))" }.joined(separator: ", ") + "}"
}
