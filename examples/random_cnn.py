"""The partition of a randomly initialised CNN on the plane through three images.

``splinecam.zoo.small_cnn()`` - two 3x3 convolutions with ReLU and 2x2 average
pooling, then dense layers 120-84-10, on 3 x 32 x 32 inputs - is sliced with
``Slice.through`` by the plane through three random images. The images are one random
base image plus a little independent noise each, so the slice is small: the first
convolution alone has 6 x 32 x 32 = 6144 ReLUs, and on the plane through three
*independent* noise images about 2000 of their zero lines cross the triangle, which
makes millions of regions (each vertex carrying 6144 values) - more than a laptop's
memory. Closer images mean fewer lines; ``--noise`` sets how close.

Top row: the three images and the full partition coloured by slope norm, with the
decision boundary. The output layer's bias is shifted so that all classes tie at the
triangle's centroid: a random CNN otherwise gives one class to the whole slice. Bottom row: the
partition after each hidden layer, one colour per activation pattern.

    python examples/random_cnn.py              # under half a minute on a laptop CPU, ~1.5 GB memory
    python examples/random_cnn.py --quick      # a smoke run
    python examples/random_cnn.py --noise 0.01 # closer images: fewer regions
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
    ap.add_argument("--quick", action="store_true", help="closer images (fewer regions): a smoke run")
    ap.add_argument("--noise", type=float, default=None,
                    help="standard deviation of each image's noise around the base image (default: 0.02; "
                         "0.004 with --quick)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the model and the images (default: 0)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    noise = args.noise if args.noise is not None else (0.004 if args.quick else 0.02)

    model = zoo.small_cnn(seed=args.seed)
    g = torch.Generator().manual_seed(args.seed + 1)
    base = torch.rand(3, 32, 32, generator=g, dtype=torch.float64)
    images = (base + noise * torch.randn(3, 3, 32, 32, generator=g, dtype=torch.float64)).clamp(0, 1)
    sl = splinecam.Slice.through(*images)
    # A randomly initialised CNN gives nearly every input the same class, so its decision
    # boundary would miss the slice. Shift the output layer's bias by the logits at the
    # triangle's centroid: there all ten classes tie, and the arg-max changes inside the
    # slice. The partition into linear regions does not depend on that bias.
    with torch.no_grad():
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.bias -= model(images.mean(0, keepdim=True).float())[0]
    t = time.perf_counter()
    P = splinecam.partition(model, sl, progress=not args.quick)
    seconds = time.perf_counter() - t
    with torch.no_grad():
        classes = model(images.float()).argmax(1).tolist()
    print(f"small_cnn: {P.num_regions} regions, {len(P.decision_boundary)} decision-boundary segments in "
          f"{seconds:.2f} s; classes of A, B, C: {classes}")

    L = P.num_layers
    cols = max(L, 4)
    fig, axes = plt.subplots(2, cols, figsize=(4.2 * cols, 8.6), constrained_layout=True)
    for k, (name, img) in enumerate(zip("ABC", images)):
        axes[0, k].imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
        axes[0, k].set_title(f"{name}: class {classes[k]}")
        axes[0, k].axis("off")
    uv = sl.to_plane(images)
    ax = axes[0, 3]
    db = ("red: decision boundary" if len(P.decision_boundary)
          else f"no decision boundary (class {classes[0]} everywhere)")
    lw = 0.2 if P.num_regions < 3000 else 0.08
    P.plot(ax=ax, color="slope", linewidth=lw, colorbar=True,
           title=f"triangle A, B, C: {P.num_regions} regions, slope norm\n{db}")
    for a in axes[0, 4:]:
        a.axis("off")
    names = P.layer_names
    for l in range(1, L + 1):
        a = axes[1, l - 1]
        Pl = P.at_layer(l)
        Pl.plot(ax=a, color="pattern", cmap="tab20", linewidth=0.1 if Pl.num_regions > 3000 else 0.2,
                title=f"after hidden layer {l} (ReLU '{names[l - 1]}'):\n{Pl.num_regions} regions")
    for a in axes[1, L:]:
        a.axis("off")
    for a in [ax] + list(axes[1, :L]):
        splinecam.plot.mark_points(a, uv, "ABC", fontsize=9)
    fig.suptitle(f"Random small_cnn (conv 6, conv 16, dense 120-84-10; output bias centred at the triangle's "
                 f"centroid) on the plane through three images (a random image plus noise of std {noise:g} each)")
    path = os.path.join(args.out, "random_cnn.png")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
