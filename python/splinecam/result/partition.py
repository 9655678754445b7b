"""The result of :func:`splinecam.partition`: regions, labelled edges, decision boundary."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import List, Optional, Tuple

import numpy as np
import torch

from splinecam import _core
from splinecam.geometry import polygon_areas, take
from splinecam.network.model import Network
from splinecam.slice import Slice

__all__ = ["Partition", "Layer", "face_means"]


@dataclass(frozen=True)
class Layer:
    """The partition after one refinement, as face cycles over the global vertex ids.

    face_offsets : (F + 1,) int64   CSR offsets of the face cycles
    face_verts   : (H,) int32       vertex ids, counter-clockwise per face
    he_layer     : (H,) int32       layer of the edge face_verts[h] -> next (-1 boundary)
    he_unit      : (H,) int32       unit of that edge
    face_parent  : (F,) int32       face of the previous layer this face was cut from
    num_vertices : int              vertex ids in use are < num_vertices
    """
    face_offsets: np.ndarray
    face_verts: np.ndarray
    he_layer: np.ndarray
    he_unit: np.ndarray
    face_parent: np.ndarray
    num_vertices: int

    @property
    def num_faces(self) -> int:
        return len(self.face_offsets) - 1


def face_means(values: np.ndarray, face_offsets: np.ndarray, face_verts: np.ndarray) -> np.ndarray:
    """Mean of per-vertex ``values`` (V, C) over each face's cycle: (F, C). Inside a face
    where the values are affine this is their value at an interior point."""
    counts = np.diff(face_offsets)
    sums = np.add.reduceat(values[face_verts], face_offsets[:-1], axis=0)
    return sums / counts[:, None]



class Partition:
    """The exact partition of a slice into the linear regions of a network.

    Regions are the linear regions of the hidden layers: convex polygons on each of
    which every hidden unit keeps one sign, so the network is affine there. Edges carry
    the hidden layer (1-based) and unit whose zero set they lie on; ``-1`` marks the
    domain boundary. The decision boundary is reported as its own edges, labelled with
    layer ``num_layers + 1`` (the output) and the output index it was found with; it does
    not change the regions.

    Vertex and edge arrays describe the planar graph of all edges, decision boundary
    included. Region polygons may contain straight-angle vertices where an edge of a
    neighbouring region ends on their side.
    """

    def __init__(self, *, xy: np.ndarray, layers: List[Layer], outputs: Optional[np.ndarray],
                 decision: Optional[dict], net: Network, slice: Slice, stats: dict):
        self._xy = xy                # (V_all, 2) every vertex ever created
        self._layers = layers        # snapshots after hidden layers 1..num_layers
        self._outputs = outputs      # (V_all, C) model outputs at vertices, or None
        self._decision = decision    # decision-boundary refinement, or None
        self._net = net
        self.slice = slice
        #: how the computation went: ``seconds`` in all, of which ``forward_seconds`` in
        #: vertex forward passes and ``geometry_seconds`` in the engine; ``device``; and
        #: ``degenerate`` (sub-polygons the engine left uncut because their values were
        #: inconsistent; 0 in every test)
        self.run_info = dict(stats)

    # -- basic sizes -------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        """Hidden layers included in this partition."""
        return len(self._layers)

    @property
    def layer_names(self) -> List[str]:
        """Module path of each hidden layer's nonlinearity in the model."""
        return self._need_net().layer_names[: self.num_layers]

    def _need_net(self) -> Network:
        if self._net is None:
            raise ValueError("this partition was opened without its model, and this query evaluates the model: "
                             "splinecam.Partition.load(path, model=model)")
        return self._net

    @classmethod
    def load(cls, path, model=None, *, mmap: bool = True) -> "Partition":
        """Open a partition written by :meth:`save` to a directory, memory-mapped (see
        :mod:`splinecam.result.store`); pass ``model`` for queries that evaluate it
        (``activation_patterns``, ``layer_names``)."""
        from splinecam.result import store
        return store.load(path, model, mmap=mmap)

    @property
    def _faces(self) -> Layer:
        return self._layers[-1]

    @property
    def num_regions(self) -> int:
        return self._faces.num_faces

    def __len__(self) -> int:
        return self.num_regions

    def __repr__(self) -> str:
        db = "" if self._decision is None else f", decision_segments={len(self.decision_boundary)}"
        return (f"Partition(regions={self.num_regions}, vertices={len(self.vertices)}, edges={len(self.edges)}, "
                f"layers={self.num_layers}{db})")

    # -- the planar graph ----------------------------------------------------------------
    @cached_property
    def _graph(self):
        """Undirected edges (global ids), labels, decision flags of the full graph."""
        if self._decision is not None:
            off, verts, lay, unit = self._decision["faces"]
            nv = len(self._xy)
        else:
            f = self._faces
            off, verts, lay, unit = f.face_offsets, f.face_verts, f.he_layer, f.he_unit
            nv = f.num_vertices
        he = _core.halfedges(nv, off, verts)
        twin, face, edge_of = he["twin"], he["face"], he["edge_of"]
        E = len(he["edge_lo"])
        first = np.full(E, -1, np.int64)
        first[edge_of[::-1]] = np.arange(len(edge_of))[::-1]
        e_layer = lay[first].astype(np.int32)
        e_unit = unit[first].astype(np.int32)
        decision = np.zeros(E, bool)
        if self._decision is not None:
            w = self._decision["winner"]
            h = first
            t = twin[h]
            inner = t >= 0
            decision[inner] = w[face[h[inner]]] != w[face[t[inner]]]
            # Split lines of the arg-max refinement with the same winner on both sides
            # are not boundaries of anything: drop them.
            keep = (e_layer != self._decision["layer"]) | decision
        else:
            keep = np.ones(E, bool)
        lo, hi = he["edge_lo"][keep], he["edge_hi"][keep]
        e_layer, e_unit, decision = e_layer[keep], e_unit[keep], decision[keep]
        if self._decision is not None:
            lo, hi, e_layer, e_unit, decision = _splice_split_vertices(
                lo, hi, e_layer, e_unit, decision, nv, self._faces.num_vertices)
        used = np.zeros(nv, bool)
        used[lo] = True
        used[hi] = True
        ids = np.flatnonzero(used)
        remap = np.full(nv, -1, np.int64)
        remap[ids] = np.arange(len(ids))
        return dict(ids=ids, remap=remap, edges=np.stack([remap[lo], remap[hi]], axis=1),
                    layer=e_layer, unit=e_unit, decision=decision)

    @property
    def vertices(self) -> np.ndarray:
        """(V, 2) float64 vertex coordinates in the slice's plane."""
        return self._xy[self._graph["ids"]]

    @property
    def edges(self) -> np.ndarray:
        """(E, 2) int64 indices into :attr:`vertices`."""
        return self._graph["edges"]

    @property
    def edge_layer(self) -> np.ndarray:
        """(E,) int32: hidden layer (1-based) whose unit made the edge; -1 for the domain
        boundary; ``num_layers + 1`` for decision-boundary edges."""
        return self._graph["layer"]

    @property
    def edge_unit(self) -> np.ndarray:
        """(E,) int32: the unit (flat index within its layer) whose zero set the edge
        lies on; -1 for the domain boundary; for decision edges the output index."""
        return self._graph["unit"]

    @property
    def edge_decision(self) -> np.ndarray:
        """(E,) bool: the edge is part of the decision boundary."""
        return self._graph["decision"]

    @property
    def decision_boundary(self) -> np.ndarray:
        """(m, 2, 2) float64 segments of the decision boundary (empty when it was not
        computed or does not cross the slice)."""
        if self._decision is None:
            return np.zeros((0, 2, 2))
        e = self.edges[self.edge_decision]
        v = self.vertices
        return np.stack([v[e[:, 0]], v[e[:, 1]]], axis=1)

    # -- regions -------------------------------------------------------------------------
    def faces(self) -> Tuple[np.ndarray, np.ndarray]:
        """Regions as a ragged array: ``coords`` (H, 2) float64 and ``offsets`` (F + 1,)
        int64; region ``i`` is ``coords[offsets[i]:offsets[i+1]]``, counter-clockwise."""
        f = self._faces
        return self._xy[f.face_verts], f.face_offsets.copy()

    def polygons(self) -> List[np.ndarray]:
        """One (k, 2) float64 counter-clockwise polygon per region."""
        coords, off = self.faces()
        return np.split(coords, off[1:-1])

    def areas(self) -> np.ndarray:
        """(F,) region areas (shoelace formula, each region relative to one of its own
        vertices: accurate wherever the slice lies in the plane)."""
        coords, off = self.faces()
        return polygon_areas(coords, off)

    def centroids(self) -> np.ndarray:
        """(F, 2) vertex means of each region: interior points of the convex regions."""
        coords, off = self.faces()
        return np.add.reduceat(coords, off[:-1], axis=0) / np.diff(off)[:, None]

    def parents(self, layer: int) -> np.ndarray:
        """(F,) index of the region of ``at_layer(layer)`` that contains each region."""
        if not 1 <= layer <= self.num_layers:
            raise ValueError(f"layer must be in 1..{self.num_layers}; got {layer}")
        anc = np.arange(self.num_regions)
        for l in range(self.num_layers, layer, -1):
            anc = self._layers[l - 1].face_parent[anc]
        return anc

    def at_layer(self, layer: int) -> "Partition":
        """The partition after hidden layer ``layer`` (1-based): same interface, without
        the decision boundary."""
        if not 1 <= layer <= self.num_layers:
            raise ValueError(f"layer must be in 1..{self.num_layers}; got {layer}")
        return Partition(xy=self._xy, layers=self._layers[:layer], outputs=None, decision=None, net=self._net,
                         slice=self.slice, stats=self.run_info)

    def activation_patterns(self) -> np.ndarray:
        """(F, total units) bool: for each region, which hidden units are positive
        (active) on it, layers concatenated in order. Evaluated by a forward pass at
        each region's centroid (an interior point of the convex region)."""
        return self._need_net().patterns(_Inputs(self.slice, self.centroids()), self.num_layers)

    def patterns_at(self, points) -> np.ndarray:
        """(n, total units) bool: the activation pattern of the model at plane points
        ``(n, 2)`` (evaluated batch by batch)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return self._need_net().patterns(_Inputs(self.slice, pts), self.num_layers)

    # -- the model on the regions --------------------------------------------------------
    def _require_outputs(self):
        if self._outputs is None:
            raise ValueError("the model's output is affine only on the regions of the full partition; "
                             "use the Partition returned by splinecam.partition(...), not at_layer(l)")

    @cached_property
    def _affine_all(self):
        return self._affine_fit(np.arange(self.num_regions))

    def _affine_fit(self, regions: np.ndarray, batch: int = 1 << 16):
        """``A`` (n, C, 2), ``c`` (n, C) of ``regions``, fitted to the outputs at their
        vertices (exact: the output is affine on a region), a batch of regions at a time."""
        self._require_outputs()
        f = self._faces
        C = self._outputs.shape[1]
        A = np.empty((len(regions), C, 2))
        c = np.empty((len(regions), C))
        for a in range(0, len(regions), batch):
            verts, off = take(f.face_verts, f.face_offsets, regions[a:a + batch])
            u = self._xy[verts]
            y = self._outputs[verts]
            n = np.diff(off)
            ubar = np.add.reduceat(u, off[:-1], axis=0) / n[:, None]
            ybar = np.add.reduceat(y, off[:-1], axis=0) / n[:, None]
            face = np.repeat(np.arange(len(n)), n)
            du = u - ubar[face]
            dy = y - ybar[face]
            # Normal equations on centred vertices, one 2x2 system per region.
            G = np.add.reduceat(du[:, :, None] * du[:, None, :], off[:-1], axis=0)  # (n, 2, 2)
            R = np.add.reduceat(du[:, :, None] * dy[:, None, :], off[:-1], axis=0)  # (n, 2, C)
            A[a:a + batch] = np.linalg.solve(G, R).transpose(0, 2, 1)
            c[a:a + batch] = ybar - np.einsum("fcd,fd->fc", A[a:a + batch], ubar)
        return A, c

    def affine(self, region: int) -> Tuple[np.ndarray, np.ndarray]:
        """The model on ``region`` in plane coordinates: ``y(u) = A @ u + c`` with
        ``A`` (C, 2) and ``c`` (C,)."""
        A, c = self._affine_all
        if not 0 <= region < self.num_regions:
            raise IndexError(f"region {region} out of range 0..{self.num_regions - 1}")
        return A[region].copy(), c[region].copy()

    def affine_maps(self) -> Tuple[np.ndarray, np.ndarray]:
        """All regions' affine maps: ``A`` (F, C, 2) and ``c`` (F, C)."""
        A, c = self._affine_all
        return A.copy(), c.copy()

    def slope_norms(self, regions=None) -> np.ndarray:
        """(F,) Frobenius norm of each region's slope ``A`` (the figures' colouring); of
        the ``regions`` given only, if any."""
        A, _ = self._affine_all if regions is None else self._affine_fit(np.asarray(regions, np.int64))
        return np.sqrt((A ** 2).sum(axis=(1, 2)))

    # -- point location ------------------------------------------------------------------
    def locate(self, points) -> np.ndarray:
        """(n,) index of the region containing each plane point ``(n, 2)``; -1 outside
        the domain. Points on an edge get one of the regions they touch: the one whose
        activation pattern the model has at the point, if any. A grid index over the
        regions makes each query look at a few regions only."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        out = np.full(len(pts), -1, np.int64)
        poly = self.slice.polygon
        d = np.roll(poly, -1, axis=0) - poly
        side = d[None, :, 0] * (pts[:, None, 1] - poly[None, :, 1]) - d[None, :, 1] * (pts[:, None, 0] - poly[None, :, 0])
        dist = side / np.linalg.norm(d, axis=1)[None, :]  # signed distance inside each domain edge
        # Within rounding of the boundary counts as inside: a fraction of the slice's
        # diameter, or the float64 resolution of the coordinates if that is coarser.
        tol = max(1e-12 * float(np.linalg.norm(np.ptp(poly, axis=0))), 4 * float(np.spacing(np.abs(poly).max())))
        inside = np.all(dist >= -tol, axis=1)
        if not inside.any():
            return out
        idx = np.flatnonzero(inside)
        point, region, depth = self._index.candidates(pts[idx])
        # The region each point is deepest inside; where two regions hold it within
        # rounding of their shared edge, the model's pattern there decides.
        best = np.full(len(idx), -np.inf)
        np.maximum.at(best, point, depth)
        pick = np.full(len(idx), -1, np.int64)
        top = depth >= best[point]
        pick[point[top]] = region[top]
        near = 1e-9 * float(np.linalg.norm(np.ptp(poly, axis=0)))
        close = depth >= -near
        n_close = np.bincount(point[close], minlength=len(idx))
        amb = np.flatnonzero((n_close > 1) & (best < near))
        if len(amb) and self._net is not None:  # (opened without the model: the deepest)
            net = self._net
            sel = close & np.isin(point, amb)
            bits = net.patterns(self.slice.to_input(pts[idx[amb]]), self.num_layers, packed=True)
            cand_bits = net.patterns(self.slice.to_input(self.centroids()[region[sel]]), self.num_layers,
                                     packed=True)
            row = np.searchsorted(amb, point[sel])
            hit = (cand_bits == bits[row]).all(axis=1)
            pick[point[sel][hit]] = region[sel][hit]
        out[idx] = pick
        return out

    @cached_property
    def _index(self):
        from splinecam.geometry import PolygonIndex
        coords, off = self.faces()
        return PolygonIndex(coords, off)

    # -- statistics and sampling (splinecam.analysis.stats, splinecam.analysis.sampling) --------------------
    def stats(self) -> dict:
        """Summary statistics (plain Python values): regions, regions per layer, area and
        eccentricity distributions, decision-boundary length, ... See
        :func:`splinecam.analysis.stats.summary`."""
        from splinecam.analysis.stats import summary
        return summary(self)

    def regions_per_layer(self) -> np.ndarray:
        """(L,) number of regions after each hidden layer."""
        from splinecam.analysis.stats import regions_per_layer
        return regions_per_layer(self)

    def eccentricity(self) -> np.ndarray:
        """(F,) sqrt of the ratio of principal second moments of area (1 = round)."""
        from splinecam.analysis.stats import region_eccentricity
        return region_eccentricity(self)

    def local_complexity(self, bins=64):
        """Regions per unit area on a grid: ``(density (nx, ny), xedges, yedges)``,
        exact area fractions per cell. See :func:`splinecam.analysis.stats.local_complexity`."""
        from splinecam.analysis.stats import local_complexity
        return local_complexity(self, bins)

    def decision_boundary_length(self) -> float:
        """Total length of the decision boundary in plane units."""
        from splinecam.analysis.stats import decision_boundary_length
        return decision_boundary_length(self)

    def regions_on_boundary(self) -> np.ndarray:
        """Sorted indices of the regions the decision boundary passes through."""
        from splinecam.analysis.stats import regions_on_boundary
        return regions_on_boundary(self)

    def adjacency(self, sparse: bool = False):
        """The region adjacency (dual) graph: (K, 2) pairs of regions sharing an edge
        (and, with ``sparse=True``, a scipy CSR matrix of shared boundary lengths)."""
        from splinecam.analysis.stats import adjacency
        return adjacency(self, sparse=sparse)

    def sample_decision_boundary(self, n: int, seed: int = 0):
        """``n`` points uniform by length on the decision boundary: plane points
        ``(n, 2)`` and the model inputs there ``(n, *input_shape)``."""
        from splinecam.analysis.sampling import sample_decision_boundary
        return sample_decision_boundary(self, n, seed=seed)

    def sample_regions(self, regions=None, n_per_region: int = 1, seed: int = 0):
        """Points uniform inside the chosen regions (all by default): ``(points,
        region_ids)``."""
        from splinecam.analysis.sampling import sample_regions
        return sample_regions(self, regions, n_per_region, seed=seed)

    def to_geojson(self, path=None, **kwargs) -> dict:
        """GeoJSON FeatureCollection of the regions and decision segments."""
        from splinecam.analysis.export import to_geojson
        return to_geojson(self, path, **kwargs)

    def to_svg(self, path=None, **kwargs) -> str:
        """A plain SVG drawing of the partition (no matplotlib needed)."""
        from splinecam.analysis.export import to_svg
        return to_svg(self, path, **kwargs)

    def save(self, path, **kwargs):
        """Write the partition to ``path``; the format follows the extension: none (or an
        existing directory): a store of ``.npy`` arrays that :meth:`load` opens again
        memory-mapped (:mod:`splinecam.result.store`); ``.npz`` (arrays),
        ``.geojson``/``.json``, ``.gt`` (graph-tool), ``.svg``/``.png``/``.pdf``/... (a
        figure)."""
        import os
        from splinecam.analysis import export
        from splinecam.analysis import plot
        name = os.path.basename(os.path.normpath(os.fspath(path)))
        if os.path.isdir(path) or "." not in name:
            from splinecam.result import store
            return store.save(self, path, **kwargs)
        ext = str(path).lower().rsplit(".", 1)[-1]
        if ext == "npz":
            return export.save_npz(self, path, **kwargs)
        if ext in ("geojson", "json"):
            return export.to_geojson(self, path, **kwargs)
        if ext == "gt":
            return export.save_graph_tool(self, path)
        return plot.save(self, path, **kwargs)

    # -- checks and exports --------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``RuntimeError`` unless the regions (and the decision-boundary
        refinement) form a valid planar subdivision: closed cycles, consistent twins and
        labels, Euler's formula."""
        f = self._faces
        msg = _core.validate(f.num_vertices, f.face_offsets, f.face_verts, f.he_layer, f.he_unit)
        if msg:
            raise RuntimeError(f"invalid partition: {msg}")
        if self._decision is not None:
            msg = _core.validate(len(self._xy), *self._decision["faces"])
            if msg:
                raise RuntimeError(f"invalid decision-boundary refinement: {msg}")

    def to_graph_tool(self):
        """The planar graph as a ``graph_tool.Graph`` (undirected) with vertex property
        ``pos`` (vector<double>) and edge properties ``layer``, ``unit`` (int) and
        ``decision`` (bool)."""
        try:
            import graph_tool as gt
        except ImportError as e:
            raise ImportError("to_graph_tool() needs graph-tool, which is not on PyPI: on Debian/Ubuntu "
                              "`apt-get install python3-graph-tool` (and a venv with --system-site-packages), "
                              "or conda-forge's graph-tool") from e
        g = gt.Graph(directed=False)
        g.add_vertex(len(self.vertices))
        layer = g.new_edge_property("int")
        unit = g.new_edge_property("int")
        decision = g.new_edge_property("bool")
        e = self.edges
        g.add_edge_list(np.column_stack([e, self.edge_layer, self.edge_unit, self.edge_decision.astype(np.int64)]),
                        eprops=[layer, unit, decision])
        pos = g.new_vertex_property("vector<double>")
        pos.set_2d_array(self.vertices.T.copy())
        g.vertex_properties["pos"] = pos
        g.edge_properties["layer"] = layer
        g.edge_properties["unit"] = unit
        g.edge_properties["decision"] = decision
        return g

    def to_networkx(self):
        """The planar graph as a ``networkx.Graph`` with node attribute ``pos`` and edge
        attributes ``layer``, ``unit``, ``decision``."""
        import networkx as nx
        g = nx.Graph()
        g.add_nodes_from((i, {"pos": tuple(p)}) for i, p in enumerate(self.vertices))
        g.add_edges_from((int(a), int(b), {"layer": int(l), "unit": int(u), "decision": bool(d)})
                         for (a, b), l, u, d in zip(self.edges, self.edge_layer, self.edge_unit, self.edge_decision))
        return g

    def explore(self, **kwargs):
        """Pan and zoom this partition's slice interactively, every view computed exactly
        (:func:`splinecam.explore`: a notebook cell inside Jupyter, else a page
        on ``localhost``). Needs the model: a partition opened from a store without one
        cannot be explored."""
        from splinecam.explorer import explore
        return explore(self._need_net().gm, self.slice, **kwargs)

    def plot(self, ax=None, **kwargs):
        """Draw the regions (coloured by slope norm, or by activation pattern for
        intermediate layers) with the decision boundary on top; a new figure (no ``ax``)
        gets a colorbar, a title and axis labels.

        Options (see :func:`splinecam.plot.plot_partition_object`): ``color`` ("slope",
        "pattern", "class", a colour, or one value per region), ``cmap``, ``edgecolor``,
        ``linewidth`` (default: thinner for denser partitions), ``alpha``,
        ``edges_by_layer``, ``boundary_color``, ``boundary_width``, ``window``,
        ``colorbar``, ``title``, ``axis``, ``legend``.

        Returns
        -------
        matplotlib.axes.Axes
        """
        from splinecam.analysis.plot import plot_partition_object
        return plot_partition_object(self, ax=ax, **kwargs)

    def _repr_png_(self):  # exercised in a notebook by tests/test_packaging.py
        import io
        from matplotlib.figure import Figure
        fig = Figure(figsize=(5, 5))
        ax = fig.add_subplot()
        self.plot(ax=ax, colorbar=self._outputs is not None, title=f"{self.num_regions:,} linear regions")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        return buf.getvalue()


class _Inputs:
    """Model inputs at plane points, made batch by batch (see :meth:`Network.patterns`)."""

    def __init__(self, slice: Slice, points: np.ndarray):
        self.slice, self.points = slice, points

    def __len__(self) -> int:
        return len(self.points)

    def __call__(self, a: int, b: int):
        return self.slice.to_input(self.points[a:b])


def _splice_split_vertices(lo, hi, layer, unit, decision, nv, first_new):
    """Remove the vertices that only the arg-max split lines needed: created by the
    decision refinement (id >= first_new) and left with two edges once the split lines
    with the same winner on both sides are dropped. Their two edges are collinear
    pieces of one edge and are joined again."""
    while True:
        deg = np.bincount(np.concatenate([lo, hi]), minlength=nv)
        mark = (deg == 2) & (np.arange(nv) >= first_new)
        if not mark.any():
            return lo, hi, layer, unit, decision
        # An independent set of marked vertices: on every edge between two marked
        # vertices drop the smaller one (the largest of a chain is always kept).
        pick = mark.copy()
        both = mark[lo] & mark[hi]
        pick[np.minimum(lo[both], hi[both])] = False
        at_lo, at_hi = np.flatnonzero(pick[lo]), np.flatnonzero(pick[hi])
        edge = np.concatenate([at_lo, at_hi])
        vert = np.concatenate([lo[at_lo], hi[at_hi]])
        order = np.argsort(vert, kind="stable")
        edge, vert = edge[order], vert[order]
        e1, e2, v = edge[0::2], edge[1::2], vert[0::2]
        a = np.where(lo[e1] == v, hi[e1], lo[e1])
        b = np.where(lo[e2] == v, hi[e2], lo[e2])
        lo, hi = lo.copy(), hi.copy()
        lo[e1], hi[e1] = np.minimum(a, b), np.maximum(a, b)
        keep = np.ones(len(lo), bool)
        keep[e2] = False
        lo, hi, layer, unit, decision = lo[keep], hi[keep], layer[keep], unit[keep], decision[keep]
