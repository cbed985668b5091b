#!/usr/bin/env python3
"""The cost model of README "Training on several machines" (issue 18): predicted speed-up of
data-parallel training with a fixed global batch (what `mpirun -np N kiln train` does) on N
nodes like this one, without overlap of communication and backward (as built).

  T(N) = T_fb / N + T_update + buckets * 2(N-1) * alpha + 2(N-1)/N * S / BW
  speed-up(N) = (T_fb + T_update) / T(N)

T_fb: forward + backward of the global batch on one node; T_update: the optimizer step (every
node updates every parameter, so it does not shrink); S: gradient bytes; BW: link bandwidth;
alpha: per-message latency. Forward and backward are assumed to shrink as 1/N (an upper
bound: small shards run less efficiently)."""
import math, sys

ALPHA = 30e-6  # s per message (MPI over TCP on Ethernet; 2 messages per rank per ring step)
BUCKET = 16 * 2**20

# name, gradient bytes (with batch-norm statistics), T_fb, T_update (s), global batch
models = [
    ("LeNet-5", 246_824, None, None, 64),
    ("VAE", 2_611_296, None, None, 128),
    ("ResNet-18", 44_734_248, None, None, 128),
]

def predict(S, t_fb, t_u, n, gbps):
    buckets = max(1, math.ceil(S / BUCKET))
    comm = 0.0 if n == 1 else buckets * 2 * (n - 1) * ALPHA + 2 * (n - 1) / n * S / (gbps * 1e9 / 8)
    return t_fb / n + t_u + comm, comm

def table(rows):
    print("| model | gradient bytes | step on 1 node (fwd+bwd + update) | link | all-reduce at 16 nodes | 2 | 4 | 8 | 16 nodes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, S, t_fb, t_u, batch in rows:
        for gbps in (10, 100):
            t1 = t_fb + t_u
            cells = []
            for n in (2, 4, 8, 16):
                t, _ = predict(S, t_fb, t_u, n, gbps)
                cells.append(f"{t1 / t:.2f}×")
            _, c16 = predict(S, t_fb, t_u, 16, gbps)
            print(f"| {name} (batch {batch}) | {S / 1e6:.2f} MB | {t_fb * 1e3:.2f} + {t_u * 1e3:.2f} ms | {gbps} Gb/s | {c16 * 1e3:.2f} ms | " + " | ".join(cells) + " |")

if __name__ == "__main__":
    # Per-step times in ms as arguments: lenet_fb lenet_u vae_fb vae_u resnet_fb resnet_u
    v = [float(x) / 1e3 for x in sys.argv[1:7]]
    rows = [(m[0], m[1], v[2 * i], v[2 * i + 1], m[4]) for i, m in enumerate(models)]
    table(rows)
    for name, S, t_fb, t_u, batch in rows:
        for gbps in (10, 100):
            counts = range(1, batch + 1)  # at most one example per node
            best = min(counts, key=lambda n: predict(S, t_fb, t_u, n, gbps)[0])
            half = max([n for n in counts if (t_fb + t_u) / predict(S, t_fb, t_u, n, gbps)[0] >= n / 2], default=1)
            print(f"{name} at {gbps} Gb/s (at most {batch} nodes): fastest at {best} nodes ({(t_fb + t_u) / predict(S, t_fb, t_u, best, gbps)[0]:.1f}×); efficiency ≥ 50% up to {half} nodes")
