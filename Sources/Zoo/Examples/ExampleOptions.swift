import Foundation
import KilnGraph

/// The command line every course example takes: `[--out DIR] [--quick] [--full] [--data DIR] [--seed N]`.
///
/// `--out` is where figures go (default `out/NAME/`, created on first use); `--quick` asks for a
/// run of a few seconds (what CI runs); `--full` for the course's complete settings where the
/// default is reduced; `--data` for another data set directory. Unknown flags are errors.
public struct ExampleOptions: Sendable {
    /// The example's name (the executable's).
    public var name: String
    /// Directory for plots (SVG) and images (PNG).
    public var outputDirectory: String
    /// A run of a few seconds: fewer examples, epochs and settings.
    public var quick: Bool
    /// The course's complete settings where the default run is reduced.
    public var full: Bool
    /// A data set directory (`--data`), when given.
    public var dataDirectory: String?
    /// Seed for data order and initialisation.
    public var seed: UInt64

    /// Parses `arguments` (the process's by default, without the program name).
    public init(name: String, arguments: [String]) throws {
        self.name = name
        outputDirectory = "out/\(name)"
        quick = false; full = false; dataDirectory = nil; seed = 0
        var rest = arguments[...]
        func value(_ flag: String) throws -> String {
            guard let v = rest.popFirst(), !v.hasPrefix("--") else { throw KilnError.argument("\(flag) needs a value") }
            return v
        }
        while let flag = rest.popFirst() {
            switch flag {
            case "--out": outputDirectory = try value(flag)
            case "--quick": quick = true
            case "--full": full = true
            case "--data": dataDirectory = try value(flag)
            case "--seed":
                let text = try value(flag)
                guard let s = UInt64(text) else { throw KilnError.argument("--seed takes a non-negative integer, found \"\(text)\"") }
                seed = s
            default: throw KilnError.argument("unknown option \"\(flag)\"; \(name) takes --out DIR, --quick, --full, --data DIR, --seed N")
            }
        }
        if quick && full { throw KilnError.argument("--quick and --full exclude each other") }
    }

    /// The options of this process, or exits with status 2 and the error on a bad command line
    /// (`--help` prints the usage and exits 0). Standard output becomes line-buffered.
    public static func parseOrExit(name: String, summary: String) -> ExampleOptions {
        let arguments = Array(CommandLine.arguments.dropFirst())
        setvbuf(stdout, nil, _IOLBF, 0)           // progress lines show at once in logs and pipes
        if arguments.contains("--help") || arguments.contains("-h") {
            print("\(name): \(summary)\nusage: swift run -c release \(name) [--out DIR] [--quick] [--full] [--data DIR] [--seed N]")
            exit(0)
        }
        do { return try ExampleOptions(name: name, arguments: arguments) } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            exit(2)
        }
    }

    /// The path of `file` in the output directory, creating the directory if needed.
    public func path(_ file: String) throws -> String {
        try FileManager.default.createDirectory(atPath: outputDirectory, withIntermediateDirectories: true)
        return (outputDirectory as NSString).appendingPathComponent(file)
    }
}

/// A plain-text table with right-aligned columns after the first, for an example's results.
public struct TextTable: Sendable, CustomStringConvertible {
    public var header: [String]
    public var rows: [[String]] = []

    public init(_ header: [String]) { self.header = header }

    /// Appends a row; it must have one cell per column.
    public mutating func add(_ cells: [String]) {
        precondition(cells.count == header.count, "\(cells.count) cells for \(header.count) columns")
        rows.append(cells)
    }

    public var description: String {
        let all = [header] + rows
        let widths = header.indices.map { c in all.map { $0[c].count }.max()! }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { c, cell in
                let pad = String(repeating: " ", count: widths[c] - cell.count)
                return c == 0 ? cell + pad : pad + cell
            }.joined(separator: "  ")
        }
        let rule = widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")
        return ([line(header), rule] + rows.map(line)).joined(separator: "\n")
    }
}

/// `value` with `digits` decimals (`String(format: "%.*f")`), for table cells.
public func fixed(_ value: Double, _ digits: Int = 4) -> String { String(format: "%.\(digits)f", value) }

/// The three splits an example trains, tunes and reports on.
public struct ExampleData: Sendable {
    public var train: ImageDataset
    public var validation: ImageDataset
    public var test: ImageDataset
    /// Where the IDX files were read.
    public var directory: String
}

extension ExampleOptions {
    /// An IDX image set in MNIST's file layout (`train-*` and `t10k-*`, gzipped or not): the
    /// `--data` directory, else Fashion-MNIST. The last `validation` training images are held out
    /// for validation; `trainLimit` and `testLimit` keep only the first images of each split
    /// (quick runs).
    public func loadData(validation: Int = 10_000, trainLimit: Int? = nil, testLimit: Int? = nil) throws -> ExampleData {
        let directory = dataDirectory ?? FashionMNIST.defaultDirectory
        let all = try FashionMNIST.load(split: .train, directory: directory)
        var test = try FashionMNIST.load(split: .test, directory: directory)
        guard validation < all.count else {
            throw KilnError.argument("\(directory): \(all.count) training images cannot hold \(validation) for validation")
        }
        let trainCount = Swift.min(trainLimit ?? Int.max, all.count - validation)
        let train = all.subset(Array(0..<trainCount))
        let held = all.subset(Array((all.count - validation)..<all.count))
        if let testLimit, testLimit < test.count { test = test.subset(Array(0..<testLimit)) }
        return ExampleData(train: train, validation: held, test: test, directory: directory)
    }
}
