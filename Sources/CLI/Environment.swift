import Foundation
import Kiln

/// The environment variables the command-line tool honours. The library reads none: they are
/// mapped here, at the edge, onto options passed down.
///
/// - `KILN_THREADS`: the default of `--threads`.
/// - `KILN_PROFILE=1`: time every kernel of every compiled program and print the costliest to
///   standard error when the program is released (`RunOptions.profile`); `KILN_PROFILE=N`
///   (N > 1) lists the N costliest instead of 12 (`RunOptions.profileLines`).
/// - `KILN_WINOGRAD=0` (`kiln bench` only): 3×3 stride-1 convolutions skip Winograd and take
///   im2col + GEMM (`Conv2DKernel.winogradEnabled`), for before/after comparisons;
///   `KILN_WINOGRAD=2` or `4` forces F(2×2, 3×3) or F(4×4, 3×3) (`Conv2DKernel.winogradTile`).
/// - `KILN_WINOGRAD_FILTER=0` (`kiln bench` only): the backward-filter pass of those convolutions
///   skips Winograd (`Conv2DKernel.winogradFilterEnabled`); `2` or `4` forces F(3×3, 2×2) or
///   F(3×3, 4×4) (`Conv2DKernel.winogradFilterTile`).
/// - `FMNIST_DIR`: the default of `--data-dir` (where Fashion-MNIST's IDX files are).
/// - `KILN_MPI_TIMEOUT`: seconds one MPI collective may wait for the other ranks (default 600).
/// - MPI launchers' own variables (`OMPI_COMM_WORLD_SIZE`, `PMIX_RANK`, …): `kiln train` under `mpirun` trains data-parallel.
enum Environment {
    static var variables: [String: String] { ProcessInfo.processInfo.environment }

    /// `KILN_THREADS` when it is a positive integer, else every core.
    static var threads: Int {
        if let text = variables["KILN_THREADS"], let n = Int(text), n > 0 { return Swift.min(n, Parallel.maximumThreads) }
        return defaultThreadCount()
    }

    /// Whether `KILN_PROFILE` asks for kernel timings.
    static var profile: Bool { variables["KILN_PROFILE"].map { !$0.isEmpty && $0 != "0" } ?? false }

    /// The kernel groups a profile lists: `KILN_PROFILE` when it is an integer above 1, else 12.
    static var profileLines: Int {
        guard let text = variables["KILN_PROFILE"], let n = Int(text), n > 1 else { return 12 }
        return Swift.min(n, 10_000)
    }

    /// A Winograd switch (`KILN_WINOGRAD`, `KILN_WINOGRAD_FILTER`): `0` turns the path off, `2` or
    /// `4` forces that tile; anything else (or unset) leaves it on, its tile chosen per shape (0).
    static func winograd(_ name: String) -> (off: Bool, tile: Int) {
        let text = variables[name] ?? ""
        return (text == "0", ["2": 2, "4": 4][text] ?? 0)
    }

    /// `--data-dir` when given, else `FMNIST_DIR` when set, else nil (the Debian package's directory).
    static func dataDirectory(_ option: String?) -> String? {
        if let option { return option }
        if let dir = variables["FMNIST_DIR"], !dir.isEmpty { return dir }
        return nil
    }

    /// Whether `mpirun` (or another MPI launcher) started this process.
    static var launchedByMPI: Bool { MPIWorld.launchedByMPI(environment: variables) }

    /// `KILN_MPI_TIMEOUT` when it is a positive number, else 600 s.
    static var mpiTimeout: Double {
        if let text = variables["KILN_MPI_TIMEOUT"], let s = Double(text), s > 0, s.isFinite { return s }
        return 600
    }

    /// Ranks of this MPI job on this machine (Open MPI's `OMPI_COMM_WORLD_LOCAL_SIZE`), 1 when unknown.
    static var localRanks: Int { variables["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init).map { Swift.max($0, 1) } ?? 1 }
}
