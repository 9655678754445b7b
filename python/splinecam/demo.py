"""The demo: train a small MLP on two moons, compute its exact partition and decision
boundary on the CPU, and draw them."""
from __future__ import annotations

import math
import os
import time

import numpy as np
import torch
from torch import nn

from splinecam.zoo import mlp

__all__ = ["two_moons", "train_mlp", "fit_regressor", "run_demo"]


def two_moons(n: int = 512, noise: float = 0.1, seed: int = 0):
    """The two interleaving half circles, generated in code: ``X`` (n, 2) float32 and
    labels ``y`` (n,) in {0, 1}."""
    g = np.random.default_rng(seed)
    n0 = n // 2
    t0 = g.uniform(0, math.pi, n0)
    t1 = g.uniform(0, math.pi, n - n0)
    a = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    b = np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)
    X = np.concatenate([a, b]) + noise * g.standard_normal((n, 2))
    y = np.concatenate([np.zeros(n0), np.ones(n - n0)])
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return X.astype(np.float32), y.astype(np.float32)


def train_mlp(X, y, widths=(64, 64, 64), steps: int = 600, seed: int = 0) -> nn.Sequential:
    """A ReLU MLP with one logit, trained with Adam on (X, y); returned in eval mode."""
    model = mlp((X.shape[1], *widths, 1), seed).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    loss_fn = nn.BCEWithLogitsLoss()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is many times faster than several
    try:
        for _ in range(steps):
            opt.zero_grad()
            loss = loss_fn(model(Xt)[:, 0], yt)
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def fit_regressor(widths, X, Y, steps: int, lr: float = 2e-3, seed: int = 0):
    """A ReLU MLP ``2-widths-1`` fitted to ``(X, Y)`` (float32 arrays) by full-batch Adam
    with a cosine schedule; returns the model in eval mode and its final MSE."""
    model = mlp((X.shape[1], *widths, 1), seed).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)[:, None]
    for _ in range(steps):
        opt.zero_grad()
        loss = ((model(Xt) - Yt) ** 2).mean()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval(), float(loss.detach())


def run_demo(out_dir: str = "demo_output", widths=(64, 64, 64), steps: int = 600, progress: bool = True) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import splinecam

    os.makedirs(out_dir, exist_ok=True)
    X, y = two_moons()
    t = time.perf_counter()
    model = train_mlp(X, y, widths, steps)
    train_s = time.perf_counter() - t
    with torch.no_grad():
        acc = float(((model(torch.from_numpy(X))[:, 0] > 0).float() == torch.from_numpy(y)).float().mean())
    lo, hi = X.min(axis=0) - 0.5, X.max(axis=0) + 0.5
    domain = [[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]]
    sl = splinecam.Slice.plane2d(domain)
    t = time.perf_counter()
    P = splinecam.partition(model, sl, progress=progress)
    seconds = time.perf_counter() - t

    fig, ax = plt.subplots(figsize=(7, 7))
    P.plot(ax=ax, cmap="viridis", edgecolor="k", colorbar=True)
    # each class's points outlined in the other's colour: visible on dark and light regions
    for cls, face, edge in ((0, "#111111", "#ffffff"), (1, "#ffffff", "#111111")):
        pts = X[y == cls]
        ax.scatter(pts[:, 0], pts[:, 1], s=10, c=face, edgecolors=edge, linewidths=0.4, zorder=4,
                   label=f"class {cls}")
    ax.legend(loc="upper right", fontsize="small", framealpha=0.85)
    ax.set_title(f"two moons, MLP 2-{'-'.join(map(str, widths))}-1: {P.num_regions} linear regions\n"
                 "colour: slope norm; red: exact decision boundary")
    main_png = os.path.join(out_dir, "two_moons_partition.png")
    fig.savefig(main_png, dpi=160, bbox_inches="tight")
    plt.close(fig)

    L = P.num_layers
    fig, axes = plt.subplots(1, L, figsize=(4 * L, 4))
    for l, a in zip(range(1, L + 1), np.atleast_1d(axes)):
        Pl = P.at_layer(l)
        Pl.plot(ax=a, color="pattern", cmap="tab20", title=f"after layer {l}: {Pl.num_regions} regions")
    layers_png = os.path.join(out_dir, "two_moons_layers.png")
    fig.savefig(layers_png, dpi=120, bbox_inches="tight")
    plt.close(fig)

    summary = dict(regions=P.num_regions, vertices=len(P.vertices), edges=len(P.edges),
                   decision_segments=len(P.decision_boundary), seconds=seconds, train_seconds=train_s,
                   train_accuracy=acc, figures=[main_png, layers_png])
    return summary
