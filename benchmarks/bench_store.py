"""A slice larger than one pass can hold, written to a store, reopened and queried.

An MLP on a square whose partition needs far more than the memory limit in one pass:
``partition(..., memory_limit=..., store=DIR)`` cuts it into tiles, writes each finished
tile to the store, stitches level by level into the store, and the result is opened
again with ``Partition.load`` (memory-mapped) and queried: ``locate`` of random points,
``at_layer(1)``, a figure of a window. Printed: regions, tiles, seconds per phase and
the peak RSS of the process (file-backed pages of the memory-mapped store included).

    python benchmarks/bench_store.py                    # about 10^6 regions
    python benchmarks/bench_store.py --widths 1024 1024 1024 --half 6   # more
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np


def rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[512, 512, 512])
    ap.add_argument("--half", type=float, default=4.0, help="half side of the square domain")
    ap.add_argument("--memory-gib", type=float, default=1.0)
    ap.add_argument("--store", default=None, help="store directory (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    import splinecam
    from splinecam.zoo import mlp
    model = mlp((2, *args.widths, 10), seed=0)
    h = args.half
    sl = splinecam.Slice.plane2d([[-h, -h], [h, -h], [h, h], [-h, h]])
    tmp = args.store is None
    path = args.store or tempfile.mkdtemp(prefix="splinecam-store-")
    try:
        t = time.perf_counter()
        P = splinecam.partition(model, sl, memory_limit=int(args.memory_gib * 2 ** 30), store=path, progress=True)
        t_run = time.perf_counter() - t
        n, tiles = P.num_regions, P.run_info["tiles"]
        t_stitch = P.run_info.get("stitch_seconds", 0.0)
        rss_run = rss_gib()
        del P
        t = time.perf_counter()
        Q = splinecam.Partition.load(path, model)
        rng = np.random.default_rng(0)
        pts = rng.uniform(-h, h, size=(1000, 2))
        where = Q.locate(pts)
        first = Q.at_layer(1).num_regions
        t_query = time.perf_counter() - t
        t = time.perf_counter()
        import matplotlib
        matplotlib.use("Agg")
        fig = Q.plot(window=(-h / 20, h / 20, -h / 20, h / 20)).figure
        fig.savefig(os.path.join(path, "window.png"), dpi=80)
        t_plot = time.perf_counter() - t
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs) / 2 ** 30
        print(f"regions {n:,} in {tiles} tiles: {t_run:.1f} s ({n / t_run:,.0f} regions/s; the stitch {t_stitch:.1f} s); "
              f"store {size:.2f} GiB; "
              f"reopened and queried (1000 locates, at_layer(1) = {first:,} regions) in {t_query:.1f} s, "
              f"window plotted in {t_plot:.1f} s; all points located: {bool((where >= 0).all())}; "
              f"peak RSS {rss_run:.2f} GiB while partitioning, {rss_gib():.2f} GiB in all, with memory_limit "
              f"{args.memory_gib:g} GiB")
    finally:
        if tmp:
            shutil.rmtree(path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
