"""Statistics of a :class:`~splinecam.Partition`: region counts, shapes, local
complexity, the decision boundary and the region adjacency graph.

Every function takes a Partition ``P`` and returns numpy arrays (or, for
:func:`summary`, a dict of plain Python values; for :func:`region_adjacency_graph`, a
networkx graph). Each is also a method of :class:`~splinecam.Partition` (``P.stats()``,
``P.neighbor_pairs()``, ...). Regions are the linear regions of the
hidden layers (``P.num_regions`` of them, in the order of ``P.faces()``); all geometry is
in the slice's plane coordinates and exact up to float64 rounding - nothing is sampled.

Region cycles may contain straight-angle vertices (where an edge of a neighbouring region
ends on a side); none of the formulas here is affected by them.
"""
from __future__ import annotations

from typing import Tuple, Union

import numpy as np

from splinecam import _core
from splinecam.geometry import clip_halfplanes, polygon_areas, polygon_moments, take

__all__ = ["regions_per_layer", "region_areas", "region_moments", "region_eccentricity",
           "region_diameters", "local_complexity", "decision_boundary_length", "regions_on_boundary",
           "neighbor_pairs", "adjacency_matrix", "region_adjacency_graph", "adjacency", "summary"]


def _principal(M: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (largest, smallest) of symmetric 2x2 matrices (F, 2, 2)."""
    a, b, d = M[:, 0, 0], M[:, 0, 1], M[:, 1, 1]
    m = 0.5 * (a + d)
    r = np.hypot(0.5 * (a - d), b)
    hi = m + r
    # det / hi is the accurate form of the small eigenvalue (no cancellation).
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.where(hi > 0, (a * d - b * b) / hi, 0.0)
    return hi, np.maximum(lo, 0.0)


def _strip_pieces(coords, off, edges, axis):
    """Cut ragged convex polygons by the strips ``edges[i] <= u[axis] <= edges[i+1]``.

    Returns ``(coords, off, src, strip)``: the non-empty pieces, the polygon each came
    from and its strip index. Only strips that a polygon's bounding range touches are
    tried, so the cost is about the number of (polygon, strip) intersections."""
    nb = len(edges) - 1
    counts = np.diff(off)
    ok = np.flatnonzero(counts > 0)
    if len(ok) == 0:
        return np.zeros((0, 2)), np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    c = coords[:, axis]
    lo = np.minimum.reduceat(c, off[:-1][ok])
    hi = np.maximum.reduceat(c, off[:-1][ok])
    i0 = np.clip(np.searchsorted(edges, lo, side="right") - 1, 0, nb - 1)
    i1 = np.clip(np.searchsorted(edges, hi, side="left") - 1, 0, nb - 1)
    i1 = np.maximum(i1, i0)
    reps = i1 - i0 + 1
    src = np.repeat(ok, reps)
    strip = np.repeat(i0 - np.cumsum(reps) + reps, reps) + np.arange(int(reps.sum()))
    pc, po = take(coords, off, src)
    e = np.zeros(2)
    e[axis] = 1.0
    pc, po = clip_halfplanes(pc, po, -e, -edges[strip])      # u[axis] >= edges[strip]
    pc, po = clip_halfplanes(pc, po, e, edges[strip + 1])    # u[axis] <= edges[strip + 1]
    keep = np.diff(po) > 0
    if not keep.all():
        pc, po = take(pc, po, np.flatnonzero(keep))
        src, strip = src[keep], strip[keep]
    return pc, po, src, strip


def _area_in_cells(coords, off, weights, xedges, yedges) -> np.ndarray:
    """``sum_R weights[R] * area(R ∩ cell)`` for every cell of the grid: (nx, ny)."""
    nx, ny = len(xedges) - 1, len(yedges) - 1
    c1, o1, src1, ix = _strip_pieces(coords, off, xedges, 0)
    c2, o2, src2, iy = _strip_pieces(c1, o1, yedges, 1)
    a = polygon_areas(c2, o2)
    w = weights[src1[src2]] * a
    return np.bincount(ix[src2] * ny + iy, weights=w, minlength=nx * ny).reshape(nx, ny)


# -- public statistics ------------------------------------------------------------------
def regions_per_layer(P) -> np.ndarray:
    """Count the regions after each hidden layer.

    Parameters
    ----------
    P : Partition
        The partition.

    Returns
    -------
    numpy.ndarray
        (L,) int64: the number of regions of ``P.at_layer(l)`` for hidden layers
        ``l = 1..L`` (``L = P.num_layers``); the last entry is ``P.num_regions``.

    Examples
    --------
    >>> import splinecam
    >>> from splinecam import zoo
    >>> from splinecam.analysis import stats
    >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
    >>> counts = stats.regions_per_layer(P)
    >>> len(counts) == P.num_layers and counts[-1] == P.num_regions
    True
    """
    return np.array([P.at_layer(l).num_regions for l in range(1, P.num_layers + 1)], dtype=np.int64)


def region_areas(P) -> np.ndarray:
    """Compute the area of every region (shoelace formula).

    Parameters
    ----------
    P : Partition
        The partition.

    Returns
    -------
    numpy.ndarray
        (F,) float64 region areas, in the order of ``P.faces()``; they sum to
        ``P.slice.area``. The same as ``P.areas()``.
    """
    coords, off = P.faces()
    return polygon_areas(coords, off)


def region_moments(P) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compute the exact area moments of every region (Green's theorem, no sampling).

    Parameters
    ----------
    P : Partition
        The partition.

    Returns
    -------
    area : (F,) float64
    centroid : (F, 2) float64
        The centre of mass of each region (not the vertex mean of ``P.centroids()``).
    second_moment : (F, 2, 2) float64
        Central second moment of area ``∫ (u - centroid)(u - centroid)^T dA``.
    """
    coords, off = P.faces()
    return polygon_moments(coords, off)


def region_eccentricity(P) -> np.ndarray:
    """Compute the eccentricity of every region: the axis ratio of its equivalent ellipse.

    The eccentricity is ``sqrt(λ_max / λ_min)`` of the region's central second moment
    of area. A square (or any regular polygon, or a disc) gives 1; an ``a x b``
    rectangle gives ``max(a, b) / min(a, b)``; a degenerate, zero-width region gives
    ``inf``. Independent of translation, rotation and scale.

    Parameters
    ----------
    P : Partition
        The partition.

    Returns
    -------
    numpy.ndarray
        (F,) float64, each >= 1 (or ``inf``).
    """
    _, _, M = region_moments(P)
    hi, lo = _principal(M)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.sqrt(hi / lo)
    return np.where(lo > 0, np.maximum(e, 1.0), np.inf)


def region_diameters(P) -> np.ndarray:
    """Compute the diameter of every region: the largest distance between two of its points.

    For a convex polygon that is the largest distance between two of its vertices;
    exact.

    Parameters
    ----------
    P : Partition
        The partition.

    Returns
    -------
    numpy.ndarray
        (F,) float64 diameters in plane units.
    """
    coords, off = P.faces()
    counts = np.diff(off)
    out = np.zeros(len(counts))
    # Group regions by vertex count: all pairwise distances of one group at once,
    # in blocks so the (n, k, k) temporaries stay small.
    for k in np.unique(counts):
        ids = np.flatnonzero(counts == k)
        block = max(1, 2_000_000 // int(k * k))
        for s in range(0, len(ids), block):
            sub = ids[s:s + block]
            v = coords[off[sub][:, None] + np.arange(k)]            # (n, k, 2)
            d = v[:, :, None, :] - v[:, None, :, :]
            out[sub] = np.sqrt((d ** 2).sum(-1).max(axis=(1, 2)))
    return out


def _grid_edges(P, bins):
    poly = P.slice.polygon
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    nx, ny = (int(bins), int(bins)) if np.ndim(bins) == 0 else (int(bins[0]), int(bins[1]))
    if nx < 1 or ny < 1:
        raise ValueError(f"bins must be positive; got {bins!r}")
    return np.linspace(lo[0], hi[0], nx + 1), np.linspace(lo[1], hi[1], ny + 1)


def local_complexity(P, bins: Union[int, Tuple[int, int]] = 64
                     ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compute the density of linear regions (regions per unit area) on a grid over the slice's bounding box.

    Exact, no centroid binning: each region ``R`` is clipped to every grid cell it meets
    and counts as ``area(R ∩ cell) / area(R)`` of a region there; the density of a cell
    is that fractional count divided by the area of the cell inside the domain. So
    ``(density * cell_area_in_domain).sum() == P.num_regions``, and the density equals
    the average of ``1 / area(region containing u)`` over the cell.

    Parameters
    ----------
    P : Partition
        The partition.
    bins : int or (int, int)
        Number of cells along x and y (each positive).

    Returns
    -------
    density : (nx, ny) float64
        ``density[i, j]`` is the cell ``xedges[i]..xedges[i+1]`` x
        ``yedges[j]..yedges[j+1]`` (the ``np.histogram2d`` layout: draw
        ``density.T`` with ``origin='lower'``). NaN for cells outside the domain.
    xedges : (nx + 1,) float64
        Cell edges along x.
    yedges : (ny + 1,) float64
        Cell edges along y.

    Raises
    ------
    ValueError
        When a number of bins is not positive.

    Examples
    --------
    >>> import numpy as np, splinecam
    >>> from splinecam import zoo
    >>> from splinecam.analysis import stats
    >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
    >>> density, xedges, yedges = stats.local_complexity(P, bins=4)
    >>> density.shape
    (4, 4)
    >>> bool(np.isclose((density * 0.5 * 0.5).sum(), P.num_regions))
    True
    """
    xedges, yedges = _grid_edges(P, bins)
    coords, off = P.faces()
    areas = polygon_areas(coords, off)
    frac = _area_in_cells(coords, off, 1.0 / areas, xedges, yedges)
    poly = P.slice.polygon
    dom = _area_in_cells(poly, np.array([0, len(poly)], np.int64), np.ones(1), xedges, yedges)
    cell = (xedges[1] - xedges[0]) * (yedges[1] - yedges[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        density = np.where(dom > 1e-12 * cell, frac / dom, np.nan)
    return density, xedges, yedges


def decision_boundary_length(P) -> float:
    """Compute the total length of the decision boundary inside the slice.

    Parameters
    ----------
    P : Partition
        The partition.

    Returns
    -------
    float
        The length in plane units; 0.0 when the decision boundary was not computed or
        does not cross the slice.
    """
    db = P.decision_boundary
    if len(db) == 0:
        return 0.0
    return float(np.linalg.norm(db[:, 1] - db[:, 0], axis=1).sum())


def regions_on_boundary(P) -> np.ndarray:
    """Find the regions that the decision boundary crosses (regions containing a decision segment).

    Found from the decision-boundary refinement: every decision segment separates two of
    its faces, each inside one region; normally both lie in the same region. Where the
    boundary runs along a region edge (degenerate input) both regions of that edge are
    reported.

    Parameters
    ----------
    P : Partition
        The partition.

    Returns
    -------
    numpy.ndarray
        (k,) int64 sorted region indices; empty when the decision boundary was not
        computed or misses the slice.
    """
    dec = getattr(P, "_decision", None)
    if dec is None or len(P.decision_boundary) == 0:
        return np.zeros(0, np.int64)
    off, verts = dec["faces"][0], dec["faces"][1]
    he = _core.halfedges(len(P._xy), off, verts)
    twin, face = he["twin"], he["face"]
    w = dec["winner"]
    h = np.flatnonzero(twin >= 0)
    h = h[w[face[h]] != w[face[twin[h]]]]
    dfaces = np.unique(face[h])
    # Each refined face lies in one region: locate an interior point (its vertex mean).
    cen = np.add.reduceat(P._xy[verts], off[:-1], axis=0)[dfaces] / np.diff(off)[dfaces, None]
    reg = P.locate(cen)
    return np.unique(reg[reg >= 0]).astype(np.int64)


def _shared_boundaries(P):
    """The adjacent region pairs (K, 2) int64 (sorted, ``a < b``) and the length of the
    boundary each pair shares (K,) float64."""
    f = P._faces
    he = _core.halfedges(f.num_vertices, f.face_offsets, f.face_verts)
    twin, face, nxt = he["twin"], he["face"], he["next"]
    h = np.flatnonzero(twin >= 0)
    a, b = face[h].astype(np.int64), face[twin[h]].astype(np.int64)
    h = h[a < b]
    a, b = face[h].astype(np.int64), face[twin[h]].astype(np.int64)
    F = P.num_regions
    key = a * F + b
    uniq, inv = np.unique(key, return_inverse=True)
    pairs = np.stack([uniq // F, uniq % F], axis=1).astype(np.int64) if len(uniq) else np.zeros((0, 2), np.int64)
    xy = P._xy
    v = f.face_verts
    seg = np.linalg.norm(xy[v[nxt[h]]] - xy[v[h]], axis=1)
    length = np.bincount(inv.ravel(), weights=seg, minlength=len(uniq)).astype(np.float64)
    return pairs, length


def neighbor_pairs(P) -> np.ndarray:
    """List the pairs of neighbouring regions: regions sharing an edge of positive length.

    These are the edges of the region adjacency (dual) graph, as an array.

    Parameters
    ----------
    P : Partition
        The partition.

    Returns
    -------
    numpy.ndarray
        (K, 2) int64: each adjacent pair once, ``pairs[:, 0] < pairs[:, 1]``, sorted
        lexicographically. Regions meeting only at a vertex are not neighbours.

    See Also
    --------
    adjacency_matrix : the same graph as a sparse matrix of shared boundary lengths.
    region_adjacency_graph : the same graph as a networkx graph.

    Examples
    --------
    >>> import splinecam
    >>> from splinecam import zoo
    >>> from splinecam.analysis import stats
    >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
    >>> pairs = stats.neighbor_pairs(P)
    >>> pairs.shape[1], bool((pairs[:, 0] < pairs[:, 1]).all())
    (2, True)
    """
    return _shared_boundaries(P)[0]


def adjacency_matrix(P):
    """Build the region adjacency (dual) graph as a sparse matrix of shared boundary lengths.

    Parameters
    ----------
    P : Partition
        The partition.

    Returns
    -------
    scipy.sparse.csr_matrix
        (F, F) float64, symmetric; entry ``(i, j)`` is the length of the boundary
        regions ``i`` and ``j`` share (no entry for regions that are not neighbours).

    Raises
    ------
    ImportError
        When scipy is not installed (use :func:`neighbor_pairs` without it).
    """
    try:
        import scipy.sparse as sp
    except ImportError as e:
        raise ImportError("adjacency_matrix() needs scipy (pip install scipy); neighbor_pairs() gives the "
                          "(K, 2) pairs without it") from e
    pairs, length = _shared_boundaries(P)
    F = P.num_regions
    i = np.concatenate([pairs[:, 0], pairs[:, 1]])
    j = np.concatenate([pairs[:, 1], pairs[:, 0]])
    return sp.csr_matrix((np.concatenate([length, length]), (i, j)), shape=(F, F))


def region_adjacency_graph(P):
    """Build the region adjacency (dual) graph as a ``networkx.Graph``.

    One node per region, ``0..F-1``, with attributes ``area`` (float) and
    ``centroid`` (an ``(x, y)`` tuple: the region's vertex mean ``P.centroids()[i]``, an
    interior point); one edge per pair of neighbouring regions, with attribute
    ``length``, the length of the boundary they share. (``P.to_networkx()`` is the
    other graph: the planar graph of vertices and edges.)

    Parameters
    ----------
    P : Partition
        The partition.

    Returns
    -------
    networkx.Graph
        The dual graph.

    Raises
    ------
    ImportError
        When networkx is not installed (it is not a dependency of splinecam; use
        :func:`neighbor_pairs` without it).

    Examples
    --------
    >>> import splinecam
    >>> from splinecam import zoo
    >>> from splinecam.analysis import stats
    >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
    >>> G = stats.region_adjacency_graph(P)
    >>> G.number_of_nodes() == P.num_regions, G.number_of_edges() == len(stats.neighbor_pairs(P))
    (True, True)
    """
    try:
        import networkx as nx
    except ImportError as e:
        raise ImportError("region_adjacency_graph() needs networkx (pip install networkx); neighbor_pairs() "
                          "gives the (K, 2) pairs without it") from e
    pairs, length = _shared_boundaries(P)
    areas = region_areas(P)
    cen = P.centroids()
    g = nx.Graph()
    g.add_nodes_from((i, {"area": float(a), "centroid": (float(c[0]), float(c[1]))})
                     for i, (a, c) in enumerate(zip(areas, cen)))
    g.add_edges_from((int(a), int(b), {"length": float(l)}) for (a, b), l in zip(pairs, length))
    return g


def adjacency(P, sparse: bool = False):
    """Return the region adjacency (dual) graph as pairs (and, optionally, a sparse matrix).

    Kept for compatibility; :func:`neighbor_pairs`, :func:`adjacency_matrix` and
    :func:`region_adjacency_graph` say what they return in their names.

    Parameters
    ----------
    P : Partition
        The partition.
    sparse : bool
        Also return the sparse matrix of shared boundary lengths.

    Returns
    -------
    pairs : (K, 2) int64
        ``neighbor_pairs(P)``: each adjacent pair once, ``pairs[:, 0] < pairs[:, 1]``,
        sorted lexicographically. Regions meeting only at a vertex are not adjacent.
    matrix : scipy.sparse.csr_matrix (F, F), only when ``sparse=True``
        ``adjacency_matrix(P)``: symmetric; entry ``(i, j)`` is the length of the
        boundary regions ``i`` and ``j`` share.

    Raises
    ------
    ImportError
        With ``sparse=True`` when scipy is not installed.
    """
    if not sparse:
        return neighbor_pairs(P)
    return neighbor_pairs(P), adjacency_matrix(P)


def summary(P) -> dict:
    """Summarise the partition in scalar statistics.

    Keys: ``regions``, ``layers``, ``regions_per_layer`` (list), ``vertices``, ``edges``,
    ``domain_area``, ``area_mean``, ``area_median``, ``area_min``, ``area_max``,
    ``eccentricity_mean``, ``eccentricity_median``, ``diameter_mean``,
    ``diameter_max``, ``mean_degree`` (mean number of neighbours in the adjacency
    graph), ``decision_segments``, ``decision_boundary_length``,
    ``regions_on_boundary`` (count) and ``regions_per_unit_area``.

    Parameters
    ----------
    P : Partition
        The partition.

    Returns
    -------
    dict
        Plain Python values (``int``, ``float``, a ``list`` of ints), ready for JSON.

    Examples
    --------
    >>> import splinecam
    >>> from splinecam import zoo
    >>> from splinecam.analysis import stats
    >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
    >>> s = stats.summary(P)
    >>> s["regions"] == P.num_regions, s["domain_area"]
    (True, 4.0)
    """
    areas = region_areas(P)
    ecc = region_eccentricity(P)
    diam = region_diameters(P)
    pairs = neighbor_pairs(P)
    F = P.num_regions
    return {
        "regions": int(F),
        "layers": int(P.num_layers),
        "regions_per_layer": [int(x) for x in regions_per_layer(P)],
        "vertices": int(len(P.vertices)),
        "edges": int(len(P.edges)),
        "domain_area": float(P.slice.area),
        "area_mean": float(areas.mean()),
        "area_median": float(np.median(areas)),
        "area_min": float(areas.min()),
        "area_max": float(areas.max()),
        "eccentricity_mean": float(ecc.mean()),
        "eccentricity_median": float(np.median(ecc)),
        "diameter_mean": float(diam.mean()),
        "diameter_max": float(diam.max()),
        "mean_degree": float(2 * len(pairs) / F),
        "decision_segments": int(len(P.decision_boundary)),
        "decision_boundary_length": decision_boundary_length(P),
        "regions_on_boundary": int(len(regions_on_boundary(P))),
        "regions_per_unit_area": float(F / P.slice.area),
    }
