"""The exact partition of the part of a slice that is on screen, as tiles that are kept.

The explorer's page shows a window of the slice's plane. :class:`Windows` computes what
is visible at a level of a fixed quadtree over the slice's bounding box: at level ``z``
the box is cut into ``2^z x 2^z`` cells (cut lines shifted off the even grid, as
:func:`splinecam.driver.tiles.tile_polygons` does), the level chosen so that a cell is
about half the window. Each visible cell, clipped to the slice, is partitioned with the
tolerances of the whole slice (:func:`splinecam.driver.engine.tile_runner`) and kept;
the visible block of cells is stitched into one exact :class:`~splinecam.Partition`
(:func:`splinecam.driver.stitch.stitch`): the same regions at every zoom, never a
resampled picture. Panning back, or zooming out and in again, reuses the kept cells.

:func:`draw_data` turns a window's partition into what a page draws: one polygon per
region large enough to see, and the density of the rest (regions far below a pixel) as
an image.
"""
from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from splinecam.driver.tiles import CUT_SHIFT, _cuts
from splinecam.geometry import clip_axis, meets_window, polygon_area
from splinecam.slice import Slice

__all__ = ["Windows", "View", "draw_data", "COLORINGS"]

#: What regions can be coloured by (the ``color`` of :func:`draw_data`).
COLORINGS = ("slope", "class", "pattern", "layer")


@dataclass
class View:
    """One computed window, as :meth:`Windows.compute` returns it.

    Parameters
    ----------
    partition : Partition
        The exact partition of ``polygon``.
    window : (float, float, float, float)
        The window asked for, ``(x0, x1, y0, y1)`` in plane coordinates.
    polygon : numpy.ndarray
        ``(k, 2)`` the visible block of cells, clipped to the slice.
    level : int
        The quadtree level of the cells.
    computed : int
        Cells computed for this window.
    reused : int
        Cells taken from the cache.
    seconds : float
        Time the window took.
    cells : list of (int, int)
        Indices ``(i, j)`` of the cells that meet the slice.
    """
    partition: object
    window: Tuple[float, float, float, float]
    polygon: np.ndarray
    level: int
    computed: int
    reused: int
    seconds: float
    cells: List[Tuple[int, int]] = field(default_factory=list)


class Windows:
    """Exact partitions of windows of a slice, from quadtree cells that are kept.

    See the module's documentation for the quadtree. Thread safe: the page computes in
    a worker thread.

    Parameters
    ----------
    model : torch.nn.Module
        A piecewise-linear model in eval mode.
    slice : Slice
        The whole slice; every cell uses its tolerances.
    max_level : int
        The deepest quadtree level (cells of ``2^-max_level`` of the slice's bounding
        box): a bound on the zoom.
    cache_cells : int
        How many cells are kept (the least recently used are dropped first).
    **options
        Options of :func:`splinecam.partition` (``rtol``, ``threads``,
        ``memory_limit``, ...).

    Raises
    ------
    TypeError
        When ``slice`` is not a :class:`splinecam.Slice`.

    Examples
    --------
    >>> import splinecam
    >>> from splinecam import zoo
    >>> from splinecam.explorer import Windows
    >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    >>> W = Windows(zoo.mlp([2, 8, 8, 1], seed=3), sl)
    >>> view = W.compute((-1, 1, -1, 1))
    >>> view.level, view.partition.num_regions
    (1, 21)
    >>> W.compute((-1, 1, -1, 1)).reused
    4
    """

    def __init__(self, model, slice: Slice, *, max_level: int = 16, cache_cells: int = 256, **options):
        from splinecam.driver.engine import tile_runner
        if not isinstance(slice, Slice):
            raise TypeError(f"slice must be a splinecam.Slice; got {type(slice).__name__}")
        self.model, self.slice = model, slice
        self.run = tile_runner(model, slice, **options)
        self.net = self.run.net
        self.lo, self.hi = slice.polygon.min(axis=0), slice.polygon.max(axis=0)
        self.max_level = int(max_level)
        self._cells: "OrderedDict[Tuple[int, int, int], Optional[object]]" = OrderedDict()
        self._size = int(cache_cells)
        self._grids: Dict[Tuple[int, int], np.ndarray] = {}
        self._lock = threading.Lock()

    # -- the quadtree ----------------------------------------------------------------------
    def level_for(self, window) -> int:
        """Choose the quadtree level for a window: cells about half its larger side.

        Parameters
        ----------
        window : (float, float, float, float)
            ``(x0, x1, y0, y1)`` in plane coordinates.

        Returns
        -------
        int
            The level, ``0..max_level``.
        """
        x0, x1, y0, y1 = window
        side = max(x1 - x0, y1 - y0, 1e-300)
        box = float(max(self.hi - self.lo))
        return int(min(self.max_level, max(0, math.floor(math.log2(box / side)) + 1)))

    def _grid(self, axis: int, z: int) -> np.ndarray:
        """The ``2^z + 1`` cut lines of level ``z`` along ``axis`` (as tile_polygons cuts)."""
        key = (axis, z)
        if key not in self._grids:
            self._grids[key] = _cuts(float(self.lo[axis]), float(self.hi[axis]), 1 << z, CUT_SHIFT[axis])
        return self._grids[key]

    def cells_for(self, window, z: int) -> Tuple[range, range]:
        """Find the cells of a level that meet a window.

        Parameters
        ----------
        window : (float, float, float, float)
            ``(x0, x1, y0, y1)`` in plane coordinates.
        z : int
            The quadtree level.

        Returns
        -------
        xs, ys : range
            The cell indices ``i`` (along x) and ``j`` (along y).
        """
        n = 1 << z

        def span(axis, a, b):
            cuts = self._grid(axis, z)
            i0 = max(0, int(np.searchsorted(cuts, a, side="right")) - 1)
            i1 = min(n - 1, int(np.searchsorted(cuts, b, side="left")) - 1)
            return range(i0, max(i0, i1) + 1)
        return span(0, window[0], window[1]), span(1, window[2], window[3])

    def block_polygon(self, z: int, xs: range, ys: range) -> np.ndarray:
        """Clip the slice to a rectangle of cells.

        Parameters
        ----------
        z : int
            The quadtree level.
        xs, ys : range
            The cell indices along x and y; the rectangle is ``xs x ys``.

        Returns
        -------
        numpy.ndarray
            ``(k, 2)`` the clipped polygon (empty when it misses the slice).
        """
        p = self.slice.polygon
        for axis, r in ((0, xs), (1, ys)):
            if len(p) and r.start > 0:
                p = clip_axis(p, axis, self._grid(axis, z)[r.start], keep_below=False)
            if len(p) and r.stop < (1 << z):
                p = clip_axis(p, axis, self._grid(axis, z)[r.stop], keep_below=True)
        if len(p):
            p = p[np.any(p != np.roll(p, 1, axis=0), axis=1)]
        return p

    # -- computing -------------------------------------------------------------------------
    def cell(self, z: int, i: int, j: int):
        """Get one cell's partition, from the cache or computed now.

        Parameters
        ----------
        z : int
            The quadtree level.
        i, j : int
            The cell's indices along x and y.

        Returns
        -------
        polygon : numpy.ndarray or None
            The cell clipped to the slice (None when the cell misses the slice).
        partition : Partition or None
            Its exact partition (None when the cell misses the slice).
        reused : bool
            Whether it came from the cache.
        """
        key = (z, i, j)
        with self._lock:
            if key in self._cells:
                self._cells.move_to_end(key)
                return self._cells[key] + (True,)
        poly = self.block_polygon(z, range(i, i + 1), range(j, j + 1))
        total = polygon_area(self.slice.polygon)
        if len(poly) < 3 or polygon_area(poly) <= 1e-12 * total:
            entry = (None, None)
        else:
            entry = (poly, self.run(poly))
        with self._lock:
            self._cells[key] = entry
            while len(self._cells) > self._size:
                self._cells.popitem(last=False)
        return entry + (False,)

    def compute(self, window, progress=None) -> View:
        """Compute the exact partition of the block of cells that a window shows.

        Parameters
        ----------
        window : (float, float, float, float)
            ``(x0, x1, y0, y1)`` in plane coordinates.
        progress : callable, optional
            Called as ``progress(done, total)`` after each cell.

        Returns
        -------
        View
            The block's partition (the cells stitched into one), its level, and how
            many cells were computed and reused.

        Raises
        ------
        ValueError
            When the window does not meet the slice.
        """
        t0 = time.perf_counter()
        window = tuple(float(v) for v in window)
        z = self.level_for(window)
        xs, ys = self.cells_for(window, z)
        polys, parts, computed, reused, cells = [], [], 0, 0, []
        total = len(xs) * len(ys)
        for n, (i, j) in enumerate((i, j) for i in xs for j in ys):
            poly, P, hit = self.cell(z, i, j)
            if P is not None:
                polys.append(poly)
                parts.append(P)
                cells.append((i, j))
                reused += hit
                computed += not hit
            if progress is not None:
                progress(n + 1, total)
        if not parts:
            raise ValueError(f"the window {window} does not meet the slice")
        block = self.block_polygon(z, xs, ys)
        if len(parts) == 1:
            P = parts[0]
        else:
            from splinecam.driver.stitch import stitch
            sub = Slice(self.slice.origin, self.slice.basis, block)
            P = stitch(self.net, sub, polys, parts, {})
        return View(P, window, block, z, computed, reused, time.perf_counter() - t0, cells)


# -- what a page draws -----------------------------------------------------------------------
def region_layer(P) -> np.ndarray:
    """Find, per region, the last hidden layer that cut it (the page's ``layer`` colouring).

    Parameters
    ----------
    P : Partition
        The partition.

    Returns
    -------
    numpy.ndarray
        ``(F,)`` int64: the deepest ``l`` whose region containing it came from splitting
        a region of layer ``l - 1``; 0 when no layer cut the slice.
    """
    out = np.zeros(P.num_regions, np.int64)
    for l in range(1, P.num_layers + 1):
        fp = P._layers[l - 1].face_parent  # layer l's regions -> layer l - 1's
        cut = np.bincount(fp)[fp] > 1
        out[cut[P.parents(l)]] = l
    return out


def draw_data(P, window, pixels: Tuple[int, int] = (800, 800), *, color: str = "slope",
              min_pixels: float = 2.0, max_polygons: int = 40000) -> Dict[str, object]:
    """Compute what a page draws of a partition in a window.

    A partition after a hidden layer (``P.at_layer(l)``) has no class or slope (the
    model is not affine on its regions): there ``cls`` is -1, ``slope`` NaN, and it is
    coloured by pattern instead of slope or class.

    Parameters
    ----------
    P : Partition
        The partition (of the window's cells, or of any slice).
    window : (float, float, float, float)
        ``(x0, x1, y0, y1)`` in plane coordinates.
    pixels : (int, int)
        The drawing's width and height in pixels.
    color : str
        One of :data:`~splinecam.explorer.view.COLORINGS`: ``"slope"``, ``"class"``, ``"pattern"``, ``"layer"``.
    min_pixels : float
        Regions that cover fewer pixels are drawn as density instead of polygons.
    max_polygons : int
        At most this many polygons (the largest) are drawn.

    Returns
    -------
    dict
        ``regions``: columns for a patches glyph (``xs``, ``ys``, ``fill``, ``id``,
        ``cls``, ``slope``, ``area``, ``pattern``, ``layer``) of the regions drawn as
        polygons; ``density``: None or an image (``image``, ``x``, ``y``, ``dw``,
        ``dh``) of the regions per pixel of those left out; ``boundary``: ``xs``,
        ``ys`` of the decision boundary's segments in the window; ``drawn``,
        ``hidden``: the two counts; ``vmax``: the top of the slope colour scale (the
        99th percentile; ``color="slope"`` only); ``color``: the colouring used.

    Raises
    ------
    ValueError
        When ``color`` is not one of :data:`~splinecam.explorer.view.COLORINGS`.
    """
    from matplotlib import colormaps

    from splinecam.analysis.export import _hex
    from splinecam.analysis.plot import _pattern_colors, region_classes

    if color not in COLORINGS:
        raise ValueError(f"color must be one of {', '.join(COLORINGS)}; got {color!r}")
    x0, x1, y0, y1 = (float(v) for v in window)
    coords, off = P.faces()
    n = len(off) - 1
    meets = meets_window(coords, off, window)
    px_area = ((x1 - x0) / max(pixels[0], 1)) * ((y1 - y0) / max(pixels[1], 1))
    areas = P.areas()
    ids = np.flatnonzero(meets & (areas >= min_pixels * px_area))
    if len(ids) > max_polygons:
        ids = np.sort(ids[np.argsort(-areas[ids], kind="stable")[:max_polygons]])
    drawn = np.zeros(n, bool)
    drawn[ids] = True
    small = np.flatnonzero(meets & ~drawn)
    full = P._outputs is not None  # at_layer(l) partitions: the model is not affine on their regions
    cls = region_classes(P) if full else np.full(n, -1, np.int64)
    slopes = P.slope_norms() if full else np.full(n, np.nan)
    if not full and color in ("slope", "class"):
        color = "pattern"
    layers = region_layer(P)
    # patterns of the drawn regions only, one forward pass (at their centroids)
    pats = P.patterns_at(P.centroids()[ids]) if P._net is not None and len(ids) else None
    patterns = _pattern_summaries(P, pats, len(ids))
    vmax = None
    if color == "slope":
        vmax = float(np.percentile(slopes[meets], 99)) if meets.any() else 1.0
        rgba = colormaps["viridis"](np.clip(slopes[ids] / (vmax or 1.0), 0, 1))
    elif color == "class":
        rgba = colormaps["tab10"](cls[ids] % 10)
    elif color == "layer":
        rgba = colormaps["plasma"](layers[ids] / max(P.num_layers, 1))
    elif pats is not None:  # the colours P.plot(color="pattern") gives the same patterns
        rgba = _pattern_colors(pats, colormaps["tab20"])
    else:
        rgba = np.full((len(ids), 4), 0.8)
    fill = _hex(np.asarray(rgba).reshape(len(ids), 4)[:, :3])
    xs = [coords[off[r]:off[r + 1], 0].tolist() for r in ids]
    ys = [coords[off[r]:off[r + 1], 1].tolist() for r in ids]
    regions = dict(xs=xs, ys=ys, fill=fill, id=ids.tolist(), cls=cls[ids].tolist(),
                   slope=np.round(slopes[ids], 6).tolist(), area=areas[ids].tolist(), pattern=patterns,
                   layer=layers[ids].tolist())
    density = None
    if len(small):
        c = P.centroids()[small]
        w, h = max(1, pixels[0] // 4), max(1, pixels[1] // 4)
        img, _, _ = np.histogram2d(c[:, 1], c[:, 0], bins=(h, w), range=((y0, y1), (x0, x1)))
        img[img == 0] = np.nan  # no hidden region there: transparent
        density = dict(image=[img], x=[x0], y=[y0], dw=[x1 - x0], dh=[y1 - y0])
    seg = P.decision_boundary
    seg = seg[meets_window(seg.reshape(-1, 2), np.arange(0, 2 * len(seg) + 1, 2), window)]
    bxs, bys = seg[:, :, 0].tolist(), seg[:, :, 1].tolist()
    return dict(regions=regions, density=density, boundary=dict(xs=bxs, ys=bys), drawn=len(ids), hidden=len(small),
                vmax=vmax, color=color)


def _pattern_summaries(P, pats, n: int) -> List[str]:
    """Per drawn region, the active units of each layer as ``active/width`` (e.g. ``"5/16
    3/16"``), from its pattern bits ``pats`` (n, bits)."""
    if pats is None:
        return [""] * n
    widths = [l.width * max(1, len(l.breakpoints)) if l.kind == "elementwise" else l.idx.size
              for l in P._net.layers[:P.num_layers]]  # after layer l: the first l layers' bits
    starts = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
    counts = np.add.reduceat(pats.astype(np.int64), starts, axis=1) if widths else np.zeros((n, 0), np.int64)
    return [" ".join(f"{int(c)}/{w}" for c, w in zip(row, widths)) for row in counts]
