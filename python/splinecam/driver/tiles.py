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

import json
import os
import shutil
import time
from typing import List, Optional, Tuple, Union

import numpy as np

from splinecam.geometry import clip_axis, polygon_area
from splinecam.slice import Slice

__all__ = ["partition_tiled", "tile_polygons", "run_tiles", "Tile", "TileStore", "LocalTiles"]


#: Offsets of the cut lines from the even grid, in cells, along x and y (see
#: :func:`tile_polygons`): no round fractions, and not equal (a seam corner of a square
#: slice then misses its diagonals).
CUT_SHIFT = (0.0381966, 0.0527864)  # irrational-looking, fixed


def _cuts(lo: float, hi: float, n: int, shift: float) -> np.ndarray:
    c = lo + (hi - lo) * (np.arange(n + 1) + shift) / n
    c[0], c[-1] = lo, hi
    return c


def tile_polygons(polygon, tiles: Union[int, Tuple[int, int]]) -> List[np.ndarray]:
    """Cut a convex polygon into the cells of an ``nx x ny`` grid over its bounding box;
    returns the non-empty convex pieces (counter-clockwise).

    The cuts are shifted by :data:`CUT_SHIFT` of a cell off the even grid: the points a
    network singles out (lines of zero-bias units through the centre of a symmetric
    slice, corners of integer-weight nets) tend to lie at round fractions of a slice,
    and a seam corner there would only add degenerate pieces."""
    nx, ny = (tiles, tiles) if isinstance(tiles, int) else tiles
    poly = np.asarray(polygon, dtype=np.float64)
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    xs, ys = _cuts(lo[0], hi[0], nx, CUT_SHIFT[0]), _cuts(lo[1], hi[1], ny, CUT_SHIFT[1])
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
            if len(cell):  # a corner on a cut line comes out twice
                cell = cell[np.any(cell != np.roll(cell, 1, axis=0), axis=1)]
            if len(cell) >= 3 and polygon_area(cell) > 1e-12 * total:
                out.append(cell)
    return out


def _tile_bar(enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=100.0, desc="splinecam", unit="%",
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")


class Tile:
    """One unit of work: a convex polygon of the slice, its ``path`` in the tree of cuts
    (the grid index, then the quarter at every cut; sorting by path gives the order a
    sequential run finishes them in) and how many times it was cut."""

    __slots__ = ("path", "polygon", "depth")

    def __init__(self, path: Tuple[int, ...], polygon: np.ndarray, depth: int):
        self.path, self.polygon, self.depth = tuple(path), np.asarray(polygon, np.float64), int(depth)

    def quarters(self) -> List["Tile"]:
        return [Tile(self.path + (i,), p, self.depth + 1) for i, p in enumerate(tile_polygons(self.polygon, 2))]

    def to_json(self):
        return dict(path=list(self.path), polygon=self.polygon.tolist(), depth=self.depth)

    @classmethod
    def from_json(cls, d) -> "Tile":
        return cls(d["path"], np.array(d["polygon"], np.float64), d["depth"])


class TileStore:
    """Finished tiles on disk, so that an interrupted run resumes where it stopped:
    ``path/tiles/manifest.json`` (the slice, the run's fingerprint, the tiles done and
    the queue) and one store per finished tile (:mod:`splinecam.result.store`). When
    all tiles are done, the stitched partition is written to ``path`` itself and the
    tiles are removed."""

    def __init__(self, path, fingerprint: str, slice: Slice):
        self.path = os.fspath(path)
        self.dir = os.path.join(self.path, "tiles")
        self.manifest = os.path.join(self.dir, "manifest.json")
        self.fingerprint = fingerprint
        self.polygon = slice.polygon.tolist()
        self.done: List[Tuple[Tile, str]] = []

    def _check(self, found: str, what: str):
        if found != self.fingerprint:
            raise ValueError(f"the store {self.path!r} holds {what} of another model, slice or setting: pass another "
                             "store directory, or delete this one to start again")

    def finished(self):
        """The stored result of this very run, or ``None``."""
        from splinecam.result import store
        if not store.is_store(self.path):
            return None
        P = store.load(self.path)
        self._check(P.run_info.get("fingerprint"), "a partition")
        return P

    def resume(self):
        """``(queue, splits)`` of an interrupted run (its finished tiles in ``done``),
        or ``None``."""
        if not os.path.exists(self.manifest):
            return None
        with open(self.manifest) as fh:
            m = json.load(fh)
        self._check(m.get("fingerprint"), "tiles")
        self.done = [(Tile.from_json(d["tile"]), d["dir"]) for d in m["done"]]
        return [Tile.from_json(t) for t in m["queue"]], int(m["splits"])

    def write(self, queue, splits):
        os.makedirs(self.dir, exist_ok=True)
        m = dict(fingerprint=self.fingerprint, slice=self.polygon, splits=splits,
                 done=[dict(tile=t.to_json(), dir=d) for t, d in self.done], queue=[t.to_json() for t in queue])
        with open(self.manifest + ".tmp", "w") as fh:
            json.dump(m, fh)
        os.replace(self.manifest + ".tmp", self.manifest)

    def add(self, tile: Tile, P, queue, splits):
        from splinecam.result import store
        d = "t" + "_".join(f"{i:03d}" for i in tile.path)
        store.save(P, os.path.join(self.dir, d))
        self.done.append((tile, d))
        self.write(queue, splits)

    def parts(self, net):
        from splinecam.result import store
        out = []
        for t, d in self.done:
            P = store.load(os.path.join(self.dir, d))
            P._net = net
            out.append((t, P))
        return out

    def writer(self):
        from splinecam.result import store
        return store.Writer(self.path)

    def finish(self, R, writer=None):
        """Write the result (or, with the ``writer`` the stitcher filled, its meta data
        only) and remove the tiles."""
        from splinecam.result import store
        if writer is None:
            store.save(R, self.path)
        else:
            writer.finish(R.num_regions, R.run_info)
        shutil.rmtree(self.dir, ignore_errors=True)


class LocalTiles:
    """Runs tiles one after the other in this process."""

    def __init__(self, run):
        self.run = run

    def results(self, queue: List[Tile]):
        """Yield ``(tile, partition or MemoryLimitExceeded)`` as tiles finish; the caller
        may put new tiles at the front of ``queue`` meanwhile (depth first)."""
        from splinecam.driver.engine import MemoryLimitExceeded
        while queue:
            tile = queue.pop(0)
            try:
                yield tile, self.run(tile.polygon)
            except MemoryLimitExceeded as e:
                yield tile, e

    def submit(self, queue: List[Tile], tiles: List[Tile]):
        queue[:0] = tiles


def run_tiles(run, net, slice: Slice, grid, max_depth: int, progress: bool, store: Optional[TileStore] = None,
              executor=None):
    """Partition ``slice`` with ``run(polygon)`` (one pass over a convex piece, ``None``
    for the whole slice; raises :class:`MemoryLimitExceeded` when it does not fit):
    in one pass when ``grid`` is ``None`` and the slice fits or ``grid`` is ``(1, 1)``,
    else in tiles from ``grid`` (``None``: four; or a list of polygons), each cut into
    four when it does not fit. With a ``store``, finished tiles go to disk as they
    finish (and an interrupted run resumes from them). ``executor``: where the tiles
    run (:class:`LocalTiles` by default; :class:`splinecam.driver.cluster.DaskTiles`)."""
    from splinecam.driver.engine import MemoryLimitExceeded
    from splinecam.driver.stitch import stitch
    t0 = time.perf_counter()
    executor = executor or LocalTiles(run)
    resumed = store.resume() if store is not None else None
    if resumed is not None:
        queue, splits = resumed
    elif (grid is None or grid == (1, 1)) and isinstance(executor, LocalTiles):
        try:
            P = run(None, progress=progress)
            P.run_info["tiles"] = 1
            if store is not None:
                P.run_info["fingerprint"] = store.fingerprint
                store.finish(P)
            return P
        except MemoryLimitExceeded:
            if grid is not None:
                raise
        queue, splits = [Tile((i,), p, 1) for i, p in enumerate(tile_polygons(slice.polygon, 2))], 0
    elif grid is None or grid == (1, 1):  # elsewhere: a whole slice is one tile that may be cut like any other
        queue, splits = [Tile((0,), slice.polygon, 0 if grid is None else max_depth)], 0
    elif isinstance(grid, list):
        queue, splits = [Tile((i,), p, 0) for i, p in enumerate(grid)], 0
    else:
        queue, splits = [Tile((i,), p, 0) for i, p in enumerate(tile_polygons(slice.polygon, grid))], 0
    if store is not None and resumed is None:
        store.write(queue, splits)
    total = polygon_area(slice.polygon)
    bar = _tile_bar(progress)
    done: List[Tuple[Tile, object]] = []
    pieces = 0
    area_done = sum(polygon_area(t.polygon) for t, _ in store.done) if store is not None else 0.0
    if area_done and bar is not None:
        bar.n = min(100.0, 100.0 * area_done / total)
        bar.set_postfix_str(f"tiles={len(store.done)} (resumed)")
    try:
        for tile, P in executor.results(queue):
            if isinstance(P, MemoryLimitExceeded):
                if tile.depth >= max_depth:
                    if grid == (1, 1):
                        raise P
                    raise MemoryLimitExceeded(
                        f"{P} - even after cutting the slice's tiles into four {max_depth} times "
                        f"(a tile of {polygon_area(tile.polygon) / total:.2e} of the slice's area); raise "
                        "memory_limit or max_depth, or zoom in") from None
                splits += 1
                executor.submit(queue, tile.quarters())
                if store is not None:
                    store.write(queue, splits)
                continue
            pieces += P.num_regions
            if store is not None:
                store.add(tile, P, queue, splits)  # on disk, out of memory
            else:
                done.append((tile, P))
            area_done += polygon_area(tile.polygon)
            if bar is not None:
                bar.n = min(100.0, 100.0 * area_done / total)  # the tiles' areas may round past 100
                n = len(done) if store is None else len(store.done)
                bar.set_postfix_str(f"tiles={n}, pieces={pieces:,}")
        if store is not None:
            done = store.parts(net)
        done.sort(key=lambda tp: tp[0].path)  # the same order however the tiles were run: one result
        if len(done) == 1 and store is None:
            R = done[0][1]
            R.run_info.update(tiles=1, tile_splits=splits)
            return R
        t_stitch = time.perf_counter()
        stats = _merge_stats([P.run_info for _, P in done])
        sink = store.writer() if store is not None else None
        R = stitch(net, slice, [t.polygon for t, _ in done], [P for _, P in done], stats, sink)
        R.run_info.update(tiles=len(done), tile_splits=splits, stitch_seconds=time.perf_counter() - t_stitch)
        if store is not None:
            R.run_info["fingerprint"] = store.fingerprint
            store.finish(R, sink)
        if bar is not None:
            bar.n = 100.0
            bar.set_postfix_str(f"tiles={len(done)}, regions={R.num_regions:,}, {time.perf_counter() - t0:.1f} s")
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
    """The partition of ``slice`` computed in tiles: :func:`splinecam.partition` starting
    from a grid of tiles.

    A tile that exceeds ``memory_limit`` is cut into four, up to ``max_depth`` times; the
    tiles are stitched exactly into one partition (the same one a single pass gives).

    Parameters
    ----------
    model : torch.nn.Module
        The model, as for :func:`splinecam.partition`.
    slice : Slice
        The convex polygon in a plane of the input space.
    tiles : int or (int, int)
        ``n`` (an ``n`` x ``n`` grid) or ``(nx, ny)``.
    **kwargs
        Any other argument of :func:`splinecam.partition` (``memory_limit``,
        ``max_depth``, ``store``, ``client``, ...).

    Returns
    -------
    Partition
        One stitched partition of the whole slice; ``run_info["tiles"]`` says how many
        tiles were computed.

    Examples
    --------
    >>> import torch, splinecam
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)).eval()
    >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    >>> T = splinecam.partition_tiled(model, sl, tiles=2, progress=False)
    >>> T.num_regions == splinecam.partition(model, sl, tiles=1, progress=False).num_regions
    True
    """
    from splinecam.driver.engine import partition
    return partition(model, slice, tiles=tiles, **kwargs)
