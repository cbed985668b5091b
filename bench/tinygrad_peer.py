"""tinygrad on its CPU device (C source compiled with clang; TINYGRAD_RENDERER=LLVM for LLVM),
BEAM search off, each training step captured by a TinyJit (one per batch shape).

usage: python tinygrad_peer.py WORKLOAD [--threads 2] [--jsonl FILE] [--seed S]
NUM_CPU_THREADS bounds how many chunks tinygrad splits a CPU kernel into.
"""
import os
import time

import common as c

WORKLOADS = ("gemm", "lenet5-train", "lenet5-infer", "mlp-b16", "vae-train", "mnist-cnn-train")
args = c.arguments(workloads=WORKLOADS)
c.pin_threads(args.threads)
renderer = os.environ.get("TINYGRAD_RENDERER")
os.environ["DEV"] = f"CPU:{renderer}" if renderer else "CPU"
os.environ["NUM_CPU_THREADS"] = str(args.threads)

from importlib.metadata import version  # noqa: E402

import numpy as np  # noqa: E402
from tinygrad import Device, Tensor, TinyJit  # noqa: E402
from tinygrad.helpers import Context  # noqa: E402
from tinygrad.nn.optim import SGD, Adam  # noqa: E402

SYSTEM, VERSION = "tinygrad", version("tinygrad")
Tensor.manual_seed(args.seed)


def device(arrays):
    return {k: Tensor(v).realize() for k, v in arrays.items()}


def linear(p, name, x):
    return x.linear(p[name + ".weight"].transpose(), p[name + ".bias"])


def lenet5(p, x):
    x = x.conv2d(p["conv1.weight"], p["conv1.bias"], padding=2).relu().max_pool2d(2)
    x = x.conv2d(p["conv2.weight"], p["conv2.bias"]).relu().max_pool2d(2)
    x = linear(p, "fc1", x.reshape(x.shape[0], -1)).relu()
    return linear(p, "fc3", linear(p, "fc2", x).relu())


def mlp(p, x):  # Tensor.dropout acts only under Context(TRAINING=1)
    x = linear(p, "fc1", x).relu().dropout(c.MLP["dropout"])
    x = linear(p, "fc2", x).relu().dropout(c.MLP["dropout"])
    return linear(p, "fc3", x)


def mnist_cnn(p, x):  # dropout acts only under Context(TRAINING=1)
    x = x.conv2d(p["conv1.weight"], p["conv1.bias"]).relu()
    x = x.conv2d(p["conv2.weight"], p["conv2.bias"]).relu().max_pool2d(2).dropout(c.CNN["dropout"][0])
    x = linear(p, "fc1", x.reshape(x.shape[0], -1)).relu().dropout(c.CNN["dropout"][1])
    return linear(p, "fc2", x)


def vae_loss(p, x, noise):
    h = linear(p, "enc", x).relu()
    mu, logvar = linear(p, "mu", h), linear(p, "logvar", h)
    logits = linear(p, "dec2", linear(p, "dec1", mu + (0.5 * logvar).exp() * noise).relu())
    bce = (logits.maximum(0) - logits * x + (-logits.abs()).exp().add(1).log()).sum()
    kl = -0.5 * (1 + logvar - mu * mu - logvar.exp()).sum()
    return (bce + kl) / x.shape[0]


def accuracy(forward, images, labels, prepare):
    right = 0
    for s, e in c.slices(len(images), c.EVAL_BATCH):
        right += int((forward(Tensor(prepare(images[s:e]))).argmax(1).numpy() == labels[s:e]).sum())
    return right / len(images)


def train(loss_of, optimizer, images, labels, batch, epochs, prepare, limit=None):
    jits, last = {}, {}

    def make(n):
        def step(x, y):
            with Context(TRAINING=1):
                optimizer.zero_grad()
                loss = loss_of(x, y)
                loss.backward()
                optimizer.step()
            return loss.realize()
        return TinyJit(step)

    def one(_, idx):
        n = len(idx)
        if n not in jits:
            jits[n] = make(n)
        y = Tensor(labels[idx].astype(np.int32)) if labels is not None else Tensor.zeros(n).contiguous()
        last["loss"] = jits[n](Tensor(prepare(images[idx])), y)

    clock = c.Clock()
    for epoch in range(epochs):
        clock.run_epoch(c.epoch_batches(len(images), batch, args.seed, epoch, args.limit_steps or limit), one,
                        lambda: last["loss"].item() if last else None)
    return clock


def run_gemm():
    a, b = (Tensor(m).realize() for m in c.gemm_operands(args.seed))
    mm = TinyJit(lambda a, b: (a @ b).realize())
    t = time.perf_counter()
    mm(a, b).numpy()
    first = time.perf_counter() - t
    for _ in range(c.GEMM_WARMUP):
        mm(a, b).realize()
    seconds = []
    for _ in range(c.GEMM_REPS):
        t = time.perf_counter()
        mm(a, b)
        Device[a.device].synchronize()
        seconds.append(time.perf_counter() - t)
    value, extra = c.gemm_figures(seconds)
    c.record(args, SYSTEM, VERSION, "gflops", value, first, extra=extra)


def train_classifier(net, weights, spec, epochs, steps=None):
    """SGD with momentum on Fashion-MNIST images (LeNet-5, the MNIST example CNN); records the
    epoch time and the test accuracy."""
    xtr, ytr = c.fashion_mnist("train")
    xte, yte = c.fashion_mnist("test")
    p = device(weights)
    opt = SGD(list(p.values()), lr=spec["lr"], momentum=spec["momentum"])
    clock = train(lambda x, y: net(p, x).sparse_categorical_crossentropy(y), opt, xtr, ytr,
                  spec["batch"], epochs, c.as_images, steps)
    value, extra = clock.summary()
    forward = TinyJit(lambda x: net(p, x).realize())
    c.record(args, SYSTEM, VERSION, "epoch_seconds", value, clock.first,
             test_accuracy=accuracy(forward, xte, yte, c.as_images), extra=extra)


def run_lenet5_train():
    train_classifier(lenet5, c.lenet5_weights(args.seed), c.LENET, args.epochs or c.LENET["epochs"])


def run_lenet5_infer():
    xte, _ = c.fashion_mnist("test")
    p = device(c.lenet5_weights(args.seed))
    jits = {}

    def forward(x):
        n = x.shape[0]
        if n not in jits:
            jits[n] = TinyJit(lambda x: lenet5(p, x).realize())
        return jits[n](x)

    cuts = c.slices(len(xte), c.INFER_BATCH)
    t = time.perf_counter()
    forward(Tensor(c.as_images(xte[:c.INFER_BATCH]))).numpy()
    first = time.perf_counter() - t
    best = None
    for i in range(2 + c.INFER_PASSES):  # a TinyJit captures on its second call: two warm-up passes
        t = time.perf_counter()
        out = None
        for s, e in cuts:
            out = forward(Tensor(c.as_images(xte[s:e])))
        out.numpy()
        if i >= 2:
            best = min(best or 1e30, time.perf_counter() - t)
    c.record(args, SYSTEM, VERSION, "images_per_second", len(xte) / best, first,
             extra={"best_pass_seconds": round(best, 4)})


def run_mlp():
    xtr, ytr = c.fashion_mnist("train")
    xte, yte = c.fashion_mnist("test")
    p = device(c.mlp_weights(args.seed))
    opt = SGD(list(p.values()), lr=c.MLP["lr"])
    clock = train(lambda x, y: mlp(p, x).sparse_categorical_crossentropy(y), opt, xtr, ytr,
                  c.MLP["batch"], args.epochs or c.MLP["epochs"], c.as_rows)
    value, extra = clock.summary()
    c.record(args, SYSTEM, VERSION, "epoch_seconds", value, clock.first,
             test_accuracy=accuracy(lambda x: mlp(p, x), xte, yte, c.as_rows), extra=extra)


def run_mnist_cnn():
    train_classifier(mnist_cnn, c.mnist_cnn_weights(args.seed), c.CNN, args.epochs or 1, c.CNN["steps"])


def run_vae():
    xtr, _ = c.fashion_mnist("train")
    xte, _ = c.fashion_mnist("test")
    p = device(c.vae_weights(args.seed))
    (b1, b2) = c.VAE["betas"]
    opt = Adam(list(p.values()), lr=c.VAE["lr"], b1=b1, b2=b2, eps=c.VAE["eps"])
    clock = train(lambda x, _y: vae_loss(p, x, Tensor.randn(x.shape[0], c.VAE["latent"])), opt, xtr, None,
                  c.VAE["batch"], args.epochs or c.VAE["epochs"], c.as_rows)
    noise = c.vae_test_noise(len(xte))
    total = sum(float(vae_loss(p, Tensor(c.as_rows(xte[s:e])), Tensor(noise[s:e])).item()) * (e - s)
                for s, e in c.slices(len(xte), c.EVAL_BATCH))
    value, extra = clock.summary()
    c.record(args, SYSTEM, VERSION, "epoch_seconds", value, clock.first, test_neg_elbo=total / len(xte), extra=extra)


{"gemm": run_gemm, "lenet5-train": run_lenet5_train, "lenet5-infer": run_lenet5_infer, "mlp-b16": run_mlp,
 "vae-train": run_vae, "mnist-cnn-train": run_mnist_cnn}[args.workload]()
