#!/usr/bin/env bash
# The kernels' correctness tests once more for every other vector ISA this machine can run:
# `swift test` checks the build for the machine's own CPU (`native`); this builds the tests
# again with KILN_TARGET_CPU=haswell (AVX2 + FMA: 256-bit vectors, the AVX2 register tiles)
# when the CPU has AVX2 and FMA and is not itself an AVX2-only machine (where native already is
# haswell's ISA), and with KILN_TARGET_CPU=x86-64 (no AVX: the generic tiles, the path a CPU
# without AVX2 takes), each in its own build directory, and runs the suites that compare each
# kernel, tile and ragged edge with naive loops or the reference interpreter (RuntimeTests) and
# the results on 1, 2, 3, 64 and 256 threads (ThreadDeterminismTests). ISA_CHECK_SUITES widens
# the filter (e.g. 'RuntimeTests|ThreadDeterminismTests|CompiledEquivalenceTests|InputsSetOnceTests':
# every zoo model's compiled step against the unoptimised one, 14 minutes for haswell on a busy
# 2-core machine, too long for CI).
#
#   bash scripts/isa-check.sh            (both), or: bash scripts/isa-check.sh haswell|x86-64
set -euo pipefail
cd "$(dirname "$0")/.."

SUITES="${ISA_CHECK_SUITES:-RuntimeTests|ThreadDeterminismTests}"
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { [[ " $flags " == *" $1 "* ]]; }

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    if [ "$(uname -m)" != x86_64 ]; then
        echo "isa-check: not an x86-64 machine; nothing to add to swift test"
        exit 0
    fi
    if has avx2 && has fma && has avx512f; then targets+=(haswell); fi
    targets+=(x86-64)
fi

for cpu in "${targets[@]}"; do
    start=$SECONDS
    echo "isa-check: KILN_TARGET_CPU=$cpu"
    KILN_TARGET_CPU="$cpu" swift build --build-tests --build-path ".build-isa-$cpu" 2>&1 | grep -E 'error|warning: unre|Compiling|Build' | tail -n 3
    KILN_TARGET_CPU="$cpu" swift test --skip-build --build-path ".build-isa-$cpu" --filter "$SUITES" 2>&1 | tail -n 3
    echo "isa-check: $cpu took $((SECONDS - start)) s"
done
