"""Slices too large for memory: compute them in tiles and stitch them into one partition.

The domain is cut into convex tiles (a grid of cells clipped to the polygon, cut along
axis-parallel seam lines). Each tile is partitioned on its own within ``memory_limit``,
with the tolerances of the whole slice; a tile that does not fit is cut into four and
tried again, so cheap parts of the slice stay in big tiles and only the dense parts are
cut finely. :mod:`splinecam.driver.stitch` then joins the tiles' partitions into one
:class:`~splinecam.Partition` of the slice, exactly: one vertex per point of a seam, the
seam edges between pieces of one region dissolved.

:func:`splinecam.partition` does all this by itself (``tiles="auto"``);
:func:`partition_tiled` is the explicit form, which starts from a grid.
"""
from __future__ import annotations

import time
from typing import List, Optional, Tuple, Union

import numpy as np

from splinecam.geometry import clip_axis, polygon_area
from splinecam.slice import Slice

__all__ = ["partition_tiled", "tile_polygons", "run_tiles"]


def tile_polygons(polygon, tiles: Union[int, Tuple[int, int]]) -> List[np.ndarray]:
    """Cut a convex polygon into the cells of an ``nx x ny`` grid over its bounding box;
    returns the non-empty convex pieces (counter-clockwise)."""
    nx, ny = (tiles, tiles) if isinstance(tiles, int) else tiles
    poly = np.asarray(polygon, dtype=np.float64)
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    xs = np.linspace(lo[0], hi[0], nx + 1)
    ys = np.linspace(lo[1], hi[1], ny + 1)
    total = polygon_area(poly)
    out = []
    for i in range(nx):
        strip = poly
        if i > 0:
            strip = clip_axis(strip, 0, xs[i], keep_below=False)
        if i < nx - 1:
            strip = clip_axis(strip, 0, xs[i + 1], keep_below=True)
        for j in range(ny):
            cell = strip
            if len(cell) and j > 0:
                cell = clip_axis(cell, 1, ys[j], keep_below=False)
            if len(cell) and j < ny - 1:
                cell = clip_axis(cell, 1, ys[j + 1], keep_below=True)
            if len(cell) >= 3 and polygon_area(cell) > 1e-12 * total:
                out.append(cell)
    return out


def _tile_bar(enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=100.0, desc="splinecam", unit="%",
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")


def run_tiles(run, net, slice: Slice, grid: Optional[Tuple[int, int]], max_depth: int, progress: bool):
    """Partition ``slice`` with ``run(polygon)`` (one pass over a convex piece, ``None``
    for the whole slice; raises :class:`MemoryLimitExceeded` when it does not fit):
    in one pass when ``grid`` is ``None`` and the slice fits or ``grid`` is ``(1, 1)``,
    else in tiles from ``grid`` (``None``: four), each cut into four when it does not fit."""
    from splinecam.driver.engine import MemoryLimitExceeded
    from splinecam.driver.stitch import stitch
    t0 = time.perf_counter()
    if grid is None or grid == (1, 1):
        try:
            P = run(None, progress=progress)
            P.run_info["tiles"] = 1
            return P
        except MemoryLimitExceeded:
            if grid is not None:
                raise
        queue = [(p, 1) for p in tile_polygons(slice.polygon, 2)]
    else:
        queue = [(p, 0) for p in tile_polygons(slice.polygon, grid)]
    total = polygon_area(slice.polygon)
    bar = _tile_bar(progress)
    polys, parts, pieces, splits = [], [], 0, 0
    try:
        while queue:
            poly, depth = queue.pop(0)
            try:
                P = run(poly)
            except MemoryLimitExceeded as e:
                if depth >= max_depth:
                    raise MemoryLimitExceeded(
                        f"{e} - even after cutting the slice's tiles into four {max_depth} times "
                        f"(a tile of {polygon_area(poly) / total:.2e} of the slice's area); raise memory_limit "
                        "or max_depth, or zoom in") from None
                queue = [(p, depth + 1) for p in tile_polygons(poly, 2)] + queue
                splits += 1
                continue
            polys.append(poly)
            parts.append(P)
            pieces += P.num_regions
            if bar is not None:
                bar.update(100.0 * polygon_area(poly) / total)
                bar.set_postfix_str(f"tiles={len(parts)}, pieces={pieces:,}")
        t_stitch = time.perf_counter()
        stats = _merge_stats([P.run_info for P in parts])
        R = stitch(net, slice, polys, parts, stats)
        R.run_info.update(tiles=len(parts), tile_splits=splits, stitch_seconds=time.perf_counter() - t_stitch,
                          tile_polygons=polys)
        if bar is not None:
            bar.n = 100.0
            bar.set_postfix_str(f"tiles={len(parts)}, regions={R.num_regions:,}, {time.perf_counter() - t0:.1f} s")
        return R
    finally:
        if bar is not None:
            bar.close()


def _merge_stats(infos: List[dict]) -> dict:
    out = dict(infos[0])
    for k in infos[0]:
        if k.endswith("seconds") or k == "degenerate":
            out[k] = sum(i.get(k, 0) for i in infos)
    out["lean"] = any(i.get("lean", False) for i in infos)
    return out


def partition_tiled(model, slice: Slice, *, tiles: Union[int, Tuple[int, int]] = 2, **kwargs):
    """:func:`splinecam.partition` starting from a grid of ``tiles`` (``n`` or
    ``(nx, ny)``); a tile that exceeds ``memory_limit`` is cut into four, up to
    ``max_depth`` times. Returns the one stitched :class:`~splinecam.Partition`."""
    from splinecam.driver.engine import partition
    return partition(model, slice, tiles=tiles, **kwargs)
