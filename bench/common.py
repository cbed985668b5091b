"""What every peer script shares: the workload spec, the command line, thread pinning,
the data (Fashion-MNIST and the synthetic ResNet set), the initial weights drawn from
numpy, and the JSONL record (with the machine's CPU model, ISA and CPU pressure).

Import this module before any framework: `pin_threads` sets the thread variables that
the frameworks read when they start.
"""
import argparse
import datetime
import gzip
import json
import math
import os
import platform
import resource
import statistics
import struct
import sys
import time

import numpy as np

ALL_WORKLOADS = ("gemm", "lenet5-train", "lenet5-infer", "mlp-b16", "vae-train", "mnist-cnn-train",
                 "resnet18-train", "resnet18-infer", "resnet20-train", "resnet20-infer")

# The spec (README.md in this folder).
GEMM_SIZE, GEMM_WARMUP, GEMM_REPS = 1024, 3, 20
LENET = dict(batch=64, lr=0.01, momentum=0.9, epochs=3)
INFER_BATCH, INFER_PASSES = 256, 3
MLP = dict(batch=16, lr=0.01, dropout=0.3, epochs=1)
VAE = dict(batch=128, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, hidden=400, latent=20, epochs=1)
VAE_TEST_NOISE_SEED = 1234
# PyTorch's MNIST example network (pytorch/examples mnist/main.py), the first CNN many users
# write; the first `steps` batches of epoch 0 (12,800 images), so that every peer finishes in
# about a minute.
CNN = dict(batch=64, lr=0.01, momentum=0.9, dropout=(0.25, 0.5), steps=200)
EVAL_BATCH = 1000
RESNET = dict(batch=128, images=1280, classes=10, lr=0.05, momentum=0.9,
              bn_momentum=0.1, bn_eps=1e-5, warmup_steps=2, timed_steps=10,
              infer_images=1024, infer_passes=3)
RESNET_STAGES = (64, 128, 256, 512)
RESNET_STRIDES = (1, 2, 2, 2)
# The residual networks of the resnet18-* and resnet20-* workloads: stem width, stage widths
# (the first block of every stage after the first has stride 2), basic blocks per stage.
# ResNet-20 (He et al.'s CIFAR network, 16-32-64) is the kind of network a user writes for
# small images; both run on the same synthetic set, batch, optimizer and timing rules.
RESNET_ARCH = {"resnet18": (64, RESNET_STAGES, 2), "resnet20": (16, (16, 32, 64), 3)}


# ---------------------------------------------------------------- command line, threads
def arguments(workloads=ALL_WORKLOADS, modes=None):
    p = argparse.ArgumentParser()
    p.add_argument("workload", choices=workloads)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--jsonl", help="append the record to this file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, help="smoke tests only: epochs instead of the spec's")
    p.add_argument("--limit-steps", type=int, help="smoke tests only: steps per epoch (resnet18-train: timed steps; resnet18-infer: batches per pass)")
    if modes:
        p.add_argument("--mode", choices=modes, default=modes[0])
    return p.parse_args()


def pin_threads(n):
    """BLAS/OpenMP pools of N threads, and the process on N CPUs when it may use more."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[name] = str(n)
    try:
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) > n:
            os.sched_setaffinity(0, allowed[:n])
    except (AttributeError, OSError):
        pass


# ---------------------------------------------------------------- machine facts
def cpu_info():
    """(model, isa): /proc/cpuinfo's model name (family and model added to a generic one)
    and the widest vector extensions among the flags."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    model = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and len(model.split()) <= 3:
        model += f" (family {fields['cpu family']} model {fields.get('model', '?')})"
    flags = set(fields.get("flags", "").split())
    isa = [x for x in ("avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile",
                       "avx2", "fma") if x in flags]
    if not isa and platform.machine() in ("aarch64", "arm64"):
        isa = ["neon"] + [x for x in ("sve", "sve2") if x in set(fields.get("Features", "").split())]
    return model, " ".join(isa) or platform.machine()


def cpu_pressure():
    """Linux PSI 'some' line of /proc/pressure/cpu: % of time a runnable task waited for a CPU."""
    try:
        with open("/proc/pressure/cpu") as f:
            parts = f.readline().split()[1:]
        values = dict(p.split("=") for p in parts)
        return {"avg10": float(values["avg10"]), "avg60": float(values["avg60"]),
                "avg300": float(values["avg300"])}
    except (OSError, KeyError, ValueError):
        return None


def peak_rss_mb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def record(args, system, version, metric, value, compile_seconds=None, test_accuracy=None,
           test_neg_elbo=None, extra=None):
    """Print the one-line summary and append the JSONL record."""
    model, isa = cpu_info()
    pressure = cpu_pressure()
    extra = dict(extra or {})
    extra["loadavg_1m"] = round(os.getloadavg()[0], 2)
    if os.environ.get("KILN_PEER_ISA"):
        # compare.sh's PEER_ISA: the libraries were held to this ISA by their own switches.
        limit = os.environ["KILN_PEER_ISA"]
        if system.startswith("jax") and "xla_cpu_use_xnnpack=false" not in os.environ.get("XLA_FLAGS", ""):
            # --xla_cpu_max_isa alone holds XLA's generated code only: XNNPACK/YNNPACK, which
            # run its matmuls, pick their kernels for the host CPU at run time (measured: GEMM
            # 1024^3 at 258 GFLOP/s with the flag, above the AVX2 peak). compare.sh switches them off.
            limit += " for XLA's generated code; XNNPACK matmuls use the host ISA"
        extra["isa_limit"] = limit
        isa = f"{isa} (held to {limit})"
    if pressure:
        extra["cpu_pressure_60s"] = pressure["avg60"]
        extra["cpu_pressure"] = pressure
    rec = {"system": system, "version": version, "workload": args.workload, "threads": args.threads,
           "metric": metric, "value": _round(value, 4), "compile_seconds": _round(compile_seconds, 4),
           "test_accuracy": _round(test_accuracy, 5), "test_neg_elbo": _round(test_neg_elbo, 4),
           "peak_rss_mb": peak_rss_mb(),
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "host": model, "isa": isa, "seed": args.seed, "extra": extra}
    shown = [f"{metric}={value:.4g}"]
    for label, v in (("compile_s", compile_seconds), ("test_acc", test_accuracy), ("neg_elbo", test_neg_elbo)):
        if v is not None:
            shown.append(f"{label}={v:.4g}")
    print(f"[{system} {version}] {args.workload}: " + " ".join(shown)
          + f" peak_rss={rec['peak_rss_mb']}MB threads={args.threads} cpu_pressure_60s="
          + (f"{pressure['avg60']}" if pressure else "n/a"), flush=True)
    if args.jsonl:
        with open(args.jsonl, "a") as f:
            f.write(json.dumps(rec) + "\n")
    return rec


def _round(v, digits):
    if v is None:
        return None
    v = float(v)
    return round(v, digits) if math.isfinite(v) else None


# ---------------------------------------------------------------- timing helpers
class Clock:
    """Epoch timer: the first step of the run is timed apart (compile_seconds) and left out."""

    def __init__(self):
        self.first = None
        self.epochs = []

    def run_epoch(self, steps, step, sync):
        start = time.perf_counter()
        for i, item in enumerate(steps):
            if self.first is None:
                t = time.perf_counter()
                step(i, item)
                sync()
                self.first = time.perf_counter() - t
                start += self.first
            else:
                step(i, item)
        sync()
        self.epochs.append(time.perf_counter() - start)

    def summary(self):
        return statistics.median(self.epochs), {"epoch_seconds": [round(t, 3) for t in self.epochs]}


def gemm_figures(seconds):
    flops = 2.0 * GEMM_SIZE ** 3
    best, median = min(seconds), statistics.median(seconds)
    return flops / best / 1e9, {"median_gflops": round(flops / median / 1e9, 2), "best_ms": round(best * 1e3, 3),
                                "median_ms": round(median * 1e3, 3), "reps": len(seconds)}


def step_figures(seconds):
    return statistics.median(seconds), {"step_seconds": [round(t, 4) for t in seconds]}


# ---------------------------------------------------------------- Fashion-MNIST
def fmnist_directory():
    return os.environ.get("FMNIST_DIR", "/usr/share/datasets/fashion-mnist")


def _idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:3] != b"\0\0\x08":
        raise ValueError(f"{path}: not a uint8 IDX file")
    rank = raw[3]
    shape = struct.unpack(">" + "I" * rank, raw[4:4 + 4 * rank])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * rank).reshape(shape)


def fashion_mnist(split):
    """(images uint8 [N,28,28], labels uint8 [N]) of 'train' or 'test'."""
    prefix = {"train": "train", "test": "t10k"}[split]
    d = fmnist_directory()
    return _idx(f"{d}/{prefix}-images-idx3-ubyte.gz"), _idx(f"{d}/{prefix}-labels-idx1-ubyte.gz")


def to_float(images):
    """uint8 -> float32 x/255 (IEEE float32 division)."""
    return images.astype(np.float32) / np.float32(255)


def as_rows(images):
    return to_float(images).reshape(len(images), 784)


def as_images(images):
    return to_float(images).reshape(len(images), 1, 28, 28)


def epoch_order(count, seed, epoch):
    """Epoch e visits the training set in numpy.random.default_rng([seed, e]).permutation(count)."""
    return np.random.default_rng([seed, epoch]).permutation(count)


def slices(count, batch):
    """Consecutive (start, stop) batches; the last partial one is kept."""
    return [(s, min(s + batch, count)) for s in range(0, count, batch)]


def epoch_batches(count, batch, seed, epoch, limit=None):
    order = epoch_order(count, seed, epoch)
    cuts = slices(count, batch)
    if limit:
        cuts = cuts[:limit]
    return [order[s:e] for s, e in cuts]


# ---------------------------------------------------------------- initial weights (numpy, PyTorch layouts)
# PyTorch's default initialisation of Linear and Conv2d: weight and bias ~ U(±1/sqrt(fan_in)).
# Drawn from numpy in parameter order so that every framework starts from the same bits.
def _uniform(rng, shape, fan_in):
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def _linear(rng, params, name, n_in, n_out, bias=True):
    params[name + ".weight"] = _uniform(rng, (n_out, n_in), n_in)
    if bias:
        params[name + ".bias"] = _uniform(rng, (n_out,), n_in)


def _conv(rng, params, name, c_in, c_out, k, bias=True):
    params[name + ".weight"] = _uniform(rng, (c_out, c_in, k, k), c_in * k * k)
    if bias:
        params[name + ".bias"] = _uniform(rng, (c_out,), c_in * k * k)


def lenet5_weights(seed):
    rng, p = np.random.default_rng([seed, 1000]), {}
    _conv(rng, p, "conv1", 1, 6, 5)
    _conv(rng, p, "conv2", 6, 16, 5)
    _linear(rng, p, "fc1", 400, 120)
    _linear(rng, p, "fc2", 120, 84)
    _linear(rng, p, "fc3", 84, 10)
    return p


def mlp_weights(seed):
    rng, p = np.random.default_rng([seed, 1001]), {}
    _linear(rng, p, "fc1", 784, 200)
    _linear(rng, p, "fc2", 200, 200)
    _linear(rng, p, "fc3", 200, 10)
    return p


def vae_weights(seed):
    rng, p, h, z = np.random.default_rng([seed, 1002]), {}, VAE["hidden"], VAE["latent"]
    _linear(rng, p, "enc", 784, h)
    _linear(rng, p, "mu", h, z)
    _linear(rng, p, "logvar", h, z)
    _linear(rng, p, "dec1", z, h)
    _linear(rng, p, "dec2", h, 784)
    return p


def mnist_cnn_weights(seed):
    rng, p = np.random.default_rng([seed, 1004]), {}
    _conv(rng, p, "conv1", 1, 32, 3)
    _conv(rng, p, "conv2", 32, 64, 3)
    _linear(rng, p, "fc1", 9216, 128)
    _linear(rng, p, "fc2", 128, 10)
    return p


def vae_test_noise(count=10000):
    return np.random.default_rng(VAE_TEST_NOISE_SEED).standard_normal((count, VAE["latent"]), dtype=np.float32)


def gemm_operands(seed):
    rng = np.random.default_rng([seed, 7])
    n = GEMM_SIZE
    return rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)


# ---------------------------------------------------------------- ResNet-18 and ResNet-20 (CIFAR form)
def resnet_arch(workload):
    """'resnet18' or 'resnet20' from a workload name such as 'resnet20-train'."""
    return workload.split("-")[0]


def resnet18_blocks(arch="resnet18"):
    """[(name, in_channels, out_channels, stride)] of the basic blocks of `arch`."""
    stem, stages, per_stage = RESNET_ARCH[arch]
    blocks, c_in = [], stem
    for stage, c_out in enumerate(stages, start=1):
        for i in range(per_stage):
            blocks.append((f"layer{stage}.{i}", c_in, c_out, 2 if stage > 1 and i == 0 else 1))
            c_in = c_out
    return blocks


def resnet18_weights(seed, classes=RESNET["classes"], arch="resnet18"):
    """Parameters in PyTorch's torchvision-style names and order; convolutions have no bias,
    batch norm starts at weight 1, bias 0 (running mean 0, variance 1)."""
    rng, p = np.random.default_rng([seed, 1003]), {}

    def bn(name, c):
        p[name + ".weight"] = np.ones(c, np.float32)
        p[name + ".bias"] = np.zeros(c, np.float32)

    stem = RESNET_ARCH[arch][0]
    _conv(rng, p, "conv1", 3, stem, 3, bias=False)
    bn("bn1", stem)
    for name, c_in, c_out, stride in resnet18_blocks(arch):
        _conv(rng, p, name + ".conv1", c_in, c_out, 3, bias=False)
        bn(name + ".bn1", c_out)
        _conv(rng, p, name + ".conv2", c_out, c_out, 3, bias=False)
        bn(name + ".bn2", c_out)
        if stride != 1 or c_in != c_out:
            _conv(rng, p, name + ".downsample.0", c_in, c_out, 1, bias=False)
            bn(name + ".downsample.1", c_out)
    _linear(rng, p, "fc", RESNET_ARCH[arch][1][-1], classes)
    return p


def resnet_data(seed):
    """The synthetic set: RESNET['images'] images uniform in [0, 1), labels uniform in 0..9."""
    rng = np.random.default_rng([seed, 2000])
    x = rng.random((RESNET["images"], 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, RESNET["classes"], RESNET["images"]).astype(np.int32)
    return x, y


def resnet_batch(x, y, step):
    b = RESNET["batch"]
    k = (step * b) % len(x)
    return x[k:k + b], y[k:k + b]


def framework_exit(message):
    print(message, file=sys.stderr)
    sys.exit(2)
