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
    """A ``with`` block inside which ``splinecam.partition(..., device="cpu")`` runs as on
    a GPU: the driver's device path and the GPU's launcher on the host backend with
    ``scratch_bytes`` of face scratch per batch (``splinecam.driver.backends.use`` of a
    :class:`~splinecam.driver.backends.HostBatchedBackend`). Yields the backend, which records
    each refinement's face rounds and batches."""
    from splinecam.driver.backends import HostBatchedBackend, use
    return use(HostBatchedBackend(scratch_bytes))


def check_partition(P, *, rtol: float = 1e-9) -> None:
    """Raise ``AssertionError`` describing the first violated invariant of ``P``."""
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
