"""``plot_partition`` with the original SplineCam's signature (re-exported by
:mod:`splinecam.plot`)."""

import numpy as np

__all__ = ["plot_partition"]


def _vertices(region):
    """A region as a float ``[k, 2]`` numpy array (torch tensors are moved to the CPU)."""
    if hasattr(region, "detach"):
        region = region.detach().cpu().numpy()
    return np.asarray(region, dtype=np.float64).reshape(-1, 2)


def plot_partition(cycles, ax=None, xlims=[-2, 2], ylims=[-2, 2], edgecolor="w",
                   linewidth=.3, alpha=1, colors=None, figsize=(15, 15),
                   color_range=[.3, 1]):
    """Draw regions as filled polygons, as the original ``splinecam.plot.plot_partition``.

    Ticks are removed. Randomness comes from ``numpy.random`` (seed it to repeat).

    Parameters
    ----------
    cycles : list of array-like or torch.Tensor
        Regions as ``[k, 2]`` vertex lists, closed or open.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new ``figsize`` figure is created when None.
    xlims, ylims : list of float or None
        Axis limits (the original's default is ``[-2, 2]``); ``xlims=None`` fits the
        axes to the regions instead.
    edgecolor : matplotlib colour
        Colour of the region edges.
    linewidth : float
        Width of the region edges.
    alpha : float
        Opacity of the whole polygon (face and edge).
    colors : list of matplotlib colours, optional
        Each region gets one drawn at random from it. Otherwise each region gets a
        random RGB colour with every channel clipped to ``color_range``.
    figsize : (float, float)
        Size of a new figure in inches.
    color_range : (float, float)
        Bounds of the random RGB channels.

    Returns
    -------
    None
        As the original did.
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    if ax is None:
        _, ax = plt.subplots(1, figsize=figsize)

    verts = [_vertices(c) for c in cycles]
    if colors is None:
        lo, hi = color_range
        face = np.clip(np.random.rand(len(verts), 3), lo, hi)
    else:
        face = [colors[i] for i in np.random.randint(0, len(colors), size=len(verts))]

    coll = PolyCollection(verts, closed=True, facecolors=face, edgecolors=edgecolor,
                          linewidths=linewidth, alpha=alpha)
    ax.add_collection(coll)

    ax.set_xticks([])
    ax.set_yticks([])
    if xlims is not None:
        ax.set_xlim(xlims)
        ax.set_ylim(ylims)
    else:
        ax.autoscale_view()
