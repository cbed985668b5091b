#!/usr/bin/env bash
# kill -9 at random moments of `kiln train … -o model.safetensors` and check that the model file
# that survives always loads (the previous one, or the new one, never a torn mix), with no stray
# temporary files. Usage: scripts/kill9-check.sh [KILN] [RUNS] [SEED]
set -euo pipefail
KILN=${1:-.build/release/kiln}
RUNS=${2:-50}
SEED=${3:-16}
DIR=$(mktemp -d /tmp/kiln-kill9.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
RANDOM=$SEED
"$KILN" make-glyphs "$DIR/g" --train 200 --test 20 --seed 3 > /dev/null
TRAIN=(train logreg --train "$DIR/g/xy_train.csv" --epochs 40 --batch 16 --threads 2)
"$KILN" "${TRAIN[@]}" --epochs 1 -o "$DIR/model.safetensors" > /dev/null
# How long one uninterrupted run takes, to spread the kills over it (the final write included).
start=$(date +%s%N); "$KILN" "${TRAIN[@]}" -o "$DIR/timing.safetensors" > /dev/null; end=$(date +%s%N)
span_ms=$(( (end - start) / 1000000 ))
ok=0; bad=0; stray=0; finished=0
for run in $(seq 1 "$RUNS"); do
    "$KILN" "${TRAIN[@]}" --seed "$run" -o "$DIR/model.safetensors" > /dev/null 2>&1 &
    pid=$!
    delay_ms=$(( RANDOM * (span_ms + 200) / 32768 ))
    sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
    if kill -9 "$pid" 2> /dev/null; then :; else finished=$((finished + 1)); fi
    wait "$pid" 2> /dev/null || true
    if "$KILN" eval "$DIR/model.safetensors" --data "$DIR/g/xy_train.csv" > /dev/null 2>&1; then ok=$((ok + 1)); else
        bad=$((bad + 1)); echo "run $run (killed after ${delay_ms} ms): the model file does not load" >&2
    fi
    n=$(find "$DIR" -maxdepth 1 -name '.model.safetensors.tmp-*' | wc -l)
    if [ "$n" -gt 0 ]; then stray=$((stray + n)); rm -f "$DIR"/.model.safetensors.tmp-*; fi
done
echo "kill -9 at $RUNS random moments over a ${span_ms} ms run ($finished ended before the kill): $ok loadable, $bad not loadable, $stray temporary files left by a kill mid-write"
[ "$bad" -eq 0 ]
