"""Random points on the exact geometry of a :class:`~splinecam.Partition`: on its
decision boundary, or inside chosen linear regions.

Both samplers are exact in distribution (no rejection, no grid): uniform by length on
the decision-boundary segments, uniform by area inside convex regions.

Conventions shared by the whole package:

- **Types.** Plane coordinates are numpy ``float64`` arrays ``(n, 2)`` (as are
  ``P.vertices``, ``P.polygons()`` and what ``P.locate`` takes); model inputs are torch
  ``float64`` tensors ``(n, *input_shape)`` on the CPU, as
  :meth:`splinecam.Slice.to_input` makes them, ready to be passed to the model (after
  ``.to(device, dtype)`` for a model on a GPU or in float32). The samplers return named
  tuples (:class:`BoundarySample`, :class:`RegionSample`), which unpack like the plain
  tuples they replace.
- **Randomness.** ``rng`` follows numpy's :func:`numpy.random.default_rng` convention
  (Scientific Python SPEC 7): ``None`` (the default) draws fresh, unpredictable points
  on every call; an ``int`` seeds a new generator, so the same ``int`` gives the same
  points; a :class:`numpy.random.Generator` is used as it is (and advanced). The old
  keyword ``seed=`` is still accepted, with a ``DeprecationWarning``; the old default
  ``seed=0`` is ``rng=0`` (the same points).
"""
from __future__ import annotations

import warnings
from typing import NamedTuple, Optional, Union

import numpy as np
import torch

__all__ = ["sample_decision_boundary", "sample_regions", "BoundarySample", "RegionSample"]

RNGLike = Union[None, int, np.random.Generator, np.random.BitGenerator, np.random.SeedSequence]


def as_generator(rng: RNGLike = None, seed=None, *, caller: str = "this function",
                 stacklevel: int = 3) -> np.random.Generator:
    """The numpy Generator for an ``rng`` argument, accepting the deprecated ``seed``.

    Parameters
    ----------
    rng : None, int, numpy.random.Generator, BitGenerator or SeedSequence
        What :func:`numpy.random.default_rng` takes: ``None`` for fresh entropy, an int
        seed, or a generator (returned as it is).
    seed : int, optional
        The deprecated spelling of ``rng``; when given, a ``DeprecationWarning`` that
        names ``rng`` is emitted and ``seed`` is used as ``rng``.
    caller : str
        The name of the function the warning names.
    stacklevel : int
        Passed to :func:`warnings.warn`, so that the warning points at the user's call.

    Returns
    -------
    numpy.random.Generator

    Raises
    ------
    TypeError
        When both ``rng`` and ``seed`` are given.
    """
    if seed is not None:
        if rng is not None:
            raise TypeError(f"{caller}: give rng= only (seed= is its deprecated spelling), not both")
        warnings.warn(f"{caller}(seed=...) is deprecated; use rng=... instead (None, an int seed or a "
                      f"numpy Generator, as numpy.random.default_rng takes)", DeprecationWarning,
                      stacklevel=stacklevel)
        rng = seed
    return np.random.default_rng(rng)


class BoundarySample(NamedTuple):
    """Points on the decision boundary, as :func:`sample_decision_boundary` returns them.

    A named tuple: ``points, inputs = sample`` unpacks it.

    Parameters
    ----------
    points : numpy.ndarray
        (n, 2) float64 plane coordinates.
    inputs : torch.Tensor
        ``(n, *input_shape)`` float64 CPU tensor: the same points as model inputs,
        ``P.slice.to_input(points)``.
    """
    points: np.ndarray
    inputs: torch.Tensor


class RegionSample(NamedTuple):
    """Points inside regions, as :func:`sample_regions` returns them.

    A named tuple: ``points, region = sample`` unpacks it.

    Parameters
    ----------
    points : numpy.ndarray
        (k * n_per_region, 2) float64 plane coordinates, grouped by region.
    region : numpy.ndarray
        (k * n_per_region,) int64: the region each point was drawn in.
    """
    points: np.ndarray
    region: np.ndarray


BoundarySample.points.__doc__ = "(n, 2) float64 numpy array: plane coordinates of the points."
BoundarySample.inputs.__doc__ = "``(n, *input_shape)`` float64 torch tensor: the points as model inputs."
RegionSample.points.__doc__ = "(m, 2) float64 numpy array: plane coordinates of the points."
RegionSample.region.__doc__ = "(m,) int64 numpy array: the region each point lies in."


def sample_decision_boundary(P, n: int, rng: RNGLike = None, *, seed: Optional[int] = None) -> BoundarySample:
    """Draw ``n`` points uniformly distributed (by length) on the decision boundary.

    Parameters
    ----------
    P : Partition
        A partition computed with ``decision_boundary=True`` (the default of
        :func:`splinecam.partition`).
    n : int
        Number of points (non-negative).
    rng : None, int or numpy.random.Generator, optional
        Random source, as :func:`numpy.random.default_rng` takes it. The default
        ``None`` gives different points on every call; pass an int for reproducible
        points (``rng=0`` gives the points of the former default ``seed=0``).
    seed : int, optional
        Deprecated spelling of ``rng`` (emits a ``DeprecationWarning``).

    Returns
    -------
    BoundarySample
        A named tuple ``(points, inputs)``: ``points`` (n, 2) float64 numpy array of
        plane coordinates, each on a decision segment; ``inputs`` ``(n, *input_shape)``
        float64 torch tensor (CPU), the same points as model inputs,
        ``P.slice.to_input(points)``.

    Raises
    ------
    ValueError
        When ``n`` is negative, or the partition has no decision boundary in the slice
        (none crosses it, or it was computed with ``decision_boundary=False``, or ``P``
        is an ``at_layer`` partition).
    TypeError
        When both ``rng`` and ``seed`` are given.

    Examples
    --------
    >>> import splinecam
    >>> from splinecam import zoo
    >>> from splinecam.analysis import sampling
    >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
    >>> points, inputs = sampling.sample_decision_boundary(P, 5, rng=0)
    >>> points.shape, tuple(inputs.shape), inputs.dtype
    ((5, 2), (5, 2), torch.float64)
    """
    g = as_generator(rng, seed, caller="sample_decision_boundary")
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be non-negative; got {n}")
    seg = P.decision_boundary
    if len(seg) == 0:
        raise ValueError("the partition has no decision boundary inside the slice (or it was computed with "
                         "decision_boundary=False): nothing to sample")
    length = np.linalg.norm(seg[:, 1] - seg[:, 0], axis=1)
    cum = np.cumsum(length)
    # One uniform position along the concatenated segments per point.
    s = g.uniform(0.0, cum[-1], n)
    k = np.minimum(np.searchsorted(cum, s, side="right"), len(seg) - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(length[k] > 0, (s - (cum[k] - length[k])) / length[k], 0.5)
    t = np.clip(t, 0.0, 1.0)
    pts = seg[k, 0] + t[:, None] * (seg[k, 1] - seg[k, 0])
    return BoundarySample(pts, P.slice.to_input(pts))


def sample_regions(P, regions=None, n_per_region: int = 1, rng: RNGLike = None, *,
                   seed: Optional[int] = None) -> RegionSample:
    """Draw points uniformly distributed inside chosen regions.

    Each region (a convex polygon) is fan-triangulated from its first vertex; a point
    picks a triangle with probability proportional to its area and is uniform inside
    it, so it is uniform over the region. Straight-angle vertices give zero-area
    triangles, which are never picked.

    Parameters
    ----------
    P : Partition
        The partition (any, including ``at_layer`` ones).
    regions : int array-like (k,), or None
        Region indices (repeats allowed); ``None`` means every region.
    n_per_region : int
        Points drawn in each listed region (non-negative).
    rng : None, int or numpy.random.Generator, optional
        Random source, as :func:`numpy.random.default_rng` takes it. The default
        ``None`` gives different points on every call; pass an int for reproducible
        points (``rng=0`` gives the points of the former default ``seed=0``).
    seed : int, optional
        Deprecated spelling of ``rng`` (emits a ``DeprecationWarning``).

    Returns
    -------
    RegionSample
        A named tuple ``(points, region)``: ``points`` (k * n_per_region, 2) float64
        numpy array of plane coordinates, grouped by region (the points of
        ``regions[i]`` are ``points[i * n_per_region:(i + 1) * n_per_region]``);
        ``region`` (k * n_per_region,) int64, the region each point was drawn in. Model
        inputs there are ``P.slice.to_input(points)``.

    Raises
    ------
    IndexError
        When a region index is outside ``0..P.num_regions - 1``.
    ValueError
        When ``n_per_region`` is negative.
    TypeError
        When both ``rng`` and ``seed`` are given.

    Examples
    --------
    >>> import numpy as np, splinecam
    >>> from splinecam import zoo
    >>> from splinecam.analysis import sampling
    >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
    >>> points, region = sampling.sample_regions(P, [0, 3], 4, rng=0)
    >>> points.shape, region.tolist()
    ((8, 2), [0, 0, 0, 0, 3, 3, 3, 3])
    >>> bool(np.all(P.locate(points) == region))
    True
    """
    g = as_generator(rng, seed, caller="sample_regions")
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
    return RegionSample(pts, reg[who])
