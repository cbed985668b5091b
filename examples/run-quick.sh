#!/usr/bin/env bash
# Builds the course examples in release and runs each with --quick (a few seconds each);
# exits non-zero if any fails. Figures go to ${OUT:-out/quick}/NAME/.
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLES=(linear-classifiers ffn-sweep quadratic-activation deep-linear optimizers fgsm sawtooth signal-propagation parity pinn hessian filters pruning resnet-schedules generative)
for name in "${EXAMPLES[@]}"; do swift build -c release --product "$name"; done
bin=$(swift build -c release --show-bin-path)
failed=()
logs=$(mktemp -d)
for name in "${EXAMPLES[@]}"; do
    start=$SECONDS
    if "$bin/$name" --quick --out "${OUT:-out/quick}/$name" > "$logs/$name.log" 2>&1; then
        echo "example $name: ok ($((SECONDS - start)) s)"
    else
        echo "example $name: FAILED ($((SECONDS - start)) s); its output:" >&2
        tail -20 "$logs/$name.log" >&2
        failed+=("$name")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then echo "failed examples: ${failed[*]}" >&2; exit 1; fi
