"""Invariant checks for partitions, shipped for users' own tests.

``check_partition(P)`` verifies what every exact partition must satisfy, without
trusting the engine's own bookkeeping where an independent check is cheap:

- the regions form a valid planar subdivision (closed cycles, twins, Euler's formula);
- region areas (shoelace) are positive and sum to the domain's area;
- every region is convex (counter-clockwise, no right turns beyond rounding);
- the two regions on either side of every interior edge differ in activation pattern,
  evaluated by a fresh forward pass of the model at interior points of both regions.

``partition_difference(A, B)`` says where two partitions of one slice differ (None when
they are the same: faces, edge labels and parents bit for bit, vertices to rounding),
e.g. a GPU's and the CPU's.

``host_batched_launcher()`` runs, inside a ``with`` block, ``partition(device="cpu")``
the way it runs on a GPU: the driver's device path (vertex values as torch tensors) and
the GPU's launcher (batched face pass, scratch pools, capacity levels) on the host
backend. It is how the GPU's code paths are tested and timed on a machine without one.
"""
from __future__ import annotations

import numpy as np

__all__ = ["check_partition", "host_batched_launcher", "partition_difference"]


def partition_difference(A, B, *, vertex_rtol: float = 1e-12):
    """Where partition ``B`` differs from ``A`` (same model and slice), or None.

    The same means: the same regions, and per layer the same face cycles, edge labels
    (layer, unit) and parents, bit for bit; vertices within ``vertex_rtol`` of the
    largest coordinate; decision boundaries of the same shape.

    Parameters
    ----------
    A, B : Partition
        Two partitions of one model and slice (say, from the CPU and from a GPU).
    vertex_rtol : float, optional
        How far vertices may move, relative to the largest coordinate of ``A``.

    Returns
    -------
    str or None
        The first difference found ("layer 2 face_verts", "vertices differ by 3e-11",
        ...), or None when there is none.
    """
    if A.num_regions != B.num_regions:
        return f"{A.num_regions} vs {B.num_regions} regions"
    if len(A._layers) != len(B._layers):
        return f"{len(A._layers)} vs {len(B._layers)} layers"
    for i, (la, lb) in enumerate(zip(A._layers, B._layers)):
        for f in ("face_offsets", "face_verts", "he_layer", "he_unit", "face_parent"):
            a, b = np.asarray(getattr(la, f)), np.asarray(getattr(lb, f))
            if a.shape != b.shape or not np.array_equal(a, b):
                return f"layer {i} {f}"
    if A.vertices.shape != B.vertices.shape:
        return f"{len(A.vertices)} vs {len(B.vertices)} vertices"
    scale = max(float(np.abs(A.vertices).max(initial=0.0)), 1e-300)
    err = float(np.abs(A.vertices - B.vertices).max(initial=0.0)) / scale
    if not err <= vertex_rtol:
        return f"vertices differ by {err:.1e} (relative to the largest coordinate)"
    da, db = np.asarray(A.decision_boundary).shape, np.asarray(B.decision_boundary).shape
    if da != db:
        return f"decision boundaries of shapes {da} and {db}"
    return None


def host_batched_launcher(scratch_bytes: int = 512 << 20):
    """Run ``splinecam.partition(..., device="cpu")`` as on a GPU, inside a ``with`` block.

    Inside the block the driver takes its device path and the GPU's launcher runs on the
    host backend: :func:`splinecam.driver.backends.use` of a
    :class:`~splinecam.driver.backends.HostBatchedBackend`.

    Parameters
    ----------
    scratch_bytes : int
        Face scratch per batch; small values force many batches and capacity retries.

    Returns
    -------
    contextlib.AbstractContextManager
        Entering it gives the backend, whose ``face_rounds`` and ``face_batches``
        record each refinement's face rounds and batches.

    Examples
    --------
    >>> import splinecam
    >>> from splinecam import zoo
    >>> from splinecam.testing import host_batched_launcher
    >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    >>> with host_batched_launcher(1 << 16) as backend:
    ...     P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
    >>> P.num_regions, len(backend.face_rounds) > 0
    (21, True)
    """
    from splinecam.driver.backends import HostBatchedBackend, use
    return use(HostBatchedBackend(scratch_bytes))


def check_partition(P, *, rtol: float = 1e-9) -> None:
    """Check the invariants every exact partition satisfies.

    A valid planar subdivision (:meth:`~splinecam.Partition.validate`), positive region
    areas that sum to the domain's area, convex regions, and different activation
    patterns on the two sides of every interior edge and in every two regions, the
    patterns evaluated by a fresh forward pass of the model.

    Down to the resolution of float64 coordinates: an area that rounds to 0 is computed
    again exactly, patterns that float64 cannot tell are evaluated in exact arithmetic
    where the model allows it, and a region narrower than ``RESOLUTION`` (64 ulps) times
    the slice's largest coordinate (its vertices are only placed to about that) is not
    held to having its own pattern; it must still enclose a positive area.

    Parameters
    ----------
    P : Partition
        A partition with its model (not one opened from a store without it).
    rtol : float
        Relative tolerance of the area sum.

    Raises
    ------
    AssertionError
        Describing the first violated invariant.

    Examples
    --------
    >>> import splinecam
    >>> from splinecam import zoo
    >>> from splinecam.testing import check_partition
    >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    >>> check_partition(splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False))
    """
    from splinecam import _core

    P.validate()
    areas = P.areas()
    total = P.slice.area
    _assert_positive_areas(P, areas)
    assert abs(areas.sum() - total) <= rtol * total, f"region areas sum to {areas.sum()!r}, domain area is {total!r}"

    coords, off = P.faces()
    nxt = np.roll(coords, -1, axis=0)
    nxt[off[1:] - 1] = coords[off[:-1]]
    d = nxt - coords
    d_next = np.roll(d, -1, axis=0)
    d_next[off[1:] - 1] = d[off[:-1]]
    cross = d[:, 0] * d_next[:, 1] - d[:, 1] * d_next[:, 0]
    ld, ln = np.linalg.norm(d, axis=1), np.linalg.norm(d_next, axis=1)
    # a corner may bend back by the placement of its vertices (RESOLUTION x coordinates)
    bad = cross < -(1e-7 * ld * ln + RESOLUTION * np.abs(P.slice.polygon).max() * (ld + ln))
    assert not bad.any(), f"{int(bad.sum())} reflex corners: some regions are not convex"

    # Patterns across interior edges, from the model itself.
    f = P._faces
    he = _core.halfedges(f.num_vertices, f.face_offsets, f.face_verts)
    twin, face = he["twin"], he["face"]
    h = np.flatnonzero(twin >= 0)
    pts = P.centroids()
    pre = P._net.all_preactivations(P.slice.to_input(pts))[: P.num_layers]
    pat = np.concatenate([z > 0 for z in pre], axis=1) if pre else np.zeros((len(pts), 0), bool)
    pat = _resolved_patterns(P, pre, pat)
    thin = _below_resolution(P, areas)
    same = np.all(pat[face[h]] == pat[face[twin[h]]], axis=1) & ~thin[face[h]] & ~thin[face[twin[h]]]
    assert not same.any(), f"{int(same.sum() // 2)} interior edges separate regions with the same activation pattern"
    uniq = np.unique(np.packbits(pat[~thin], axis=1), axis=0)
    assert len(uniq) == int((~thin).sum()), (
        f"{int((~thin).sum()) - len(uniq)} activation patterns are shared by two regions")


#: Regions narrower than this times the slice's largest plane coordinate are below the
#: resolution of float64 coordinates (64 ulps): see :func:`check_partition`.
RESOLUTION = 64 * float(np.finfo(np.float64).eps)


def _below_resolution(P, areas) -> np.ndarray:
    """(F,) bool: the region's width (twice its area over its perimeter) is below
    RESOLUTION times the slice's largest coordinate."""
    coords, off = P.faces()
    nxt = np.roll(coords, -1, axis=0)
    nxt[off[1:] - 1] = coords[off[:-1]]
    perimeter = np.add.reduceat(np.linalg.norm(nxt - coords, axis=1), off[:-1])
    return 2 * np.maximum(areas, 0) < RESOLUTION * np.abs(P.slice.polygon).max() * perimeter


#: At most this many regions are re-evaluated in exact arithmetic by :func:`check_partition`.
EXACT_PATTERN_LIMIT = 4000


def _assert_positive_areas(P, areas):
    """Every region encloses something. A region whose float64 area is not positive is
    asked again in exact arithmetic (its float64 vertices, rational shoelace): a strip
    two ulps wide is a region, two vertices at one point are not."""
    from splinecam.reference import exact_polygon_area

    coords, off = P.faces()
    poly = lambda i: coords[off[i]:off[i + 1]]
    bad = [i for i in np.flatnonzero(areas <= 0) if exact_polygon_area(poly(i)) <= 0]
    assert not bad, f"{len(bad)} regions have non-positive area (first: region {bad[0]}, {poly(bad[0]).tolist()})"


def _resolved_patterns(P, pre, pat):
    """The activation patterns at the regions' vertex means, with the regions whose
    float64 pattern is unsure asked again in exact arithmetic.

    A value within its rounding floor reads as 0 (:mod:`splinecam.driver.tolerance`):
    the float64 forward pass cannot tell that unit's side there. A strip between the two
    breakpoints of a clamp after weights scaled by 1e5 per layer is real, yet has no
    float64 pattern from the input (and a strip two ulps wide may not even hold its
    rounded vertex mean). Where the model allows it (a chain of Linear and elementwise
    layers: :func:`splinecam.reference.exact_preactivations`) those regions get the
    exact pattern at their exact vertex mean; elsewhere the float64 one stands."""
    if not pre:
        return pat
    unsure = np.flatnonzero(np.concatenate([z == 0 for z in pre], axis=1).any(axis=1))
    if not len(unsure) or len(unsure) > EXACT_PATTERN_LIMIT:
        return pat
    from splinecam.reference import exact_centroid, exact_preactivations

    coords, off = P.faces()
    ex = exact_preactivations(P._net, P.slice,
                              np.array([exact_centroid(coords[off[i]:off[i + 1]]) for i in unsure], dtype=object))
    if ex is None:
        return pat
    pat = pat.copy()
    pat[unsure] = np.concatenate(ex, axis=1) > 0
    return pat
