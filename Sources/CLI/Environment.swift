import Foundation
import Kiln

/// The environment variables the command-line tool honours. The library reads none: they are
/// mapped here, at the edge, onto options passed down.
///
/// - `KILN_THREADS`: the default of `--threads`.
/// - `KILN_PROFILE=1`: time every kernel of every compiled program and print the costliest to
///   standard error when the program is released (`RunOptions.profile`).
/// - `FMNIST_DIR`: the default of `--data-dir` (where Fashion-MNIST's IDX files are).
enum Environment {
    static var variables: [String: String] { ProcessInfo.processInfo.environment }

    /// `KILN_THREADS` when it is a positive integer, else every core.
    static var threads: Int {
        if let text = variables["KILN_THREADS"], let n = Int(text), n > 0 { return Swift.min(n, Parallel.maximumThreads) }
        return defaultThreadCount()
    }

    /// Whether `KILN_PROFILE` asks for kernel timings.
    static var profile: Bool { variables["KILN_PROFILE"].map { !$0.isEmpty && $0 != "0" } ?? false }

    /// `--data-dir` when given, else `FMNIST_DIR` when set, else nil (the Debian package's directory).
    static func dataDirectory(_ option: String?) -> String? {
        if let option { return option }
        if let dir = variables["FMNIST_DIR"], !dir.isEmpty { return dir }
        return nil
    }
}
