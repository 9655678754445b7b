"""Exact partitions of small MLP classifiers on three 2-D toy data sets.

Two moons, two circles and two blobs (generated in code) each train a ReLU MLP with one
logit; splinecam computes the exact linear regions of each on a square around the data
and the exact decision boundary (the logit's zero level set). One figure, three panels:
regions coloured by the norm of their slope, the decision boundary in red, the data on
top.

    python examples/toy2d.py                 # about half a minute on a laptop CPU
    python examples/toy2d.py --quick         # a few seconds: smaller models, less training
    python examples/toy2d.py --out figures/  # writes figures/toy2d.png
"""
import argparse
import math
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import splinecam  # noqa: E402
from splinecam.demo import train_mlp, two_moons  # noqa: E402


def two_circles(n=512, noise=0.08, factor=0.45, seed=0):
    """An inner and an outer noisy circle, labels 1 (inner) and 0 (outer)."""
    g = np.random.default_rng(seed)
    n0 = n // 2
    t = g.uniform(0, 2 * math.pi, n)
    r = np.where(np.arange(n) < n0, 1.0, factor)
    X = np.stack([r * np.cos(t), r * np.sin(t)], axis=1) + noise * g.standard_normal((n, 2))
    y = (np.arange(n) >= n0).astype(np.float32)
    return X.astype(np.float32), y


def two_blobs(n=512, std=0.6, seed=0):
    """Two overlapping Gaussian blobs centred at (-1, -0.5) and (1, 0.5)."""
    g = np.random.default_rng(seed)
    n0 = n // 2
    centres = np.where((np.arange(n) < n0)[:, None], [-1.0, -0.5], [1.0, 0.5])
    X = centres + std * g.standard_normal((n, 2))
    y = (np.arange(n) >= n0).astype(np.float32)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return X.astype(np.float32), y


def square_around(X, margin=0.5):
    lo, hi = X.min(axis=0) - margin, X.max(axis=0) + margin
    c, h = (lo + hi) / 2, (hi - lo).max() / 2
    return [[c[0] - h, c[1] - h], [c[0] + h, c[1] - h], [c[0] + h, c[1] + h], [c[0] - h, c[1] + h]]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="examples_output", help="folder for the figure (default: examples_output)")
    ap.add_argument("--quick", action="store_true", help="small models and short training: a smoke run")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    # Small models train fastest on one thread; more threads only contend, badly so on a busy machine.
    torch.set_num_threads(1)
    widths, steps, n = ((16, 16), 80, 200) if args.quick else ((32, 32, 32, 32), 1000, 512)
    data = [("two moons", two_moons(n)), ("two circles", two_circles(n)), ("two blobs", two_blobs(n))]

    fig, axes = plt.subplots(1, 3, figsize=(18, 6.4), constrained_layout=True)
    for ax, (name, (X, y)) in zip(axes, data):
        t = time.perf_counter()
        model = train_mlp(X, y, widths=widths, steps=steps)
        t_train = time.perf_counter() - t
        with torch.no_grad():
            acc = float(((model(torch.from_numpy(X))[:, 0] > 0).numpy() == (y > 0)).mean())
        sl = splinecam.Slice.plane2d(square_around(X))
        t = time.perf_counter()
        P = splinecam.partition(model, sl, progress=False)
        t_part = time.perf_counter() - t
        lw = 0.25 if P.num_regions < 3000 else 0.12
        P.plot(ax=ax, color="slope", cmap="viridis", linewidth=lw, boundary_width=2.0, colorbar=True)
        ax.scatter(X[:, 0], X[:, 1], c=np.where(y > 0, "#ffffff", "#111111"), s=7, edgecolors="none", alpha=0.85)
        ax.set_title(f"{name}: MLP 2-{'-'.join(map(str, widths))}-1, {P.num_regions} regions\n"
                     f"train accuracy {acc:.3f}; red: exact decision boundary")
        print(f"{name:12s} {P.num_regions:6d} regions, {len(P.decision_boundary):5d} boundary segments, "
              f"partition {t_part:.2f} s, training {t_train:.1f} s, accuracy {acc:.3f}")
    fig.suptitle("Exact linear regions coloured by slope norm; white and black dots: the two classes")
    path = os.path.join(args.out, "toy2d.png")
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
