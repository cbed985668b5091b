#!/usr/bin/env bash
# The loopback figures of README "Training on several machines" (issue 18), in one run under the
# benchmark lock: the all-reduce alone (shared memory and TCP over loopback), then LeNet-5 and
# ResNet-18 training as 1 rank × 2 threads (the ordinary one-process step) against 2 ranks × 1
# thread, and the VAE's step time. JSON lines to ${OUT:-out/distributed-bench.jsonl}.
#   flock /tmp/kiln-bench.lock bash scripts/distributed-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product kiln >/dev/null
swift build -c release --product distributed-check >/dev/null
bin=$(swift build -c release --show-bin-path)
out=${OUT:-out/distributed-bench.jsonl}
mkdir -p "$(dirname "$out")"; : > "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
SM=(mpirun --oversubscribe -np 2 --bind-to none)
TCP=(mpirun --oversubscribe -np 2 --bind-to none --mca btl tcp,self --mca btl_tcp_if_include lo)
record() {  # label, then the command; appends {"label", "pressure_before", result...}
    local label=$1; shift
    local pressure; pressure=$(head -1 /proc/pressure/cpu)
    local line; line=$("$@" | tail -1)
    echo "{\"label\": \"$label\", \"cpu_pressure_before\": \"$pressure\", \"result\": $line}" | tee -a "$out"
}
grep -m1 "model name" /proc/cpuinfo; nproc
# The all-reduce alone: LeNet-5's, the VAE's and ResNet-18's gradient sizes (floats, as the trainer reduces them).
for floats in 61706 652824 11183562; do
    record "allreduce-shm-$floats" "${SM[@]}" "$bin/distributed-check" allreduce $floats 20
    record "allreduce-tcp-lo-$floats" "${TCP[@]}" "$bin/distributed-check" allreduce $floats 20
done
# LeNet-5 on 12,800 Fashion-MNIST images (200 steps of 64).
lenet=(train lenet5 --dataset fashion-mnist --limit 12800 --epochs 1 --batch 64 --json)
record lenet5-1x2 "$bin/kiln" "${lenet[@]}" --threads 2
record lenet5-1x2-split "$bin/kiln" "${lenet[@]}" --threads 2 --distributed
record lenet5-2x1-shm "${SM[@]}" "$bin/kiln" "${lenet[@]}" --threads 1 --time-allreduce
record lenet5-2x1-tcp-lo "${TCP[@]}" "$bin/kiln" "${lenet[@]}" --threads 1 --time-allreduce
# ResNet-18 on 1,280 synthetic CIFAR images (10 steps of 128).
resnet=(train resnet18 --dataset synthetic-cifar --limit 1280 --epochs 1 --batch 128 --json)
record resnet18-1x2 "$bin/kiln" "${resnet[@]}" --threads 2
record resnet18-2x1-shm "${SM[@]}" "$bin/kiln" "${resnet[@]}" --threads 1 --time-allreduce
record resnet18-2x1-tcp-lo "${TCP[@]}" "$bin/kiln" "${resnet[@]}" --threads 1 --time-allreduce
# The VAE's step (the peers' workload: batch 128, Adam), one process.
record vae-1x2 "$bin/kiln" bench vae-train --threads 2 --json
head -1 /proc/pressure/cpu
