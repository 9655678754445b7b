"""Invariant checks for partitions, shipped for users' own tests.

``check_partition(P)`` verifies what every exact partition must satisfy, without
trusting the engine's own bookkeeping where an independent check is cheap:

- the regions form a valid planar subdivision (closed cycles, twins, Euler's formula);
- region areas (shoelace) are positive and sum to the domain's area;
- every region is convex (counter-clockwise, no right turns beyond rounding);
- the two regions on either side of every interior edge differ in activation pattern,
  evaluated by a fresh forward pass of the model at interior points of both regions.

``host_batched_launcher()`` runs, inside a ``with`` block, ``partition(device="cpu")``
the way it runs on a GPU: the driver's device path (vertex values as torch tensors) and
the GPU's launcher (batched face pass, scratch pools, capacity levels) on the host
backend. It is how the GPU's code paths are tested and timed on a machine without one.
"""
from __future__ import annotations

import numpy as np

__all__ = ["check_partition", "host_batched_launcher"]


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
    assert np.all(areas > 0), f"{int(np.sum(areas <= 0))} regions have non-positive area"
    assert abs(areas.sum() - total) <= rtol * total, f"region areas sum to {areas.sum()!r}, domain area is {total!r}"

    coords, off = P.faces()
    nxt = np.roll(coords, -1, axis=0)
    nxt[off[1:] - 1] = coords[off[:-1]]
    d = nxt - coords
    d_next = np.roll(d, -1, axis=0)
    d_next[off[1:] - 1] = d[off[:-1]]
    cross = d[:, 0] * d_next[:, 1] - d[:, 1] * d_next[:, 0]
    scale = np.linalg.norm(d, axis=1) * np.linalg.norm(d_next, axis=1)
    bad = cross < -1e-7 * scale
    assert not bad.any(), f"{int(bad.sum())} reflex corners: some regions are not convex"

    # Patterns across interior edges, from the model itself.
    f = P._faces
    he = _core.halfedges(f.num_vertices, f.face_offsets, f.face_verts)
    twin, face = he["twin"], he["face"]
    h = np.flatnonzero(twin >= 0)
    pts = P.centroids()
    pre = P._net.all_preactivations(P.slice.to_input(pts))[: P.num_layers]
    pat = np.concatenate([z > 0 for z in pre], axis=1) if pre else np.zeros((len(pts), 0), bool)
    same = np.all(pat[face[h]] == pat[face[twin[h]]], axis=1)
    assert not same.any(), f"{int(same.sum() // 2)} interior edges separate regions with the same activation pattern"
    uniq = np.unique(np.packbits(pat, axis=1), axis=0)
    assert len(uniq) == P.num_regions, f"{P.num_regions - len(uniq)} activation patterns are shared by two regions"
