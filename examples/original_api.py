"""The original SplineCam README's usage, run against this package.

Code written for the original SplineCam (``splinecam.utils.get_proj_mat``,
``splinecam.wrappers.model_wrapper``, ``splinecam.compute.get_partitions_with_db``,
``splinecam.plot.plot_partition``) runs unchanged apart from ``device='cpu'``. Two
cases, one panel each:

1. an MLP classifier on two circles, its input plane restricted to a square domain;
2. a random MLP on 28 x 28 inputs, on the triangle through three random inputs
   (the domain is a closed polygon of input-space vertices, flattened).

Regions get random colours as in the original; the decision boundary is drawn in red.

    python examples/original_api.py            # a few seconds on a laptop CPU
    python examples/original_api.py --quick    # a smoke run
"""
import argparse
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import splinecam  # noqa: E402


def two_circles(n=400, noise=0.08, factor=0.45, seed=0):
    g = np.random.default_rng(seed)
    t = g.uniform(0, 2 * math.pi, n)
    inner = np.arange(n) >= n // 2
    r = np.where(inner, factor, 1.0)
    X = np.stack([r * np.cos(t), r * np.sin(t)], axis=1) + noise * g.standard_normal((n, 2))
    return torch.tensor(X, dtype=torch.float32), torch.tensor(inner, dtype=torch.float32)


def readme_usage(model, domain, ax, progress):
    """The original README's steps, verbatim apart from ``device='cpu'``."""
    T = splinecam.utils.get_proj_mat(domain)

    model.eval()
    model.type(torch.float64)

    print('Wrapping model with SplineCam...')
    NN = splinecam.wrappers.model_wrapper(
        model,
        input_shape=model.input_shape,
        T=T,
        dtype=torch.float64,
        device='cpu'
    )

    ## check .forward() and matmul operation equivalence
    print('Verifying wrapped model...')
    flag = NN.verify()
    print('Model.forward and matmul equivalence check', flag)
    assert flag

    regions, db_edges = splinecam.compute.get_partitions_with_db(domain, T, NN, progress=progress)

    splinecam.plot.plot_partition(regions,
                                  alpha=0.3, edgecolor='#a70000', ax=ax,
                                  color_range=[.3, .8], linewidth=.5,
                                  xlims=None)  # fit the axes to the regions (the original fixes [-2, 2])
    for each in db_edges:
        ax.plot(each[:, 0], each[:, 1], c='r', linewidth=3)
    return T, regions, db_edges


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="examples_output", help="folder for the figure (default: examples_output)")
    ap.add_argument("--quick", action="store_true", help="smaller models and short training: a smoke run")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    # Small models train fastest on one thread; more threads only contend, badly so on a busy machine.
    torch.set_num_threads(1)
    np.random.seed(0)  # plot_partition draws random region colours from numpy's generator

    fig, axes = plt.subplots(1, 2, figsize=(13, 6.3), constrained_layout=True)

    # 1. A trained 2-D classifier on a square.
    width, steps = (16, 100) if args.quick else (32, 800)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                          nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1))
    X, y = two_circles()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(X)[:, 0], y)
        loss.backward()
        opt.step()
    model.input_shape = (2,)
    domain = torch.tensor([[-1.5, -1.5], [1.5, -1.5], [1.5, 1.5], [-1.5, 1.5], [-1.5, -1.5]], dtype=torch.float64)
    T, regions, db = readme_usage(model, domain, axes[0], progress=not args.quick)
    u = splinecam.utils.to_plane_coords(X.double(), T)  # the data in the domain's plane coordinates
    axes[0].scatter(u[:, 0], u[:, 1], c=np.where(y > 0, "#ffffff", "#111111"), s=6, edgecolors="none")
    axes[0].set_title(f"MLP 2-{width}-{width}-{width}-1 on two circles: {len(regions)} regions,\n"
                      f"{len(db)} decision-boundary segments (red)")
    print(f"two circles: {len(regions)} regions, {len(db)} decision-boundary segments")

    # 2. A random MLP on 28 x 28 inputs, the triangle through three of them.
    hidden = 16 if args.quick else 48
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                          nn.Linear(hidden, 10))
    model.input_shape = (1, 28, 28)
    g = torch.Generator().manual_seed(2)
    images = torch.randn(3, 1, 28, 28, dtype=torch.float64, generator=g)
    flat = images.reshape(3, -1)
    domain = torch.cat([flat, flat[:1]])  # closed triangle through the three inputs
    T, regions, db = readme_usage(model, domain, axes[1], progress=not args.quick)
    corners = splinecam.utils.to_plane_coords(flat, T)
    axes[1].scatter(corners[:, 0], corners[:, 1], s=30, c="white", edgecolors="black", zorder=5)
    axes[1].set_title(f"random MLP 784-{hidden}-{hidden}-10 through three random inputs:\n"
                      f"{len(regions)} regions, {len(db)} decision-boundary segments (red)")
    axes[1].set_aspect("equal")
    axes[0].set_aspect("equal")
    print(f"random MLP: {len(regions)} regions, {len(db)} decision-boundary segments")

    fig.suptitle("The original SplineCam API: get_proj_mat, model_wrapper, get_partitions_with_db, plot_partition")
    path = os.path.join(args.out, "original_api.png")
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
