#!/usr/bin/env python3
"""The cost model of README "Training on several machines" (issue 18): predicted speed-up of
data-parallel training with a fixed global batch (what `mpirun -np N kiln train` does) on N
nodes like this one, with the reduction after backward (--no-overlap) and overlapped with it
(the default).

  without overlap: T(N) = T_fb / N + T_update + C,   C = buckets * 2(N-1) * alpha + 2(N-1)/N * S / BW
  with overlap:    T(N) = T_fb / N + T_update + max(C_last, C - B * T_fb / N)
  speed-up(N) = (T_fb + T_update) / T(N)

With overlap every bucket but the last can be reduced while backward (a fraction B = 2/3 of
forward + backward, assumed) still runs; the last bucket (the first layers, the batch-norm
statistics, loss and count), C_last = one bucket's cost, always comes after it.

T_fb: forward + backward of the global batch on one node; T_update: the optimizer step (every
node updates every parameter, so it does not shrink); S: gradient bytes; BW: link bandwidth;
alpha: per-message latency. Forward and backward are assumed to shrink as 1/N (an upper
bound: small shards run less efficiently)."""
import math, sys

ALPHA = 30e-6  # s per message (MPI over TCP on Ethernet; 2 messages per rank per ring step)
BUCKET = 4 * 2**20   # the default --bucket-mb
BACKWARD = 2 / 3     # backward's share of forward + backward (assumed)

# name, gradient bytes (with batch-norm statistics), T_fb, T_update (s), global batch
models = [
    ("LeNet-5", 246_832, None, None, 64),
    ("VAE", 2_611_296, None, None, 128),
    ("ResNet-18", 44_734_256, None, None, 128),
]

def predict(S, t_fb, t_u, n, gbps, overlap=False):
    if n == 1:
        return t_fb + t_u, 0.0
    cost = lambda size, count: count * 2 * (n - 1) * ALPHA + 2 * (n - 1) / n * size / (gbps * 1e9 / 8)
    comm = cost(S, max(1, math.ceil(S / BUCKET)))
    if overlap:
        comm = max(cost(min(S, BUCKET), 1), comm - BACKWARD * t_fb / n)
    return t_fb / n + t_u + comm, comm

def table(rows):
    print("| model | gradient bytes | step on 1 node (fwd+bwd + update) | link | all-reduce at 16 nodes (exposed with overlap) | 2 | 4 | 8 | 16 nodes (with overlap) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, S, t_fb, t_u, batch in rows:
        for gbps in (10, 100):
            t1 = t_fb + t_u
            cells = []
            for n in (2, 4, 8, 16):
                t, _ = predict(S, t_fb, t_u, n, gbps)
                o, _ = predict(S, t_fb, t_u, n, gbps, overlap=True)
                cells.append(f"{t1 / t:.2f}× ({t1 / o:.2f}×)")
            _, c16 = predict(S, t_fb, t_u, 16, gbps)
            _, e16 = predict(S, t_fb, t_u, 16, gbps, overlap=True)
            print(f"| {name} (batch {batch}) | {S / 1e6:.2f} MB | {t_fb * 1e3:.2f} + {t_u * 1e3:.2f} ms | {gbps} Gb/s | {c16 * 1e3:.2f} ms ({e16 * 1e3:.2f}) | " + " | ".join(cells) + " |")

if __name__ == "__main__":
    # Per-step times in ms as arguments: lenet_fb lenet_u vae_fb vae_u resnet_fb resnet_u
    v = [float(x) / 1e3 for x in sys.argv[1:7]]
    rows = [(m[0], m[1], v[2 * i], v[2 * i + 1], m[4]) for i, m in enumerate(models)]
    table(rows)
    for name, S, t_fb, t_u, batch in rows:
        for gbps in (10, 100):
            for overlap in (False, True):
                counts = range(1, batch + 1)  # at most one example per node
                step = lambda n: predict(S, t_fb, t_u, n, gbps, overlap)[0]
                best = min(counts, key=step)
                half = max([n for n in counts if (t_fb + t_u) / step(n) >= n / 2], default=1)
                print(f"{name} at {gbps} Gb/s (at most {batch} nodes), {'with' if overlap else 'without'} overlap: fastest at {best} nodes "
                      f"({(t_fb + t_u) / step(best):.1f}×); efficiency ≥ 50% up to {half} nodes")
