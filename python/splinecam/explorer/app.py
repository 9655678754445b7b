"""The explorer's page, a Bokeh document (:func:`make_document`).

What it shows: the regions of the visible window (coloured by slope norm, class,
activation pattern or the layer whose cut made them), the regions too small to see as a
density image, the decision boundary, the anchor points; a layer slider (the partition
after layer ``l``), hover (region, class, slope norm, area, active units per layer) and
click (the region's affine map and its neighbours); export of the view.

When the view moves, the new window is computed by :class:`~splinecam.explorer.view.Windows`
in a worker thread: the page stays live (recolouring, the slider and hover answer while
a window is computed), a status line counts the cells, and a result that a newer view
has overtaken is dropped.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Optional

import numpy as np

from splinecam.explorer.view import COLORINGS, Windows, draw_data

__all__ = ["make_document", "Explorer"]

_DEBOUNCE_MS = 120
_NO_IMAGE = dict(image=[], x=[], y=[], dw=[], dh=[])
_TOOLTIPS = [("region", "@id"), ("class", "@cls"), ("slope norm", "@slope{0.000}"), ("area", "@area{0.000e}"),
             ("active units per layer", "@pattern"), ("last cut by layer", "@layer")]


class Explorer:
    """The state behind the explorer's pages: the window engine and the settings.

    Shared by every page of one server (the cells computed by one are reused by all).

    Parameters
    ----------
    windows : splinecam.explorer.Windows
        The window engine of the slice.
    points : dict, optional
        Anchor points to mark, ``{"A": (u, v), ...}`` in plane coordinates.
    export_dir : str
        The folder the page's exports are written to.
    title : str
        The page's title.
    """

    def __init__(self, windows: Windows, points: Optional[Dict[str, np.ndarray]] = None,
                 export_dir: str = "splinecam_export", title: str = "splinecam explorer"):
        self.windows = windows
        self.points = {k: np.asarray(v, np.float64).reshape(2) for k, v in (points or {}).items()}
        self.export_dir = export_dir
        self.title = title
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="splinecam-window")


def make_document(doc, explorer: Explorer) -> None:
    """Fill a Bokeh document with the explorer's page.

    Parameters
    ----------
    doc : bokeh.document.Document
        The document of one browser session.
    explorer : Explorer
        The state shared by the server's pages.
    """
    from bokeh.layouts import column, row
    from bokeh.models import (Button, ColorBar, ColumnDataSource, Div, HoverTool, LinearColorMapper, Range1d, Select,
                              Slider, TapTool)
    from bokeh.palettes import Greys256, Viridis256
    from bokeh.plotting import figure

    W = explorer.windows
    lo, hi = W.lo, W.hi
    pad = 0.02 * float(max(hi - lo))
    width, height = 720, 720
    fig = figure(width=width, height=height, match_aspect=True, title=explorer.title,
                 x_range=Range1d(lo[0] - pad, hi[0] + pad), y_range=Range1d(lo[1] - pad, hi[1] + pad),
                 tools="pan,wheel_zoom,box_zoom,reset,save", active_scroll="wheel_zoom", output_backend="canvas",
                 name="plot")
    fig.xaxis.axis_label, fig.yaxis.axis_label = "u (plane coordinate)", "v (plane coordinate)"
    empty = dict(xs=[], ys=[], fill=[], id=[], cls=[], slope=[], area=[], pattern=[], layer=[])
    regions = ColumnDataSource(dict(empty), name="regions_source")
    density = ColumnDataSource(dict(_NO_IMAGE), name="density_source")
    boundary = ColumnDataSource(dict(xs=[], ys=[]), name="boundary_source")
    dens_map = LinearColorMapper(palette=list(reversed(Greys256))[32:], low=1, nan_color=(0, 0, 0, 0))
    fig.image(image="image", x="x", y="y", dw="dw", dh="dh", source=density, color_mapper=dens_map, alpha=0.8,
              name="density")
    slope_map = LinearColorMapper(palette=Viridis256, low=0, high=1)
    fig.add_layout(ColorBar(color_mapper=slope_map, title="slope norm (99th percentile on top)", width=12,
                            name="colorbar"), "right")
    r_regions = fig.patches("xs", "ys", source=regions, fill_color="fill", line_color="#222222", line_width=0.4,
                            line_alpha=0.8, hover_line_color="white", hover_line_width=2.0, name="regions",
                            selection_line_color="white", selection_line_width=2.5, nonselection_fill_alpha=0.8)
    fig.multi_line("xs", "ys", source=boundary, line_color="red", line_width=2.5, name="boundary",
                   legend_label="decision boundary")
    outline = np.vstack([W.slice.polygon, W.slice.polygon[:1]])
    fig.line(outline[:, 0], outline[:, 1], line_color="black", line_width=1.5, name="outline")
    if explorer.points:
        names = list(explorer.points)
        uv = np.stack([explorer.points[k] for k in names])
        pts = ColumnDataSource(dict(x=uv[:, 0], y=uv[:, 1], name=names))
        fig.scatter("x", "y", source=pts, size=11, marker="circle", fill_color="white", line_color="black",
                    line_width=2, name="anchors")
        fig.text("x", "y", text="name", source=pts, x_offset=8, y_offset=-8, text_font_style="bold",
                 text_color="black", name="anchor_labels")
    fig.legend.location = "top_left"
    fig.legend.background_fill_alpha = 0.6
    fig.add_tools(HoverTool(renderers=[r_regions], tooltips=_TOOLTIPS, name="hover"), TapTool(renderers=[r_regions]))

    color = Select(title="colour regions by", value="slope", options=list(COLORINGS), name="color", width=180)
    L = max(W.net.num_layers, 1)
    layer = Slider(title="partition after layer", start=1, end=L, value=L, step=1, name="layer", width=260,
                   disabled=W.net.num_layers <= 1)
    status = Div(text="", name="status", width=640)
    busy = Div(text="computing the first window...", name="busy", width=300,
               styles={"color": "#a05a00", "font-weight": "bold"})
    info = Div(text="click a region for its affine map and its neighbours", name="info", width=420)
    buttons = [Button(label=f"export {k}", name=f"export_{k}", width=110) for k in ("png", "svg", "npz", "geojson")]

    # Every callback runs on the document's event loop (the worker thread hands its
    # result back with add_next_tick_callback), so this state needs no lock.
    state = dict(generation=0, view=None, pending=None)

    def window():
        return (fig.x_range.start, fig.x_range.end, fig.y_range.start, fig.y_range.end)

    def partition_for_drawing():
        v = state["view"]
        if v is None:
            return None
        P = v.partition
        return P if layer.value >= P.num_layers else P.at_layer(int(layer.value))

    def redraw():
        v = state["view"]
        if v is None:
            return
        P = partition_for_drawing()
        t = time.perf_counter()
        d = draw_data(P, v.window, (width, height), color=color.value)  # after layer l: no boundary
        regions.data = d["regions"]
        density.data = d["density"] or dict(_NO_IMAGE)
        boundary.data = d["boundary"]
        if d["vmax"] is not None:
            slope_map.high = d["vmax"] or 1.0
        fig.select_one({"name": "colorbar"}).visible = d["color"] == "slope"
        status.text = (f"<b>{v.partition.num_regions}</b> regions in this window (level {v.level}, "
                       f"{v.computed} cells computed, {v.reused} reused, {v.seconds:.2f} s); "
                       f"{d['drawn']} drawn as polygons"
                       + (f", {d['hidden']} below {2} pixels shown as density" if d["hidden"] else "")
                       + f"; drawn in {time.perf_counter() - t:.2f} s"
                       + (f"; after layer {layer.value}: no class or slope yet, coloured by pattern"
                          if d["color"] != color.value else ""))

    def finished(gen, view, error):
        if gen != state["generation"]:
            return  # a newer view is being computed
        busy.text = ""
        if error is not None:
            status.text = f"<span style='color:#b00'>could not compute this window: {error}</span>"
            return
        state["view"] = view
        redraw()

    def progress(gen, done, total):
        def show():
            if gen == state["generation"]:
                busy.text = f"computing the window: cell {done} of {total}"
        doc.add_next_tick_callback(show)

    def compute(gen, win):
        from splinecam.driver.refine import MemoryLimitExceeded
        try:
            view = W.compute(win, progress=lambda d, t: progress(gen, d, t))
            err = None
        except MemoryLimitExceeded:
            view, err = None, ("a cell of this window needs more than the memory limit at this zoom: zoom in (the "
                               "cells get smaller) or start the explorer with a larger --memory-limit")
        except Exception as e:  # shown on the page; the server keeps running
            view, err = None, f"{type(e).__name__}: {e}"
        doc.add_next_tick_callback(lambda: finished(gen, view, err))

    def request(attr, old, new):
        state["generation"] += 1
        gen = state["generation"]
        if state["pending"] is not None:
            try:
                doc.remove_timeout_callback(state["pending"])
            except ValueError:
                pass

        def start():
            state["pending"] = None
            if gen != state["generation"]:
                return
            busy.text = "computing the window..."
            explorer.executor.submit(compute, gen, window())
        state["pending"] = doc.add_timeout_callback(start, _DEBOUNCE_MS)

    for rng in (fig.x_range, fig.y_range):
        rng.on_change("start", request)
        rng.on_change("end", request)
    color.on_change("value", lambda attr, old, new: redraw())
    layer.on_change("value", lambda attr, old, new: redraw())

    def tapped(attr, old, new):
        v = state["view"]
        if v is None or not new:
            return
        rid = int(regions.data["id"][new[0]])
        P = partition_for_drawing()
        lines = [f"<b>region {rid}</b> of this window (class {regions.data['cls'][new[0]]})"]
        if P is v.partition:
            A, c = P.affine(rid)
            for k in range(len(c)):
                lines.append(f"y<sub>{k}</sub>(u, v) = {A[k, 0]:+.4g} u {A[k, 1]:+.4g} v {c[k]:+.4g}")
        pairs = P.adjacency()
        nb = np.unique(np.concatenate([pairs[pairs[:, 0] == rid, 1], pairs[pairs[:, 1] == rid, 0]]))
        lines.append(f"{len(nb)} neighbours: {', '.join(map(str, nb[:24].tolist()))}{' ...' if len(nb) > 24 else ''}")
        info.text = "<br>".join(lines)
    regions.selected.on_change("indices", tapped)

    def exporter(kind):
        def run():
            v = state["view"]
            if v is None:
                return
            P = partition_for_drawing()
            os.makedirs(explorer.export_dir, exist_ok=True)
            name = f"view_{time.strftime('%Y%m%d-%H%M%S')}.{kind}"
            path = os.path.join(explorer.export_dir, name)
            part = os.path.join(explorer.export_dir, f".{name[:-len(kind) - 1]}.partial.{kind}")  # then renamed
            if kind == "png":
                from splinecam.analysis.plot import save
                save(P, part, color="slope" if color.value == "layer" else color.value, window=window())
            elif kind == "svg":
                P.to_svg(part)
            elif kind == "npz":
                from splinecam.analysis.export import save_npz
                save_npz(P, part)
            else:
                P.to_geojson(part)
            os.replace(part, path)
            status.text = f"wrote {os.path.abspath(path)}"
        return run
    for b, kind in zip(buttons, ("png", "svg", "npz", "geojson")):
        b.on_click(exporter(kind))

    controls = row(color, layer, *buttons)
    doc.add_root(column(controls, row(status, busy), row(fig, info), name="root"))
    doc.title = explorer.title
    request(None, None, None)
