import Foundation
import Kiln
import KilnCommandLine

let usage = """
usage: kiln COMMAND [ARGS]

commands:
  demo                      train a small CNN on procedural glyphs (no download) and write its DOT
  zoo                       list the models with parameter counts and input shapes
  train MODEL (--dataset fashion-mnist|glyphs | --train FILE.csv) [--epochs N] [--batch B] [--lr X]
              [--optimizer sgd|adam|adagrad] [--momentum M] [--val-split F | --folds K] [--patience N]
              [--augment shift,rotate,scale,noise,flip,crop] [--image-size HxW] [--resume FILE] [--init FILE.onnx|MODEL.safetensors]
              [--seed S] [--threads T] [--limit N] [--schedule S] [--plot FILE.svg] [--no-fuse] [--no-plan] [--check-numerics] [-o MODEL.safetensors] [--json]
              [--classes A,B,C]   the labels the training file must use (else every distinct label is a class)
  mpirun -np N kiln train MODEL …   data-parallel over N MPI ranks: classifiers, VAEs and ddpm, not GANs (or --distributed; [--bucket-mb M] [--time-allreduce] [--no-overlap]); README "Training on several machines"
  train vae|cvae|conv-vae|conv-cvae|gan|cgan|dcgan|ddpm (--dataset NAME | --train FILE.csv [--unlabelled FILE.csv [--labeller MODEL]])
              -o MODEL.safetensors [--epochs N] [--batch B] [--lr X] [--schedule S] [--plot FILE.svg] [--grid FILE.png]
  predict MODEL.safetensors --test FILE.csv -o predictions.csv
  eval MODEL.safetensors --data FILE.csv [--labels LABELS.csv] [--json]
  make-glyphs DIR [--train N] [--test N] [--seed S] [--difficulty easy|hard]   a stand-in for the course's glyph CSV files
  generate MODEL.safetensors (--per-class N | --count N) -o FILE.csv [--grid FILE.png] [--seed S] [--temperature T]
  show DATA.csv --grid FILE.png [--per-class N] [--scale K]
  import MODEL.onnx [-o MODEL.safetensors] [--classes A,B,C] [--json]   an ONNX model (opset 13-21) as a Kiln model
  export MODEL.safetensors -o MODEL.onnx [--sample FILE.safetensors] [--batch B] [--seed S]   a classifier or decoder as ONNX
  dot MODEL [--stage forward|training|simplified|fused|planned] [--batch B] [-o FILE]
  plan MODEL [--training] [--batch B] [--disable PASS,...] [--kernels] [--json] [--why A B]
  selftest [--networks N] [--seed S] [--threads T] [--runs R]   random user-style networks, compiled vs the interpreter
  bench peak|gemm|lenet5-train|lenet5-infer|mlp-b16|vae-train|mnist-cnn-train|resnet18-train|resnet18-infer|resnet20-train|resnet20-infer
              [--threads N] [--jsonl FILE] [--seed S] [--json] [--epochs N] [--limit-steps N] [--data-dir DIR] [--no-peak]
              [--cold] [--contention N]   the peers' workloads (bench/README.md);
              --contention N runs it quiet, then beside N spinning processes, and reports both and the ratio
  bench conv [--shape resnet18|resnet20] [--layer TEXT] [--pass forward|bwd-data|bwd-filter] [--runs N] [--rounds N]
              every layer's convolution passes: algorithm, GFLOP/s and fraction of the measured peak
  fuzz [--cases N] [--seed S] [--formats csv,safetensors,idx,flags] [--memory-mb M] [--timeout S] [--keep DIR]
              a seeded mutation fuzzer: runs kiln on mutated files and flag values under memory and time caps
  fuzz --in-process N [--seed S]   N mutated inputs per reader (safetensors, model files, IDX raw/gzip, CSV, ONNX)
  fuzz --all [--per-format N] [--seed S] [--jobs J] [--formats idx-raw,idx-gzip,csv,safetensors,kiln-model,onnx,flags]
              [--chunk C] [--case-timeout T] [--subprocess-flags M] [--keep DIR]   every reader and the flags, N inputs each
              in worker processes (crashes, hangs, heap peak per input counted); scripts/fuzz-all.sh runs it
"""

func runCommand(_ words: [String]) throws {
    guard let command = words.first else { print(usage); return }
    let rest = Array(words.dropFirst())
    switch command {
    case "demo": try demoCommand(rest)
    case "zoo": try zooCommand(rest)
    case "train": try trainCommand(rest)
    case "predict": try predictCommand(rest)
    case "eval": try evalCommand(rest)
    case "make-glyphs": try makeGlyphsCommand(rest)
    case "generate": try generateCommand(rest)
    case "show": try showCommand(rest)
    case "import": try importCommand(rest)
    case "export": try exportCommand(rest)
    case "dot": try dotCommand(rest)
    case "plan": try planCommand(rest)
    case "bench": try benchCommand(rest)
    case "selftest": try selftestCommand(rest)
    case "fuzz": try fuzzCommand(rest)
    case "help", "--help", "-h": print(usage)
    default: throw KilnError.argument("unknown command \"\(excerpt(command))\"; run `kiln help`")
    }
}

RunOptions.profileLines = Environment.profileLines
do {
    try runCommand(Array(CommandLine.arguments.dropFirst()))
} catch {
    printError("kiln: \(error)")
    exit(1)
}
