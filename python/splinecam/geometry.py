"""Plain-numpy polygon helpers shared by the package: areas, moments, convex hulls and
half-plane clipping of single polygons and of ragged (CSR) lists of polygons.

Ragged polygons are ``coords`` (H, 2) with ``offsets`` (F + 1,): polygon ``i`` is
``coords[offsets[i]:offsets[i+1]]``.

Precision rule: every formula that multiplies coordinates (shoelace cross products,
moments) works on coordinates relative to a point of the polygon itself, never on the
absolute plane coordinates. A small polygon far from the plane's origin then keeps the
accuracy of its own size: the shoelace on absolute coordinates of a unit square at
(1e6, 1e6) cancels terms of 1e12 and loses about 1e-4 of absolute accuracy - enough to
give regions of a fine partition there negative areas.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

__all__ = ["polygon_area", "polygon_areas", "polygon_moments", "convex_hull", "clip_axis", "clip_halfplanes",
           "next_index", "face_ids", "take", "meets_window", "PolygonIndex"]


# -- ragged-polygon indexing ----------------------------------------------------------------
def next_index(off: np.ndarray) -> np.ndarray:
    """Find the index of each vertex's successor in ragged polygons.

    The successor of a polygon's last vertex is its first.

    Parameters
    ----------
    off : array-like
        (F + 1,) offsets of the ragged polygons.

    Returns
    -------
    numpy.ndarray
        (H,) int64 indices into the ragged coordinates.

    Examples
    --------
    >>> next_index([0, 3, 5]).tolist()
    [1, 2, 0, 4, 3]
    """
    off = np.asarray(off, dtype=np.int64)
    n = int(off[-1])
    nxt = np.arange(1, n + 1, dtype=np.int64)
    counts = np.diff(off)
    last = off[1:][counts > 0] - 1
    nxt[last] = off[:-1][counts > 0]
    return nxt


def face_ids(off: np.ndarray) -> np.ndarray:
    """Find the polygon each vertex of ragged polygons belongs to.

    Parameters
    ----------
    off : array-like
        (F + 1,) offsets of the ragged polygons.

    Returns
    -------
    numpy.ndarray
        (H,) int64 polygon indices.

    Examples
    --------
    >>> face_ids([0, 3, 5]).tolist()
    [0, 0, 0, 1, 1]
    """
    off = np.asarray(off, dtype=np.int64)
    return np.repeat(np.arange(len(off) - 1), np.diff(off))


def take(coords: np.ndarray, off: np.ndarray, which: np.ndarray):
    """Select some polygons of a ragged array, in the order given (repeats allowed).

    Parameters
    ----------
    coords : numpy.ndarray
        (H, ...) per-vertex values of the ragged polygons (coordinates, or any array
        with one row per vertex).
    off : numpy.ndarray
        (F + 1,) int offsets.
    which : numpy.ndarray
        (k,) int indices of the polygons to take.

    Returns
    -------
    coords : numpy.ndarray
        The selected rows, polygon after polygon.
    off : numpy.ndarray
        (k + 1,) int64 offsets into them.
    """
    counts = np.diff(off)[which]
    new_off = np.zeros(len(which) + 1, np.int64)
    np.cumsum(counts, out=new_off[1:])
    start = np.repeat(off[:-1][which] - new_off[:-1], counts)
    return coords[np.arange(new_off[-1]) + start], new_off


# -- point location ------------------------------------------------------------------------
def meets_window(coords: np.ndarray, off: np.ndarray, window, verts: Optional[np.ndarray] = None,
                 chunk: int = 1 << 18) -> np.ndarray:
    """Tell which ragged polygons (or polylines) have a bounding box that meets a window.

    Parameters
    ----------
    coords : numpy.ndarray
        (H, 2) coordinates; polygon ``i`` is ``coords[off[i]:off[i+1]]``. Or, with
        ``verts``, (V, 2) the coordinates of the vertices.
    off : numpy.ndarray
        (n + 1,) int offsets.
    window : (xmin, xmax, ymin, ymax)
        The window.
    verts : numpy.ndarray, optional
        (H,) vertex ids: polygon ``i`` is ``coords[verts[off[i]:off[i+1]]]`` (as a
        partition stores its regions, possibly memory-mapped).
    chunk : int
        Polygons measured at once: memory stays a few bytes per polygon beyond the result.

    Returns
    -------
    numpy.ndarray
        (n,) bool.
    """
    off = np.asarray(off, np.int64)
    n = len(off) - 1
    out = np.zeros(max(n, 0), bool)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        o = off[a:b + 1]
        pts = coords[o[0]:o[-1]] if verts is None else coords[verts[o[0]:o[-1]]]
        lo = np.minimum.reduceat(pts, o[:-1] - o[0], axis=0)
        hi = np.maximum.reduceat(pts, o[:-1] - o[0], axis=0)
        out[a:b] = (hi[:, 0] >= window[0]) & (lo[:, 0] <= window[1]) & (hi[:, 1] >= window[2]) & (lo[:, 1] <= window[3])
    return out


class PolygonIndex:
    """Locate points among many convex polygons that tile a region.

    A uniform grid of about one polygon per cell, each cell listing the polygons whose
    bounding box meets it: a query tests a point against the few polygons of its cell
    only. ``Partition.locate`` uses one.

    The index keeps only the grid (an int32 polygon id per cell a polygon meets, and the
    cells' offsets); a query reads the coordinates of its candidates' edges. So with
    ``verts`` (the polygons as vertex ids into ``coords``, as a partition stores them,
    possibly memory-mapped) an index over ten million regions is built a chunk at a time
    and costs a few bytes per region.

    Parameters
    ----------
    coords : numpy.ndarray
        (H, 2) float64 coordinates of the ragged convex polygons, counter-clockwise; or,
        with ``verts``, (V, 2) the coordinates of the vertices.
    off : numpy.ndarray
        (F + 1,) int offsets (no empty polygon).
    verts : numpy.ndarray, optional
        (H,) vertex ids: polygon ``i`` is ``coords[verts[off[i]:off[i+1]]]``.
    """

    #: polygons whose bounding boxes are measured at once while the index is built
    CHUNK = 1 << 18

    def __init__(self, coords: np.ndarray, off: np.ndarray, verts: Optional[np.ndarray] = None):
        self.coords, self.verts, self.off = coords, verts, np.asarray(off, np.int64)
        F = len(self.off) - 1
        chunks = [(a, min(F, a + self.CHUNK)) for a in range(0, F, self.CHUNK)]
        boxes = []  # per chunk: the polygons' bounding boxes, then their first and last cells
        lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
        for a, b in chunks:
            bmin, bmax = self._boxes(a, b)
            lo, hi = np.minimum(lo, bmin.min(axis=0)), np.maximum(hi, bmax.max(axis=0))
            boxes.append((bmin, bmax))
        self.lo = lo
        self.G = int(np.clip(np.sqrt(F), 1, 2048))
        self.size = np.maximum((hi - self.lo) / self.G, np.finfo(float).tiny)
        # The cells of every polygon, chunk by chunk, sorted by cell (polygon order within a
        # cell); then a counting sort places them cell by cell.
        per_chunk, counts = [], np.zeros(self.G * self.G, np.int64)
        for (a, _), (bmin, bmax) in zip(chunks, boxes):
            cell, reg = self._cells(self._cell(bmin), self._cell(bmax))
            order = np.argsort(cell, kind="stable")
            cell, reg = cell[order].astype(np.int32), (reg[order] + a).astype(np.int32 if F < 2 ** 31 else np.int64)
            counts += np.bincount(cell, minlength=self.G * self.G)
            per_chunk.append((cell, reg))
        del boxes
        self.start = np.zeros(self.G * self.G + 1, np.int64)
        np.cumsum(counts, out=self.start[1:])
        self.members = np.empty(int(self.start[-1]), np.int32 if F < 2 ** 31 else np.int64)
        fill = self.start[:-1].copy()
        for cell, reg in per_chunk:
            starts = np.flatnonzero(np.concatenate([[True], cell[1:] != cell[:-1]]))  # the runs of one cell
            rank = np.arange(len(cell)) - np.repeat(starts, np.diff(np.append(starts, len(cell))))
            self.members[fill[cell] + rank] = reg
            fill += np.bincount(cell, minlength=self.G * self.G)

    def _point(self, h):
        """The coordinates of half-edges ``h``'s first vertices."""
        return self.coords[self.verts[h]] if self.verts is not None else self.coords[h]

    def _boxes(self, a: int, b: int):
        """Bounding boxes of polygons ``a .. b - 1``."""
        off = self.off[a:b + 1]
        pts = self._point(np.arange(off[0], off[-1]))
        return np.minimum.reduceat(pts, off[:-1] - off[0], axis=0), np.maximum.reduceat(pts, off[:-1] - off[0], axis=0)

    def _cells(self, i0, i1):
        """``(cell, polygon)`` of every cell that the bounding box ``i0 .. i1`` (grid
        positions) of each polygon of a chunk meets, polygons counted from 0."""
        nx, ny = (i1[:, 0] - i0[:, 0] + 1).astype(np.int64), (i1[:, 1] - i0[:, 1] + 1).astype(np.int64)
        count = nx * ny
        reg = np.repeat(np.arange(len(i0)), count)
        k = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        cell = (i0[reg, 1] + k // nx[reg]) * self.G + i0[reg, 0] + k % nx[reg]
        return cell, reg

    def _cell(self, p):
        return np.clip(((p - self.lo) / self.size).astype(np.int64), 0, self.G - 1)

    def candidates(self, pts: np.ndarray):
        """List the candidate polygons of each point: those of its grid cell, with the point's depth inside each.

        Parameters
        ----------
        pts : numpy.ndarray
            (n, 2) float64 query points.

        Returns
        -------
        point : numpy.ndarray
            (m,) int64 index of the query point of each candidate.
        polygon : numpy.ndarray
            (m,) int64 the candidate polygon.
        depth : numpy.ndarray
            (m,) float64 the smallest signed distance of the point inside the
            polygon's edge lines (positive inside, negative outside).
        """
        c = self._cell(pts)
        cell = c[:, 1] * self.G + c[:, 0]
        n = self.start[cell + 1] - self.start[cell]
        point = np.repeat(np.arange(len(pts)), n)
        k = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        poly = self.members[self.start[cell][point] + k].astype(np.int64)
        # every edge of every candidate polygon
        ne = np.diff(self.off)[poly]
        pair = np.repeat(np.arange(len(poly)), ne)
        first = self.off[poly][pair]
        j = np.arange(int(ne.sum())) - np.repeat(np.cumsum(ne) - ne, ne)
        e = j + first
        nxt = np.where(j + 1 == ne[pair], first, e + 1)
        p0 = self._point(e)
        d = self._point(nxt) - p0
        length = np.hypot(d[:, 0], d[:, 1])
        q = pts[point[pair]]
        s = d[:, 0] * (q[:, 1] - p0[:, 1]) - d[:, 1] * (q[:, 0] - p0[:, 0])
        with np.errstate(divide="ignore", invalid="ignore"):
            dist = np.where(length > 0, s / length, np.inf)
        depth = np.full(len(poly), np.inf)
        np.minimum.at(depth, pair, dist)
        return point, poly, depth


# -- areas and moments ----------------------------------------------------------------------
def polygon_areas(coords: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Compute the signed shoelace areas of ragged polygons (positive counter-clockwise).

    Each polygon is shifted to its own first vertex before the cross products, so the
    result is as accurate as the polygon's size allows wherever it lies in the plane.

    Parameters
    ----------
    coords : array-like
        (H, 2) coordinates.
    offsets : array-like
        (F + 1,) int offsets; polygon ``i`` is ``coords[offsets[i]:offsets[i+1]]``.

    Returns
    -------
    numpy.ndarray
        (F,) float64 areas; polygons with no vertices get 0.

    Examples
    --------
    >>> polygon_areas([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0], [0, 2], [2, 0]], [0, 4, 7]).tolist()
    [1.0, -2.0]
    """
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    off = np.asarray(offsets, dtype=np.int64)
    nf = len(off) - 1
    if len(coords) == 0:
        return np.zeros(nf)
    face = face_ids(off)
    p = coords - coords[off[:-1][face]]
    q = p[next_index(off)]
    cross = p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]
    return 0.5 * np.bincount(face, weights=cross, minlength=nf)


def polygon_area(poly) -> float:
    """Compute the signed shoelace area of one polygon (positive counter-clockwise), relative to its first vertex.

    Parameters
    ----------
    poly : array-like
        (k, 2) vertices.

    Returns
    -------
    float
        The area; 0.0 for fewer than three vertices.

    Examples
    --------
    >>> polygon_area([[0, 0], [2, 0], [2, 1], [0, 1]])
    2.0
    """
    p = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    if len(p) < 3:
        return 0.0
    q = p - p[0]
    r = np.roll(q, -1, axis=0)
    return 0.5 * float(np.sum(q[:, 0] * r[:, 1] - q[:, 1] * r[:, 0]))


def polygon_moments(coords: np.ndarray, offsets: np.ndarray):
    """Compute the exact area, area centroid and central second moments of ragged polygons.

    Green's theorem on each edge; every polygon is shifted to its vertex mean first
    for accuracy.

    Parameters
    ----------
    coords : array-like
        (H, 2) coordinates.
    offsets : array-like
        (F + 1,) int offsets.

    Returns
    -------
    area : numpy.ndarray
        (F,) float64 signed areas.
    centroid : numpy.ndarray
        (F, 2) float64 area centroids.
    M : numpy.ndarray
        (F, 2, 2) float64 ``[[∫(x-cx)² dA, ∫(x-cx)(y-cy) dA], [.., ∫(y-cy)² dA]]``.
    """
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    off = np.asarray(offsets, dtype=np.int64)
    nf = len(off) - 1
    face = face_ids(off)
    counts = np.diff(off)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.stack([np.bincount(face, weights=coords[:, i], minlength=nf) for i in (0, 1)], axis=1) / counts[:, None]
    p = coords - mean[face]
    q = p[next_index(off)]
    x0, y0, x1, y1 = p[:, 0], p[:, 1], q[:, 0], q[:, 1]
    cr = x0 * y1 - x1 * y0

    def s(w):
        return np.bincount(face, weights=w, minlength=nf)

    area = 0.5 * s(cr)
    sx = s((x0 + x1) * cr) / 6.0                                   # ∫ x dA
    sy = s((y0 + y1) * cr) / 6.0                                   # ∫ y dA
    sxx = s((x0 * x0 + x0 * x1 + x1 * x1) * cr) / 12.0            # ∫ x² dA
    syy = s((y0 * y0 + y0 * y1 + y1 * y1) * cr) / 12.0            # ∫ y² dA
    sxy = s((x0 * y1 + 2 * x0 * y0 + 2 * x1 * y1 + x1 * y0) * cr) / 24.0  # ∫ xy dA
    with np.errstate(divide="ignore", invalid="ignore"):
        cx, cy = sx / area, sy / area
    M = np.empty((nf, 2, 2))
    M[:, 0, 0] = sxx - area * cx * cx
    M[:, 1, 1] = syy - area * cy * cy
    M[:, 0, 1] = M[:, 1, 0] = sxy - area * cx * cy
    return area, np.stack([cx, cy], axis=1) + mean, M


# -- convex hull ----------------------------------------------------------------------------
def convex_hull(points) -> np.ndarray:
    """Compute the counter-clockwise convex hull of 2-D points (monotone chain).

    No repeated vertex and no collinear ones. Orientation tests use coordinate
    differences only.

    Parameters
    ----------
    points : array-like
        (n, 2) points.

    Returns
    -------
    numpy.ndarray
        (k, 2) float64 hull vertices; fewer than three distinct points are returned as
        they are (sorted).

    Examples
    --------
    >>> convex_hull([[0, 0], [1, 0], [0.5, 0.2], [1, 1], [0, 1], [0.5, 0]]).tolist()
    [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    """
    pts = np.unique(np.asarray(points, dtype=np.float64).reshape(-1, 2), axis=0)  # sorted by x, then y
    if len(pts) < 3:
        return pts

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    def chain(seq):
        out = []
        for p in seq:
            while len(out) >= 2 and cross(out[-2], out[-1], p) <= 0:
                out.pop()
            out.append(p)
        return out[:-1]

    return np.array(chain(pts) + chain(pts[::-1]))


# -- half-plane clipping --------------------------------------------------------------------
def clip_axis(poly: np.ndarray, axis: int, value: float, keep_below: bool) -> np.ndarray:
    """Clip one convex polygon by an axis-parallel half-plane.

    New vertices get exactly ``x[axis] = value``.

    Parameters
    ----------
    poly : numpy.ndarray
        (k, 2) float64 vertices.
    axis : int
        0 (x) or 1 (y).
    value : float
        The boundary line ``x[axis] = value``.
    keep_below : bool
        Keep ``x[axis] <= value`` (else ``x[axis] >= value``).

    Returns
    -------
    numpy.ndarray
        (m, 2) float64 vertices of the clipped polygon (possibly none).
    """
    out = []
    n = len(poly)
    for i in range(n):
        p, q = poly[i], poly[(i + 1) % n]
        ip = (p[axis] <= value) if keep_below else (p[axis] >= value)
        iq = (q[axis] <= value) if keep_below else (q[axis] >= value)
        if ip:
            out.append(p)
        if ip != iq:
            t = (value - p[axis]) / (q[axis] - p[axis])
            r = p + t * (q - p)
            r[axis] = value
            out.append(r)
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def clip_halfplanes(coords: np.ndarray, off: np.ndarray, normal: np.ndarray, bound) -> Tuple[np.ndarray, np.ndarray]:
    """Clip ragged convex polygons to half-planes ``normal . u <= bound`` (Sutherland-Hodgman, vectorised).

    Parameters
    ----------
    coords : numpy.ndarray
        (H, 2) float64 coordinates.
    off : numpy.ndarray
        (F + 1,) int offsets.
    normal : array-like
        (F, 2) one normal per polygon, or (2,) one for all.
    bound : float or array-like
        (F,) one bound per polygon, or a scalar for all.

    Returns
    -------
    coords : numpy.ndarray
        (H', 2) float64 coordinates of the clipped polygons.
    off : numpy.ndarray
        (F + 1,) int64 offsets; polygons may become empty (no vertices).
    """
    nf = len(off) - 1
    if len(coords) == 0:
        return coords, off
    normal = np.asarray(normal, float)
    face = face_ids(off)
    nxt = next_index(off)
    s = coords @ normal.T if normal.ndim == 1 else np.einsum("ij,ij->i", coords, normal[face])
    s = s - (bound if np.ndim(bound) == 0 else np.asarray(bound)[face])
    inside = s <= 0
    sj = s[nxt]
    cross = inside != (sj <= 0)
    k = inside.astype(np.int64) + cross
    pos = np.cumsum(k) - k
    out = np.empty((int(k.sum()), 2))
    out[pos[inside]] = coords[inside]
    ic = np.flatnonzero(cross)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = s[ic] / (s[ic] - sj[ic])
    out[pos[ic] + inside[ic]] = coords[ic] + t[:, None] * (coords[nxt[ic]] - coords[ic])
    new_off = np.zeros(nf + 1, np.int64)
    np.cumsum(np.bincount(face, weights=k, minlength=nf).astype(np.int64), out=new_off[1:])
    return out, new_off
