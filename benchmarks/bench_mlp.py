"""Speed of the exact partition on MLPs and a small CNN, as ratios measured in one run.

For each case: regions, seconds, regions per second, and the ratio of the engine's time
to (a) one plain forward pass of the final vertex set through the model in float64
(the cost no exact method can avoid: every vertex of the partition must be evaluated)
and (b) the slow reference implementation (splinecam.reference, one region at a time
clipped by half-planes), where the reference finishes in reasonable time.

Then the fixed cost of a call on small models, where it dominates (warm calls, mean of
20): per-call times and regions per second, and a training run of 1,000 checkpoints of
2-10^5-1 through :func:`splinecam.partition_many`, against the same checkpoints one
``partition`` call each.

    python benchmarks/bench_mlp.py            # full table
    python benchmarks/bench_mlp.py --quick    # small cases only
    python benchmarks/bench_mlp.py --small    # the small-model section only
    python benchmarks/bench_mlp.py --phases   # and where the engine's time goes
"""
from __future__ import annotations

import argparse
import gc
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
    ap.add_argument("--small", action="store_true", help="only the small models' per-call times and training run")
    ap.add_argument("--phases", action="store_true",
                    help="also print where the engine's time goes (its own clocks: snap, edges, crossings, faces, "
                         "stitch), summed over the refinements of the timed run")
    args = ap.parse_args(argv)
    if args.phases:
        _count_phases()
    print(f"splinecam {splinecam.__version__} | {platform.processor() or platform.machine()} | "
          f"{os.cpu_count()} CPUs | torch {torch.__version__} ({torch.get_num_threads()} threads) | float64")
    header = f"{'case':42s} {'regions':>9s} {'seconds':>8s} {'regions/s':>10s} {'x forward':>9s} {'ref s':>7s} {'ref/eng':>8s}"
    if not args.small:
        big_table(args, header)
    small_models(args)


PHASES = np.zeros(5)


def _count_phases():
    """Sum the engine's own phase clocks (``out["seconds"]`` of every CPU refinement)."""
    from splinecam import _core
    refine = _core.refine

    def timed_refine(*a, **k):
        out = refine(*a, **k)
        PHASES[:] += np.asarray(out["seconds"])
        return out
    _core.refine = timed_refine


def big_table(args, header):
    print(header)
    print("-" * len(header))
    from splinecam.reference import reference_partition
    for name, build, sl, with_ref in cases(args.quick):
        model = build()
        splinecam.partition(model, sl, progress=False, decision_boundary=False, threads=args.threads)  # warm-up
        PHASES[:] = 0
        sec, P = timed(lambda: splinecam.partition(model, sl, progress=False, decision_boundary=False,
                                                   threads=args.threads), repeat=2)
        phases = PHASES / 2
        fwd = forward_seconds(model, sl, P.vertices)
        ref_s = ratio = ""
        if with_ref:
            rs, polys = timed(lambda: reference_partition(model, sl.origin, sl.basis, sl.polygon))
            assert len(polys) == P.num_regions, (len(polys), P.num_regions)
            ref_s, ratio = f"{rs:7.2f}", f"{rs / sec:7.0f}x"
        print(f"{name:42s} {P.num_regions:9d} {sec:8.3f} {P.num_regions / sec:10.0f} {sec / fwd:8.2f}x {ref_s:>7s} "
              f"{ratio:>8s}", flush=True)
        if args.phases:
            ph = phases
            print(f"{'':42s} engine per run: snap {ph[0]:.3f} s, edges {ph[1]:.3f} s, crossings {ph[2]:.3f} s, "
                  f"faces {ph[3]:.3f} s, stitch {ph[4]:.3f} s", flush=True)
    print("\nx forward: engine time / one float64 forward pass of the final vertex set through the model.")
    print("ref/eng: reference implementation time / engine time (same region count asserted).")


def training_checkpoints(widths, n, seed=0):
    """``n`` state dicts of an MLP along full-batch Adam steps on two moons."""
    import copy
    from splinecam.demo import two_moons
    X, y = (torch.from_numpy(a) for a in two_moons(256, noise=0.2))
    model = mlp(widths, seed=seed).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    states = []
    for _ in range(n):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model(X)[:, 0], y).backward()
        opt.step()
        states.append(copy.deepcopy(model.state_dict()))
    return model.eval(), states


def small_models(args, repeat=20):
    print("\nSmall models on [-2,2]^2: the fixed cost of a call (warm, mean, median and fastest of "
          f"{repeat} calls, decision boundary included)")
    print(f"{'model':22s} {'regions':>8s} {'ms/call':>8s} {'regions/s':>10s} {'median':>8s} {'fastest':>8s}")
    for widths in [(2,) + (10,) * 5 + (1,), (2,) + (32,) * 8 + (1,), (2,) + (64,) * 3 + (1,)]:
        model, sl = mlp(widths), square(2)
        for _ in range(5):
            P = splinecam.partition(model, sl, progress=False, threads=args.threads)
        # The process's first full garbage collection (every object torch and the trace
        # made, some 70 ms here) would otherwise land in one of the timed calls.
        gc.collect()
        calls = []
        for _ in range(repeat):
            t = time.perf_counter()
            P = splinecam.partition(model, sl, progress=False, threads=args.threads)
            calls.append(time.perf_counter() - t)
        sec = sum(calls) / repeat
        name = f"2-{widths[1]}^{len(widths) - 2}-1"
        print(f"{name:22s} {P.num_regions:8d} {1e3 * sec:8.2f} {P.num_regions / sec:10.0f} "
              f"{1e3 * float(np.median(calls)):8.2f} {1e3 * min(calls):8.2f}", flush=True)
    widths, n = (2,) + (10,) * 5 + (1,), 1000
    model, states = training_checkpoints(widths, n)
    sl = square(2)
    splinecam.partition_many(states[:5], sl, model=model, progress=False, threads=args.threads)  # warm-up
    gc.collect()
    t = time.perf_counter()
    parts = splinecam.partition_many(states, sl, model=model, progress=False, threads=args.threads)
    many = time.perf_counter() - t
    t = time.perf_counter()
    for sd in states:
        model.load_state_dict(sd)
        splinecam.partition(model, sl, progress=False, threads=args.threads)
    single = time.perf_counter() - t
    counts = [P.num_regions for P in parts]
    print(f"\n{n} checkpoints of 2-10^5-1 (Adam on two moons), regions {min(counts)}..{max(counts)}:")
    print(f"  partition_many       {many:6.2f} s  ({1e3 * many / n:.2f} ms per checkpoint)")
    print(f"  partition, one each  {single:6.2f} s  ({single / many:.2f}x partition_many)")


if __name__ == "__main__":
    sys.exit(main())
