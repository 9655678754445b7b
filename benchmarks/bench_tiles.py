"""What tiles cost: the same slice in one pass and in tiles, and under a memory limit.

For each case the slice is computed whole, on grids of 2 x 2 and 4 x 4 tiles, and with
a memory limit far below what one pass needs (tiles planned by partition() itself); each
run in its own process so that its peak RSS is its own. Printed: regions (the same in
every row: the tiles are stitched into the partition of the whole slice), tiles,
seconds, the ratio to the one-pass time, the share of stitching, peak RSS and the limit.

    python benchmarks/bench_tiles.py
    python benchmarks/bench_tiles.py --case cnn
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

CASES = ("mlp", "cnn")


def build(case):
    import splinecam
    from splinecam.zoo import mlp, small_cnn
    if case == "mlp":
        return mlp((2, 64, 64, 64, 10), seed=0), splinecam.Slice.plane2d([[-2, -2], [2, -2], [2, 2], [-2, 2]])
    model = small_cnn()
    g = torch.Generator().manual_seed(1)
    a, b, c = torch.randn(3, 3, 32, 32, generator=g)
    return model, splinecam.Slice.through(a, b, c).scaled(0.05)


def run_one(case, tiles, limit_gib):
    import splinecam
    model, sl = build(case)
    limit = None if limit_gib is None else int(limit_gib * 2 ** 30)
    t = time.perf_counter()
    P = splinecam.partition(model, sl, progress=False, tiles=tiles, memory_limit=limit)
    sec = time.perf_counter() - t
    r = dict(case=case, tiles_arg=tiles, regions=P.num_regions, edges=len(P.edges), tiles=P.run_info["tiles"],
             seconds=sec, stitch_seconds=P.run_info.get("stitch_seconds", 0.0),
             peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
             limit_gib=P.run_info["memory_limit"] / 2 ** 30)
    print("RESULT " + json.dumps(r), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=CASES, action="append")
    ap.add_argument("--one", nargs=3, metavar=("CASE", "TILES", "LIMIT_GIB"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        case, tiles, lim = args.one
        run_one(case, tiles if tiles == "auto" else int(tiles), None if lim == "-" else float(lim))
        return 0
    print(f"{'case':5s} {'tiles':>9s} {'regions':>8s} {'edges':>8s} {'seconds':>8s} {'x one pass':>10s} "
          f"{'stitch %':>8s} {'peak RSS GiB':>12s} {'limit GiB':>9s}")
    for case in args.case or CASES:
        base = None
        limit = {"mlp": 0.002, "cnn": 0.25}[case]
        for tiles, lim in (("1", "-"), ("2", "-"), ("4", "-"), ("auto", str(limit))):
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", case, tiles, lim],
                                 capture_output=True, text=True)
            if out.returncode:
                print(f"{case} tiles={tiles}: failed\n{out.stderr[-2000:]}")
                continue
            r = next(json.loads(l[7:]) for l in out.stdout.splitlines() if l.startswith("RESULT "))
            base = r["seconds"] if base is None else base
            what = f"{r['tiles']}" if tiles != "auto" else f"auto:{r['tiles']}"
            print(f"{case:5s} {what:>9s} {r['regions']:8d} {r['edges']:8d} {r['seconds']:8.2f} "
                  f"{r['seconds'] / base:9.2f}x {100 * r['stitch_seconds'] / r['seconds']:7.1f}% "
                  f"{r['peak_rss_gib']:12.2f} {r['limit_gib']:9.3f}", flush=True)
    print("\nx one pass: seconds over the one-pass seconds of the same slice (same process kind, same machine). "
          "auto: partition() with the memory limit shown, which one pass exceeds.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
