"""Slices too large for memory: compute them in tiles and stitch.

The domain is cut into convex tiles (a grid of cells clipped to the polygon). Each tile
is partitioned on its own by :func:`splinecam.partition`, within ``memory_limit``; a
tile that does not fit is split into four and tried again. Finished tiles can be
streamed to disk.

Stitching is exact and combinatorial: a linear region is the set of points of the slice
with one activation pattern, and that set is convex, so the pieces that different tiles
hold of one region are exactly the pieces with the same pattern. Pieces are grouped by a
128-bit digest of their pattern; the region count is the number of distinct patterns,
and a region's polygon is the convex hull of its pieces.
"""
from __future__ import annotations

import hashlib
import os
import time
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from splinecam.geometry import clip_axis, convex_hull, polygon_area
from splinecam.driver.checks import check_partition_args
from splinecam.driver.engine import MemoryLimitExceeded, default_memory_limit, partition
from splinecam.slice import Slice

__all__ = ["partition_tiled", "TiledPartition", "tile_polygons"]


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


_UNIQUE = np.uint64(1) << np.uint64(63)


def _digests(patterns: np.ndarray) -> np.ndarray:
    """(n, 2) uint64: a 128-bit digest of each pattern row (top bit clear)."""
    packed = np.packbits(patterns, axis=1)
    raw = b"".join(hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in packed)
    d = np.frombuffer(raw, dtype=np.uint64).reshape(-1, 2).copy()
    d[:, 0] &= ~_UNIQUE
    return d


def _piece_keys(P, domain: np.ndarray, tile: int) -> np.ndarray:
    """A key per piece of one tile: the digest of its activation pattern for pieces that
    touch another tile (only those can continue there), a key unique to the piece for
    the others. Patterns come from forward passes at the pieces' centroids."""
    f = P._faces
    off, verts = f.face_offsets, f.face_verts
    nxt = np.roll(verts, -1)
    nxt[off[1:] - 1] = verts[off[:-1]]
    face = np.repeat(np.arange(P.num_regions), np.diff(off))
    h = np.flatnonzero(f.he_layer == -1)
    # Everything relative to the slice: coordinates centred on it, the tolerance a
    # fraction of its diameter (never of the distance to the plane's origin, which made
    # every tile edge of a small slice far from (0, 0) look like the slice boundary).
    centre = domain.mean(axis=0)
    dom = domain - centre
    mid = 0.5 * ((P._xy[verts[h]] - centre) + (P._xy[nxt[h]] - centre))
    d = np.roll(dom, -1, axis=0) - dom
    side = d[None, :, 0] * (mid[:, None, 1] - dom[None, :, 1]) - d[None, :, 1] * (mid[:, None, 0] - dom[None, :, 0])
    dist = side / np.linalg.norm(d, axis=1)[None, :]  # signed distance of the midpoint inside each slice edge
    diameter = float(np.linalg.norm(dom.max(axis=0) - dom.min(axis=0)))
    # On a tile edge inside the slice, not on its boundary. Calling a piece on the
    # boundary inner only costs one forward pass; the reverse would leave it unstitched.
    inner = np.all(dist > 1e-12 * diameter, axis=1)
    touching = np.unique(face[h[inner]])
    keys = np.empty((P.num_regions, 2), np.uint64)
    keys[:, 0] = _UNIQUE | np.uint64(tile)
    keys[:, 1] = np.arange(P.num_regions, dtype=np.uint64)
    if len(touching):
        pat = P._net.patterns(P.slice.to_input(P.centroids()[touching]), P.num_layers)
        keys[touching] = _digests(pat)
    return keys


class TiledPartition:
    """The partition of a slice computed in tiles.

    Attributes
    ----------
    tiles : list of (k, 2) arrays, the tile polygons (plane coordinates)
    partitions : list of :class:`splinecam.Partition` (``None`` where streamed to disk)
    paths : list of ``.npz`` paths of streamed tiles (``None`` where kept in memory)
    piece_tile, piece_region : (P,) tile and region of every piece
    piece_area : (P,) area of every piece
    """

    def __init__(self, slice, tiles, partitions, paths, piece_tile, piece_region, piece_area, piece_polys,
                 decision, seconds):
        self.slice = slice
        self.tiles = tiles
        self.partitions = partitions
        self.paths = paths
        self.piece_tile = piece_tile
        self.piece_region = piece_region
        self.piece_area = piece_area
        self._piece_polys = piece_polys
        self._decision = decision
        self.seconds = seconds

    @property
    def num_regions(self) -> int:
        """Distinct linear regions of the whole slice (pieces stitched by pattern)."""
        return int(self.piece_region.max()) + 1 if len(self.piece_region) else 0

    @property
    def num_pieces(self) -> int:
        return len(self.piece_region)

    def areas(self) -> np.ndarray:
        """(F,) region areas (sum of their pieces)."""
        return np.bincount(self.piece_region, weights=self.piece_area, minlength=self.num_regions)

    def polygons(self) -> List[np.ndarray]:
        """One convex (k, 2) polygon per region: the hull of its pieces. Needs the
        pieces in memory (``out_dir=None``)."""
        if self._piece_polys is None:
            raise ValueError("the tiles were streamed to disk; load them from .paths")
        groups = [[] for _ in range(self.num_regions)]
        for poly, r in zip(self._piece_polys, self.piece_region):
            groups[r].append(poly)
        return [g[0] if len(g) == 1 else convex_hull(np.concatenate(g)) for g in groups]

    @property
    def decision_boundary(self) -> np.ndarray:
        """(m, 2, 2) decision-boundary segments of all tiles."""
        return self._decision

    def plot(self, ax=None, *, cmap="tab20", linewidth=0.1, boundary_color="#d62728", boundary_width=1.5):
        """Draw the stitched regions (a colour per region) and the decision boundary."""
        import matplotlib.pyplot as plt
        from matplotlib.collections import LineCollection, PolyCollection
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 6))
        cm = plt.get_cmap(cmap)
        polys = self.polygons()
        ax.add_collection(PolyCollection(polys, facecolors=cm((np.arange(len(polys)) * 7919 % 997) / 997.0),
                                         edgecolors="k", linewidths=linewidth))
        if len(self._decision):
            ax.add_collection(LineCollection(self._decision, colors=boundary_color, linewidths=boundary_width))
        p = self.slice.polygon
        ax.set_xlim(p[:, 0].min(), p[:, 0].max())
        ax.set_ylim(p[:, 1].min(), p[:, 1].max())
        ax.set_aspect("equal")
        return ax

    def __repr__(self):
        return (f"TiledPartition(regions={self.num_regions}, pieces={self.num_pieces}, tiles={len(self.tiles)}, "
                f"seconds={self.seconds:.1f})")


def partition_tiled(model, slice: Slice, *, tiles: Union[int, Tuple[int, int]] = 2,
                    memory_limit: Optional[int] = None, out_dir: Optional[str] = None, progress: bool = True,
                    max_depth: int = 8, **kwargs) -> TiledPartition:
    """Partition ``slice`` in tiles, each within ``memory_limit`` bytes.

    tiles : grid of the first cut (``n`` or ``(nx, ny)``); a tile that exceeds the
        memory limit is split into four, up to ``max_depth`` times.
    out_dir : stream each finished tile to ``out_dir/tile_XXXXX.npz`` (see
        :func:`splinecam.analysis.export.save_npz`) and keep only what stitching needs.
    Other keyword arguments go to :func:`splinecam.partition`.
    """
    if not isinstance(slice, Slice):
        raise TypeError(f"slice must be a splinecam.Slice; got {type(slice).__name__}")
    t0 = time.perf_counter()
    # Checked as partition() would, before any tile.
    limit = check_partition_args(memory_limit=memory_limit, **{k: kwargs[k] for k in ("rtol", "chunk", "threads")
                                                               if k in kwargs})[1]
    limit = limit if limit is not None else default_memory_limit()
    queue = [(p, 0) for p in tile_polygons(slice.polygon, tiles)]
    done_tiles, parts, paths = [], [], []
    digests, piece_tile, piece_area, piece_polys, decision = [], [], [], [], []
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(queue), desc="tiles", unit="tile")
    while queue:
        poly, depth = queue.pop(0)
        sub = Slice(slice.origin, slice.basis, poly)
        try:
            P = partition(model, sub, progress=progress, memory_limit=limit, **kwargs)
        except MemoryLimitExceeded:
            if depth >= max_depth:
                raise
            pieces = tile_polygons(poly, 2)
            queue = [(p, depth + 1) for p in pieces] + queue
            if bar is not None:
                bar.total += len(pieces) - 1
                bar.refresh()
            continue
        t = len(done_tiles)
        done_tiles.append(poly)
        digests.append(_piece_keys(P, slice.polygon, t))
        piece_tile.append(np.full(P.num_regions, t, np.int64))
        piece_area.append(P.areas())
        decision.append(P.decision_boundary)
        if out_dir is not None:
            from splinecam.analysis.export import save_npz
            path = os.path.join(out_dir, f"tile_{t:05d}.npz")
            save_npz(P, path)
            paths.append(path)
            parts.append(None)
        else:
            piece_polys.extend(P.polygons())
            paths.append(None)
            parts.append(P)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(pieces=sum(len(d) for d in digests))
    if bar is not None:
        bar.close()
    alld = np.concatenate(digests) if digests else np.zeros((0, 2), np.uint64)
    _, region = np.unique(alld, axis=0, return_inverse=True)
    region = region.reshape(-1)
    return TiledPartition(slice, done_tiles, parts, paths, np.concatenate(piece_tile), region.astype(np.int64),
                          np.concatenate(piece_area), piece_polys if out_dir is None else None,
                          np.concatenate(decision) if decision else np.zeros((0, 2, 2)), time.perf_counter() - t0)
