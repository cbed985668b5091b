#!/usr/bin/env python3
"""PyTorch's reference numbers for Kiln's tests: the first training steps of LeNet-5, the MLP
and the VAE, and a float64 Hessian-vector product (README.md in this folder).

usage:  python Tests/Fixtures/make_fixtures.py [OUTDIR]     write the four files (default: this folder)
        python Tests/Fixtures/make_fixtures.py --compare DIR   regenerate in memory, compare with DIR's files

Python: the versions in requirements.txt (the venv of bench/install.sh has them). Data:
Fashion-MNIST IDX files (FMNIST_DIR, default /usr/share/datasets/fashion-mnist).

Every trajectory is computed twice, each in a fresh process: with 1 thread (stored) and with
2 threads (only to measure how much PyTorch itself moves with the thread count; the figures go
into each file's metadata). float32, torch.use_deterministic_algorithms(True), eager mode;
nothing random is drawn from torch: initial weights, batch order and VAE noise come from numpy.
"""
import hashlib
import json
import math
import os
import struct
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench"))
import common  # noqa: E402  (the benchmark spec: data, numpy initial weights, batch order)

SEED = 0
STRIDE = 127  # `_sample` tensors keep every 127th value
RUNS = {
    # name: file, steps, batch, optimizer, tensors stored as _stats + _sample instead of in full
    "lenet5": ("lenet5-sgdm", 12, 64, "sgd-momentum", set()),
    "mlp": ("mlp-sgd", 20, 16, "sgd", {"grad0.fc1.weight", "final.fc1.weight"}),
    "vae": ("vae-adam", 6, 128, "adam", {"grad0.enc.weight", "grad0.dec2.weight", "final.enc.weight",
                                         "final.mu.weight", "final.logvar.weight", "final.dec1.weight",
                                         "final.dec2.weight"}),
}
VAE_NOISE_SEED = 7
HVP_SEED = 11


# ---------------------------------------------------------------- safetensors by hand
CODES = {np.dtype("<f8"): "F64", np.dtype("<f4"): "F32", np.dtype("<i4"): "I32", np.dtype("u1"): "U8"}
DTYPES = {v: k for k, v in CODES.items()}


def write_safetensors(path, tensors, metadata):
    """tensors: [(name, array)], laid out widest element first so every tensor is aligned."""
    ordered = sorted(tensors, key=lambda t: -t[1].dtype.itemsize)  # stable: keeps the given order per width
    header, offset = {"__metadata__": {k: str(v) for k, v in metadata.items()}}, 0
    for name, a in ordered:
        size = a.nbytes
        header[name] = {"dtype": CODES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for _, a in ordered:
            f.write(np.ascontiguousarray(a).tobytes())


def read_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    metadata = header.pop("__metadata__", {})
    body = raw[8 + n:]
    out = {}
    for name, info in header.items():
        start, stop = info["data_offsets"]
        out[name] = np.frombuffer(body[start:stop], DTYPES[info["dtype"]]).reshape(info["shape"])
    return out, metadata


# ---------------------------------------------------------------- the runs (child processes)
def trajectory(model, threads):
    """Trains `model` from the numpy initial weights on the first steps of epoch 0.
    Returns {name: array} with loss, logits0, grad0.P, final.P (all in full)."""
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)

    _, steps, batch, optimizer, _ = RUNS[model]
    images, labels = common.fashion_mnist("train")
    initial = {"lenet5": common.lenet5_weights, "mlp": common.mlp_weights, "vae": common.vae_weights}[model](SEED)
    p = {k: torch.tensor(v, requires_grad=True) for k, v in initial.items()}
    order = common.epoch_order(len(images), SEED, 0)[:steps * batch].reshape(steps, batch)
    noise = np.random.default_rng(VAE_NOISE_SEED).standard_normal((steps, batch, common.VAE["latent"])).astype(np.float32)

    def dense(name, x):
        return F.linear(x, p[name + ".weight"], p[name + ".bias"])

    def logits_of(x):
        if model == "lenet5":
            x = F.max_pool2d(F.relu(F.conv2d(x, p["conv1.weight"], p["conv1.bias"], padding=2)), 2)
            x = F.max_pool2d(F.relu(F.conv2d(x, p["conv2.weight"], p["conv2.bias"])), 2)
            x = F.relu(dense("fc1", x.flatten(1)))
            return dense("fc3", F.relu(dense("fc2", x)))
        return dense("fc3", F.relu(dense("fc2", F.relu(dense("fc1", x)))))

    def vae_loss(x, eps):
        h = F.relu(dense("enc", x))
        mu, logvar = dense("mu", h), dense("logvar", h)
        logits = dense("dec2", F.relu(dense("dec1", mu + torch.exp(0.5 * logvar) * eps)))
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = -0.5 * torch.sum(1 + logvar - mu * mu - torch.exp(logvar))
        return (bce + kl) / x.shape[0]

    params = list(p.values())
    if optimizer == "sgd-momentum":
        opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, foreach=False)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=0.01, foreach=False)
    else:
        opt = torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, foreach=False)

    out, losses = {}, []
    for t in range(steps):
        idx = order[t]
        x = torch.from_numpy(common.as_images(images[idx]) if model == "lenet5" else common.as_rows(images[idx]))
        opt.zero_grad(set_to_none=True)
        if model == "vae":
            loss = vae_loss(x, torch.from_numpy(noise[t]))
        else:
            logits = logits_of(x)
            loss = F.cross_entropy(logits, torch.from_numpy(labels[idx].astype(np.int64)))
            if t == 0:
                out["logits0"] = logits.detach().numpy().copy()
        loss.backward()
        losses.append(loss.item())
        if t == 0:
            out.update({"grad0." + k: v.grad.numpy().copy() for k, v in p.items()})
        opt.step()
    out["loss"] = np.array(losses, np.float32)
    out.update({"final." + k: v.detach().numpy().copy() for k, v in p.items()})
    out["init"] = initial
    out["order"] = order.astype(np.int32)
    out["labels"] = labels[order].astype(np.uint8)
    out["noise"] = noise
    return out


def hvp_run():
    """Loss, gradient and H·v of a float64 4-8-3 tanh MLP with softmax cross-entropy on 5 examples."""
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(1)
    rng = np.random.default_rng(HVP_SEED)

    def uniform(shape, fan_in):
        return rng.uniform(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in), size=shape)

    names = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    params = dict(zip(names, [uniform((8, 4), 4), uniform((8,), 4), uniform((3, 8), 8), uniform((3,), 8)]))
    x = rng.standard_normal((5, 4))
    labels = np.array([0, 1, 2, 1, 0], np.int32)
    v = {k: rng.standard_normal(a.shape) for k, a in params.items()}

    P = [torch.tensor(params[k], requires_grad=True) for k in names]
    V = [torch.tensor(v[k]) for k in names]

    def loss_of(w1, b1, w2, b2):
        return F.cross_entropy(F.linear(torch.tanh(F.linear(torch.from_numpy(x), w1, b1)), w2, b2),
                               torch.from_numpy(labels.astype(np.int64)))

    loss = loss_of(*P)
    grads = torch.autograd.grad(loss, P, create_graph=True)
    hv = torch.autograd.grad(sum((g * d).sum() for g, d in zip(grads, V)), P)
    # Cross-checks: the full Hessian times v, and central differences of the gradient along v.
    sizes = [t.numel() for t in P]

    def flat_loss(theta):
        parts = torch.split(theta, sizes)
        return loss_of(*[part.reshape(t.shape) for part, t in zip(parts, P)])

    theta = torch.cat([t.detach().reshape(-1) for t in P])
    direction = torch.cat([d.reshape(-1) for d in V])
    hessian = torch.autograd.functional.hessian(flat_loss, theta)
    hv_flat = torch.cat([h.reshape(-1) for h in hv])

    def gradient_at(th):
        th = th.clone().requires_grad_()
        return torch.autograd.grad(flat_loss(th), th)[0]
    central = (gradient_at(theta + 1e-5 * direction) - gradient_at(theta - 1e-5 * direction)) / 2e-5
    checks = {"hessian_times_v_vs_hv_max_abs": float((hessian @ direction - hv_flat).abs().max()),
              "central_difference_vs_hv_max_rel": float((central - hv_flat).abs().max() / hv_flat.abs().max())}
    tensors = [("x", x), ("labels", labels)]
    tensors += [("param." + k, params[k]) for k in names] + [("v." + k, v[k]) for k in names]
    tensors += [("loss", loss.detach().numpy().reshape(1))]
    tensors += [("grad." + k, g.detach().numpy()) for k, g in zip(names, grads)]
    tensors += [("hv." + k, h.numpy()) for k, h in zip(names, hv)]
    tensors += [("hessian", hessian.numpy())]
    return [(k, np.ascontiguousarray(a)) for k, a in tensors], checks


def child(model, threads, path):
    """Runs one trajectory and saves every array (npz) for the parent."""
    out = trajectory(model, threads)
    init = out.pop("init")
    np.savez(path, **out, **{"init." + k: a for k, a in init.items()})


def in_child(model, threads, directory):
    path = os.path.join(directory, f"{model}-{threads}.npz")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    subprocess.run([sys.executable, os.path.abspath(__file__), "--child", model, str(threads), path], env=env, check=True)
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


# ---------------------------------------------------------------- the files
def summary(a):
    """[sum, sum of squares, first 8 values] (sums in float64) and every STRIDE-th value."""
    flat = a.reshape(-1)
    wide = flat.astype(np.float64)
    stats = np.concatenate([[wide.sum(), (wide * wide).sum()], wide[:8]]).astype(np.float32)
    return stats, np.ascontiguousarray(flat[::STRIDE])


def fixture_tensors(model, run):
    _, _, _, _, summarized = RUNS[model]
    tensors = [("batch_indices", run["order"])]
    if model == "vae":
        tensors.append(("eps", run["noise"]))
    tensors.append(("loss", run["loss"]))
    if "logits0" in run:
        tensors.append(("logits0", run["logits0"]))
    for group in ("grad0", "final", "init"):
        for name in [k for k in run if k.startswith(group + ".")]:
            if name in summarized:
                stats, sample = summary(run[name])
                parameter = name[len(group) + 1:]
                tensors += [(f"{group}_stats.{parameter}", stats), (f"{group}_sample.{parameter}", sample)]
            else:
                tensors.append((name, run[name]))
    if model != "vae":
        tensors.append(("batch_labels", run["labels"]))
    return tensors


def differences(a, b):
    """Largest relative difference per group between two runs (max|a-b| / max|b| per tensor)."""
    worst = {}
    for name in b:
        if name.split(".")[0] in ("loss", "logits0", "grad0", "final"):
            scale = float(np.abs(b[name]).max()) or 1.0
            rel = float(np.abs(a[name].astype(np.float64) - b[name]).max()) / scale
            group = name.split(".")[0]
            worst[group] = max(worst.get(group, 0.0), rel)
    return {k: f"{v:.2g}" for k, v in sorted(worst.items())}


def sha256(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def build(directory, scratch):
    """{file: (tensors, metadata)} of all four fixtures."""
    import torch
    images, labels = common.fashion_mnist("train")
    base = {"made_by": "Tests/Fixtures/make_fixtures.py", "torch_version": torch.__version__,
            "numpy_version": np.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "host": common.cpu_info()[0], "threads": "1", "layout": "PyTorch: Linear weight [out,in], "
            "Conv2d weight [out,in,kh,kw], row-major", "train_images_sha256": sha256(images),
            "train_labels_sha256": sha256(labels)}  # of the uint8 pixels and labels, IDX headers left out
    files = {}
    for model, (name, steps, batch, optimizer, _) in RUNS.items():
        one, two = in_child(model, 1, scratch), in_child(model, 2, scratch)
        meta = dict(base, model=model, optimizer=optimizer, steps=steps, batch=batch, seed=SEED,
                    batches="numpy default_rng([0, 0]).permutation(60000), consecutive slices",
                    two_threads_max_relative_difference=json.dumps(differences(two, one)))
        if model == "vae":
            meta["eps"] = f"numpy default_rng({VAE_NOISE_SEED}).standard_normal(({steps},{batch},20)) as float32"
        files[name] = (fixture_tensors(model, one), meta)
    tensors, checks = hvp_run()
    files["hvp-mlp"] = (tensors, dict(base, model="4-8-3 tanh MLP, float64", seed=HVP_SEED,
                                      checks=json.dumps(checks)))
    return files


def main(argv):
    if argv[:1] == ["--child"]:
        child(argv[1], int(argv[2]), argv[3])
        return 0
    import tempfile
    compare = argv[:1] == ["--compare"]
    target = argv[1] if compare else (argv[0] if argv else HERE)
    with tempfile.TemporaryDirectory() as scratch:
        files = build(target, scratch)
        status = 0
        for name, (tensors, meta) in files.items():
            path = os.path.join(target, name + ".safetensors")
            if compare:
                stored, _ = read_safetensors(path)
                mine = dict(tensors)
                differ = [k for k in mine if k not in stored or stored[k].tobytes() != mine[k].tobytes()
                          or stored[k].shape != mine[k].shape]
                extra = sorted(set(stored) - set(mine))
                print(f"{name}: {len(mine)} tensors, {len(differ)} differ {differ[:5]}, {len(extra)} only in {path} {extra[:5]}")
                status |= bool(differ or extra)
            else:
                write_safetensors(path, tensors, meta)
                print(f"{path}: {os.path.getsize(path)} bytes, {len(tensors)} tensors; 2 threads vs 1: "
                      f"{meta.get('two_threads_max_relative_difference', meta.get('checks'))}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
