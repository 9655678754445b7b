"""Figures of partitions (matplotlib is imported only when a function is called)."""
from __future__ import annotations

import numpy as np

__all__ = ["plot_partition_object", "plot_partition"]


def _pattern_colors(patterns: np.ndarray, cmap) -> np.ndarray:
    """A stable pseudo-random colour per activation pattern."""
    packed = np.packbits(patterns, axis=1)
    h = np.zeros(len(packed), np.uint64)
    for col in packed.T:
        h = (h * np.uint64(1099511628211)) ^ col.astype(np.uint64)
    return cmap((h % np.uint64(9973)).astype(np.float64) / 9973.0)


def plot_partition_object(partition, ax=None, *, color="slope", cmap="viridis", edgecolor="k", linewidth=0.3,
                          alpha=1.0, boundary_color="#d62728", boundary_width=2.0, colorbar=False, title=None):
    """Draw a :class:`splinecam.Partition`.

    color : ``"slope"`` (norm of each region's affine slope; needs the full partition),
        ``"pattern"`` (a colour per activation pattern), or an array of one value per
        region.
    The decision boundary, when present, is drawn on top in ``boundary_color``.
    Returns the axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection, PolyCollection

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    cm = plt.get_cmap(cmap)
    coords, off = partition.faces()
    polys = np.split(coords, off[1:-1])
    values = None
    if isinstance(color, str) and color == "slope":
        try:
            values = partition.slope_norms()
        except ValueError:
            color = "pattern"
    if isinstance(color, str) and color == "pattern":
        pc = PolyCollection(polys, facecolors=_pattern_colors(partition.activation_patterns(), cm),
                            edgecolors=edgecolor, linewidths=linewidth, alpha=alpha)
    else:
        if values is None:
            values = np.asarray(color, dtype=np.float64)
        pc = PolyCollection(polys, array=values, cmap=cm, edgecolors=edgecolor, linewidths=linewidth, alpha=alpha)
    ax.add_collection(pc)
    if colorbar and pc.get_array() is not None:
        ax.figure.colorbar(pc, ax=ax, fraction=0.046, pad=0.04, label="slope norm")
    db = partition.decision_boundary
    if len(db):
        ax.add_collection(LineCollection(db, colors=boundary_color, linewidths=boundary_width))
    p = partition.slice.polygon
    lo, hi = p.min(axis=0), p.max(axis=0)
    m = 0.02 * (hi - lo).max()
    ax.set_xlim(lo[0] - m, hi[0] + m)
    ax.set_ylim(lo[1] - m, hi[1] + m)
    ax.set_aspect("equal")
    if title is not None:
        ax.set_title(title)
    return ax


def plot_partition(*args, **kwargs):
    """The original SplineCam's ``plot_partition(regions, ...)``; see
    :mod:`splinecam.compat_plot`."""
    from .compat_plot import plot_partition as _impl
    return _impl(*args, **kwargs)
