/// A mistake in user input: a bad graph, a bad file, a bad argument.
///
/// Messages name the op or file, what was expected, what was found, and where.
public enum KilnError: Error, CustomStringConvertible, Equatable {
    /// A shape or dtype rule was broken while building a graph.
    case shape(op: String, message: String, file: String, line: Int)
    /// The graph breaks an IR invariant (found by the verifier).
    case invalidGraph(String)
    /// A data or model file is missing or malformed.
    case file(path: String, message: String)
    /// A value fed to or requested from a program is wrong.
    case feed(String)
    /// A command-line or API argument is wrong.
    case argument(String)

    /// A file name as messages show it: control characters and line breaks escaped (the message
    /// stays one line), at most 300 characters (a 100 kB argument is not a file name).
    static func quoted(_ path: String) -> String {
        var out = String.UnicodeScalarView()
        for scalar in path.unicodeScalars.prefix(300) {
            switch scalar.properties.generalCategory {
            case .control, .lineSeparator, .paragraphSeparator: out.append(contentsOf: scalar.escaped(asASCII: true).unicodeScalars)
            default: out.append(scalar)
            }
        }
        return path.unicodeScalars.count > 300 ? String(out) + "… (\(path.utf8.count) bytes)" : String(out)
    }

    public var description: String {
        switch self {
        case let .shape(op, message, file, line): return "\(op): \(message) (\(file):\(line))"
        case let .invalidGraph(message): return "invalid graph: \(message)"
        case let .file(path, message): return "\(Self.quoted(path)): \(message)"
        case let .feed(message): return message
        case let .argument(message): return message
        }
    }
}
