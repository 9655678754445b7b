"""An interactive explorer of a slice: pan and zoom, exact at every zoom.

:mod:`.view` computes the visible window of a slice as tiles that are kept and stitched
(no web library needed); :mod:`.app` is the Bokeh page (regions, decision boundary,
anchor points, colouring, layer slider, hover and click, export); :mod:`.server`
serves it on ``localhost`` or shows it in Jupyter. Start it with ``splinecam explore
MODEL --points A B C``, :func:`explore`, or ``P.explore()``.
"""
from splinecam.explorer.view import COLORINGS, View, Windows, draw_data

__all__ = ["explore", "Windows", "View", "draw_data", "COLORINGS"]


def explore(model, slice, *, notebook=None, **kwargs):
    """Explore a slice of a model interactively, every view computed exactly.

    Inside a Jupyter notebook the page is shown in the cell
    (:func:`splinecam.explorer.server.show`); elsewhere it is served on a local page
    until Ctrl-C (:func:`splinecam.explorer.server.serve`).

    Parameters
    ----------
    model : torch.nn.Module
        A piecewise-linear model in eval mode, as :func:`splinecam.partition` takes it.
    slice : Slice
        The slice to explore.
    notebook : bool, optional
        Force the notebook cell (True) or the local page (False); default: a notebook
        cell when running inside one.
    **kwargs
        Options of the chosen function, e.g. ``points={"A": (u, v)}`` (anchor points in
        plane coordinates), ``port``, ``open_browser``, and :func:`splinecam.partition`'s
        options (``rtol``, ``threads``, ``memory_limit``, ...).

    Returns
    -------
    None
        Returns when the server stops (local page) or once the cell shows the page.
    """
    from splinecam.explorer import server
    if notebook is None:
        notebook = _in_notebook()
    return server.show(model, slice, **kwargs) if notebook else server.serve(model, slice, **kwargs)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
