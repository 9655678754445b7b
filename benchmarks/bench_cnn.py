"""Convolutional networks: regions, seconds, peak memory, ratio to a forward pass.

Cases (each run in its own process so that its peak RSS is its own):
  cnn        the original SplineCam's random CNN (3x32x32, conv 6 and 16 channels with
             average pooling, dense 120-84-10), slice through three random inputs
  cnn-trained  the same CNN briefly trained on generated images
  resnet     a CIFAR-sized ResNet (ResNet-18 layout at reduced width, with MaxPool)
  resnet18   ResNet-18 exactly as torchvision builds it (zoo.resnet18, 10 classes), 3x32x32,
             default arguments (tiles when one pass does not fit)
  vgg11      VGG-11 as torchvision builds it (zoo.vgg11), 3x32x32, default arguments
  vgg11-64   the same VGG-11 on 3x64x64 inputs (Tiny-ImageNet size)
  mnist      a 1x28x28 CNN (conv 8, conv 8, dense 64, 10) on the square of half-diagonal 1
             about the centroid of three random inputs, with default arguments (one
             pass does not fit: partition() cuts tiles by itself)
  zoom       the random CNN on slices of growing size within a memory limit (tiles
             planned by partition()), until the slice holds over 10^6 regions

    python benchmarks/bench_cnn.py                 # all cases
    python benchmarks/bench_cnn.py --case zoom --memory-gib 3
    python benchmarks/bench_cnn.py --case resnet18 --resnet18-scale 0.022   # 10^5 regions: about 15 minutes
    python benchmarks/bench_cnn.py --case vgg11-64                          # 3x64x64: about a minute
    python benchmarks/bench_cnn.py --case vgg11 --scale 0.01                # any case at another zoom

"engine" is the share of the run spent in the engine's refinements (run_info's
geometry_seconds over the run's seconds); the rest is forward passes of vertex values
through the model's layers and the driver's own work.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def triangle(scale, seed=1, shape=(3, 32, 32)):
    import splinecam
    g = torch.Generator().manual_seed(seed)
    a, b, c = torch.randn(3, *shape, generator=g)
    cen = (a + b + c) / 3
    return splinecam.Slice.through(*[cen + scale * (t - cen) for t in (a, b, c)])


def trained_cnn(steps=60):
    """small_cnn trained for a few steps to tell apart three kinds of generated images."""
    from splinecam.zoo import small_cnn
    model = small_cnn().train()
    g = torch.Generator().manual_seed(0)
    n = 384
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 3, 32, 32, generator=g) * 0.5
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    patterns = torch.stack([torch.sin(6 * xx), torch.sin(6 * yy), torch.exp(-4 * (xx ** 2 + yy ** 2))])
    x += patterns[y][:, None] * torch.tensor([1.0, 0.5, -0.5])[None, :, None, None]
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return model.eval()


def mnist_cnn(seed=0):
    """conv 8, conv 8 (3x3, ReLU, 2x2 average pooling after each), dense 64, 10 outputs:
    zoo.small_cnn's layout for 1x28x28 inputs."""
    from splinecam.zoo import small_cnn
    return small_cnn(input_shape=(1, 28, 28), channels=(8, 8), dense=(64,), classes=10, seed=seed)


def forward_seconds(model, sl, vertices):
    import copy
    m = copy.deepcopy(model).double().eval()
    x = sl.to_input(vertices)
    with torch.no_grad():
        t = time.perf_counter()
        for i in range(0, len(x), 4096):
            m(x[i:i + 4096])
        return time.perf_counter() - t


resnet18_scale = 0.01
scale_override = None


def run_case(name, memory_gib):
    import splinecam
    from splinecam.zoo import small_cnn, small_resnet
    rows = []
    if name in ("cnn", "cnn-trained", "resnet", "resnet18", "vgg11", "vgg11-64"):
        from splinecam import zoo
        model = {"cnn": small_cnn, "cnn-trained": trained_cnn, "resnet": small_resnet, "resnet18": zoo.resnet18,
                 "vgg11": zoo.vgg11, "vgg11-64": zoo.vgg11}[name]()
        scale = {"resnet": 0.01, "resnet18": resnet18_scale, "vgg11": 0.003, "vgg11-64": 0.0001}.get(name, 0.05)
        scale = scale_override if scale_override is not None else scale
        sl = triangle(scale, shape=(3, 64, 64) if name == "vgg11-64" else (3, 32, 32))
        t = time.perf_counter()
        P = splinecam.partition(model, sl, progress=False)
        sec = time.perf_counter() - t
        fwd = forward_seconds(model, sl, P.vertices)
        rows.append(dict(case=name, scale=scale, regions=P.num_regions, tiles=P.run_info["tiles"], seconds=sec,
                         x_forward=sec / fwd, engine=P.run_info.get("geometry_seconds", float("nan")) / sec,
                         decision_segments=len(P.decision_boundary)))
    elif name == "mnist":
        model = mnist_cnn()
        g = torch.Generator().manual_seed(0)
        a, b, c = torch.randn(3, 1, 28, 28, generator=g)
        sl0 = splinecam.Slice.through(a, b, c)
        h = 2 ** -0.5  # half-diagonal 1
        sq = sl0.polygon.mean(axis=0) + np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
        sl = splinecam.Slice(sl0.origin, sl0.basis, sq)
        t = time.perf_counter()
        P = splinecam.partition(model, sl, progress=False)
        sec = time.perf_counter() - t
        rows.append(dict(case=name, scale=1.0, regions=P.num_regions, tiles=P.run_info["tiles"], seconds=sec,
                         x_forward=float("nan"), decision_segments=len(P.decision_boundary),
                         memory_limit_gib=P.run_info.get("memory_limit", 0) / 2 ** 30))
    elif name == "zoom":
        model = small_cnn()
        limit = int(memory_gib * 2 ** 30)
        for scale in (0.05, 0.1, 0.2, 0.3):
            sl = triangle(scale)
            t = time.perf_counter()
            T = splinecam.partition(model, sl, memory_limit=limit, progress=False)
            sec = time.perf_counter() - t
            rows.append(dict(case=name, scale=scale, regions=T.num_regions, tiles=T.run_info["tiles"], seconds=sec,
                             x_forward=float("nan"), decision_segments=len(T.decision_boundary),
                             peak_rss_gib=_rss()))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            if T.num_regions > 1_000_000:
                break
    for r in rows:
        r.setdefault("peak_rss_gib", _rss())  # peak of the process so far
        r.setdefault("memory_limit_gib", memory_gib if name == "zoom" else None)
        print("RESULT " + json.dumps(r), flush=True)


def _rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=["cnn", "cnn-trained", "resnet", "resnet18", "vgg11", "vgg11-64", "mnist", "zoom"],
                    action="append")
    ap.add_argument("--memory-gib", type=float, default=3.0, help="memory limit of the tiled zoom case")
    ap.add_argument("--resnet18-scale", type=float, default=0.01, help="zoom of the resnet18 case")
    ap.add_argument("--scale", type=float, default=None, help="zoom of every model case (default: each case's own)")
    args = ap.parse_args(argv)
    global resnet18_scale, scale_override
    resnet18_scale, scale_override = args.resnet18_scale, args.scale
    cases = args.case or ["cnn", "cnn-trained", "resnet", "mnist", "zoom"]
    if len(cases) == 1:
        run_case(cases[0], args.memory_gib)
        return 0
    print(f"{'case':12s} {'zoom':>6s} {'regions':>9s} {'tiles':>5s} {'seconds':>8s} {'regions/s':>9s} "
          f"{'engine':>6s} {'x forward':>9s} {'peak RSS GiB':>12s} {'limit GiB':>9s}")
    for c in cases:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--case", c, "--memory-gib",
                              str(args.memory_gib), "--resnet18-scale", str(args.resnet18_scale)]
                             + (["--scale", str(args.scale)] if args.scale is not None else []),
                             capture_output=True, text=True)
        if out.returncode:
            print(f"{c}: failed\n{out.stderr[-2000:]}")
            continue
        for line in out.stdout.splitlines():
            if line.startswith("RESULT "):
                r = json.loads(line[7:])
                lim = f"{r['memory_limit_gib']:.1f}" if r["memory_limit_gib"] else "-"
                xf = f"{r['x_forward']:.2f}x" if r["x_forward"] == r["x_forward"] else "-"
                eng = r.get("engine", float("nan"))
                eng = f"{100 * eng:.0f}%" if eng == eng else "-"
                print(f"{r['case']:12s} {r['scale']:6.3f} {r['regions']:9d} {r['tiles']:5d} {r['seconds']:8.1f} "
                      f"{r['regions'] / r['seconds']:9.0f} {eng:>6s} {xf:>9s} {r['peak_rss_gib']:12.2f} {lim:>9s}",
                      flush=True)
    print("\nzoom: the triangle through three random inputs scaled about its centroid; x forward: engine time / "
          "one float64 forward pass of the final vertex set. Peak RSS is the whole process's.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
