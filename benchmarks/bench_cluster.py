"""Tiles on a local Dask cluster: the same slice with 1 and 2 worker processes.

Printed per run: wall time, speed-up over one worker, and the scheduling overhead: the
wall time not spent computing tiles (the sum of the tiles' own seconds divided by the
number of workers), per tile and as a share of a tile's work. The result is checked to
be the local one bit for bit.

    python benchmarks/bench_cluster.py
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch


def main():
    import distributed
    import splinecam
    from splinecam.zoo import small_cnn
    model = small_cnn()
    g = torch.Generator().manual_seed(1)
    sl = splinecam.Slice.through(*torch.randn(3, 3, 32, 32, generator=g)).scaled(0.05)
    tiles = 4
    t = time.perf_counter()
    local = splinecam.partition(model, sl, progress=False, tiles=tiles)
    t_local = time.perf_counter() - t
    print(f"local: {local.num_regions} regions, {local.run_info['tiles']} tiles, {t_local:.2f} s")
    print(f"{'workers':>7s} {'seconds':>8s} {'speed-up':>8s} {'overhead/tile':>13s} {'of a tile':>9s} {'bitwise':>7s}")
    base = None
    for n in (1, 2):
        with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            splinecam.partition(model, sl.scaled(0.2), progress=False, tiles=2, client=client)  # warm the workers
            t = time.perf_counter()
            P = splinecam.partition(model, sl, progress=False, tiles=tiles, client=client)
            wall = time.perf_counter() - t
        k = P.run_info["tiles"]
        work = P.run_info["forward_seconds"] + P.run_info["geometry_seconds"]  # summed over the tiles
        stitch = P.run_info.get("stitch_seconds", 0.0)
        over = max(wall - stitch - work / n, 0.0) / k
        base = wall if base is None else base
        same = bool(np.array_equal(P._xy, local._xy) and all(np.array_equal(a.face_verts, b.face_verts)
                                                             for a, b in zip(P._layers, local._layers)))
        print(f"{n:7d} {wall:8.2f} {base / wall:7.2f}x {1000 * over:11.1f}ms {100 * over / (work / k):8.1f}% "
              f"{str(same):>7s}", flush=True)
    print("\noverhead: wall time - stitching - (sum of the tiles' forward and geometry seconds) / workers, per tile.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
