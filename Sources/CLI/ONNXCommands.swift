import Foundation
import Kiln
import KilnCommandLine
import KilnBench

/// `kiln import MODEL.onnx [-o MODEL.safetensors] [--classes A,B,C]`: reads an ONNX file, prints
/// what it holds and, with `-o`, writes a Kiln model file (weights and the graph) for
/// `kiln predict`, `kiln eval`, `kiln train --init` and `kiln export`.
func importCommand(_ words: [String]) throws {
    let args = try Arguments(words, options: ["-o", "--classes"], flags: ["--json"], command: "import")
    guard args.positionals.count == 1 else { throw KilnError.argument("import: give exactly one MODEL.onnx file") }
    let path = args.positionals[0]
    let model = try ONNXModel.load(path: path)
    let graph = model.proto.graph
    var counts: [String: Int] = [:]
    for node in graph.nodes { counts[node.opType, default: 0] += 1 }
    let parameterCount = model.weights.filter { !model.stateNames.contains($0.key) }.values.reduce(0) { $0 + $1.values.count }
    let inputs = model.inputs.map { "\($0.name) [\($0.dims.map { $0.map(String.init) ?? "N" }.joined(separator: ", "))]" }
    let forward = try model.forwardGraph(batch: model.fileBatch ?? 1)
    let outputs = forward.outputs.map { "\($0.name) \(forward[$0.value].type.shape)" }
    var summary: [(String, Any)] = [("file", path), ("producer", "\(model.proto.producerName) \(model.proto.producerVersion)"),
                                    ("opset", Int(model.opset)), ("nodes", graph.nodes.count), ("kiln_nodes", forward.nodes.count),
                                    ("parameters", parameterCount), ("inputs", inputs), ("outputs", outputs)]
    if !args.flags.contains("--json") {
        print("\(path): ONNX from \(model.proto.producerName) \(model.proto.producerVersion), opset \(model.opset), \(graph.nodes.count) nodes → \(forward.nodes.count) Kiln nodes, \(parameterCount) parameters")
        print("  ops: " + counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        print("  inputs: \(inputs.joined(separator: ", ")); outputs (at batch \(model.fileBatch ?? 1)): \(outputs.joined(separator: ", "))")
    }
    if let output = args.options["-o"] {
        let classifier: ClassifierModel
        do { classifier = try model.classifier() } catch {
            throw KilnError.file(path: path, message: "\(error); a Kiln model file holds an image classifier (the import above is still usable from Swift: ONNXModel.load)")
        }
        let classNames = try args.options["--classes"].map { try parseClassNames($0, count: classifier.classes) }
            ?? (0..<classifier.classes).map(String.init)
        let trainer = try ClassifierTrainer.importing(model, threads: 1)
        try Checkpoint.save(trainer, classNames: classNames, epochs: 0, to: output)
        summary.append(("output", output))
        if !args.flags.contains("--json") {
            print("wrote \(output): input \(classifier.inputShape), \(classifier.classes) classes (\(classNames.prefix(12).joined(separator: ", "))\(classNames.count > 12 ? ", …" : ""))")
        }
    }
    if args.flags.contains("--json") { print(jsonObject(summary)) }
}

/// Class names from `--classes A,B,C`: one per model output.
func parseClassNames(_ text: String, count: Int) throws -> [String] {
    let names = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    guard names.count == count, Set(names).count == count, names.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 100 }) else {
        throw KilnError.argument("--classes needs \(count) distinct names separated by commas (one per model output), found \"\(excerpt(text))\"")
    }
    return names
}

/// `kiln export MODEL.safetensors -o MODEL.onnx [--sample FILE.safetensors] [--batch B] [--seed S]`:
/// a classifier (its logits) or an unconditional generator's decoder (`images` = sigmoid of its
/// logits, from `z`) as ONNX opset 17 with a named batch axis. `--sample` also writes a batch of
/// inputs (uniform [0, 1) images or standard normal z, from `--seed`) and Kiln's outputs on them,
/// for `bench/onnx/check_ort.py`.
func exportCommand(_ words: [String]) throws {
    let args = try Arguments(words, options: ["-o", "--sample", "--batch", "--seed"], flags: [], command: "export")
    guard args.positionals.count == 1 else { throw KilnError.argument("export: give exactly one MODEL.safetensors file") }
    guard let output = args.options["-o"] else { throw KilnError.argument("export: -o FILE.onnx is required") }
    let batch = try args.int("--batch", default: 8, in: 1...4096)
    let seed = try args.seed()
    let path = args.positionals[0]
    let checkpoint = try Checkpoint.read(path: path)
    let name = checkpoint.description.modelName
    let store: ParameterStore
    let graphAt: (Int) throws -> Graph
    if Zoo.isGenerative(name) {
        let (trainer, _) = try GenerativeTrainer.load(path: path, threads: 1)
        guard !trainer.model.isConditional else {
            throw KilnError.file(path: path, message: "\(name) is conditional (a class label input); Kiln exports classifiers and unconditional decoders")
        }
        store = trainer.store
        graphAt = { try GenerativeTrainer.samplingGraph(model: trainer.model, batch: $0) }
    } else {
        let trainer = try checkpoint.makeTrainer(threads: 1)
        store = trainer.store
        graphAt = { try ClassifierTrainer.forwardGraph(model: trainer.model, batch: $0) }
    }
    let graph = try graphAt(1)
    let proto: ONNXModelProto
    do {
        proto = try ONNXExport.model(graph: graph, weights: { store[$0]?.values }, graphName: name)
    } catch let error as ONNXError {
        throw KilnError.file(path: path, message: error.message)
    }
    let bytes = proto.serialized()
    do { try Data(bytes).write(to: URL(fileURLWithPath: output), options: .atomic) } catch {
        throw KilnError.file(path: output, message: "cannot write: \(error.localizedDescription)")
    }
    print("wrote \(output): \(name), opset \(ONNXExport.opset), \(proto.graph.nodes.count) nodes, \(proto.graph.initializers.count) initializers, \(bytes.count) bytes")

    if let samplePath = args.options["--sample"] {
        let sampleGraph = try graphAt(batch)
        let program = try Executable(graph: sampleGraph, store: store, threads: 1)
        var rng = SplitMix64(seed: seed)
        var entries: [Safetensors.Entry] = []
        for id in sampleGraph.inputIDs {
            let inputName = sampleGraph.leafName(id)!
            let shape = sampleGraph[id].type.shape
            let values: [Float] = (0..<shape.count).map { _ in Float(inputName == "z" ? rng.normal() : rng.uniform(0, 1)) }
            try program.setInput(inputName, values)
            entries.append(Safetensors.Entry(name: inputName, shape: shape.dims, floats: values))
        }
        try program.run()
        for out in sampleGraph.outputs {
            entries.append(Safetensors.Entry(name: out.name, shape: sampleGraph[out.value].type.shape.dims, floats: try program.output(out.name)))
        }
        try Safetensors.write(path: samplePath, entries: entries, metadata: ["kiln.model": name, "seed": String(seed)])
        print("wrote \(samplePath): inputs \(sampleGraph.inputIDs.map { sampleGraph.leafName($0)! }) and Kiln's outputs \(sampleGraph.outputs.map(\.name)) at batch \(batch)")
    }
}
