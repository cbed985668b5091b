#!/usr/bin/env bash
# kill -9 at random moments of `kiln train … -o model.safetensors --save-every 1`, for a classifier
# and every generative model, and check that the model file that survives always loads (the
# previous checkpoint or the new one, never a torn mix), that `--resume` continues from it, and
# that no temporary file is left once the next run has written (a kill inside a write leaves its
# `.NAME.tmp-PID`; the next write to the same file removes those of dead processes).
# Usage: scripts/kill9-check.sh [KILN] [RUNS_PER_MODEL] [SEED]
set -euo pipefail
KILN=${1:-.build/release/kiln}
RUNS=${2:-8}
SEED=${3:-16}
DIR=$(mktemp -d /tmp/kiln-kill9.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
RANDOM=$SEED
"$KILN" make-glyphs "$DIR/g" --train 120 --test 20 --seed 3 > /dev/null
MODELS=(logreg vae cvae conv-vae conv-cvae gan cgan)
total=0; ok=0; bad=0; killed_in_write=0; finished=0; resumed=0; resume_failed=0; mid_run=0
loads() {  # MODEL FILE: does the file load and serve its purpose?
    if [ "$1" = logreg ]; then "$KILN" eval "$2" --data "$DIR/g/xy_train.csv" > /dev/null 2>&1
    elif [ "$1" = cvae ] || [ "$1" = conv-cvae ] || [ "$1" = cgan ]; then "$KILN" generate "$2" --per-class 1 -o "$DIR/s.csv" > /dev/null 2>&1
    else "$KILN" generate "$2" --count 2 -o "$DIR/s.csv" > /dev/null 2>&1; fi
}
for model in "${MODELS[@]}"; do
    out="$DIR/$model.safetensors"
    TRAIN=(train "$model" --train "$DIR/g/xy_train.csv" --ensemble 1 --batch 16 --threads 2 --save-every 1)
    "$KILN" "${TRAIN[@]}" --epochs 1 -o "$out" > /dev/null
    # How long an uninterrupted run takes, to spread the kills over it (the final write included).
    start=$(date +%s%N); "$KILN" "${TRAIN[@]}" --epochs 6 -o "$DIR/timing.safetensors" > /dev/null; end=$(date +%s%N)
    span_ms=$(( (end - start) / 1000000 ))
    for run in $(seq 1 "$RUNS"); do
        total=$((total + 1))
        "$KILN" "${TRAIN[@]}" --epochs 6 --seed "$run" -o "$out" > "$DIR/log" 2>&1 &
        pid=$!
        delay_ms=$(( RANDOM * (span_ms + 200) / 32768 ))
        sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
        if kill -9 "$pid" 2> /dev/null; then :; else finished=$((finished + 1)); fi
        wait "$pid" 2> /dev/null || true
        n=$(find "$DIR" -maxdepth 1 -name ".$model.safetensors.tmp-*" | wc -l)
        killed_in_write=$((killed_in_write + n))
        if loads "$model" "$out"; then ok=$((ok + 1)); else
            bad=$((bad + 1)); echo "$model run $run (killed after ${delay_ms} ms): the model file does not load" >&2
        fi
        if grep -q "checkpoint: wrote" "$DIR/log"; then mid_run=$((mid_run + 1)); fi
        # Continue the survivor for one epoch (its own seed: --resume takes it from the file).
        if "$KILN" train "$model" --train "$DIR/g/xy_train.csv" --batch 16 --threads 2 --epochs 1 --resume "$out" -o "$out" > /dev/null 2> "$DIR/err"; then
            resumed=$((resumed + 1))
            if ! loads "$model" "$out"; then bad=$((bad + 1)); echo "$model run $run: the resumed file does not load" >&2; fi
        else
            resume_failed=$((resume_failed + 1)); echo "$model run $run: --resume failed: $(head -c 300 "$DIR/err")" >&2
        fi
    done
done
stray=$(find "$DIR" -maxdepth 1 -name '.*.tmp-*' | wc -l)
echo "kill -9 at $total random moments over ${#MODELS[@]} models ($finished ended before the kill, $mid_run had written a checkpoint): $ok loadable, $bad not loadable; $killed_in_write kills landed inside a write (temporary file left, removed by the next write); $stray temporary files remain; --resume continued $resumed survivors, failed $resume_failed"
[ "$bad" -eq 0 ] && [ "$stray" -eq 0 ] && [ "$resume_failed" -eq 0 ]
