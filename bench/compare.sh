#!/usr/bin/env bash
# Runs every peer on every workload it has, then (per workload, right after the peers)
# `KILN bench WORKLOAD --threads N --jsonl FILE`, one process at a time, and prints the
# table (markdown) with each row's CPU pressure.
#
#   bash bench/compare.sh [KILN_BINARY]      e.g. bash bench/compare.sh .build/release/kiln
#
# Environment:
#   KILN_PEERS_VENV  the venv of bench/install.sh (default $HOME/.cache/kiln-peers)
#   WORKLOADS        default: gemm lenet5-train lenet5-infer mlp-b16 vae-train mnist-cnn-train resnet18-train resnet18-infer
#                    resnet20-train resnet20-infer
#   SYSTEMS          default: numpy pytorch-eager pytorch-compile jax-jit tinygrad
#   THREADS (2), SEED (0), TIMEOUT (seconds per run, 900), OUT (JSONL file, default ./compare-DATE.jsonl)
#   KILN_GEMM_CLI    set: the GEMM row runs `KILN bench gemm` even where `kiln-gemm` sits beside KILN
#   PEER_ISA         native (default) or avx2: with avx2 the peers are held to AVX2 + FMA through
#                    their own switches (PyTorch ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS,
#                    oneDNN ONEDNN_MAX_CPU_ISA, OpenBLAS OPENBLAS_CORETYPE=Haswell, XLA
#                    --xla_cpu_max_isa=AVX2 with its XNNPACK/YNNPACK matmuls switched off, as
#                    those pick AVX-512 at run time), so that on an AVX-512 machine a Kiln built
#                    with KILN_TARGET_CPU=haswell meets peers on the same vectors; tinygrad
#                    (which compiles for the host CPU) is left out; each record carries
#                    extra.isa_limit.
# A run that fails or times out becomes a FAILED cell; a workload this Kiln binary does not
# have (or no binary) becomes `missing`. Nothing here stops at the first failure.
set -u
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${KILN_PEERS_VENV:-$HOME/.cache/kiln-peers}"
PY="$VENV/bin/python"
KILN="${1:-}"
THREADS="${THREADS:-2}"
SEED="${SEED:-0}"
TIMEOUT="${TIMEOUT:-900}"
OUT="${OUT:-$PWD/compare-$(date -u +%Y%m%dT%H%M%S).jsonl}"
WORKLOADS="${WORKLOADS:-gemm lenet5-train lenet5-infer mlp-b16 vae-train mnist-cnn-train resnet18-train resnet18-infer resnet20-train resnet20-infer}"
SYSTEMS="${SYSTEMS:-numpy pytorch-eager pytorch-compile jax-jit tinygrad}"

case "${PEER_ISA:-native}" in
    native) ;;
    avx2)
        export ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2
        export OPENBLAS_CORETYPE=Haswell XLA_FLAGS="--xla_cpu_max_isa=AVX2 --xla_cpu_use_xnnpack=false --xla_cpu_experimental_ynn_fusion_type=${XLA_FLAGS:+ $XLA_FLAGS}" KILN_PEER_ISA=avx2
        SYSTEMS="$(echo "$SYSTEMS" | tr ' ' '\n' | grep -vx tinygrad | tr '\n' ' ')"
        ;;
    *) echo "error: PEER_ISA must be native or avx2 (given: $PEER_ISA)" >&2; exit 1 ;;
esac

if [ ! -x "$PY" ]; then
    echo "error: no Python venv at $VENV: run bash bench/install.sh first" >&2
    exit 1
fi
if [ -n "$KILN" ] && [ ! -x "$KILN" ] && ! command -v "$KILN" >/dev/null 2>&1; then
    echo "warning: Kiln binary '$KILN' not found: its cells will read missing" >&2
fi
# The GEMM row runs `kiln-gemm` from beside the binary when it is there (`swift build -c release`
# builds it; `--product kiln` alone does not): the same workload code as `kiln bench gemm`, in a
# statically linked tool with Kiln's core alone and no Foundation, so that the row's peak RSS is
# the core's (about 16 MB less than the full tool's). KILN_GEMM_CLI=1 runs `kiln bench gemm` instead.
KILN_GEMM=""
if [ -n "$KILN" ] && [ -z "${KILN_GEMM_CLI:-}" ]; then
    kiln_path="$(command -v "$KILN" 2>/dev/null || true)"
    if [ -n "$kiln_path" ] && [ -x "$(dirname "$kiln_path")/kiln-gemm" ]; then KILN_GEMM="$(dirname "$kiln_path")/kiln-gemm"; fi
fi
echo "# $(date -u +%FT%TZ)  threads=$THREADS seed=$SEED peer_isa=${PEER_ISA:-native}  records -> $OUT"
echo "# cpu pressure now: $(head -n 1 /proc/pressure/cpu 2>/dev/null || echo n/a)"
echo "# kiln gemm row: ${KILN_GEMM:-$KILN bench gemm}"

has() {  # system workload
    case "$1" in
        numpy) [ "$2" = gemm ] ;;
        tinygrad) case "$2" in resnet*) return 1 ;; esac ;;
        *) return 0 ;;
    esac
}

command_of() {  # system
    case "$1" in
        numpy) echo "$PY $BENCH/numpy_peer.py" ;;
        pytorch-eager) echo "$PY $BENCH/torch_peer.py --mode eager" ;;
        pytorch-compile) echo "$PY $BENCH/torch_peer.py --mode compile" ;;
        jax-jit) echo "$PY $BENCH/jax_peer.py" ;;
        tinygrad) echo "$PY $BENCH/tinygrad_peer.py" ;;
        *) echo "unknown system $1" >&2; return 1 ;;
    esac
}

run() {  # system workload command...
    local system="$1" workload="$2"; shift 2
    local log status
    log="$(mktemp)"
    echo ">> $system $workload"
    timeout "$TIMEOUT" "$@" >"$log" 2>&1
    status=$?
    grep -E '^\[' "$log" | tail -n 1
    if [ "$status" -ne 0 ]; then
        local cause kind=failed
        if [ "$status" -eq 124 ]; then
            cause="timed out after ${TIMEOUT}s"
        else
            local line
            line="$(grep -iE 'error|exception|no such file' "$log" | tail -n 1)"
            [ -n "$line" ] || line="$(grep -v '^\s*$' "$log" | tail -n 1)"
            cause="exit $status: $line"
            # A Kiln without this workload says so ("unknown workload" / "give one workload: ...").
            if [ "$system" = kiln ] && grep -qiE 'unknown workload|give one workload|no workload' "$log"; then
                kind=missing
            fi
        fi
        echo "   $kind: $cause"
        "$PY" "$BENCH/compare.py" --record-failure "$system" "$workload" "$kind" "$cause" "$OUT"
    fi
    rm -f "$log"
}

for workload in $WORKLOADS; do
    for system in $SYSTEMS; do
        has "$system" "$workload" || continue
        # shellcheck disable=SC2046
        run "$system" "$workload" $(command_of "$system") "$workload" --threads "$THREADS" --seed "$SEED" --jsonl "$OUT"
    done
    if [ -n "$KILN" ] && { [ -x "$KILN" ] || command -v "$KILN" >/dev/null 2>&1; }; then
        if [ "$workload" = gemm ] && [ -n "$KILN_GEMM" ]; then
            run kiln "$workload" "$KILN_GEMM" gemm --threads "$THREADS" --seed "$SEED" --jsonl "$OUT"
        else
            run kiln "$workload" "$KILN" bench "$workload" --threads "$THREADS" --seed "$SEED" --jsonl "$OUT"
        fi
    fi
done

echo
if [ -n "$KILN" ]; then
    "$PY" "$BENCH/compare.py" "$OUT" --kiln --workloads "$WORKLOADS"
else
    "$PY" "$BENCH/compare.py" "$OUT" --workloads "$WORKLOADS"
fi
