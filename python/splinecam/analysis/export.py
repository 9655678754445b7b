"""Exports of a :class:`~splinecam.Partition` to files other tools read: GeoJSON, SVG,
graph-tool's ``.gt`` and numpy ``.npz``.

All coordinates are the slice's plane coordinates, in float64 (the SVG rounds to
thousandths of a pixel). None of these needs matplotlib; only :func:`save_graph_tool`
needs graph-tool. (The networkx exports are ``Partition.to_networkx()``, the planar
graph, and ``Partition.region_adjacency_graph()``, the dual graph; shapely and
geopandas read ``Partition.__geo_interface__``.)
"""
from __future__ import annotations

import json
import os
from typing import Optional, Sequence, Union

import numpy as np

__all__ = ["to_geojson", "to_svg", "save_graph_tool", "save_npz", "load_npz", "NPZ_KEYS"]

PathLike = Union[str, "os.PathLike[str]"]


def _slope_norms_or_none(P) -> Optional[np.ndarray]:
    try:
        return np.asarray(P.slope_norms())
    except ValueError:  # at_layer(l) partitions carry no model outputs
        return None


# -- GeoJSON ------------------------------------------------------------------------------
def to_geojson(P, path: Optional[PathLike] = None, *, indent: Optional[int] = None,
               decision_boundary: bool = True) -> dict:
    """Convert the partition to a GeoJSON ``FeatureCollection``.

    RFC 7946 structure; the coordinates are plane coordinates, not
    longitude/latitude. Features, in order:

    - one ``Polygon`` per region, its ring counter-clockwise and closed (first position
      repeated at the end), with ``id`` the region index and properties
      ``kind = "region"``, ``region`` (the index again), ``area`` and, when the
      partition has model outputs, ``slope_norm`` and ``class`` (the predicted class
      on the region, as ``P.plot(color="class")`` colours it);
    - with ``decision_boundary=True``, one ``LineString`` per decision-boundary
      segment, with properties ``kind = "decision_boundary"`` and ``segment`` (index
      into ``P.decision_boundary``).

    The collection also carries a foreign member ``"splinecam"`` with ``regions``,
    ``layers`` and the ``domain`` polygon.

    Parameters
    ----------
    P : Partition
        The partition.
    path : str or path-like, optional
        Also write the collection as JSON there.
    indent : int, optional
        Indentation of the JSON file (default: one line).
    decision_boundary : bool
        Include the decision-boundary segments (``P.__geo_interface__`` leaves them
        out, so that every feature is a region polygon).

    Returns
    -------
    dict
        The FeatureCollection (plain Python values).

    Examples
    --------
    >>> import splinecam
    >>> from splinecam import zoo
    >>> from splinecam.analysis import export
    >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
    >>> fc = export.to_geojson(P)
    >>> fc["type"], fc["features"][0]["geometry"]["type"], fc["features"][0]["properties"]["kind"]
    ('FeatureCollection', 'Polygon', 'region')
    """
    areas = P.areas()
    slope = _slope_norms_or_none(P)
    if slope is not None:
        from splinecam.analysis.plot import region_classes
        classes = region_classes(P)
    features = []
    for i, poly in enumerate(P.polygons()):
        ring = poly.tolist()
        ring.append(ring[0])
        props = {"kind": "region", "region": i, "area": float(areas[i])}
        if slope is not None:
            props["slope_norm"] = float(slope[i])
            props["class"] = int(classes[i])
        features.append({"type": "Feature", "id": i, "geometry": {"type": "Polygon", "coordinates": [ring]},
                         "properties": props})
    for j, seg in enumerate(P.decision_boundary if decision_boundary else ()):
        features.append({"type": "Feature", "geometry": {"type": "LineString", "coordinates": seg.tolist()},
                         "properties": {"kind": "decision_boundary", "segment": j}})
    dom = P.slice.polygon.tolist()
    dom.append(dom[0])
    out = {"type": "FeatureCollection", "features": features,
           "splinecam": {"regions": int(P.num_regions), "layers": int(P.num_layers), "domain": dom}}
    if path is not None:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=indent)
    return out


# -- SVG ----------------------------------------------------------------------------------
# A few anchor colours of a perceptually ordered dark-blue -> green -> yellow ramp,
# interpolated linearly (no matplotlib needed).
_RAMP = np.array([[0.267, 0.005, 0.329], [0.230, 0.322, 0.546], [0.128, 0.567, 0.551],
                  [0.369, 0.789, 0.383], [0.993, 0.906, 0.144]])


def _ramp(t: np.ndarray) -> np.ndarray:
    t = np.clip(np.nan_to_num(t, nan=0.0), 0.0, 1.0) * (len(_RAMP) - 1)
    i = np.minimum(t.astype(int), len(_RAMP) - 2)
    f = (t - i)[:, None]
    return (1 - f) * _RAMP[i] + f * _RAMP[i + 1]


def _hex(rgb: np.ndarray) -> list:
    c = np.clip(np.round(rgb * 255), 0, 255).astype(int)
    return ["#%02x%02x%02x" % tuple(x) for x in c]


def _esc(s: str) -> str:
    return (str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;"))


def _fills(P, fill) -> list:
    F = P.num_regions
    if isinstance(fill, str) and fill not in ("slope", "area"):
        return [fill] * F                              # one colour for every region
    if isinstance(fill, str):
        v = _slope_norms_or_none(P) if fill == "slope" else None
        if v is None:                                  # "area", or no outputs: log area
            v = np.log(np.maximum(P.areas(), 1e-300))
    else:
        v = np.asarray(fill, dtype=np.float64).reshape(-1)
        if len(v) != F:
            raise ValueError(f"fill values must have one entry per region ({F}); got {len(v)}")
    lo, hi = np.nanmin(v), np.nanmax(v)
    t = (v - lo) / (hi - lo) if hi > lo else np.full(F, 0.5)
    return _hex(_ramp(t))


def to_svg(P, path: Optional[PathLike] = None, *, width: float = 800.0, margin: float = 10.0,
           fill: Union[str, Sequence[float], np.ndarray] = "slope", edgecolor: str = "#000000",
           linewidth: float = 0.3, edge_alpha: float = 0.5, boundary_color: str = "#d62728",
           boundary_width: float = 2.0, title: Optional[str] = None) -> str:
    """Draw the partition as plain SVG, without matplotlib.

    Regions are filled polygons with thin outlines; the decision boundary is drawn on
    top as one path. The y axis points up as in ``P.plot()`` (SVG's points down, so y
    is flipped).

    Parameters
    ----------
    P : Partition
        The partition.
    path : str or path-like, optional
        Where to write the SVG; the text is returned either way.
    width : float
        Width of the drawing area in px; the height follows the slice's aspect ratio.
    margin : float
        Blank border in px.
    fill : "slope", "area", a colour, or (F,) values
        ``"slope"`` colours regions by the norm of their slope (falling back to
        ``"area"`` - log area - for ``at_layer`` partitions), a colour string fills all
        regions with it, an array is mapped onto the colour ramp.
    edgecolor, linewidth, edge_alpha :
        Region outlines (``linewidth`` in px; 0 for none).
    boundary_color, boundary_width :
        The decision boundary (``boundary_width`` in px).
    title : str, optional
        A ``<title>`` element.

    Returns
    -------
    str
        The SVG document.

    Raises
    ------
    ValueError
        When ``fill`` is an array without one value per region.
    """
    poly = P.slice.polygon
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    span = hi - lo
    scale = float(width) / span[0]
    W = float(width) + 2 * margin
    H = span[1] * scale + 2 * margin

    def tx(p):  # plane -> px, y up
        p = np.asarray(p, dtype=np.float64).reshape(-1, 2)
        return np.column_stack([(p[:, 0] - lo[0]) * scale + margin, (hi[1] - p[:, 1]) * scale + margin])

    def pts(p):
        return " ".join(f"{x:.3f},{y:.3f}" for x, y in tx(p))

    colours = _fills(P, fill)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{W:.3f}" height="{H:.3f}" '
           f'viewBox="0 0 {W:.3f} {H:.3f}">']
    if title is not None:
        out.append(f"<title>{_esc(title)}</title>")
    stroke = (f'stroke="{_esc(edgecolor)}" stroke-width="{linewidth:g}" stroke-opacity="{edge_alpha:g}" '
              f'stroke-linejoin="round"' if linewidth > 0 else 'stroke="none"')
    out.append(f'<g id="regions" {stroke}>')
    for i, p in enumerate(P.polygons()):
        out.append(f'<polygon id="r{i}" points="{pts(p)}" fill="{_esc(colours[i])}"/>')
    out.append("</g>")
    out.append(f'<polygon id="domain" points="{pts(poly)}" fill="none" stroke="{_esc(edgecolor)}" '
               f'stroke-width="{max(linewidth, 0.5):g}"/>')
    db = P.decision_boundary
    if len(db):
        a, b = tx(db[:, 0]), tx(db[:, 1])
        d = " ".join(f"M{x0:.3f} {y0:.3f}L{x1:.3f} {y1:.3f}" for (x0, y0), (x1, y1) in zip(a, b))
        out.append(f'<path id="decision_boundary" d="{d}" fill="none" stroke="{_esc(boundary_color)}" '
                   f'stroke-width="{boundary_width:g}" stroke-linecap="round"/>')
    out.append("</svg>")
    text = "\n".join(out) + "\n"
    if path is not None:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    return text


# -- graph-tool ---------------------------------------------------------------------------
def save_graph_tool(P, path: PathLike):
    """Save the planar graph with graph-tool.

    The graph is ``P.to_graph_tool()``: vertex property ``pos``, edge properties
    ``layer``, ``unit``, ``decision``. Needs graph-tool.

    Parameters
    ----------
    P : Partition
        The partition.
    path : str or path-like
        The file; its extension picks graph-tool's format (``.gt``, ``.gt.gz``,
        ``.graphml``, ``.dot``, ``.gml``, ...).

    Returns
    -------
    graph_tool.Graph
        The graph that was saved.

    Raises
    ------
    ImportError
        When graph-tool is not installed.
    """
    g = P.to_graph_tool()
    g.save(os.fspath(path))
    return g


# -- npz ----------------------------------------------------------------------------------
NPZ_KEYS = ("vertices", "edges", "edge_layer", "edge_unit", "edge_decision", "face_coords", "face_offsets",
            "decision_boundary", "domain", "num_layers")


def save_npz(P, path, *, compressed: bool = True, loadable: bool = True):
    """Save the partition's arrays to a numpy ``.npz`` file (no pickles).

    The file is readable with :func:`load_npz` or plain ``np.load``. Keys:

    ``vertices`` (V, 2) float64, ``edges`` (E, 2) int64, ``edge_layer`` (E,) int32,
    ``edge_unit`` (E,) int32, ``edge_decision`` (E,) bool, ``face_coords`` (H, 2)
    float64 and ``face_offsets`` (F + 1,) int64 (``P.faces()``), ``decision_boundary``
    (m, 2, 2) float64, ``domain`` (k, 2) float64 (the slice polygon), ``num_layers``
    () int64; plus ``slope_norms`` (F,) float64 when the partition has model outputs.

    With ``loadable=True`` the file also holds the whole partition, under keys that
    start with ``store/`` (see :mod:`splinecam.result.store`), so that
    ``splinecam.Partition.load(path)`` opens it again with every query.

    Parameters
    ----------
    P : Partition
        The partition.
    path : str, path-like or file-like
        The file. As with ``np.savez``, ``.npz`` is appended to a name without it.
    compressed : bool
        Compress the arrays (``np.savez_compressed``).
    loadable : bool
        Also store what :meth:`splinecam.Partition.load` needs (every layer's faces, the
        model's outputs at the vertices, the decision-boundary refinement, the plane);
        ``False`` writes the plain arrays only, a smaller file.

    Returns
    -------
    str or file-like
        The path written (with ``.npz`` appended where ``np.savez`` appends it), or the
        file object given.

    Examples
    --------
    >>> import os, tempfile, splinecam
    >>> from splinecam import zoo
    >>> from splinecam.analysis import export
    >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
    >>> path = export.save_npz(P, os.path.join(tempfile.mkdtemp(), "p.npz"))
    >>> int(export.load_npz(path)["num_layers"]), splinecam.Partition.load(path).num_regions == P.num_regions
    (2, True)
    """
    coords, off = P.faces()
    arrays = dict(vertices=P.vertices, edges=np.asarray(P.edges, np.int64), edge_layer=P.edge_layer,
                  edge_unit=P.edge_unit, edge_decision=P.edge_decision, face_coords=coords,
                  face_offsets=np.asarray(off, np.int64), decision_boundary=P.decision_boundary,
                  domain=P.slice.polygon, num_layers=np.int64(P.num_layers))
    slope = _slope_norms_or_none(P)
    if slope is not None:
        arrays["slope_norms"] = slope
    if loadable:
        from splinecam.result.store import npz_arrays
        arrays.update(npz_arrays(P))
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    if isinstance(path, (str, os.PathLike)):
        path = os.fspath(path)
        return path if path.endswith(".npz") else path + ".npz"
    return path


def load_npz(path: PathLike) -> dict:
    """Read the arrays of a file written by :func:`save_npz`.

    ``np.split(d["face_coords"], d["face_offsets"][1:-1])`` gives the region polygons;
    :meth:`splinecam.Partition.load` opens the same file as a Partition.

    Parameters
    ----------
    path : str, path-like or file-like
        The ``.npz`` file.

    Returns
    -------
    dict
        ``{key: numpy.ndarray}`` with the keys listed in :func:`save_npz` (and the
        ``store/`` ones, when it was written with ``loadable=True``).
    """
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
