import Foundation
import Testing
import Kiln
@testable import CLI
import KilnCommandLine

/// The message `body` throws, or nil when it throws nothing.
private func errorMessage(_ body: () throws -> Void) -> String? {
    do { try body(); return nil } catch { return "\(error)" }
}

/// A course training file of `count` 28×28 glyphs in a fresh directory.
private func glyphFile() throws -> String {
    let directory = NSTemporaryDirectory() + "kiln-cli-\(getpid())-\(UUID().uuidString)"
    try CourseGlyphs.writeAssignment(directory: directory, train: 24, test: 6, seed: 3)
    return directory + "/" + CourseGlyphs.trainFile
}

/// Every numeric flag is checked against its stated range before anything uses it (issue 16: these
/// values crashed with overflow traps or SIGSEGV, asked for terabytes, or were accepted silently).
@Suite("Command-line flags")
struct ArgumentTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var words: [String]
        var expected: String
        var testDescription: String { excerpt(words.joined(separator: " "), limit: 100) }
    }

    static let cases: [Case] = [
        Case(words: ["train", "glyph-cnn", "--train", "TRAIN", "--threads", "2147483648"],
             expected: "--threads needs an integer from 1 to 256, found \"2147483648\""),
        Case(words: ["train", "glyph-cnn", "--train", "TRAIN", "--threads", "0"], expected: "--threads needs an integer from 1 to 256, found \"0\""),
        Case(words: ["train", "glyph-cnn", "--train", "TRAIN", "--epochs", "2147483648"],
             expected: "--epochs needs an integer from 1 to 100000, found \"2147483648\""),
        Case(words: ["train", "glyph-cnn", "--train", "TRAIN", "--batch", "9223372036854775807"],
             expected: "--batch needs an integer from 1 to 65536, found \"9223372036854775807\""),
        Case(words: ["train", "glyph-cnn", "--train", "TRAIN", "--batch", "99999999999999999999"],
             expected: "--batch needs an integer from 1 to 65536, found \"99999999999999999999\""),
        Case(words: ["train", "glyph-cnn", "--train", "TRAIN", "--lr", "0"], expected: "--lr needs a number greater than 0 and at most 10, found \"0\""),
        Case(words: ["train", "glyph-cnn", "--train", "TRAIN", "--lr", "1e99"], expected: "--lr needs a number greater than 0 and at most 10, found \"1e99\""),
        Case(words: ["train", "glyph-cnn", "--train", "TRAIN", "--lr", "nan"], expected: "--lr needs a number greater than 0 and at most 10, found \"nan\""),
        Case(words: ["train", "glyph-cnn", "--train", "TRAIN", "--momentum", "1.5"],
             expected: "--momentum needs a number of at least 0 and below 1, found \"1.5\""),
        Case(words: ["train", "glyph-cnn", "--train", "TRAIN", "--val-split", "0.999"],
             expected: "--val-split needs a number greater than 0 and at most 0.9, found \"0.999\""),
        Case(words: ["train", "glyph-cnn", "--train", "TRAIN", "--patience", "-3", "--val-split", "0.2"],
             expected: "--patience needs an integer from 1 to 100000, found \"-3\""),
        Case(words: ["train", "vae", "--train", "TRAIN", "-o", "x.safetensors", "--epochs", "2147483648"],
             expected: "--epochs needs an integer from 1 to 100000, found \"2147483648\""),
        Case(words: ["train", "glyph-cnn", "--train", "TRAIN", "--classes", "A,A"],
             expected: "--classes needs two or more distinct names separated by commas (e.g. A,B,C), found \"A,A\""),
        Case(words: ["train", "glyph-cnn", "--train", "TRAIN", "--classes", "A,B", "--epochs", "1"],
             expected: "TRAIN: line 3, column 1: label \"C\" is not one of the classes A, B"),
        Case(words: ["train", "glyph-cnn", "--train", "TRAIN", "--image-size", "9999999999x9999999999"],
             expected: "--image-size needs HxW with integers 1 to 4096 (e.g. 28x28), found \"9999999999x9999999999\""),
        Case(words: ["show", "TRAIN", "--grid", "x.png", "--scale", "1000"], expected: "--scale needs an integer from 1 to 16, found \"1000\""),
        Case(words: ["show", "TRAIN", "--grid", "x.png", "--per-class", "100000000"],
             expected: "--per-class needs an integer from 1 to 1000, found \"100000000\""),
        // Distributed runs (issue 18): refused before MPI starts, so these hold with or without MPI.
        Case(words: ["train", "glyph-cnn", "--train", "TRAIN", "--distributed", "--val-split", "0.2"],
             expected: "train: --val-split is not available in a distributed run (under mpirun or with --distributed); run it in one process"),
        Case(words: ["train", "vae", "--train", "TRAIN", "--distributed"],
             expected: "train vae: a distributed run needs --epochs N (it does not stop on a time budget or on patience)"),
        Case(words: ["train", "cgan", "--train", "TRAIN", "--distributed", "--epochs", "1"],
             expected: "train: cgan is a GAN, which does not train data-parallel yet (its step is two programs with two optimizers, "
                 + "discriminator then generator); distributed training covers the VAEs (vae, cvae, conv-vae, conv-cvae) and ddpm: run cgan in one process (without mpirun)"),
        Case(words: ["dot", "lenet5", "--batch", "4611686018427387904"], expected: "--batch needs an integer from 1 to 65536, found \"4611686018427387904\""),
        Case(words: ["plan", "lenet5", "--batch", "-1"], expected: "--batch needs an integer from 1 to 65536, found \"-1\""),
        Case(words: ["plan", "lenet5", "--disable", "nope"],
             expected: "plan: --disable names unknown pass \"nope\"; known: fold-constants, simplify-algebra, cse, dce, fuse, schedule, plan-memory"),
        Case(words: ["plan", "lenet5", "--why", "x", "3"], expected: "plan: --why needs node ids such as %12 or 12, found \"x\""),
        Case(words: ["plan", "lenet5", "--why", "3"], expected: "plan: --why takes two node ids: --why A B"),
        Case(words: ["dot", "lenet5", "--gan-step", "nope"],
             expected: "--gan-step applies to gan, cgan and dcgan only; lenet5 has one training step (found \"nope\")"),
        Case(words: ["dot", "gan", "--gan-step", "nope"], expected: "--gan-step is discriminator or generator, found \"nope\""),
        Case(words: ["generate", "m.safetensors", "-o", "x.csv", "--threads", "1000"], expected: "--threads needs an integer from 1 to 256, found \"1000\""),
        Case(words: ["make-glyphs", "d", "--test", "10000000000"], expected: "--test needs an integer from 1 to 1000000, found \"10000000000\""),
        Case(words: ["bench", "conv", "--layer", "layer9", "--no-peak"], expected: "bench conv: no layer's name contains \"layer9\""),
        Case(words: ["bench", "gemm", "--layer", "layer1"], expected: "bench: --layer is for the conv workload"),
        Case(words: ["bench", "conv", "--pass", "backward", "--no-peak"],
             expected: "bench conv: --pass takes forward, bwd-data, bwd-filter (got \"backward\")"),
        Case(words: ["bench", "gemm", "--pass", "forward"], expected: "bench: --pass is for the conv workload"),
        Case(words: ["bench", "conv", "--runs", "0", "--no-peak"], expected: "--runs needs an integer from 1 to 100000, found \"0\""),
        Case(words: ["bench", "conv", "--rounds", "0", "--no-peak"], expected: "--rounds needs an integer from 1 to 1000, found \"0\""),
        Case(words: ["bench", "gemm", "--rounds", "2"], expected: "bench: --rounds is for the conv workload"),
        Case(words: ["bench", "conv", "--shape", "64x32x26-o64-k3"], expected: "bench conv: --shape takes resnet18, resnet20 or NxCxHxW-oO-kK[-sS][-pP] (e.g. 64x32x26x26-o64-k3-p1), got \"64x32x26-o64-k3\""),
        Case(words: ["bench", "conv", "--shape", "64x32x26x26-k3"], expected: "bench conv: --shape takes resnet18, resnet20 or NxCxHxW-oO-kK[-sS][-pP] (e.g. 64x32x26x26-o64-k3-p1), got \"64x32x26x26-k3\""),
        Case(words: ["bench", "conv", "--shape", "64x32x26x26-o64-k3-k5"], expected: "bench conv: --shape takes resnet18, resnet20 or NxCxHxW-oO-kK[-sS][-pP] (e.g. 64x32x26x26-o64-k3-p1), got \"64x32x26x26-o64-k3-k5\""),
        Case(words: ["bench", "conv", "--shape", "64x32x26x26-o64-k3-q1"], expected: "bench conv: --shape takes resnet18, resnet20 or NxCxHxW-oO-kK[-sS][-pP] (e.g. 64x32x26x26-o64-k3-p1), got \"64x32x26x26-o64-k3-q1\""),
        Case(words: ["bench", "conv", "--shape", "64x32x2x2-o64-k3"],
             expected: "bench conv: --shape takes resnet18, resnet20 or NxCxHxW-oO-kK[-sS][-pP] (e.g. 64x32x26x26-o64-k3-p1), got \"64x32x2x2-o64-k3\": the kernel must fit the padded image, padding below the kernel, stride at most 15, tensors within 2^28 floats"),
        Case(words: ["bench", "conv", "--shape", "64x32x26x26-o64-k3-p3"],
             expected: "bench conv: --shape takes resnet18, resnet20 or NxCxHxW-oO-kK[-sS][-pP] (e.g. 64x32x26x26-o64-k3-p1), got \"64x32x26x26-o64-k3-p3\": the kernel must fit the padded image, padding below the kernel, stride at most 15, tensors within 2^28 floats"),
        Case(words: ["bench", "gemm", "--shape", "100000x100000x100000"],
             expected: "bench: --shape takes MxNxK with sizes 1 to 16384, optionally :at, :bt or :atbt (got \"100000x100000x100000\")"),
        Case(words: ["train", "glyph-cnn", "--train", "TRAIN", "--seed", "-1"],
             expected: "--seed needs an integer from 0 to 18446744073709551615, found \"-1\""),
        Case(words: ["train", "glyph-cnn", "--train", "TRAIN", "--optimizer", String(repeating: "x", count: 100_000)],
             expected: "unknown optimizer \"" + String(repeating: "x", count: 40) + "… (100000 bytes)\"; known: sgd, adam, adagrad"),
    ]

    @Test("a value outside its range is one error stating the range", arguments: cases)
    func outOfRange(_ test: Case) throws {
        let train = try glyphFile()
        let words = test.words.map { $0 == "TRAIN" ? train : $0 }
        let message = errorMessage { try runCommand(words) }
        #expect(message == test.expected.replacingOccurrences(of: "TRAIN", with: train))
        #expect(message.map { !$0.contains("\n") } ?? false)
    }

    @Test("generate refuses --per-class beyond its range before loading anything")
    func generatePerClass() {
        #expect(errorMessage { try runCommand(["generate", "missing.safetensors", "-o", "x.csv", "--per-class", "100000000"]) }
                == "--per-class needs an integer from 1 to 100000, found \"100000000\"")
    }

    @Test("number ranges read as stated")
    func ranges() {
        #expect(Limits.learningRate.contains(1e-6) && !Limits.learningRate.contains(0) && Limits.learningRate.contains(10))
        #expect(Limits.momentum.contains(0) && !Limits.momentum.contains(1) && !Limits.momentum.contains(.nan))
        #expect(excerpt("short") == "short")
        #expect(excerpt(String(repeating: "é", count: 50)) == String(repeating: "é", count: 40) + "… (100 bytes)")
    }

    // Found by `kiln fuzz --all --seed 2` (flags cases 88, 150, 416, …): a value with a line break
    // made a two-line message.
    @Test("a flag value with line breaks or control characters is quoted on one line, escaped")
    func controlCharactersEscaped() {
        #expect(errorMessage { try runCommand(["dot", "logreg", "--batch", "\n]e"]) }
                == "--batch needs an integer from 1 to 65536, found \"\\n]e\"")
        #expect(excerpt("a\r\nb\u{2028}c\u{85}\u{1B}d") == "a\\r\\nb\\u{2028}c\\u{0085}\\u{1B}d")
        #expect(excerpt("tab\tok") == "tab\\tok")
    }

    // Found by `kiln fuzz --all --seed 2` (flags case 177): a 100 kB `--image-size xxx…` took 6.4 MB
    // of heap (split into 100,000 pieces) before it was refused.
    @Test("a long --image-size value is refused without splitting it")
    func longImageSize() throws {
        let value = String(repeating: "x", count: 100_000)
        #expect(errorMessage { _ = try CSVImages.parseImageSize(value) }
                == "--image-size needs HxW with integers 1 to 4096 (e.g. 28x28), found \"" + String(repeating: "x", count: 40) + "… (100000 bytes)\"")
        let size = try CSVImages.parseImageSize("28X32")
        #expect(size.height == 28 && size.width == 32)
    }
}
