"""Random points on the exact geometry of a :class:`~splinecam.Partition`: on its
decision boundary, or inside chosen linear regions.

Both samplers are exact in distribution (no rejection, no grid): uniform by length on
the decision-boundary segments, uniform by area inside convex regions.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

__all__ = ["sample_decision_boundary", "sample_regions"]


def sample_decision_boundary(P, n: int, seed: int = 0) -> Tuple[np.ndarray, torch.Tensor]:
    """``n`` points uniformly distributed (by length) on the decision boundary.

    Parameters
    ----------
    P : Partition
        A partition computed with ``decision_boundary=True``.
    n : int
        Number of points.
    seed : int
        Seed of the numpy random generator.

    Returns
    -------
    points : (n, 2) float64
        Plane coordinates; each lies on a decision segment.
    inputs : torch.Tensor (n, *input_shape) float64
        The same points as model inputs, ``P.slice.to_input(points)``.

    Raises ``ValueError`` when the partition has no decision boundary in the slice.
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be non-negative; got {n}")
    seg = P.decision_boundary
    if len(seg) == 0:
        raise ValueError("the partition has no decision boundary inside the slice (or it was computed with "
                         "decision_boundary=False): nothing to sample")
    length = np.linalg.norm(seg[:, 1] - seg[:, 0], axis=1)
    cum = np.cumsum(length)
    g = np.random.default_rng(seed)
    # One uniform position along the concatenated segments per point.
    s = g.uniform(0.0, cum[-1], n)
    k = np.minimum(np.searchsorted(cum, s, side="right"), len(seg) - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(length[k] > 0, (s - (cum[k] - length[k])) / length[k], 0.5)
    t = np.clip(t, 0.0, 1.0)
    pts = seg[k, 0] + t[:, None] * (seg[k, 1] - seg[k, 0])
    return pts, P.slice.to_input(pts)


def sample_regions(P, regions=None, n_per_region: int = 1, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Points uniformly distributed inside chosen regions.

    Each region (a convex polygon) is fan-triangulated from its first vertex; a point
    picks a triangle with probability proportional to its area and is uniform inside
    it, so it is uniform over the region. Straight-angle vertices give zero-area
    triangles, which are never picked.

    Parameters
    ----------
    regions : int array-like (k,), or None
        Region indices (repeats allowed); ``None`` means every region.
    n_per_region : int
        Points drawn in each listed region.
    seed : int
        Seed of the numpy random generator.

    Returns
    -------
    points : (k * n_per_region, 2) float64
        Grouped by region: the points of ``regions[i]`` are
        ``points[i * n_per_region:(i + 1) * n_per_region]``.
    region : (k * n_per_region,) int64
        The region each point was drawn in.
    """
    F = P.num_regions
    reg = np.arange(F) if regions is None else np.asarray(regions, dtype=np.int64).reshape(-1)
    if len(reg) and (reg.min() < 0 or reg.max() >= F):
        raise IndexError(f"region indices must be in 0..{F - 1}")
    m = int(n_per_region)
    if m < 0:
        raise ValueError(f"n_per_region must be non-negative; got {n_per_region}")
    coords, off = P.faces()
    k = np.diff(off)[reg]                       # vertices of each chosen region
    nt = k - 2                                  # fan triangles per region
    tri_off = np.zeros(len(reg) + 1, np.int64)
    np.cumsum(nt, out=tri_off[1:])
    owner = np.repeat(np.arange(len(reg)), nt)  # position in `reg` of each triangle
    j = np.arange(tri_off[-1]) - tri_off[:-1][owner] + 1
    base = off[:-1][reg][owner]
    a = coords[base]
    b = coords[base + j]
    c = coords[base + j + 1]
    area = 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))
    area = np.maximum(area, 0.0)
    total = np.bincount(owner, weights=area, minlength=len(reg))
    # Cumulative area fractions, shifted by the owner's position: region i occupies
    # [i, i + 1) of one global increasing sequence, so one searchsorted picks all.
    cum = np.cumsum(area)
    start = np.concatenate([[0.0], cum])[tri_off[:-1]]
    frac = (cum - start[owner]) / total[owner]
    frac[tri_off[1:][nt > 0] - 1] = 1.0        # exact ends: rounding never leaks a point out
    glob = owner + frac
    g = np.random.default_rng(seed)
    who = np.repeat(np.arange(len(reg)), m)
    u = g.random(len(who))
    t = np.searchsorted(glob, who + u, side="right")
    t = np.clip(t, tri_off[:-1][who], tri_off[1:][who] - 1)
    # Zero-area triangles have empty intervals and are never chosen; uniform in the
    # triangle by folding the unit square onto it.
    r1, r2 = g.random(len(who)), g.random(len(who))
    flip = r1 + r2 > 1
    r1[flip], r2[flip] = 1 - r1[flip], 1 - r2[flip]
    pts = a[t] + r1[:, None] * (b[t] - a[t]) + r2[:, None] * (c[t] - a[t])
    return pts, reg[who]
