"""Layer by layer: the partition of a randomly initialised 784-input MLP on the plane
through three random inputs.

A random MLP 784-64-64-64-10 (``splinecam.zoo.mlp``, default PyTorch initialisation)
is sliced by the plane through three random inputs (784 standard normal values each,
like flattened 28 x 28 noise images), padded to a rectangle around them. Every hidden
layer refines the partition of the layer before it; ``P.at_layer(l)`` is the partition
after hidden layer ``l``. Small multiples show each layer's partition with one colour
per activation pattern, then the full partition coloured by slope norm with the exact
decision boundary (where the arg-max class changes) in red.

    python examples/random_mlp.py            # a few seconds on a laptop CPU
    python examples/random_mlp.py --quick    # a smoke run
"""
import argparse
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import splinecam  # noqa: E402
from splinecam import zoo  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="examples_output", help="folder for the figure (default: examples_output)")
    ap.add_argument("--quick", action="store_true", help="a narrower model: a smoke run")
    ap.add_argument("--seed", type=int, default=0, help="seed of the model and the inputs (default: 0)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    widths = (784, 16, 16, 10) if args.quick else (784, 64, 64, 64, 10)
    model = zoo.mlp(widths, seed=args.seed)
    g = torch.Generator().manual_seed(args.seed + 1)
    a, b, c = torch.randn(3, 784, generator=g, dtype=torch.float64)
    sl = splinecam.Slice.through(a, b, c, pad=0.25)
    t = time.perf_counter()
    P = splinecam.partition(model, sl, progress=not args.quick)
    seconds = time.perf_counter() - t
    arch = "-".join(map(str, widths))
    print(f"MLP {arch}: {P.num_regions} regions, {len(P.decision_boundary)} decision-boundary segments "
          f"in {seconds:.2f} s")

    L = P.num_layers
    fig, axes = plt.subplots(1, L + 1, figsize=(4.6 * (L + 1), 5), constrained_layout=True)
    uv = sl.to_plane(torch.stack([a, b, c]))
    with torch.no_grad():
        classes = model(torch.stack([a, b, c]).float()).argmax(1).tolist()
    for l, ax in zip(range(1, L + 1), axes):
        Pl = P.at_layer(l)
        Pl.plot(ax=ax, color="pattern", cmap="tab20", linewidth=0.2,
                title=f"after hidden layer {l} ({widths[l]} units):\n{Pl.num_regions} regions")
    lw = 0.2 if P.num_regions < 3000 else 0.1
    db = ("red: decision boundary (where the arg-max class changes)" if len(P.decision_boundary)
          else f"no decision boundary: class {classes[0]} everywhere")
    P.plot(ax=axes[-1], color="slope", linewidth=lw, colorbar=True,
           title=f"output layer: slope norm, {P.num_regions} regions;\n{db}")
    for ax in axes:
        splinecam.plot.mark_points(ax, uv, [f"{n} (class {k})" for n, k in zip("ABC", classes)], fontsize=8)
    fig.suptitle(f"Random MLP {arch} on the plane through three random inputs A, B, C "
                 f"(plane coordinates, orthonormal in input space)")
    path = os.path.join(args.out, "random_mlp.png")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
