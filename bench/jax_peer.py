"""JAX on the XLA CPU backend: each training step (forward, backward, update) is one
jax.jit with its state donated.

usage: python jax_peer.py WORKLOAD [--threads 2] [--jsonl FILE] [--seed S]

XLA:CPU sizes its thread pool from the CPUs the process may use, so the affinity that
common.pin_threads sets is what bounds it; the Eigen flag is passed as well.
"""
import os
import time
from functools import partial

import common as c

args = c.arguments()
c.pin_threads(args.threads)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=true"
                           f" intra_op_parallelism_threads={args.threads}"
                           " --xla_force_host_platform_device_count=1").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

SYSTEM, VERSION = "jax-jit", jax.__version__
tree_map = jax.tree_util.tree_map


def linear(p, name, x):
    return x @ p[name + ".weight"].T + p[name + ".bias"]


def conv(x, w, stride=1, padding=0):
    return lax.conv_general_dilated(x, w, (stride, stride), [(padding, padding)] * 2,
                                    dimension_numbers=("NCHW", "OIHW", "NCHW"))


def max_pool2(x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")


def lenet5(p, x):
    x = max_pool2(jax.nn.relu(conv(x, p["conv1.weight"], padding=2) + p["conv1.bias"][:, None, None]))
    x = max_pool2(jax.nn.relu(conv(x, p["conv2.weight"]) + p["conv2.bias"][:, None, None]))
    x = jax.nn.relu(linear(p, "fc1", x.reshape(x.shape[0], -1)))
    return linear(p, "fc3", jax.nn.relu(linear(p, "fc2", x)))


def cross_entropy(logits, labels):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))


def dropout(key, x, rate):
    return jnp.where(jax.random.bernoulli(key, 1 - rate, x.shape), x / (1 - rate), 0)


def mlp(p, x, key=None):
    x = jax.nn.relu(linear(p, "fc1", x))
    if key is not None:
        x = dropout(jax.random.fold_in(key, 0), x, c.MLP["dropout"])
    x = jax.nn.relu(linear(p, "fc2", x))
    if key is not None:
        x = dropout(jax.random.fold_in(key, 1), x, c.MLP["dropout"])
    return linear(p, "fc3", x)


def mnist_cnn(p, x, key=None):
    x = jax.nn.relu(conv(x, p["conv1.weight"]) + p["conv1.bias"][:, None, None])
    x = max_pool2(jax.nn.relu(conv(x, p["conv2.weight"]) + p["conv2.bias"][:, None, None]))
    if key is not None:
        x = dropout(jax.random.fold_in(key, 0), x, c.CNN["dropout"][0])
    x = jax.nn.relu(linear(p, "fc1", x.reshape(x.shape[0], -1)))
    if key is not None:
        x = dropout(jax.random.fold_in(key, 1), x, c.CNN["dropout"][1])
    return linear(p, "fc2", x)


def vae_loss(p, x, noise):
    h = jax.nn.relu(linear(p, "enc", x))
    mu, logvar = linear(p, "mu", h), linear(p, "logvar", h)
    logits = linear(p, "dec2", jax.nn.relu(linear(p, "dec1", mu + jnp.exp(0.5 * logvar) * noise)))
    bce = jnp.sum(jnp.maximum(logits, 0) - logits * x + jnp.log1p(jnp.exp(-jnp.abs(logits))))
    kl = -0.5 * jnp.sum(1 + logvar - mu * mu - jnp.exp(logvar))
    return (bce + kl) / x.shape[0]


def device(arrays):
    return {k: jnp.asarray(v) for k, v in arrays.items()}


def accuracy(forward, p, images, labels, prepare):
    right = 0
    for s, e in c.slices(len(images), c.EVAL_BATCH):
        right += int((np.asarray(forward(p, prepare(images[s:e]))).argmax(1) == labels[s:e]).sum())
    return right / len(images)


def train(step, state, images, labels, batch, epochs, prepare, limit=None):
    """step(state, x, y, i) -> (state, loss), epochs of at most `limit` steps; returns (state, Clock)."""
    clock, box = c.Clock(), {"state": state, "i": 0}

    def one(_, idx):
        y = None if labels is None else labels[idx].astype(np.int32)
        box["state"], _loss = step(box["state"], prepare(images[idx]), y, np.uint32(box["i"]))
        box["i"] += 1

    for epoch in range(epochs):
        clock.run_epoch(c.epoch_batches(len(images), batch, args.seed, epoch, args.limit_steps or limit), one,
                        lambda: jax.block_until_ready(box["state"]))
    return box["state"], clock


def run_gemm():
    a, b = (jnp.asarray(m) for m in c.gemm_operands(args.seed))
    mm = jax.jit(jnp.matmul)
    t = time.perf_counter()
    mm(a, b).block_until_ready()
    first = time.perf_counter() - t
    for _ in range(c.GEMM_WARMUP):
        mm(a, b).block_until_ready()
    seconds = []
    for _ in range(c.GEMM_REPS):
        t = time.perf_counter()
        mm(a, b).block_until_ready()
        seconds.append(time.perf_counter() - t)
    value, extra = c.gemm_figures(seconds)
    c.record(args, SYSTEM, VERSION, "gflops", value, first, extra=extra)


def sgd_momentum_step(loss_fn, lr, momentum):
    """One jitted step of SGD with PyTorch's momentum rule; loss_fn(p, x, y, i), i the step's index."""
    @partial(jax.jit, donate_argnums=(0,))
    def step(state, x, y, i):
        p, v = state
        loss, g = jax.value_and_grad(loss_fn)(p, x, y, i)
        v = tree_map(lambda v_, g_: momentum * v_ + g_, v, g)
        return (tree_map(lambda p_, v_: p_ - lr * v_, p, v), v), loss
    return step


def run_lenet5_train():
    xtr, ytr = c.fashion_mnist("train")
    xte, yte = c.fashion_mnist("test")
    p = device(c.lenet5_weights(args.seed))
    step = sgd_momentum_step(lambda p, x, y, _i: cross_entropy(lenet5(p, x), y), c.LENET["lr"], c.LENET["momentum"])
    (p, _), clock = train(step, (p, tree_map(jnp.zeros_like, p)), xtr, ytr, c.LENET["batch"],
                          args.epochs or c.LENET["epochs"], c.as_images)
    value, extra = clock.summary()
    c.record(args, SYSTEM, VERSION, "epoch_seconds", value, clock.first,
             test_accuracy=accuracy(jax.jit(lenet5), p, xte, yte, c.as_images), extra=extra)


def run_lenet5_infer():
    xte, _ = c.fashion_mnist("test")
    p = device(c.lenet5_weights(args.seed))
    forward = jax.jit(lenet5)
    batches = [c.as_images(xte[s:e]) for s, e in c.slices(len(xte), c.INFER_BATCH)]
    t = time.perf_counter()
    forward(p, c.as_images(xte[:c.INFER_BATCH])).block_until_ready()
    first = time.perf_counter() - t
    best = None
    for i in range(1 + c.INFER_PASSES):
        t = time.perf_counter()
        out = [forward(p, x) for x in batches]
        jax.block_until_ready(out)
        if i:
            best = min(best or 1e30, time.perf_counter() - t)
    c.record(args, SYSTEM, VERSION, "images_per_second", len(xte) / best, first,
             extra={"best_pass_seconds": round(best, 4)})


def run_mlp():
    xtr, ytr = c.fashion_mnist("train")
    xte, yte = c.fashion_mnist("test")
    p = device(c.mlp_weights(args.seed))
    key = jax.random.PRNGKey(args.seed)

    @partial(jax.jit, donate_argnums=(0,))
    def step(p, x, y, i):
        loss, g = jax.value_and_grad(lambda q: cross_entropy(mlp(q, x, jax.random.fold_in(key, i)), y))(p)
        return tree_map(lambda p_, g_: p_ - c.MLP["lr"] * g_, p, g), loss

    p, clock = train(step, p, xtr, ytr, c.MLP["batch"], args.epochs or c.MLP["epochs"], c.as_rows)
    value, extra = clock.summary()
    c.record(args, SYSTEM, VERSION, "epoch_seconds", value, clock.first,
             test_accuracy=accuracy(jax.jit(mlp), p, xte, yte, c.as_rows), extra=extra)


def run_mnist_cnn():
    xtr, ytr = c.fashion_mnist("train")
    xte, yte = c.fashion_mnist("test")
    p = device(c.mnist_cnn_weights(args.seed))
    key = jax.random.PRNGKey(args.seed)
    step = sgd_momentum_step(lambda q, x, y, i: cross_entropy(mnist_cnn(q, x, jax.random.fold_in(key, i)), y),
                             c.CNN["lr"], c.CNN["momentum"])
    (p, _), clock = train(step, (p, tree_map(jnp.zeros_like, p)), xtr, ytr, c.CNN["batch"], args.epochs or 1,
                          c.as_images, c.CNN["steps"])
    value, extra = clock.summary()
    c.record(args, SYSTEM, VERSION, "epoch_seconds", value, clock.first,
             test_accuracy=accuracy(jax.jit(mnist_cnn), p, xte, yte, c.as_images), extra=extra)


def run_vae():
    xtr, _ = c.fashion_mnist("train")
    xte, _ = c.fashion_mnist("test")
    p = device(c.vae_weights(args.seed))
    key = jax.random.PRNGKey(args.seed)
    (b1, b2), eps, lr = c.VAE["betas"], c.VAE["eps"], c.VAE["lr"]

    @partial(jax.jit, donate_argnums=(0,))
    def step(state, x, _y, i):
        p, m, v, t = state
        noise = jax.random.normal(jax.random.fold_in(key, i), (x.shape[0], c.VAE["latent"]))
        loss, g = jax.value_and_grad(vae_loss)(p, x, noise)
        t = t + 1
        m = tree_map(lambda m_, g_: b1 * m_ + (1 - b1) * g_, m, g)
        v = tree_map(lambda v_, g_: b2 * v_ + (1 - b2) * g_ * g_, v, g)
        scale_m, scale_v = 1 - b1 ** t, 1 - b2 ** t
        p = tree_map(lambda p_, m_, v_: p_ - lr * (m_ / scale_m) / (jnp.sqrt(v_ / scale_v) + eps), p, m, v)
        return (p, m, v, t), loss

    zeros = tree_map(jnp.zeros_like, p)
    state, clock = train(step, (p, zeros, tree_map(jnp.zeros_like, p), jnp.float32(0)), xtr, None,
                         c.VAE["batch"], args.epochs or c.VAE["epochs"], c.as_rows)
    loss = jax.jit(vae_loss)
    noise = c.vae_test_noise(len(xte))
    total = sum(float(loss(state[0], c.as_rows(xte[s:e]), noise[s:e])) * (e - s)
                for s, e in c.slices(len(xte), c.EVAL_BATCH))
    value, extra = clock.summary()
    c.record(args, SYSTEM, VERSION, "epoch_seconds", value, clock.first, test_neg_elbo=total / len(xte), extra=extra)


# ---------------------------------------------------------------- ResNet-18
def batch_norm(p, stats, name, x, training):
    """Returns (y, new running stats for `name`)."""
    gamma, beta = p[name + ".weight"][:, None, None], p[name + ".bias"][:, None, None]
    if training:
        mean = jnp.mean(x, axis=(0, 2, 3))
        var = jnp.var(x, axis=(0, 2, 3))
        n = x.shape[0] * x.shape[2] * x.shape[3]
        mom = c.RESNET["bn_momentum"]
        new = ((1 - mom) * stats[name][0] + mom * mean, (1 - mom) * stats[name][1] + mom * var * n / (n - 1))
    else:
        mean, var = stats[name]
        new = stats[name]
    y = (x - mean[:, None, None]) * lax.rsqrt(var[:, None, None] + c.RESNET["bn_eps"]) * gamma + beta
    return y, new


def resnet18(p, stats, x, training, arch="resnet18"):
    new = {}

    def bn(name, h):
        y, new[name] = batch_norm(p, stats, name, h, training)
        return y

    x = jax.nn.relu(bn("bn1", conv(x, p["conv1.weight"], padding=1)))
    for name, c_in, c_out, stride in c.resnet18_blocks(arch):
        h = jax.nn.relu(bn(name + ".bn1", conv(x, p[name + ".conv1.weight"], stride, 1)))
        h = bn(name + ".bn2", conv(h, p[name + ".conv2.weight"], 1, 1))
        if stride != 1 or c_in != c_out:
            x = bn(name + ".downsample.1", conv(x, p[name + ".downsample.0.weight"], stride))
        x = jax.nn.relu(h + x)
    return linear(p, "fc", jnp.mean(x, axis=(2, 3))), new


def resnet_state():
    p = device(c.resnet18_weights(args.seed, arch=c.resnet_arch(args.workload)))
    stats = {k[:-len(".weight")]: (jnp.zeros_like(v), jnp.ones_like(v))
             for k, v in p.items() if k.endswith(".weight") and v.ndim == 1}
    return p, stats


def run_resnet18_train():
    x_all, y_all = c.resnet_data(args.seed)
    p, stats = resnet_state()
    lr, momentum = c.RESNET["lr"], c.RESNET["momentum"]

    @partial(jax.jit, donate_argnums=(0,))
    def step(state, x, y):
        p, v, stats = state

        def loss_fn(q):
            logits, new_stats = resnet18(q, stats, x, True, c.resnet_arch(args.workload))
            return cross_entropy(logits, y), new_stats

        (loss, stats), g = jax.value_and_grad(loss_fn, has_aux=True)(p)
        v = tree_map(lambda v_, g_: momentum * v_ + g_, v, g)
        return (tree_map(lambda p_, v_: p_ - lr * v_, p, v), v, stats), loss

    state = (p, tree_map(jnp.zeros_like, p), stats)
    losses, seconds, first = [], [], None
    timed = args.limit_steps or c.RESNET["timed_steps"]
    for i in range(1 + c.RESNET["warmup_steps"] + timed):
        xb, yb = c.resnet_batch(x_all, y_all, i)
        t = time.perf_counter()
        state, loss = step(state, xb, yb)
        jax.block_until_ready(state)
        elapsed = time.perf_counter() - t
        losses.append(float(loss))
        if i == 0:
            first = elapsed
        elif i > c.RESNET["warmup_steps"]:
            seconds.append(elapsed)
    value, extra = c.step_figures(seconds)
    extra.update(first_loss=round(losses[0], 4), last_loss=round(losses[-1], 4), batch=c.RESNET["batch"])
    c.record(args, SYSTEM, VERSION, "step_seconds", value, first, extra=extra)


def run_resnet18_infer():
    x_all, _ = c.resnet_data(args.seed)
    p, stats = resnet_state()
    forward = jax.jit(lambda p, stats, x: resnet18(p, stats, x, False, c.resnet_arch(args.workload))[0])
    b = c.RESNET["batch"]
    batches = [jnp.asarray(x_all[s:s + b]) for s in range(0, c.RESNET["infer_images"], b)][:args.limit_steps]
    t = time.perf_counter()
    forward(p, stats, batches[0]).block_until_ready()
    first = time.perf_counter() - t
    best = None
    for i in range(1 + c.RESNET["infer_passes"]):
        t = time.perf_counter()
        jax.block_until_ready([forward(p, stats, x) for x in batches])
        if i:
            best = min(best or 1e30, time.perf_counter() - t)
    c.record(args, SYSTEM, VERSION, "images_per_second", b * len(batches) / best, first,
             extra={"best_pass_seconds": round(best, 4), "batch": b})


{"gemm": run_gemm, "lenet5-train": run_lenet5_train, "lenet5-infer": run_lenet5_infer, "mlp-b16": run_mlp,
 "vae-train": run_vae, "mnist-cnn-train": run_mnist_cnn, "resnet18-train": run_resnet18_train, "resnet18-infer": run_resnet18_infer,
 "resnet20-train": run_resnet18_train, "resnet20-infer": run_resnet18_infer}[args.workload]()
