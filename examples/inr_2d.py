"""Exact partition of a 2-D implicit neural representation (INR).

An INR stores an image in the weights of a network that maps pixel coordinates to
intensity. Here a ReLU MLP is fitted to a small smiley face drawn in code (64 x 64,
coordinates in [-1, 1]^2). The network is trained to output 2 * intensity - 1, so its
exact zero level set - computed by splinecam along with the linear regions - is the
0.5 iso-contour of the reconstruction: the outline of the drawing as the network
represents it. Three panels: the image, the reconstruction, and the exact linear
regions (filled with the reconstruction's value at each region's centroid) with the
zero level set in red.

    python examples/inr_2d.py            # about a minute on a laptop CPU
    python examples/inr_2d.py --quick    # a smoke run in a few seconds
"""
import argparse
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import splinecam  # noqa: E402
from splinecam.demo import fit_regressor  # noqa: E402


def smiley(n=64):
    """An (n, n) float image in [0, 1], row 0 at the bottom (y up): a bright face with
    dark eyes and a dark smile on a dark background."""
    s = (np.arange(n) + 0.5) / n * 2 - 1
    x, y = np.meshgrid(s, s)
    img = np.zeros((n, n))
    img[x ** 2 + y ** 2 < 0.8 ** 2] = 1.0                                     # face
    for ex in (-0.3, 0.3):                                                   # eyes
        img[(x - ex) ** 2 / 0.1 ** 2 + (y - 0.25) ** 2 / 0.16 ** 2 < 1] = 0.0
    r = np.sqrt(x ** 2 + (y - 0.05) ** 2)                                    # smile
    img[(np.abs(r - 0.45) < 0.07) & (y < -0.05)] = 0.0
    return img, x, y


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="examples_output", help="folder for the figure (default: examples_output)")
    ap.add_argument("--quick", action="store_true", help="a small image, model and training: a smoke run")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    # A small model: one thread is nearly as fast as several, and far faster when other work
    # keeps the cores busy (torch's threads then wait on each other).
    torch.set_num_threads(1)

    n, widths, steps, lr = (24, (16, 16), 300, 1e-2) if args.quick else (64, (96, 96, 96, 96), 2000, 2e-3)
    img, x, y = smiley(n)
    X = np.stack([x.ravel(), y.ravel()], axis=1).astype(np.float32)
    Y = (2 * img.ravel() - 1).astype(np.float32)
    t = time.perf_counter()
    model, mse = fit_regressor(widths, X, Y, steps, lr=lr)
    t_train = time.perf_counter() - t
    with torch.no_grad():
        recon = (model(torch.from_numpy(X))[:, 0].numpy().reshape(n, n) + 1) / 2
    psnr = 10 * np.log10(1.0 / np.mean((np.clip(recon, 0, 1) - img) ** 2))

    sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    t = time.perf_counter()
    P = splinecam.partition(model, sl, progress=not args.quick)
    seconds = time.perf_counter() - t
    A, c = P.affine_maps()
    value = (np.einsum("fcd,fd->fc", A, P.centroids())[:, 0] + c[:, 0] + 1) / 2
    arch = f"MLP 2-{'-'.join(map(str, widths))}-1"
    print(f"{arch}: PSNR {psnr:.1f} dB after {steps} steps ({t_train:.1f} s); {P.num_regions} regions, "
          f"{len(P.decision_boundary)} level-set segments in {seconds:.2f} s")

    fig, axes = plt.subplots(1, 3, figsize=(18, 6.3), constrained_layout=True)
    ext = (-1, 1, -1, 1)
    axes[0].imshow(img, extent=ext, origin="lower", cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[0].set_title(f"the image ({n} x {n} pixels)")
    axes[1].imshow(np.clip(recon, 0, 1), extent=ext, origin="lower", cmap="gray", vmin=0, vmax=1,
                   interpolation="nearest")
    axes[1].set_title(f"{arch} at the pixel centres (PSNR {psnr:.1f} dB)")
    lw = 0.15 if P.num_regions < 5000 else 0.06
    P.plot(ax=axes[2], color=np.clip(value, 0, 1), cmap="gray", edgecolor="#1f77b4", linewidth=lw,
           boundary_color="#d62728", boundary_width=1.5)
    axes[2].collections[0].set_clim(0, 1)
    level = "red: exact 0.5 level set" if len(P.decision_boundary) else \
        "no 0.5 level set: the values stay on one side"
    axes[2].set_title(f"its {P.num_regions} exact linear regions (blue edges), value at each centroid;\n{level}")
    for a in axes:
        a.set_xlim(-1.02, 1.02)
        a.set_ylim(-1.02, 1.02)
    fig.suptitle("A 2-D implicit neural representation: (x, y) -> intensity")
    path = os.path.join(args.out, "inr_2d.png")
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
