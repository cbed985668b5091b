"""PyTorch on the CPU, eager or torch.compile (inductor, static shapes).

usage: python torch_peer.py WORKLOAD [--mode eager|compile] [--threads 2] [--jsonl FILE] [--seed S]
"""
import os
import time

import common as c

args = c.arguments(modes=["eager", "compile"])
c.pin_threads(args.threads)
# Inductor compiles in a pool of worker processes by default; on 2 cores they fight the
# first epoch for the CPUs. One in-process compile thread instead.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)
SYSTEM = "pytorch-" + args.mode
COMPILED = args.mode == "compile"


def compiled(fn):
    return torch.compile(fn, dynamic=False) if COMPILED else fn


def tensors(arrays, grad=True):
    return {k: torch.from_numpy(v.copy()).requires_grad_(grad) for k, v in arrays.items()}


def linear(p, name, x):
    return F.linear(x, p[name + ".weight"], p[name + ".bias"])


def lenet5(p, x):
    x = F.max_pool2d(F.relu(F.conv2d(x, p["conv1.weight"], p["conv1.bias"], padding=2)), 2)
    x = F.max_pool2d(F.relu(F.conv2d(x, p["conv2.weight"], p["conv2.bias"])), 2)
    x = F.relu(linear(p, "fc1", x.flatten(1)))
    return linear(p, "fc3", F.relu(linear(p, "fc2", x)))


def mlp(p, x, training):
    x = F.dropout(F.relu(linear(p, "fc1", x)), c.MLP["dropout"], training)
    x = F.dropout(F.relu(linear(p, "fc2", x)), c.MLP["dropout"], training)
    return linear(p, "fc3", x)


def mnist_cnn(p, x, training):
    x = F.relu(F.conv2d(x, p["conv1.weight"], p["conv1.bias"]))
    x = F.max_pool2d(F.relu(F.conv2d(x, p["conv2.weight"], p["conv2.bias"])), 2)
    x = F.dropout(x, c.CNN["dropout"][0], training)
    x = F.dropout(F.relu(linear(p, "fc1", x.flatten(1))), c.CNN["dropout"][1], training)
    return linear(p, "fc2", x)


def vae_loss(p, x, noise):
    h = F.relu(linear(p, "enc", x))
    mu, logvar = linear(p, "mu", h), linear(p, "logvar", h)
    z = mu + torch.exp(0.5 * logvar) * noise
    logits = linear(p, "dec2", F.relu(linear(p, "dec1", z)))
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu * mu - torch.exp(logvar))
    return (bce + kl) / x.shape[0]


def accuracy(forward, images, labels, prepare):
    right = 0
    with torch.no_grad():
        for s, e in c.slices(len(images), c.EVAL_BATCH):
            right += int((forward(torch.from_numpy(prepare(images[s:e]))).argmax(1).numpy() == labels[s:e]).sum())
    return right / len(images)


def train(params, optimizer, loss_of, images, labels, batch, epochs, prepare, limit=None):
    """Runs the epochs (each of at most `limit` steps); loss_of(x, y_or_count) -> loss. Returns the Clock."""
    clock = c.Clock()
    step_update = compiled(optimizer.step)
    y_all = None if labels is None else torch.from_numpy(labels.astype(np.int64))

    def step(_, idx):
        x = torch.from_numpy(prepare(images[idx]))
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(x, len(idx) if y_all is None else y_all[idx])
        loss.backward()
        step_update()

    for epoch in range(epochs):
        clock.run_epoch(c.epoch_batches(len(images), batch, args.seed, epoch, args.limit_steps or limit), step, lambda: None)
    return clock


def run_gemm():
    a, b = (torch.from_numpy(m) for m in c.gemm_operands(args.seed))
    mm = compiled(torch.mm)
    t = time.perf_counter()
    mm(a, b)
    first = time.perf_counter() - t
    for _ in range(c.GEMM_WARMUP):
        mm(a, b)
    seconds = []
    for _ in range(c.GEMM_REPS):
        t = time.perf_counter()
        mm(a, b)
        seconds.append(time.perf_counter() - t)
    value, extra = c.gemm_figures(seconds)
    c.record(args, SYSTEM, torch.__version__, "gflops", value, first if COMPILED else None, extra=extra)


def run_lenet5_train():
    xtr, ytr = c.fashion_mnist("train")
    xte, yte = c.fashion_mnist("test")
    p = tensors(c.lenet5_weights(args.seed))
    opt = torch.optim.SGD(p.values(), lr=c.LENET["lr"], momentum=c.LENET["momentum"])
    loss_of = compiled(lambda x, y: F.cross_entropy(lenet5(p, x), y))
    clock = train(p, opt, loss_of, xtr, ytr, c.LENET["batch"], args.epochs or c.LENET["epochs"], c.as_images)
    value, extra = clock.summary()
    c.record(args, SYSTEM, torch.__version__, "epoch_seconds", value, clock.first,
             test_accuracy=accuracy(lambda x: lenet5(p, x), xte, yte, c.as_images), extra=extra)


def run_lenet5_infer():
    xte, _ = c.fashion_mnist("test")
    p = tensors(c.lenet5_weights(args.seed), grad=False)
    forward = compiled(lambda x: lenet5(p, x))
    batches = [torch.from_numpy(c.as_images(xte[s:e])) for s, e in c.slices(len(xte), c.INFER_BATCH)]
    with torch.no_grad():
        t = time.perf_counter()
        forward(torch.from_numpy(c.as_images(xte[:c.INFER_BATCH])))
        first = time.perf_counter() - t
        best = None
        for i in range(1 + c.INFER_PASSES):  # pass 0 warms up (and compiles the last, smaller batch)
            t = time.perf_counter()
            for x in batches:
                forward(x)
            if i:
                best = min(best or 1e30, time.perf_counter() - t)
    c.record(args, SYSTEM, torch.__version__, "images_per_second", len(xte) / best, first,
             extra={"best_pass_seconds": round(best, 4)})


def run_mlp():
    xtr, ytr = c.fashion_mnist("train")
    xte, yte = c.fashion_mnist("test")
    p = tensors(c.mlp_weights(args.seed))
    opt = torch.optim.SGD(p.values(), lr=c.MLP["lr"])
    loss_of = compiled(lambda x, y: F.cross_entropy(mlp(p, x, True), y))
    clock = train(p, opt, loss_of, xtr, ytr, c.MLP["batch"], args.epochs or c.MLP["epochs"], c.as_rows)
    value, extra = clock.summary()
    c.record(args, SYSTEM, torch.__version__, "epoch_seconds", value, clock.first,
             test_accuracy=accuracy(lambda x: mlp(p, x, False), xte, yte, c.as_rows), extra=extra)


def run_mnist_cnn():
    xtr, ytr = c.fashion_mnist("train")
    xte, yte = c.fashion_mnist("test")
    p = tensors(c.mnist_cnn_weights(args.seed))
    opt = torch.optim.SGD(p.values(), lr=c.CNN["lr"], momentum=c.CNN["momentum"])
    loss_of = compiled(lambda x, y: F.cross_entropy(mnist_cnn(p, x, True), y))
    clock = train(p, opt, loss_of, xtr, ytr, c.CNN["batch"], args.epochs or 1, c.as_images, c.CNN["steps"])
    value, extra = clock.summary()
    c.record(args, SYSTEM, torch.__version__, "epoch_seconds", value, clock.first,
             test_accuracy=accuracy(lambda x: mnist_cnn(p, x, False), xte, yte, c.as_images), extra=extra)


def run_vae():
    xtr, _ = c.fashion_mnist("train")
    xte, _ = c.fashion_mnist("test")
    p = tensors(c.vae_weights(args.seed))
    opt = torch.optim.Adam(p.values(), lr=c.VAE["lr"], betas=c.VAE["betas"], eps=c.VAE["eps"])
    loss_fn = compiled(lambda x, noise: vae_loss(p, x, noise))
    clock = train(p, opt, lambda x, n: loss_fn(x, torch.randn(n, c.VAE["latent"])), xtr, None,
                  c.VAE["batch"], args.epochs or c.VAE["epochs"], c.as_rows)
    noise = torch.from_numpy(c.vae_test_noise(len(xte)))
    total = 0.0
    with torch.no_grad():
        for s, e in c.slices(len(xte), c.EVAL_BATCH):
            total += float(vae_loss(p, torch.from_numpy(c.as_rows(xte[s:e])), noise[s:e])) * (e - s)
    value, extra = clock.summary()
    c.record(args, SYSTEM, torch.__version__, "epoch_seconds", value, clock.first,
             test_neg_elbo=total / len(xte), extra=extra)


# ---------------------------------------------------------------- ResNet-18
class ResNet18:
    """Functional ResNet-18 (CIFAR form) over a dict of parameters and batch-norm buffers."""

    def __init__(self, seed, arch="resnet18"):
        self.arch = arch
        self.p = tensors(c.resnet18_weights(seed, arch=arch))
        self.buffers = {}
        for k, v in self.p.items():
            if k.endswith(".weight") and v.dim() == 1:  # batch norm
                base = k[:-len(".weight")]
                self.buffers[base + ".running_mean"] = torch.zeros_like(v, requires_grad=False)
                self.buffers[base + ".running_var"] = torch.ones_like(v, requires_grad=False)

    def bn(self, name, x, training):
        return F.batch_norm(x, self.buffers[name + ".running_mean"], self.buffers[name + ".running_var"],
                            self.p[name + ".weight"], self.p[name + ".bias"], training,
                            c.RESNET["bn_momentum"], c.RESNET["bn_eps"])

    def __call__(self, x, training):
        p = self.p
        x = F.relu(self.bn("bn1", F.conv2d(x, p["conv1.weight"], padding=1), training))
        for name, c_in, c_out, stride in c.resnet18_blocks(self.arch):
            h = F.relu(self.bn(name + ".bn1", F.conv2d(x, p[name + ".conv1.weight"], stride=stride, padding=1), training))
            h = self.bn(name + ".bn2", F.conv2d(h, p[name + ".conv2.weight"], padding=1), training)
            if stride != 1 or c_in != c_out:
                x = self.bn(name + ".downsample.1", F.conv2d(x, p[name + ".downsample.0.weight"], stride=stride), training)
            x = F.relu(h + x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return linear(p, "fc", x)


def run_resnet18_train():
    x_all, y_all = c.resnet_data(args.seed)
    net = ResNet18(args.seed, c.resnet_arch(args.workload))
    opt = torch.optim.SGD(net.p.values(), lr=c.RESNET["lr"], momentum=c.RESNET["momentum"])
    loss_of = compiled(lambda x, y: F.cross_entropy(net(x, True), y))
    step_update = compiled(opt.step)
    losses, seconds, first = [], [], None
    timed = args.limit_steps or c.RESNET["timed_steps"]
    for step in range(1 + c.RESNET["warmup_steps"] + timed):
        xb, yb = c.resnet_batch(x_all, y_all, step)
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_of(torch.from_numpy(xb), torch.from_numpy(yb.astype(np.int64)))
        loss.backward()
        step_update()
        losses.append(float(loss.detach()))
        elapsed = time.perf_counter() - t
        if step == 0:
            first = elapsed
        elif step > c.RESNET["warmup_steps"]:
            seconds.append(elapsed)
    value, extra = c.step_figures(seconds)
    extra.update(first_loss=round(losses[0], 4), last_loss=round(losses[-1], 4), batch=c.RESNET["batch"])
    c.record(args, SYSTEM, torch.__version__, "step_seconds", value, first, extra=extra)


def run_resnet18_infer():
    x_all, _ = c.resnet_data(args.seed)
    net = ResNet18(args.seed, c.resnet_arch(args.workload))
    for v in net.p.values():
        v.requires_grad_(False)
    forward = compiled(lambda x: net(x, False))
    b = c.RESNET["batch"]
    batches = [torch.from_numpy(x_all[s:s + b]) for s in range(0, c.RESNET["infer_images"], b)][:args.limit_steps]
    with torch.no_grad():
        t = time.perf_counter()
        forward(batches[0])
        first = time.perf_counter() - t
        best = None
        for i in range(1 + c.RESNET["infer_passes"]):
            t = time.perf_counter()
            for x in batches:
                forward(x)
            if i:
                best = min(best or 1e30, time.perf_counter() - t)
    c.record(args, SYSTEM, torch.__version__, "images_per_second", b * len(batches) / best, first,
             extra={"best_pass_seconds": round(best, 4), "batch": b})


{"gemm": run_gemm, "lenet5-train": run_lenet5_train, "lenet5-infer": run_lenet5_infer, "mlp-b16": run_mlp,
 "vae-train": run_vae, "mnist-cnn-train": run_mnist_cnn, "resnet18-train": run_resnet18_train, "resnet18-infer": run_resnet18_infer,
 "resnet20-train": run_resnet18_train, "resnet20-infer": run_resnet18_infer}[args.workload]()
