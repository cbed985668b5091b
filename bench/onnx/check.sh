#!/usr/bin/env bash
# Kiln → ONNX → onnxruntime: trains small Kiln models (a few epochs on generated data, no
# download), exports each with `kiln export --sample`, and runs bench/onnx/check_ort.py on them.
#   usage: bash bench/onnx/check.sh [KILN] [OUTDIR]     (defaults: .build/release/kiln, /tmp/kiln-onnx-check)
# Needs the venv of bench/onnx/install.sh (KILN_ONNX_VENV, default ~/.cache/kiln-onnx).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KILN="$(realpath "${1:-$ROOT/.build/release/kiln}")"
OUT="${2:-/tmp/kiln-onnx-check}"
PY="${KILN_ONNX_VENV:-$HOME/.cache/kiln-onnx}/bin/python"
[ -x "$KILN" ] || { echo "error: no kiln at $KILN (swift build -c release)" >&2; exit 1; }
[ -x "$PY" ] || { echo "error: no venv python at $PY (bash bench/onnx/install.sh)" >&2; exit 1; }
mkdir -p "$OUT" && cd "$OUT"
"$KILN" make-glyphs glyphs --seed 3 --train 300 --test 200 > /dev/null
pairs=()
for model in mlp lenet5 glyph-cnn; do
    "$KILN" train "$model" --train glyphs/xy_train.csv --epochs 3 --seed 1 -o "$model.safetensors" > /dev/null
    "$KILN" export "$model.safetensors" -o "$model.onnx" --sample "$model.sample.safetensors" --batch 16 --seed 2
    pairs+=("$model.onnx" "$model.sample.safetensors")
done
"$KILN" train resnet20 --dataset synthetic-cifar --limit 512 --epochs 1 --seed 1 -o resnet20.safetensors > /dev/null
"$KILN" export resnet20.safetensors -o resnet20.onnx --sample resnet20.sample.safetensors --batch 16 --seed 2
pairs+=(resnet20.onnx resnet20.sample.safetensors)
for model in vae conv-vae; do
    "$KILN" train "$model" --train glyphs/xy_train.csv --epochs 2 --seed 1 -o "$model.safetensors" > /dev/null
    "$KILN" export "$model.safetensors" -o "$model-decoder.onnx" --sample "$model.sample.safetensors" --batch 16 --seed 2
    pairs+=("$model-decoder.onnx" "$model.sample.safetensors")
done
# An imported PyTorch model, exported again by Kiln.
"$KILN" import "$ROOT/Tests/Fixtures/onnx/resnet20.onnx" -o imported-resnet20.safetensors > /dev/null
"$KILN" export imported-resnet20.safetensors -o imported-resnet20.onnx --sample imported-resnet20.sample.safetensors --batch 16 --seed 2
pairs+=(imported-resnet20.onnx imported-resnet20.sample.safetensors)
"$PY" "$ROOT/bench/onnx/check_ort.py" "${pairs[@]}"
