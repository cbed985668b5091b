#!/usr/bin/env bash
# The loopback figures of README "Training on several machines" (issue 18 item 4), in one run of a
# few minutes, to be run under the benchmark lock at normal priority:
#   flock /tmp/kiln-bench.lock bash scripts/distributed-bench.sh
# 1. the all-reduce alone at LeNet-5's and ResNet-18's gradient sizes, 2 ranks, over shared memory
#    (Open MPI's default on one machine) and over TCP on loopback;
# 2. training steps (distributed-check steps: one warm-up step, then the median of timed steps):
#    LeNet-5 (batch 64) and ResNet-18 (batch 128) as 1 rank x 2 threads (the ordinary fused
#    one-process step) against 2 ranks x 1 thread, over shared memory and TCP, with the reduction
#    overlapped with backward (the default) and after it (no-overlap), 4 MiB buckets (the default) and,
#    for ResNet-18 once, 16 MiB. The wait after backward is given on rank 0 and, per step, on the rank
#    that finished backward last (the smallest wait over ranks): the communication that was not
#    hidden, without the other ranks' wait for the slowest one.
# Every record carries /proc/pressure/cpu before and after it; a table is printed at the end.
# JSON lines to ${OUT:-out/distributed-bench.jsonl}. Needs Open MPI (mpirun) and a build with MPI.
# RESNET_STEPS (default 5) and LENET_STEPS (default 200) set the timed steps.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v mpirun >/dev/null; then echo "distributed-bench: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)" >&2; exit 1; fi
swift build -c release --product distributed-check >/dev/null
swift build -c release --product kiln >/dev/null
bin=$(swift build -c release --show-bin-path)/distributed-check
out=${OUT:-out/distributed-bench.jsonl}
mkdir -p "$(dirname "$out")"; : > "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
SM=(mpirun --oversubscribe --bind-to none -np 2)
TCP=(mpirun --oversubscribe --bind-to none -np 2 --mca btl tcp,self --mca btl_tcp_if_include lo)
ONE=(mpirun --oversubscribe --bind-to none -np 1)
resnet_steps=${RESNET_STEPS:-5}
lenet_steps=${LENET_STEPS:-200}
pressure() { sed -n 's/^some avg10=\([0-9.]*\) avg60=\([0-9.]*\).*/\1 \2/p' /proc/pressure/cpu | head -1; }
record() {  # label, transport, then the command; appends one JSON line
    local label=$1 transport=$2; shift 2
    local before after line start end
    before=$(pressure); start=$(date +%s.%N)
    line=$("$@" | tail -1)
    end=$(date +%s.%N); after=$(pressure)
    line="{\"label\": \"$label\", \"transport\": \"$transport\", \"cpu_pressure_avg10_avg60_before\": \"$before\", \"cpu_pressure_avg10_avg60_after\": \"$after\", \"wall_seconds\": $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }'), \"result\": $line}"
    echo "$line" >> "$out"
    echo "$label ($transport): done in $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }') s, CPU pressure avg10 before/after ${before%% *}/${after%% *}%" >&2
}
started=$(date -u +%FT%TZ)
echo "distributed-bench: $started; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(nproc) CPUs; $(mpirun --version | head -1)" >&2
echo "CPU pressure at start: $(head -1 /proc/pressure/cpu)" >&2

# 1. The all-reduce alone: LeNet-5's gradient (61,708 floats incl. loss and count) and ResNet-18's
#    (11,183,564 floats: gradients, batch-norm statistics, loss, count), 4 MiB buckets as in training.
record allreduce-lenet5 shm "${SM[@]}" "$bin" allreduce 61708 50
record allreduce-lenet5 tcp-lo "${TCP[@]}" "$bin" allreduce 61708 50
record allreduce-resnet18 shm "${SM[@]}" "$bin" allreduce 11183564 10
record allreduce-resnet18 tcp-lo "${TCP[@]}" "$bin" allreduce 11183564 10

# 2. Training steps.
record lenet5-1x2 one-process "${ONE[@]}" "$bin" steps lenet5 64 "$lenet_steps" 2
record lenet5-2x1 shm "${SM[@]}" "$bin" steps lenet5 64 "$lenet_steps" 1
record lenet5-2x1-no-overlap shm "${SM[@]}" "$bin" steps lenet5 64 "$lenet_steps" 1 no-overlap
record lenet5-2x1 tcp-lo "${TCP[@]}" "$bin" steps lenet5 64 "$lenet_steps" 1
record lenet5-2x1-no-overlap tcp-lo "${TCP[@]}" "$bin" steps lenet5 64 "$lenet_steps" 1 no-overlap
record resnet18-1x2 one-process "${ONE[@]}" "$bin" steps resnet18 128 "$resnet_steps" 2
record resnet18-2x1 shm "${SM[@]}" "$bin" steps resnet18 128 "$resnet_steps" 1
record resnet18-2x1-no-overlap shm "${SM[@]}" "$bin" steps resnet18 128 "$resnet_steps" 1 no-overlap
record resnet18-2x1 tcp-lo "${TCP[@]}" "$bin" steps resnet18 128 "$resnet_steps" 1
record resnet18-2x1-no-overlap tcp-lo "${TCP[@]}" "$bin" steps resnet18 128 "$resnet_steps" 1 no-overlap
record resnet18-2x1-16MiB-buckets shm "${SM[@]}" "$bin" steps resnet18 128 "$resnet_steps" 1 bucket-mb=16
# 3. The VAE (the cost model's third row): one epoch of Fashion-MNIST (60,000 images, global batch 128,
#    469 steps) as `kiln train vae` in one process with 2 threads, and under mpirun as 2 ranks x 1
#    thread (DistributedGenerativeTrainer; its 2.6 MB gradient is one bucket). Skipped without the data.
kiln=$(swift build -c release --show-bin-path)/kiln
if [ -x "$kiln" ]; then
    vae=(train vae --dataset fashion-mnist --epochs 1 --batch 128 --json --no-prior -o "$(dirname "$out")/bench-vae.safetensors")
    record vae-1x2 one-process "$kiln" "${vae[@]}" --threads 2 || echo "vae: skipped (no Fashion-MNIST?)" >&2
    record vae-2x1 shm "${SM[@]}" "$kiln" "${vae[@]}" --threads 1 || echo "vae: skipped" >&2
fi
echo "CPU pressure at end: $(head -1 /proc/pressure/cpu)" >&2

python3 - "$out" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
ms = lambda s: f"{1000 * s:.3g} ms"
print("\n| record | transport | CPU pressure avg10 before/after | result |\n|---|---|---|---|")
for r in rows:
    x = r["result"]; p = f'{r["cpu_pressure_avg10_avg60_before"].split()[0]} / {r["cpu_pressure_avg10_avg60_after"].split()[0]} %'
    if r["label"].startswith("vae"):
        e = x["epoch_seconds"][0]
        text = f'{e:.3g} s per epoch of {x["images"]:,} images, {1000 * e / -(-x["images"] // x["batch"]):.3g} ms per step of {x["batch"]}'
    elif r["label"].startswith("allreduce"):
        text = f'{x["bytes"]:,} bytes: median {ms(x["median_seconds"])} (min {ms(x["min_seconds"])}), {x["bus_gbit_per_second"]:.2f} Gbit/s bus'
    else:
        text = f'{x["images_per_second"]:.4g} images/s, step {ms(x["step_median_seconds"])}'
        if x["ranks"] > 1:
            text += (f'; forward+backward {ms(x["step_forward_backward_seconds"])}, all-reduce of {x["allreduce_bytes_per_step"]:,} bytes'
                     f' in {x["buckets_per_step"]} bucket(s) after backward {ms(x["step_allreduce_after_backward_median_seconds"])} median'
                     f' (last rank out of backward: {ms(x["step_allreduce_exposed_median_seconds"])})'
                     f' ({ms(x["step_allreduce_after_backward_mean_seconds"])} mean), update {ms(x["step_update_seconds"])}')
            if x["overlap"]:
                text += f'; {100 * x["fraction_reduced_during_backward"]:.0f}% of the bytes reduced during backward (progress calls during backward {ms(x["step_progress_seconds"])})'
    print(f'| {r["label"]} | {r["transport"]} | {p} | {text} |')
by = {(r["label"], r["transport"]): r["result"] for r in rows}
for transport in ["shm", "tcp-lo"]:
    a, b = by.get(("resnet18-2x1", transport)), by.get(("resnet18-2x1-no-overlap", transport))
    if a and b:
        key = "step_allreduce_exposed_median_seconds"
        hidden = 1 - a[key] / max(b[key], 1e-12)
        print(f'\nResNet-18, {transport}: all-reduce after backward on the rank that finished backward last {ms(a[key])} with overlap '
              f'against {ms(b[key])} without (medians over steps): {100 * hidden:.0f}% hidden, {100 * a["fraction_reduced_during_backward"]:.0f}% of the bytes reduced '
              f'during backward; step {ms(a["step_median_seconds"])} against {ms(b["step_median_seconds"])}')
EOF
