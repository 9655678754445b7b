"""Exact partition of an MLP regressor f: R^2 -> R and its zero level set.

A ReLU MLP is fitted (mean squared error) to a smooth function of two variables,
generated in code. Being piecewise linear, the fitted network is affine on each of its
linear regions; splinecam computes those regions exactly, and the exact zero level set
of the output (for a single output this is what ``P.decision_boundary`` holds).
Three panels: the target with its zero contour, the fitted surface (each region filled
with the network's value at its centroid) with the exact zero level set, and the
regions coloured by slope norm.

    python examples/regression_2d.py            # well under a minute on a laptop CPU
    python examples/regression_2d.py --quick    # a smoke run in a few seconds
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
from splinecam.demo import fit_regressor  # noqa: E402


def target(x, y):
    """A smooth function on [-1, 1]^2 whose zero set has several closed and open curves."""
    return np.sin(math.pi * x) * np.cos(math.pi * y) + 0.5 * np.exp(-6 * ((x + 0.3) ** 2 + (y - 0.4) ** 2)) - 0.15


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="examples_output", help="folder for the figure (default: examples_output)")
    ap.add_argument("--quick", action="store_true", help="a small model and short training: a smoke run")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    # Small models train fastest on one thread; more threads only contend, badly so on a busy machine.
    torch.set_num_threads(1)

    widths, steps, n = ((16, 16), 100, 500) if args.quick else ((64, 64, 64), 1000, 2000)
    g = np.random.default_rng(0)
    X = g.uniform(-1, 1, (n, 2)).astype(np.float32)
    Y = target(X[:, 0], X[:, 1]).astype(np.float32)
    model, mse = fit_regressor(widths, X, Y, steps, lr=3e-3)

    sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    t = time.perf_counter()
    P = splinecam.partition(model, sl, progress=not args.quick)
    seconds = time.perf_counter() - t
    A, c = P.affine_maps()
    value_at_centroid = np.einsum("fcd,fd->fc", A, P.centroids())[:, 0] + c[:, 0]
    print(f"MLP 2-{'-'.join(map(str, widths))}-1, training MSE {mse:.2e}: {P.num_regions} regions, "
          f"{len(P.decision_boundary)} zero-level-set segments in {seconds:.2f} s")

    fig, axes = plt.subplots(1, 3, figsize=(18, 6.2), constrained_layout=True)
    s = np.linspace(-1, 1, 400)
    gx, gy = np.meshgrid(s, s)
    gz = target(gx, gy)
    lim = float(np.abs(gz).max())
    im = axes[0].imshow(gz, extent=(-1, 1, -1, 1), origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
    axes[0].contour(gx, gy, gz, levels=[0], colors="k", linewidths=1.5)
    axes[0].set_title("target f(x, y) and its zero contour (black)")
    fig.colorbar(im, ax=axes[0], fraction=0.046, pad=0.04)

    lw = 0.2 if P.num_regions < 3000 else 0.1
    P.plot(ax=axes[1], color=value_at_centroid, cmap="RdBu_r", linewidth=lw, edgecolor="#00000040",
           boundary_color="k", boundary_width=1.5)
    axes[1].collections[0].set_clim(-lim, lim)
    fig.colorbar(axes[1].collections[0], ax=axes[1], fraction=0.046, pad=0.04)
    axes[1].set_title(f"the fitted MLP: {P.num_regions} linear regions, value at each centroid\n"
                      "black: its exact zero level set")

    P.plot(ax=axes[2], color="slope", cmap="viridis", linewidth=lw, colorbar=True, boundary_width=1.5)
    axes[2].set_title("regions coloured by slope norm; red: exact zero level set")
    fig.suptitle(f"MLP 2-{'-'.join(map(str, widths))}-1 fitted to a smooth function (training MSE {mse:.1e})")
    path = os.path.join(args.out, "regression_2d.png")
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
