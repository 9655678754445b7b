"""Figures of partitions. matplotlib is imported only inside the functions.

- :func:`plot_partition_object` (``Partition.plot``): regions coloured by slope norm,
  activation pattern, predicted class or any per-region values; edges optionally coloured
  by the layer that made them; decision boundary on top; zoom with ``window``.
- :func:`plot_layers`: small multiples of the partition after each hidden layer.
- :func:`save`: one call to a PNG/SVG/PDF file at any resolution.
- :func:`animate`: a GIF or MP4 over a sequence of partitions (training checkpoints).
- :func:`mark_points`: labelled points, e.g. the three inputs a slice goes through.
- :func:`plot_partition`: the original SplineCam's function (see :mod:`splinecam.compat.plot`).

``splinecam.plot`` is this module under its short name.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


__all__ = ["plot_partition_object", "plot_layers", "save", "animate", "mark_points", "plot_partition", "edge_width"]


def _pattern_colors(patterns: np.ndarray, cmap) -> np.ndarray:
    """A stable pseudo-random colour per activation pattern."""
    packed = np.packbits(patterns, axis=1)
    h = np.zeros(len(packed), np.uint64)
    with np.errstate(over="ignore"):
        for col in packed.T:
            h = (h * np.uint64(1099511628211)) ^ col.astype(np.uint64)
    return cmap((h % np.uint64(9973)).astype(np.float64) / 9973.0)


def region_classes(partition, regions=None) -> np.ndarray:
    """Compute the predicted class of each region.

    The arg-max of the model's outputs at the region's centroid; for one output, 1
    where it is positive and 0 elsewhere.

    Parameters
    ----------
    partition : Partition
        A full partition (not an ``at_layer`` one: the output must be affine on its
        regions).
    regions : int array-like, optional
        Only these regions (default: all).

    Returns
    -------
    numpy.ndarray
        (F,) int class indices, or one per region given.

    Raises
    ------
    ValueError
        On an ``at_layer`` partition.
    """
    if regions is None:
        A, c = partition.affine_maps()
        centroids = partition.centroids()
    else:
        regions = np.asarray(regions, np.int64)
        A, c = partition._affine_fit(regions)
        centroids = partition.centroids(regions)
    y = np.einsum("fcd,fd->fc", A, centroids) + c
    return (y[:, 0] > 0).astype(int) if y.shape[1] == 1 else np.argmax(y, axis=1)


def edge_width(n_regions: int) -> float:
    """Choose the default edge width for a number of drawn regions, so that edges never hide the colours.

    Parameters
    ----------
    n_regions : int
        The number of regions drawn.

    Returns
    -------
    float
        The width in points: 0.5 for a few hundred regions, thinner as they get denser
        (0.03 at 240,000), never below 0.02.

    Examples
    --------
    >>> from splinecam.analysis.plot import edge_width
    >>> edge_width(100), edge_width(10 ** 9)
    (0.5, 0.02)
    """
    return float(np.clip(0.5 * np.sqrt(600.0 / max(n_regions, 1)), 0.02, 0.5))


def plot_partition_object(partition, ax=None, *, color="slope", cmap=None, edgecolor="k",
                          linewidth: Optional[float] = None, alpha=1.0, edges_by_layer: bool = False,
                          boundary_color="#d62728", boundary_width: float = 2.0,
                          window: Optional[Sequence[float]] = None, colorbar: Optional[bool] = None,
                          title: Optional[str] = "auto", axis: bool = True, legend: Optional[bool] = None):
    """Draw a :class:`splinecam.Partition`: its regions, coloured, with the decision boundary on top.

    ``Partition.plot(...)`` calls this with the same options.

    Parameters
    ----------
    partition : Partition
        The partition to draw.
    ax : matplotlib Axes, optional
        Where to draw; default a new 6 x 6 inch figure, which then also gets a colorbar,
        a title and axis labels.
    color : str or array
        ``"slope"`` (Frobenius norm of each region's affine slope; needs the full
        partition), ``"pattern"`` (a colour per activation pattern), ``"class"``
        (predicted class, with a legend), a single matplotlib colour, or an array of one
        value per region (coloured through ``cmap``).
    cmap : str, optional
        The colormap (default: viridis for values, tab20 for patterns, tab10 for classes).
    edgecolor, linewidth, alpha :
        Region edges and fill opacity; ``linewidth`` defaults to :func:`edge_width` of
        the number of regions drawn.
    edges_by_layer : bool
        Colour the edges by the hidden layer that made them (legend added).
    boundary_color, boundary_width :
        Style of the decision boundary, drawn on top when present.
    window : (xmin, xmax, ymin, ymax), optional
        Zoom in: only the regions that meet the window are drawn; default the whole slice.
    colorbar : bool, optional
        A colorbar for value colourings (default: on a new figure only).
    title : str or None
        ``"auto"`` (default): the number of regions, on a new figure only; ``None``: none.
    axis : bool
        Show the axes (plane coordinates ``u``, ``v``).
    legend : bool, optional
        The legend of ``color="class"`` (default: on).

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn into.

    Raises
    ------
    ValueError
        When ``color`` is an array without one value per region.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import splinecam
    >>> from splinecam import zoo
    >>> from splinecam.analysis.plot import plot_partition_object
    >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
    >>> ax = plot_partition_object(P, color="pattern", edges_by_layer=True)
    >>> ax.get_title()
    '21 linear regions'
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.colors import is_color_like

    new_figure = ax is None
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    if colorbar is None:
        colorbar = new_figure
    if window is None:
        keep = slice(None)
        coords, off = partition.faces()
    else:  # only the regions that meet the window are drawn, read a chunk at a time
        keep = partition.regions_meeting(window)
        coords, off = partition._faces_of(keep)
    polys = np.split(coords, off[1:-1])
    if linewidth is None:
        linewidth = edge_width(len(polys))
    ec = "none" if edges_by_layer else edgecolor
    kw = dict(edgecolors=ec, linewidths=linewidth, alpha=alpha)
    label = None
    if isinstance(color, str) and color == "slope":
        try:
            values = partition.slope_norms(None if window is None else keep)
            label = "slope norm"
        except ValueError:  # intermediate layers: the output is not affine on their regions
            color = "pattern"
    if isinstance(color, str) and color == "pattern":
        pats = partition.activation_patterns() if window is None else partition.patterns_at(
            partition.centroids(keep))
        pc = PolyCollection(polys, facecolors=_pattern_colors(pats, plt.get_cmap(cmap or "tab20")), **kw)
    elif isinstance(color, str) and color == "class":
        cls = region_classes(partition, None if window is None else keep)
        cm = plt.get_cmap(cmap or "tab10")
        pc = PolyCollection(polys, facecolors=cm(cls % cm.N), **kw)
        if legend is None or legend:
            from matplotlib.patches import Patch
            present = np.unique(cls)[:20]
            ax.legend(handles=[Patch(facecolor=cm(int(c) % cm.N), edgecolor="k", label=f"class {int(c)}")
                               for c in present], loc="upper right", fontsize="small", framealpha=0.8)
    elif isinstance(color, str) and color != "slope" and is_color_like(color):
        pc = PolyCollection(polys, facecolors=color, **kw)
    else:
        if not (isinstance(color, str) and color == "slope"):
            values = np.asarray(color, dtype=np.float64)
            if values.shape != (partition.num_regions,):
                raise ValueError(f"color must be 'slope', 'pattern', 'class', a colour, or one value per region "
                                 f"({partition.num_regions}); got shape {values.shape}")
            values = values[keep]
        pc = PolyCollection(polys, array=values, cmap=plt.get_cmap(cmap or "viridis"), **kw)
    ax.add_collection(pc)
    if colorbar and pc.get_array() is not None:
        ax.figure.colorbar(pc, ax=ax, fraction=0.046, pad=0.04, label=label)
    if window is not None:
        ends, lay, db = partition._edges_in(window, keep)
    if edges_by_layer:
        if window is None:
            v, e, lay = partition.vertices, partition.edges, partition.edge_layer
            ends = np.stack([v[e[:, 0]], v[e[:, 1]]], axis=1)
            hidden = (lay >= 1) & (lay <= partition.num_layers) & ~partition.edge_decision
        else:
            hidden = (lay >= 1) & (lay <= partition.num_layers)
        cm = plt.get_cmap("plasma")
        L = max(partition.num_layers, 1)
        for l in range(1, partition.num_layers + 1):
            sel = hidden & (lay == l)
            ax.add_collection(LineCollection(ends[sel],
                                             colors=[cm((l - 1) / max(L - 1, 1) * 0.85)],
                                             linewidths=max(linewidth, 0.4), label=f"layer {l}"))
        ax.legend(loc="upper right", fontsize="small", framealpha=0.8)
    if window is None:
        db = partition.decision_boundary
    if len(db):
        ax.add_collection(LineCollection(db, colors=boundary_color, linewidths=boundary_width, zorder=3))
    if window is None:
        p = partition.slice.polygon
        lo, hi = p.min(axis=0), p.max(axis=0)
        m = 0.02 * (hi - lo).max()
        window = (lo[0] - m, hi[0] + m, lo[1] - m, hi[1] + m)
    ax.set_xlim(window[0], window[1])
    ax.set_ylim(window[2], window[3])
    ax.set_aspect("equal")
    if not axis:
        ax.set_axis_off()
    elif not ax.get_xlabel() and not ax.get_ylabel():
        ax.set_xlabel("u (plane coordinate)")
        ax.set_ylabel("v (plane coordinate)")
    if title == "auto":
        title = f"{partition.num_regions:,} linear regions" if new_figure else None
    if title is not None:
        ax.set_title(title)
    return ax


def mark_points(ax, uv, names=("A", "B", "C"), fontsize: int = 10):
    """Mark plane points with labels pushed outwards from their centroid, e.g. the three inputs a slice goes through.

    The axis limits grow where needed to make room for the labels.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The axes to draw into.
    uv : array-like
        (n, 2) plane coordinates.
    names : sequence of str
        One label per point.
    fontsize : int
        Font size of the labels.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax``.
    """
    uv = np.asarray(uv, dtype=np.float64)
    # room for the labels inside the axes (they would run into the title or the ticks)
    for axis, (get, set_) in enumerate(((ax.get_xlim, ax.set_xlim), (ax.get_ylim, ax.set_ylim))):
        lo, hi = get()
        m = 0.07 * (hi - lo)
        set_(min(lo, uv[:, axis].min() - m), max(hi, uv[:, axis].max() + m))
    ax.scatter(uv[:, 0], uv[:, 1], s=40, c="white", edgecolors="black", linewidths=1.0, zorder=5)
    centre = uv.mean(axis=0)
    for (u, v), name in zip(uv, names):
        d = np.array([u, v]) - centre
        d = d / (np.linalg.norm(d) + 1e-300)
        ax.annotate(name, (u, v), xytext=(10 * d[0], 10 * d[1]), textcoords="offset points", fontsize=fontsize,
                    fontweight="bold", ha="center", va="center", color="black", zorder=6,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    return ax


def plot_layers(partition, *, ncols: Optional[int] = None, size: float = 3.5, color="pattern", **kwargs):
    """Draw small multiples: the partition after each hidden layer.

    The last panel is the full partition with its decision boundary; each panel's
    title names the layer and its number of regions.

    Parameters
    ----------
    partition : Partition
        The partition (its layer names need the model).
    ncols : int, optional
        Panels per row (default: up to 4).
    size : float
        Size of one panel in inches.
    color : str or array-like
        The colouring of every panel (see :func:`plot_partition_object`).
    **kwargs
        Further options of :func:`plot_partition_object`.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import splinecam
    >>> from splinecam import zoo, plot
    >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
    >>> fig = plot.plot_layers(P)
    >>> [ax.get_title() for ax in fig.axes]
    ['layer 1 (1): 11 regions', 'layer 2 (3): 21 regions']
    """
    import matplotlib.pyplot as plt

    L = partition.num_layers
    ncols = ncols or min(L, 4)
    nrows = -(-L // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= L:
            ax.set_axis_off()
            continue
        P = partition if i == L - 1 else partition.at_layer(i + 1)
        plot_partition_object(P, ax=ax, color=color, **kwargs)
        name = partition.layer_names[i] if i < len(partition.layer_names) else str(i + 1)
        ax.set_title(f"layer {i + 1} ({name}): {P.num_regions} regions", fontsize="small")
    fig.tight_layout()
    return fig


def save(partition, path, *, dpi: int = 200, size: float = 6.0, **kwargs) -> str:
    """Draw a partition into an image file; the format follows the extension (png, svg, pdf, jpg, ...).

    The figure gets a colorbar and a title, as ``Partition.plot()`` on a new figure.

    Parameters
    ----------
    partition : Partition
        The partition to draw.
    path : str or path-like
        The file.
    dpi : int
        Raster resolution.
    size : float
        Figure size in inches (square).
    **kwargs
        Options of :func:`plot_partition_object`.

    Returns
    -------
    str
        The path.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size, size))
    ax = fig.add_subplot()
    # a figure of its own: colorbar and title as plot() gives a new figure
    kwargs.setdefault("colorbar", True)
    kwargs.setdefault("title", f"{partition.num_regions:,} linear regions")
    plot_partition_object(partition, ax=ax, **kwargs)
    fig.savefig(str(path), dpi=dpi, bbox_inches="tight")
    return str(path)


def animate(partitions, path, *, fps: int = 4, titles: Optional[Sequence[str]] = None, size: float = 5.0,
            dpi: int = 100, **kwargs) -> str:
    """Write an animation with one frame per partition, e.g. of one model at training checkpoints.

    GIF via Pillow or MP4 via ffmpeg, by the extension of ``path``. The colour scale
    of ``color="slope"`` is shared by all frames.

    Parameters
    ----------
    partitions : iterable of Partition
        The frames.
    path : str or path-like
        The file: ``.gif``, or a video format ffmpeg writes (``.mp4``).
    fps : int
        Frames per second.
    titles : sequence of str, optional
        One title per frame (default: the frame's index and number of regions).
    size : float
        Figure size in inches (square).
    dpi : int
        Raster resolution.
    **kwargs
        Options of :func:`plot_partition_object` (``color`` included).

    Returns
    -------
    str
        The path.

    Raises
    ------
    ValueError
        When there are no partitions.
    RuntimeError
        When a video format is asked for and ffmpeg is not available.
    """
    from matplotlib import animation
    from matplotlib.figure import Figure

    partitions = list(partitions)
    if not partitions:
        raise ValueError("animate needs at least one partition")
    fig = Figure(figsize=(size, size))
    ax = fig.add_subplot()
    color = kwargs.pop("color", "slope")
    vmax = None
    if isinstance(color, str) and color == "slope":
        vmax = max(float(p.slope_norms().max()) for p in partitions)

    def draw(i):
        ax.clear()
        plot_partition_object(partitions[i], ax=ax, color=color, **kwargs)
        if vmax is not None:
            ax.collections[0].set_clim(0, vmax)
        ax.set_title(titles[i] if titles is not None else f"{i}: {partitions[i].num_regions} regions")
        return ax.collections

    anim = animation.FuncAnimation(fig, draw, frames=len(partitions), blit=False)
    path = str(path)
    if path.lower().endswith(".gif"):
        writer = animation.PillowWriter(fps=fps)
    else:
        if not animation.FFMpegWriter.isAvailable():
            raise RuntimeError("writing video needs ffmpeg; save as .gif instead (uses Pillow)")
        writer = animation.FFMpegWriter(fps=fps)
    anim.save(path, writer=writer, dpi=dpi)
    return path


def plot_partition(*args, **kwargs):
    """Draw region polygons as the original SplineCam's ``plot_partition(regions, ...)`` does.

    See :func:`splinecam.compat.plot.plot_partition` for its options.

    Parameters
    ----------
    *args
        Positional arguments of :func:`splinecam.compat.plot.plot_partition`.
    **kwargs
        Its keyword arguments.

    Returns
    -------
    None
        Nothing, as the original did (it draws into ``ax``, or a new figure).
    """
    from splinecam.compat.plot import plot_partition as _impl
    return _impl(*args, **kwargs)
