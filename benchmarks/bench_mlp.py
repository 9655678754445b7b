"""Speed of the exact partition on MLPs and a small CNN, as ratios measured in one run.

For each case: regions, seconds, regions per second, and the ratio of the engine's time
to (a) one plain forward pass of the final vertex set through the model in float64
(the cost no exact method can avoid: every vertex of the partition must be evaluated)
and (b) the slow reference implementation (splinecam.reference, one region at a time
clipped by half-planes), where the reference finishes in reasonable time.

    python benchmarks/bench_mlp.py            # full table
    python benchmarks/bench_mlp.py --quick    # small cases only
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import torch

import splinecam
from splinecam.zoo import mlp, small_cnn


def square(r):
    return splinecam.Slice.plane2d([[-r, -r], [r, -r], [r, r], [-r, r]])


def timed(fn, repeat=1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def forward_seconds(model, sl, vertices, repeat=3):
    m = __import__("copy").deepcopy(model).double().eval()
    x = sl.to_input(vertices)
    with torch.no_grad():
        return timed(lambda: m(x), repeat)[0]


def cases(quick):
    torch.manual_seed(0)
    a, b, c = torch.randn(3, 784)
    tri784 = splinecam.Slice.through(a, b, c)
    torch.manual_seed(1)
    ia, ib, ic = torch.randn(3, 3, 32, 32)
    cen = (ia + ib + ic) / 3  # the triangle scaled by 0.05 about its centroid (whole: ~10^7 regions)
    tri_cnn = splinecam.Slice.through(*[cen + 0.05 * (t - cen) for t in (ia, ib, ic)])
    out = [
        ("MLP 2-16x3-1 on [-1,1]^2", lambda: mlp((2, 16, 16, 16, 1)), square(1), True),
        ("MLP 2-32x3-1 on [-1,1]^2", lambda: mlp((2, 32, 32, 32, 1)), square(1), True),
        ("MLP 2-64x3-1 on [-2,2]^2", lambda: mlp((2, 64, 64, 64, 1)), square(2), False),
    ]
    if not quick:
        out += [
            ("MLP 2-256x3-1 on [-5,5]^2", lambda: mlp((2, 256, 256, 256, 1)), square(5), False),
            ("MLP 2-256x8-1 on [-1,1]^2", lambda: mlp((2,) + (256,) * 8 + (1,)), square(1), False),
            ("MLP 784-256x3-10, triangle", lambda: mlp((784, 256, 256, 256, 10)), tri784, False),
            ("CNN 3x32x32 c6-c16-120-84-10, triangle/20", lambda: small_cnn(), tri_cnn, False),
        ]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small cases only")
    ap.add_argument("--threads", type=int, default=None, help="engine threads (default: all)")
    args = ap.parse_args(argv)
    print(f"splinecam {splinecam.__version__} | {platform.processor() or platform.machine()} | "
          f"{os.cpu_count()} CPUs | torch {torch.__version__} ({torch.get_num_threads()} threads) | float64")
    header = f"{'case':42s} {'regions':>9s} {'seconds':>8s} {'regions/s':>10s} {'x forward':>9s} {'ref s':>7s} {'ref/eng':>8s}"
    print(header)
    print("-" * len(header))
    from splinecam.reference import reference_partition
    for name, build, sl, with_ref in cases(args.quick):
        model = build()
        splinecam.partition(model, sl, progress=False, decision_boundary=False, threads=args.threads)  # warm-up
        sec, P = timed(lambda: splinecam.partition(model, sl, progress=False, decision_boundary=False,
                                                   threads=args.threads), repeat=2)
        fwd = forward_seconds(model, sl, P.vertices)
        ref_s = ratio = ""
        if with_ref:
            rs, polys = timed(lambda: reference_partition(model, sl.origin, sl.basis, sl.polygon))
            assert len(polys) == P.num_regions, (len(polys), P.num_regions)
            ref_s, ratio = f"{rs:7.2f}", f"{rs / sec:7.0f}x"
        print(f"{name:42s} {P.num_regions:9d} {sec:8.3f} {P.num_regions / sec:10.0f} {sec / fwd:8.2f}x {ref_s:>7s} "
              f"{ratio:>8s}", flush=True)
    print("\nx forward: engine time / one float64 forward pass of the final vertex set through the model.")
    print("ref/eng: reference implementation time / engine time (same region count asserted).")


if __name__ == "__main__":
    sys.exit(main())
