"""How the partition of a small MLP classifier evolves during training, as an animation.

A ReLU MLP 2-16-16-16-16-1 is trained on (noisy) two moons; at 30 checkpoints spread
geometrically over 2000 steps, splinecam computes its exact linear regions and decision
boundary on a square around the data, in one :func:`splinecam.partition_many` call.
The frames (regions coloured by slope norm on one colour scale for the whole run, the
decision boundary in red, the data on top) are written as an animated GIF with
matplotlib's PillowWriter when Pillow is installed, and as a grid of eight frames in a
PNG in any case. Watch the regions keep moving - and the slopes keep growing - away from
the data after the decision boundary has settled.

    python examples/training_video.py            # well under a minute on a laptop CPU
    python examples/training_video.py --quick    # a smoke run in a few seconds
"""
import argparse
import copy
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib import animation  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from torch import nn  # noqa: E402

import splinecam  # noqa: E402
from splinecam.demo import two_moons  # noqa: E402


def train_with_checkpoints(X, y, widths, at_steps, lr=1e-3, seed=0):
    """Full-batch Adam on the logistic loss; returns [(step, loss, state_dict), ...] for
    each step in ``at_steps`` (sorted), and the model."""
    torch.manual_seed(seed)
    layers, d = [], 2
    for w in widths:
        layers += [nn.Linear(d, w), nn.ReLU()]
        d = w
    model = nn.Sequential(*layers, nn.Linear(d, 1))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    checkpoints, wanted = [], set(at_steps)
    for step in range(max(at_steps) + 1):
        opt.zero_grad()
        loss = loss_fn(model(Xt)[:, 0], yt)
        if step in wanted:
            checkpoints.append((step, float(loss.detach()), copy.deepcopy(model.state_dict())))
        loss.backward()
        opt.step()
    return checkpoints, model


def draw(ax, P, X, y, norm, step, loss):
    P.plot(ax=ax, color="slope", cmap="viridis", boundary_width=2.0)
    ax.collections[0].set_norm(norm)
    for cls, face, edge in ((0, "#111111", "#ffffff"), (1, "#ffffff", "#111111")):  # visible on any colour
        pts = X[y == cls]
        ax.scatter(pts[:, 0], pts[:, 1], s=8, c=face, edgecolors=edge, linewidths=0.35, zorder=4)
    ax.set_title(f"step {step}: {P.num_regions} regions, loss {loss:.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="examples_output", help="folder for the files (default: examples_output)")
    ap.add_argument("--quick", action="store_true", help="a smaller model, fewer steps and frames: a smoke run")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    # Small models train fastest on one thread; more threads only contend, badly so on a busy machine.
    torch.set_num_threads(1)

    widths, steps, frames, n = ((8, 8), 60, 4, 200) if args.quick else ((16, 16, 16, 16), 2000, 30, 512)
    X, y = two_moons(n, noise=0.2)
    # Checkpoints spaced geometrically: early training changes the function fastest.
    at_steps = sorted({0} | set(np.geomspace(5, steps, frames - 1).round().astype(int).tolist()))
    t = time.perf_counter()
    checkpoints, model = train_with_checkpoints(X, y, widths, at_steps)
    t_train = time.perf_counter() - t

    lo, hi = X.min(axis=0) - 0.6, X.max(axis=0) + 0.6
    sl = splinecam.Slice.plane2d([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])
    t = time.perf_counter()
    # One call for the whole run: the architecture is traced once, each checkpoint costs
    # its own weights and geometry only.
    parts = splinecam.partition_many([sd for _, _, sd in checkpoints], sl, model=model)
    t_part = time.perf_counter() - t
    counts = [P.num_regions for P in parts]
    print(f"MLP 2-{'-'.join(map(str, widths))}-1: {len(parts)} checkpoints, regions {counts[0]} -> {counts[-1]} "
          f"(max {max(counts)}); training {t_train:.1f} s, partitions {t_part:.2f} s "
          f"({1e3 * t_part / len(parts):.1f} ms per checkpoint)")
    # One colour scale for all frames, so that growing slopes show as brightening.
    vmax = max(float(np.percentile(P.slope_norms(), 99)) for P in parts)
    norm = Normalize(0.0, vmax)

    written = []
    # A grid of (up to) eight frames, evenly spread over the run.
    pick = sorted(set(np.linspace(0, len(parts) - 1, min(8, len(parts))).round().astype(int).tolist()))
    cols = min(4, len(pick))
    rows = -(-len(pick) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 4.4 * rows), constrained_layout=True, squeeze=False)
    for a, i in zip(axes.flat, pick):
        draw(a, parts[i], X, y, norm, checkpoints[i][0], checkpoints[i][1])
    for a in list(axes.flat)[len(pick):]:
        a.axis("off")
    fig.suptitle("Exact partition and decision boundary (red) of an MLP during training on two moons")
    # The panels are square, so constrained layout leaves slack in their cells; a colorbar
    # it placed would float right of that slack. Fix the layout, then put the colorbar
    # against the last column's actual edge.
    fig.canvas.draw()
    fig.set_layout_engine("none")
    top, bottom = axes[0, -1].get_position(), axes[-1, -1].get_position()
    height = top.y1 - bottom.y0
    cax = fig.add_axes([top.x1 + 0.008, bottom.y0 + 0.15 * height, 0.008, 0.7 * height])
    fig.colorbar(ScalarMappable(norm, "viridis"), cax=cax, label="slope norm (clipped)")
    grid = os.path.join(args.out, "training_frames.png")
    fig.savefig(grid, dpi=110, bbox_inches="tight")
    plt.close(fig)
    written.append(grid)

    if animation.PillowWriter.isAvailable():
        # constrained layout keeps the colorbar next to the (square) plot, frame after frame
        fig, ax = plt.subplots(figsize=(6.4, 6), constrained_layout=True)
        fig.colorbar(ScalarMappable(norm, "viridis"), ax=ax, shrink=0.85, label="slope norm (clipped)")
        gif = os.path.join(args.out, "training_video.gif")
        writer = animation.PillowWriter(fps=4)
        with writer.saving(fig, gif, dpi=90):
            for (step, loss, _), P in zip(checkpoints, parts):
                ax.clear()
                draw(ax, P, X, y, norm, step, loss)
                writer.grab_frame()
        plt.close(fig)
        written.append(gif)
    else:
        print("Pillow is not installed: no GIF, only the grid of frames")
    print("wrote " + ", ".join(written))


if __name__ == "__main__":
    main()
