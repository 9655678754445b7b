"""Serving the explorer: on ``localhost`` (:func:`serve`), or in a Jupyter cell
(:func:`show`)."""
from __future__ import annotations

import socket
from typing import Dict, Optional

import numpy as np

from splinecam.explorer.view import Windows

__all__ = ["serve", "show", "start_server"]


def _need_bokeh():
    try:
        import bokeh  # noqa: F401
    except ImportError:
        raise ImportError("the explorer needs Bokeh: pip install bokeh (or pip install 'splinecam[explore]')") \
            from None


def _explorer(model, slice, points, export_dir, title, options):
    from splinecam.explorer.app import Explorer
    return Explorer(Windows(model, slice, **options), points=points, export_dir=export_dir, title=title)


def free_port(address: str = "localhost") -> int:
    """Find a port that is free now on ``address`` (the system picks one).

    Parameters
    ----------
    address : str
        The address to bind.

    Returns
    -------
    int
        The port number.
    """
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def start_server(model, slice, *, port: int = 5006, address: str = "localhost",
                 points: Optional[Dict[str, np.ndarray]] = None, export_dir: str = "splinecam_export",
                 title: str = "splinecam explorer", **options):
    """Start (but do not run) a Bokeh server of the explorer.

    The caller runs ``server.io_loop.start()`` (or ``server.run_until_shutdown()``) and
    stops it with ``server.stop()``.

    Parameters
    ----------
    model : torch.nn.Module
        A piecewise-linear model in eval mode.
    slice : Slice
        The slice to explore.
    port : int
        The port; 0 picks a free one.
    address : str
        The address to bind (``localhost``: this machine only).
    points : dict, optional
        Anchor points to mark, ``{"A": (u, v), ...}`` in plane coordinates.
    export_dir : str
        The folder the page's exports are written to.
    title : str
        The page's title.
    **options
        Options of :func:`splinecam.partition` (``rtol``, ``threads``,
        ``memory_limit``, ...).

    Returns
    -------
    server : bokeh.server.server.Server
        The started server; ``server.explorer`` is its :class:`~splinecam.explorer.app.Explorer`.
    url : str
        The page's address, ``http://address:port/``.

    Raises
    ------
    ImportError
        When Bokeh is not installed.
    """
    _need_bokeh()
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server

    from splinecam.explorer.app import make_document
    explorer = _explorer(model, slice, points, export_dir, title, options)  # fails before any server starts
    port = free_port(address) if port == 0 else int(port)
    app = Application(FunctionHandler(lambda doc: make_document(doc, explorer)))
    server = Server({"/": app}, port=port, address=address, allow_websocket_origin=[f"{address}:{port}",
                                                                                    f"127.0.0.1:{port}",
                                                                                    f"localhost:{port}"])
    server.start()
    server.explorer = explorer
    return server, f"http://{address}:{port}/"


def serve(model, slice, *, port: int = 5006, address: str = "localhost", open_browser: bool = True,
          points: Optional[Dict[str, np.ndarray]] = None, export_dir: str = "splinecam_export",
          title: str = "splinecam explorer", **options) -> None:
    """Serve the explorer on ``http://address:port/`` until Ctrl-C.

    Parameters
    ----------
    model : torch.nn.Module
        A piecewise-linear model in eval mode.
    slice : Slice
        The slice to explore.
    port : int
        The port; 0 picks a free one.
    address : str
        The address to bind: ``localhost`` unless told otherwise (``0.0.0.0`` lets other
        machines reach the page).
    open_browser : bool
        Open the page in a browser tab.
    points : dict, optional
        Anchor points to mark, ``{"A": (u, v), ...}`` in plane coordinates.
    export_dir : str
        The folder the page's exports are written to.
    title : str
        The page's title.
    **options
        Options of :func:`splinecam.partition` (``rtol``, ``threads``,
        ``memory_limit``, ...).

    Raises
    ------
    ImportError
        When Bokeh is not installed.
    """
    server, url = start_server(model, slice, port=port, address=address, points=points, export_dir=export_dir,
                               title=title, **options)
    print(f"splinecam explorer at {url} (Ctrl-C stops it)", flush=True)
    if open_browser:
        server.io_loop.add_callback(server.show, "/")
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        print("splinecam explorer: stopped", flush=True)
    finally:
        server.stop()


def show(model, slice, *, points: Optional[Dict[str, np.ndarray]] = None, notebook_url="localhost:8888",
         export_dir: str = "splinecam_export", title: str = "splinecam explorer", **options) -> None:
    """Show the explorer in the current Jupyter notebook cell.

    The same page as :func:`serve`, served by the notebook's own Bokeh server.

    Parameters
    ----------
    model : torch.nn.Module
        A piecewise-linear model in eval mode.
    slice : Slice
        The slice to explore.
    points : dict, optional
        Anchor points to mark, ``{"A": (u, v), ...}`` in plane coordinates.
    notebook_url : str
        Where the notebook server runs.
    export_dir : str
        The folder the page's exports are written to.
    title : str
        The page's title.
    **options
        Options of :func:`splinecam.partition` (``rtol``, ``threads``,
        ``memory_limit``, ...).

    Raises
    ------
    ImportError
        When Bokeh is not installed.
    """
    _need_bokeh()
    from bokeh.io import output_notebook
    from bokeh.io import show as bokeh_show

    from splinecam.explorer.app import make_document
    explorer = _explorer(model, slice, points, export_dir, title, options)
    output_notebook(hide_banner=True)
    bokeh_show(lambda doc: make_document(doc, explorer), notebook_url=notebook_url)
