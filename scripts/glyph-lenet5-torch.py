#!/usr/bin/env python3
"""The careful student's baseline for the glyph assignment (issue 17): LeNet-5 in PyTorch with
the augmentation Kiln's recipe uses, a stratified 20 % validation split and early stopping.

    python scripts/glyph-lenet5-torch.py DIR [DIR ...] [--seed 1] [--threads 1]

Each DIR is a `kiln make-glyphs` directory (xy_train.csv, x_test.csv, y_test.csv). Prints the
test accuracy per set and the mean and sample standard deviation. Needs torch and numpy only.

Augmentation per training image and epoch (as `Augmentation.defaultForSmallImageSets`): one
affine map of rotation ±15°, scale 0.9-1.1, horizontal shear ±0.2 and shift ±2 px, sampled
bilinearly with the border mean outside the image; with probability 1/2 a square of 4-10 px
filled with the border mean; Gaussian noise sigma 8 intensity levels.
"""
import argparse
import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_csv(path, labelled=True):
    labels, rows = [], []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            fields = line.split(",")
            labels.append(fields[0].strip('"'))
            rows.append([float(v) for v in fields[1:]])
    return labels, np.array(rows, dtype=np.float32).reshape(-1, 1, 28, 28)


class LeNet5(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(F.relu(self.fc2(x)))


def augment(x, gen):
    """x: [N, 1, 28, 28] intensities 0-255; returns a transformed copy."""
    n = x.shape[0]
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=gen)
    angle = u(-15, 15) * math.pi / 180
    scale = u(0.9, 1.1)
    shear = u(-0.2, 0.2)
    shift = torch.stack([u(-2, 2), u(-2, 2)], 1)
    border = torch.cat([x[:, 0, 0, :], x[:, 0, -1, :], x[:, 0, 1:-1, 0], x[:, 0, 1:-1, -1]], 1).mean(1)
    # Inverse map in normalised coordinates (pixel units / 13.5): output -> source.
    c, s = torch.cos(angle) / scale, torch.sin(angle) / scale
    # source = R^-1 S^-1 (shear^-1 (p - shift))
    a11, a12 = c, s - c * shear
    a21, a22 = -s, c + s * shear
    half = 13.5
    tx = -(a11 * shift[:, 0] + a12 * shift[:, 1]) / half
    ty = -(a21 * shift[:, 0] + a22 * shift[:, 1]) / half
    theta = torch.stack([torch.stack([a11, a12, tx], 1), torch.stack([a21, a22, ty], 1)], 1)
    grid = F.affine_grid(theta, x.shape, align_corners=True)
    shifted = x - border.view(n, 1, 1, 1)
    out = F.grid_sample(shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=True) + border.view(n, 1, 1, 1)
    # Erase: with probability 1/2 a square of 4-10 px at a random place.
    for i in range(n):
        if torch.rand(1, generator=gen).item() < 0.5:
            side = int(torch.randint(4, 11, (1,), generator=gen).item())
            top = int(torch.randint(0, 28 - side + 1, (1,), generator=gen).item())
            left = int(torch.randint(0, 28 - side + 1, (1,), generator=gen).item())
            out[i, 0, top:top + side, left:left + side] = border[i]
    out = out + 8 * torch.randn(out.shape, generator=gen)
    return out.clamp(0, 255).round()


def run(directory, seed, max_epochs=200, patience=15, batch=32, lr=0.003):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    names, x = read_csv(f"{directory}/xy_train.csv")
    classes = sorted(set(names))
    y = np.array([classes.index(n) for n in names])
    _, xt = read_csv(f"{directory}/x_test.csv")
    with open(f"{directory}/y_test.csv") as f:
        yt = np.array([classes.index(l.strip().strip('"')) for l in f if l.strip()])
    # Stratified 20 % validation split.
    rng = np.random.default_rng(seed)
    val = np.concatenate([rng.permutation(np.where(y == c)[0])[: round(0.2 * (y == c).sum())] for c in range(len(classes))])
    train = np.setdiff1d(np.arange(len(y)), val)
    xtr, ytr = torch.tensor(x[train]), torch.tensor(y[train])
    xv, yv = torch.tensor(x[val]) / 255, torch.tensor(y[val])
    model = LeNet5(len(classes))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best, best_state, since, epochs = float("inf"), None, 0, 0
    start = time.time()
    for epoch in range(max_epochs):
        model.train()
        order = torch.randperm(len(train), generator=gen)
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            xb = augment(xtr[idx], gen) / 255
            loss = F.cross_entropy(model(xb), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            vloss = F.cross_entropy(model(xv), yv).item()
        epochs = epoch + 1
        if vloss < best:
            best, since = vloss, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            since += 1
            if since >= patience:
                break
    model.load_state_dict(best_state)
    with torch.no_grad():
        pred = model(torch.tensor(xt) / 255).argmax(1).numpy()
    return float((pred == yt).mean()), epochs, time.time() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dirs", nargs="+")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    accuracies = []
    for d in args.dirs:
        acc, epochs, seconds = run(d, args.seed)
        accuracies.append(acc)
        print(f"{d}: test accuracy {acc:.4f} ({epochs} epochs, {seconds:.1f} s)", flush=True)
    if len(accuracies) > 1:
        print(f"mean {np.mean(accuracies):.4f}, sd {np.std(accuracies, ddof=1):.4f}")


if __name__ == "__main__":
    sys.exit(main())
