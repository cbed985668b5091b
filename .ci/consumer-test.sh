#!/usr/bin/env bash
# A package that depends on Kiln by version, as a user's would: clone this repository into a
# temporary folder, tag the clone 0.2.0 (the clone only, so this works before the real tag
# exists), and build and run a consumer package with
#     .package(url: "file://<clone>", from: "0.2.0")
# that defines a small network through the public `Kiln` API, trains it, and fails unless its
# loss falls. SwiftPM refuses unsafe flags (Kiln's -target-cpu, -Ounchecked) from a versioned
# dependency unless Kiln's manifest says swift-tools-version 6.2 or later; this is the check.
#
#   bash .ci/consumer-test.sh            (what .ci/run calls; KEEP=1 keeps the temporary folder)
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/kiln-consumer.XXXXXX")"
if [ "${KEEP:-0}" = 1 ]; then echo "keeping $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi

# The committed HEAD of this repository, with 0.2.0 as its only tag.
git clone --quiet --no-hardlinks "$REPO" "$WORK/kiln"
git -C "$WORK/kiln" tag -l | xargs -r git -C "$WORK/kiln" tag -d >/dev/null
git -C "$WORK/kiln" -c user.name=ci -c user.email=ci@localhost tag 0.2.0
echo "consumer test: Kiln $(git -C "$WORK/kiln" rev-parse --short HEAD) tagged 0.2.0 in $WORK/kiln"

mkdir -p "$WORK/consumer/Sources/consumer"
cat > "$WORK/consumer/Package.swift" <<EOF
// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "consumer",
    dependencies: [.package(url: "file://$WORK/kiln", from: "0.2.0")],
    targets: [.executableTarget(name: "consumer", dependencies: [.product(name: "Kiln", package: "kiln")]),
              .executableTarget(name: "core", dependencies: [.product(name: "KilnCore", package: "kiln")])]
)
EOF

# The core alone: a line fitted by hand-written SGD updates, built without Foundation.
mkdir -p "$WORK/consumer/Sources/core"
cat > "$WORK/consumer/Sources/core/main.swift" <<'EOF'
// y = 3x − 2 fitted through KilnCore alone (graph, gradients, runtime), no Foundation.
#if canImport(Glibc)
import Glibc
#endif
import KilnGraph
import KilnPasses
import KilnRuntime

let g = GraphBuilder()
let x = g.input("x", [64, 1]), y = g.input("y", [64, 1])
let w = g.parameter("w", [1, 1], initializer: .zeros), b = g.parameter("b", [1], initializer: .zeros)
let error = x.matmul(w) + b - y
let loss = (error * error).mean()
let grads = g.gradients(of: loss, withRespectTo: [w, b])
g.update(w, to: w - 0.1 * grads[0])
g.update(b, to: b - 0.1 * grads[1])
g.output("loss", loss)
let step = try Executable(graph: try g.build(), store: ParameterStore(seed: 1), threads: 2)
let xs = (0..<64).map { Float($0) / 32 - 1 }
try step.setInput("x", xs)
try step.setInput("y", xs.map { 3 * $0 - 2 })
var first = Float.nan, last = Float.nan
for i in 0..<300 {
    try step.run()
    last = try step.output("loss")[0]
    if i == 0 { first = last }
}
print("core: loss \(first) -> \(last)")
guard first.isFinite, last < 1e-4 * first else {
    print("core: FAILED: the loss did not fall as it should")
    exit(1)
}
EOF

cat > "$WORK/consumer/Sources/consumer/main.swift" <<'EOF'
// Three classes of points in the plane, a 2-32-3 network, SGD with momentum: the loss must fall.
import Foundation
import Kiln

let batch = 96, classes = 3
let g = GraphBuilder()
let x = g.input("x", [batch, 2])
let labels = g.input("labels", [batch], dtype: .int32)
let learningRate = g.input("lr", .scalar)
let hidden = relu(g.dense(x, 32, name: "fc1"))
let logits = g.dense(hidden, classes, name: "fc2")
let loss = softmaxCrossEntropy(logits, labels: labels).mean()
let gradients = g.gradients(of: loss, withRespectTo: g.parameters)
Optimizer.sgd(momentum: 0.9).appendUpdates(to: g, parameters: g.parameters, gradients: gradients,
                                           learningRate: learningRate)
g.output("loss", loss)
g.output("logits", logits)
let step = try Executable(graph: try g.build(), store: ParameterStore(seed: 1), threads: 2)

// Class k's points lie around angle 2πk/3 on the unit circle (a fixed linear congruential stream).
struct Stream {
    var state: UInt64 = 12345
    mutating func uniform() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(state >> 40) / Float(1 << 24)
    }
    mutating func draw() -> (points: [Float], labels: [Int32]) {
        var points: [Float] = [], classOf: [Int32] = []
        for i in 0..<batch {
            let k = i % classes, angle = 2 * Float.pi * Float(k) / Float(classes)
            points += [cos(angle) + 0.6 * (uniform() - 0.5), sin(angle) + 0.6 * (uniform() - 0.5)]
            classOf.append(Int32(k))
        }
        return (points, classOf)
    }
}

try step.setInput("lr", [0.05])
var stream = Stream(), losses: [Float] = [], correct = 0
for _ in 0..<200 {
    let data = stream.draw()
    try step.setInput("x", data.points)
    try step.setInput("labels", data.labels)
    try step.run()
    losses.append(try step.output("loss")[0])
    let out = try step.output("logits")
    correct = (0..<batch).filter { i in
        let row = out[(i * classes)..<((i + 1) * classes)]
        return row.firstIndex(of: row.max()!)! - i * classes == Int(data.labels[i])
    }.count
}
let first = losses[0], last = losses.suffix(20).reduce(0, +) / 20
print(String(format: "consumer: loss %.4f -> %.4f (mean of the last 20 steps), last batch %d/%d right", first, last, correct, batch))
guard first.isFinite, last.isFinite, last < 0.25 * first, correct >= batch * 9 / 10 else {
    print("consumer: FAILED: the loss did not fall as it should")
    exit(1)
}
EOF

cd "$WORK/consumer"
if ! swift build > "$WORK/build.log" 2>&1; then
    tail -n 40 "$WORK/build.log"
    echo "consumer test: FAILED: the consumer package does not build against Kiln 0.2.0" >&2
    exit 1
fi
grep -E "Computed|Compiling Kiln|Build complete" "$WORK/build.log" | tail -n 2
swift run --skip-build consumer
swift run --skip-build core
# The core-only program must not link Foundation (the point of the KilnCore product).
if ldd "$(swift build --show-bin-path)/core" | grep -i foundation; then
    echo "consumer test: FAILED: a program on KilnCore alone links Foundation" >&2
    exit 1
fi
echo "consumer test: the KilnCore program links no Foundation"
