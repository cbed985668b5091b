#!/usr/bin/env bash
# The whole fuzzing figure of issue 16: every reader (IDX raw and gzip, course CSV, safetensors,
# Kiln model files, ONNX) and the command line's flag values, PER_FORMAT inputs each, in worker
# processes (a trap is a crash, a silent case a hang, a heap peak above 8 × input + 4 MiB a
# blow-up), then SUBPROCESS flag cases run to the end as real `kiln` processes. Prints one table;
# exits non-zero on any crash, hang, blow-up or unclean error (inputs kept under DIR/findings).
# Usage: scripts/fuzz-all.sh [PER_FORMAT=100000] [SEED=1204] [JOBS=2] [SUBPROCESS=300] [DIR]
set -euo pipefail
PER_FORMAT=${1:-100000}
SEED=${2:-1204}
JOBS=${3:-2}
SUBPROCESS=${4:-300}
DIR=${5:-$(mktemp -d /tmp/kiln-fuzz-all.XXXXXX)}
cd "$(dirname "$0")/.."
nice -n 19 swift build --product kiln -c release
# A copy, so that a rebuild during the run does not change the workers' binary.
cp .build/release/kiln "$DIR/kiln"
start=$(date +%s)
nice -n 19 "$DIR/kiln" fuzz --all --per-format "$PER_FORMAT" --seed "$SEED" --jobs "$JOBS" \
    --subprocess-flags "$SUBPROCESS" --keep "$DIR"
echo "fuzz-all: seed $SEED, $PER_FORMAT inputs per format, $(( $(date +%s) - start )) s; findings (if any) under $DIR/findings"
