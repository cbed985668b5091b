#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnBench
import KilnCommandLine
import KilnGraph
import KilnRuntime

// `kiln-gemm [gemm] [--threads T] [--seed S] [--jsonl FILE] [--json] [--shape MxNxK[:at|:bt|:atbt]] [--cold] [--no-peak]`
//
// The `gemm` benchmark workload of `kiln bench gemm`, the same code (`GEMMWorkload`), in a tool
// that links Kiln's core alone (KilnGraph, KilnRuntime) and the Swift runtime statically: no
// Foundation, as a program that multiplies matrices with Kiln's core would be. `bench/compare.sh`
// runs it for the GEMM row, so the row's peak RSS is the core's plus the operands; `kiln bench
// gemm` gives the same product from the full command-line tool (about 16 MB more, Foundation's).

let usage = "usage: kiln-gemm [gemm] [--threads T] [--seed S] [--jsonl FILE] [--json] [--shape MxNxK[:at|:bt|:atbt]] [--cold] [--no-peak]"

func main() -> Int32 {
    var words = Array(CommandLine.arguments.dropFirst())
    if words.contains("--help") || words.contains("-h") {
        print(usage)
        return 0
    }
    if words.first == "bench" { words.removeFirst() }
    if words.first == "gemm" { words.removeFirst() }
    do {
        let args = try Arguments(words, options: ["--threads", "--seed", "--jsonl", "--shape"],
                                 flags: ["--json", "--no-peak", "--cold"], command: "kiln-gemm")
        guard args.positionals.isEmpty else {
            throw KilnError.argument("kiln-gemm runs the gemm workload only (unknown workload \"\(excerpt(args.positionals[0]))\")")
        }
        var settings = GEMMWorkload.Settings(
            threads: try args.int("--threads", default: Swift.min(2, Parallel.maximumThreads), in: 1...Parallel.maximumThreads),
            seed: try args.seed(), process: "kiln-gemm (Kiln's core, no Foundation)")
        if let shape = args.options["--shape"] { try settings.setShape(shape) }
        settings.coldCaches = args.flags.contains("--cold")
        settings.measurePeak = !args.flags.contains("--no-peak")
        let record = GEMMWorkload.run(settings)
        print(record.summaryLine())
        if let path = args.options["--jsonl"] { try record.append(toJSONL: path) }
        if args.flags.contains("--json") { print(record.json()) }
        return 0
    } catch {
        Platform.writeToStandardError("error: \(error)\n\(usage)\n")
        return 1
    }
}

exit(main())
