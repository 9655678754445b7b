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
    """Explore ``slice`` of ``model`` interactively: in this Jupyter notebook's cell
    (:func:`.server.show`), else on a local page served until Ctrl-C
    (:func:`.server.serve`). ``notebook``: force one or the other (default: a notebook
    when running inside one). ``kwargs``: those of the chosen function, e.g.
    ``points={"A": (u, v)}``, ``port``, and :func:`splinecam.partition`'s options."""
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
