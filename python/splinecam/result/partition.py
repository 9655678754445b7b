"""The result of :func:`splinecam.partition`: regions, labelled edges, decision boundary.

Why this module is long: :class:`Partition` is the API researchers use, and each of its
methods carries its full numpydoc documentation (about 900 of the module's lines are
docstrings); the code is about 500 lines, and the computations behind the statistics,
sampling, exports and plots live in :mod:`splinecam.analysis`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from typing import List, Optional, Tuple

import numpy as np

from splinecam import _core
from splinecam.geometry import polygon_areas, take
from splinecam.network.model import Network
from splinecam.slice import Slice

__all__ = ["Partition", "Layer", "face_means"]


@dataclass(frozen=True)
class Layer:
    """The partition after one refinement, as face cycles over the global vertex ids.

    Follows the rule of :class:`Partition`: the stored arrays and counts are fields
    and properties, computations are functions (:func:`face_means`).

    Parameters
    ----------
    face_offsets : numpy.ndarray
        (F + 1,) int64 CSR offsets of the face cycles.
    face_verts : numpy.ndarray
        (H,) int32 vertex ids, counter-clockwise per face.
    he_layer : numpy.ndarray
        (H,) int32 layer of the edge ``face_verts[h] -> next`` (-1: the domain boundary).
    he_unit : numpy.ndarray
        (H,) int32 unit of that edge.
    face_parent : numpy.ndarray
        (F,) int32 face of the previous layer this face was cut from.
    num_vertices : int
        Vertex ids in use are ``< num_vertices`` (a bound on the global ids, not a
        count of this layer's vertices).
    """
    face_offsets: np.ndarray
    face_verts: np.ndarray
    he_layer: np.ndarray
    he_unit: np.ndarray
    face_parent: np.ndarray
    num_vertices: int

    @property
    def num_faces(self) -> int:
        """Number of faces (int)."""
        return len(self.face_offsets) - 1


def face_means(values: np.ndarray, face_offsets: np.ndarray, face_verts: np.ndarray) -> np.ndarray:
    """Average per-vertex values over each face's cycle.

    Inside a face where the values are affine this is their value at an interior point.

    Parameters
    ----------
    values : numpy.ndarray
        (V, C) values at the vertices.
    face_offsets : numpy.ndarray
        (F + 1,) CSR offsets of the face cycles.
    face_verts : numpy.ndarray
        (H,) vertex ids of the cycles.

    Returns
    -------
    numpy.ndarray
        (F, C) the mean over each face's cycle.
    """
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

    A Partition is made by :func:`splinecam.partition` (or
    :func:`splinecam.partition_tiled`, :func:`splinecam.partition_many`) and opened
    again by :meth:`load`; the constructor is internal.

    Parameters
    ----------
    xy : numpy.ndarray
        (V_all, 2) float64: every vertex the computation created.
    layers : list of Layer
        The faces after hidden layers ``1..num_layers``.
    outputs : numpy.ndarray or None
        (V_all, C) model outputs at the vertices (``None`` for ``at_layer`` partitions).
    decision : dict or None
        The decision-boundary refinement (``None`` when it was not computed).
    net : Network or None
        The traced model (``None`` when opened without it).
    slice : Slice
        The slice.
    stats : dict
        The initial ``run_info``.

    Attributes
    ----------
    slice : Slice
        The slice that was partitioned: its plane (``origin``, ``basis``) and polygon.
    run_info : dict
        How the computation went: ``seconds`` in all, of which ``forward_seconds`` in
        vertex forward passes and ``geometry_seconds`` in the engine; ``device``;
        ``degenerate`` (sub-polygons the engine left uncut because their values were
        inconsistent; 0 in every test); ``tiles`` and ``tile_splits`` for tiled runs;
        ``store`` for a partition opened by :meth:`load`.

    See Also
    --------
    splinecam.partition : computes it.
    splinecam.analysis.stats, splinecam.analysis.sampling, splinecam.analysis.export :
        the functions behind the statistics, sampling and export methods.

    Notes
    -----
    **Properties and methods.** One rule decides which is which. *Properties* are what
    the partition holds: its counts (:attr:`num_regions`, :attr:`num_layers`,
    :attr:`num_vertices`, :attr:`num_edges`), names (:attr:`layer_names`) and the
    arrays of its planar graph (:attr:`vertices`, :attr:`edges`, :attr:`edge_layer`,
    :attr:`edge_unit`, :attr:`edge_decision`, :attr:`decision_boundary`). They take no
    arguments and are computed at most once, then kept: reading them again costs
    nothing, and the arrays are the partition's own (copy one before changing it).
    *Methods* compute: everything that takes arguments, evaluates the model, or builds
    a new array on every call that then belongs to the caller (:meth:`polygons`,
    :meth:`areas`, :meth:`centroids`, :meth:`affine_maps`, :meth:`regions_per_layer`,
    the statistics, sampling and exports). The one exception is
    :attr:`__geo_interface__`, a property because the GeoJSON protocol says so.

    **Types.** Plane coordinates are numpy ``float64`` arrays of shape ``(n, 2)``, in and
    out (``vertices``, ``polygons()``, ``locate(points)``, the sampled points); model
    inputs are torch ``float64`` tensors on the CPU of shape ``(n, *input_shape)``, as
    ``slice.to_input`` makes them. Region and vertex indices are ``int64``, edge labels
    ``int32``.

    **Randomness.** The samplers take ``rng``: ``None`` (fresh points on every call),
    an ``int`` seed (reproducible) or a :class:`numpy.random.Generator`, as
    :func:`numpy.random.default_rng` does; ``seed=`` is a deprecated alias.

    Examples
    --------
    >>> import splinecam
    >>> from splinecam import zoo
    >>> model = zoo.mlp([2, 8, 8, 1], seed=3)
    >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    >>> P = splinecam.partition(model, sl, progress=False)
    >>> P
    Partition(regions=21, vertices=39, edges=63, layers=2, decision_segments=4)
    >>> P.num_regions, P.num_layers, P.vertices.shape, P.decision_boundary.shape
    (21, 2, (39, 2), (4, 2, 2))
    >>> float(P.areas().sum())
    4.0
    """

    def __init__(self, *, xy: np.ndarray, layers: List[Layer], outputs: Optional[np.ndarray],
                 decision: Optional[dict], net: Network, slice: Slice, stats: dict):
        self._xy = xy                # (V_all, 2) every vertex ever created
        self._layers = layers        # snapshots after hidden layers 1..num_layers
        self._outputs = outputs      # (V_all, C) model outputs at vertices, or None
        self._decision = decision    # decision-boundary refinement, or None
        self._net = net
        self.slice = slice
        self.run_info = dict(stats)

    # -- basic sizes -------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        """Number of hidden layers included in this partition (int)."""
        return len(self._layers)

    @property
    def layer_names(self) -> List[str]:
        """Module path of each hidden layer's nonlinearity in the model (list of str; needs the model)."""
        return self._need_net().layer_names[: self.num_layers]

    def _need_net(self) -> Network:
        if self._net is None:
            raise ValueError("this partition was opened without its model, and this query evaluates the model: "
                             "splinecam.Partition.load(path, model=model)")
        return self._net

    @classmethod
    def load(cls, path, model=None, *, mmap: bool = True) -> "Partition":
        """Open a partition written by :meth:`save`: a store directory or a ``.npz`` file.

        Parameters
        ----------
        path : str or path-like
            A directory written by ``P.save("run/")`` (or by ``partition(...,
            store="run/")``), opened memory-mapped (see :mod:`splinecam.result.store`);
            or a ``.npz`` file written by ``P.save("p.npz")``, read into memory.
        model : torch.nn.Module, optional
            The model it was computed for, needed by the queries that evaluate it
            (:meth:`activation_patterns`, :meth:`patterns_at`, :attr:`layer_names`,
            :meth:`explore`); everything else works without it.
        mmap : bool
            Memory-map a directory's arrays (read-only) rather than read them.

        Returns
        -------
        Partition
            The partition, with every query of the one that was saved.

        Raises
        ------
        FileNotFoundError
            When ``path`` is neither a store directory nor a file.
        ValueError
            When the file holds no partition (a ``.npz`` written with
            ``loadable=False``), a store of another format, or ``model`` has fewer
            hidden layers than the partition.

        Examples
        --------
        >>> import os, tempfile, splinecam
        >>> from splinecam import zoo
        >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
        >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
        >>> Q = splinecam.Partition.load(P.save(os.path.join(tempfile.mkdtemp(), "p.npz")))
        >>> Q.num_regions == P.num_regions and bool((Q.vertices == P.vertices).all())
        True
        """
        from splinecam.result import store
        return store.load(path, model, mmap=mmap)

    @property
    def _faces(self) -> Layer:
        return self._layers[-1]

    @property
    def num_regions(self) -> int:
        """Number of linear regions (int); also ``len(P)``."""
        return self._faces.num_faces

    @property
    def num_vertices(self) -> int:
        """Number of vertices of the planar graph (int): ``len(P.vertices)``."""
        return len(self._graph["ids"])

    @property
    def num_edges(self) -> int:
        """Number of edges of the planar graph (int), decision boundary included: ``len(P.edges)``."""
        return len(self._graph["edges"])

    def __len__(self) -> int:
        """Return the number of regions.

        Returns
        -------
        int
            :attr:`num_regions`.
        """
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
        twin, face = he["twin"], he["face"]
        E = len(he["edge_lo"])
        first = _first_halfedges(he)
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

    @cached_property
    def _vertices(self) -> np.ndarray:
        return np.asarray(self._xy[self._graph["ids"]])

    @property
    def vertices(self) -> np.ndarray:
        """(V, 2) float64 numpy array: vertex coordinates in the slice's plane."""
        return self._vertices

    @property
    def edges(self) -> np.ndarray:
        """(E, 2) int64 numpy array: the edges as pairs of indices into :attr:`vertices`."""
        return self._graph["edges"]

    @property
    def edge_layer(self) -> np.ndarray:
        """(E,) int32 numpy array: the hidden layer (1-based) whose unit made each edge.

        -1 for the domain boundary; ``num_layers + 1`` for decision-boundary edges.
        """
        return self._graph["layer"]

    @property
    def edge_unit(self) -> np.ndarray:
        """(E,) int32 numpy array: the unit (flat index within its layer) whose zero set each edge lies on.

        -1 for the domain boundary; for decision edges the output index.
        """
        return self._graph["unit"]

    @property
    def edge_decision(self) -> np.ndarray:
        """(E,) bool numpy array: whether each edge is part of the decision boundary."""
        return self._graph["decision"]

    @property
    def decision_boundary(self) -> np.ndarray:
        """(m, 2, 2) float64 numpy array: the segments of the decision boundary.

        Where a model has one output this is its zero level set; with several, where the
        arg-max class changes. Empty when it was not computed or does not cross the
        slice.
        """
        return self._decision_segments

    @cached_property
    def _decision_segments(self) -> np.ndarray:
        if self._decision is None:
            return np.zeros((0, 2, 2))
        e = self.edges[self.edge_decision]
        v = self.vertices
        return np.stack([v[e[:, 0]], v[e[:, 1]]], axis=1)

    # -- regions -------------------------------------------------------------------------
    def faces(self) -> Tuple[np.ndarray, np.ndarray]:
        """Return the regions as one ragged array.

        Returns
        -------
        coords : numpy.ndarray
            (H, 2) float64 vertex coordinates of all region cycles, one after the other.
        offsets : numpy.ndarray
            (F + 1,) int64: region ``i`` is ``coords[offsets[i]:offsets[i+1]]``,
            counter-clockwise.
        """
        f = self._faces
        return self._xy[f.face_verts], f.face_offsets.copy()

    def regions_meeting(self, window) -> np.ndarray:
        """Find the regions whose bounding box meets a window (a zoomed figure draws these).

        The regions are measured a chunk at a time: on a partition opened from a store
        nothing the size of the whole partition is built.

        Parameters
        ----------
        window : (xmin, xmax, ymin, ymax)
            The window, in plane coordinates.

        Returns
        -------
        numpy.ndarray
            (k,) int64 sorted region indices (every region that meets the window, and
            a few near its corners whose bounding boxes do).

        Examples
        --------
        >>> import splinecam
        >>> from splinecam import zoo
        >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
        >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
        >>> r = P.regions_meeting((0.0, 1.0, 0.0, 1.0))
        >>> 0 < len(r) < P.num_regions
        True
        """
        from splinecam.geometry import meets_window
        if len(window) != 4 or not (window[0] <= window[1] and window[2] <= window[3]):
            raise ValueError(f"window must be (xmin, xmax, ymin, ymax) with xmin <= xmax and ymin <= ymax; "
                             f"got {tuple(window)}")
        f = self._faces
        return np.flatnonzero(meets_window(self._xy, f.face_offsets, window, verts=f.face_verts))

    def _faces_of(self, regions: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``faces()`` of some regions only: their coordinates and offsets."""
        f = self._faces
        verts, off = take(f.face_verts, f.face_offsets, regions)
        return np.asarray(self._xy[verts]), off

    def _edges_in(self, window, keep: np.ndarray):
        """The edges of the regions ``keep`` (:meth:`regions_meeting` ``window``), each once:
        ``(a, b)`` (m, 2) coordinates of their ends, their hidden layer; the segments of the
        decision boundary among the refined regions that meet ``window``. An edge that
        meets the window lies on two regions that do, so no visible edge is missing."""
        from splinecam.geometry import meets_window
        f = self._faces
        verts, off = take(f.face_verts, f.face_offsets, keep)
        he = _core.halfedges(f.num_vertices, off, verts)
        first = _first_halfedges(he)
        ends = np.stack([self._xy[he["edge_lo"]], self._xy[he["edge_hi"]]], axis=1)
        he_layer = take(f.he_layer, f.face_offsets, keep)[0]
        layer = np.asarray(he_layer[first], np.int32)
        decision = np.zeros((0, 2, 2))
        if self._decision is not None:
            doff, dverts = self._decision["faces"][:2]
            dkeep = np.flatnonzero(meets_window(self._xy, doff, window, verts=dverts))
            dv, do = take(dverts, doff, dkeep)
            dhe = _core.halfedges(len(self._xy), do, dv)
            h = _first_halfedges(dhe)
            t = dhe["twin"][h]
            w = np.asarray(self._decision["winner"])[dkeep]
            inner = t >= 0
            cross = np.zeros(len(h), bool)
            cross[inner] = w[dhe["face"][h[inner]]] != w[dhe["face"][t[inner]]]
            decision = np.stack([self._xy[dhe["edge_lo"][cross]], self._xy[dhe["edge_hi"][cross]]], axis=1)
        return ends, layer, decision

    def polygons(self) -> List[np.ndarray]:
        """Return one polygon per region.

        Returns
        -------
        list of numpy.ndarray
            ``F`` arrays (k, 2) float64, counter-clockwise, not closed (the first vertex
            is not repeated), in region order.

        Examples
        --------
        >>> import splinecam
        >>> from splinecam import zoo
        >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
        >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
        >>> polys = P.polygons()
        >>> len(polys) == P.num_regions, polys[0].shape[1]
        (True, 2)
        """
        coords, off = self.faces()
        return np.split(coords, off[1:-1])

    def areas(self) -> np.ndarray:
        """Compute the area of every region.

        Shoelace formula, each region relative to one of its own vertices: accurate
        wherever the slice lies in the plane.

        Returns
        -------
        numpy.ndarray
            (F,) float64 areas; they sum to ``P.slice.area``.

        Examples
        --------
        >>> import splinecam
        >>> from splinecam import zoo
        >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
        >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
        >>> a = P.areas()
        >>> a.shape == (P.num_regions,), round(float(a.sum()), 12)
        (True, 4.0)
        """
        coords, off = self.faces()
        return polygon_areas(coords, off)

    def centroids(self, regions=None) -> np.ndarray:
        """Compute the vertex mean of every region: an interior point of the convex region.

        The centre of mass of each region is the second value of
        :func:`splinecam.analysis.stats.region_moments`.

        Parameters
        ----------
        regions : int array-like, optional
            Only these regions (default: all).

        Returns
        -------
        numpy.ndarray
            (F, 2) float64 plane coordinates, or one row per region given.
        """
        coords, off = self.faces() if regions is None else self._faces_of(np.asarray(regions, np.int64))
        return np.add.reduceat(coords, off[:-1], axis=0) / np.diff(off)[:, None]

    def parents(self, layer: int) -> np.ndarray:
        """Find the region of an earlier layer's partition that contains each region.

        Parameters
        ----------
        layer : int
            A hidden layer, ``1..num_layers``.

        Returns
        -------
        numpy.ndarray
            (F,) int64 region indices of ``at_layer(layer)``.

        Raises
        ------
        ValueError
            When ``layer`` is outside ``1..num_layers``.
        """
        if not 1 <= layer <= self.num_layers:
            raise ValueError(f"layer must be in 1..{self.num_layers}; got {layer}")
        anc = np.arange(self.num_regions)
        for l in range(self.num_layers, layer, -1):
            anc = self._layers[l - 1].face_parent[anc]
        return anc

    def at_layer(self, layer: int) -> "Partition":
        """Return the partition after hidden layer ``layer``: same interface, without the decision boundary.

        Its regions are those of the first ``layer`` hidden layers; the model's output
        is not affine on them, so the queries of the model's output (``affine``,
        ``slope_norms``, ``sample_decision_boundary``) are refused there.

        Parameters
        ----------
        layer : int
            A hidden layer, ``1..num_layers`` (1-based).

        Returns
        -------
        Partition
            A view sharing this partition's arrays.

        Raises
        ------
        ValueError
            When ``layer`` is outside ``1..num_layers``.

        Examples
        --------
        >>> import splinecam
        >>> from splinecam import zoo
        >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
        >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
        >>> P.at_layer(1)
        Partition(regions=11, vertices=20, edges=30, layers=1)
        """
        if not 1 <= layer <= self.num_layers:
            raise ValueError(f"layer must be in 1..{self.num_layers}; got {layer}")
        return Partition(xy=self._xy, layers=self._layers[:layer], outputs=None, decision=None, net=self._net,
                         slice=self.slice, stats=self.run_info)

    def activation_patterns(self) -> np.ndarray:
        """Compute which hidden units are active (positive) on each region.

        Evaluated by a forward pass at each region's centroid (an interior point of the
        convex region). Needs the model.

        Returns
        -------
        numpy.ndarray
            (F, total units) bool, the layers' units concatenated in order.

        Raises
        ------
        ValueError
            When the partition was opened without its model.

        Examples
        --------
        >>> import splinecam
        >>> from splinecam import zoo
        >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
        >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
        >>> P.activation_patterns().shape
        (21, 16)
        """
        return self._need_net().patterns(_Inputs(self.slice, self.centroids()), self.num_layers)

    def patterns_at(self, points) -> np.ndarray:
        """Compute the model's activation pattern at plane points (batch by batch).

        Parameters
        ----------
        points : array-like
            (n, 2) plane coordinates.

        Returns
        -------
        numpy.ndarray
            (n, total units) bool: which hidden units are positive at each point.

        Raises
        ------
        ValueError
            When the partition was opened without its model.
        """
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
        """Return the affine map the model is on one region, in plane coordinates: ``y(u) = A @ u + c``.

        Parameters
        ----------
        region : int
            The region index, ``0..num_regions - 1``.

        Returns
        -------
        A : numpy.ndarray
            (C, 2) float64 slope, ``C`` the number of model outputs.
        c : numpy.ndarray
            (C,) float64 offset.

        Raises
        ------
        IndexError
            When ``region`` is out of range.
        ValueError
            On an ``at_layer`` partition (the output is not affine on its regions).

        Examples
        --------
        >>> import splinecam
        >>> from splinecam import zoo
        >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
        >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
        >>> A, c = P.affine(0)
        >>> A.shape, c.shape
        ((1, 2), (1,))
        """
        A, c = self._affine_all
        if not 0 <= region < self.num_regions:
            raise IndexError(f"region {region} out of range 0..{self.num_regions - 1}")
        return A[region].copy(), c[region].copy()

    def affine_maps(self) -> Tuple[np.ndarray, np.ndarray]:
        """Return every region's affine map (see :meth:`affine`).

        Returns
        -------
        A : numpy.ndarray
            (F, C, 2) float64 slopes.
        c : numpy.ndarray
            (F, C) float64 offsets.

        Raises
        ------
        ValueError
            On an ``at_layer`` partition.
        """
        A, c = self._affine_all
        return A.copy(), c.copy()

    def slope_norms(self, regions=None) -> np.ndarray:
        """Compute the Frobenius norm of each region's slope ``A`` (the figures' colouring).

        Parameters
        ----------
        regions : int array-like, optional
            Only these regions (default: all).

        Returns
        -------
        numpy.ndarray
            (F,) float64, or one value per region given.

        Raises
        ------
        ValueError
            On an ``at_layer`` partition.
        """
        A, _ = self._affine_all if regions is None else self._affine_fit(np.asarray(regions, np.int64))
        return np.sqrt((A ** 2).sum(axis=(1, 2)))

    # -- point location ------------------------------------------------------------------
    def locate(self, points) -> np.ndarray:
        """Find the region that contains each plane point.

        Points on an edge get one of the regions they touch: the one whose activation
        pattern the model has at the point, if any (without the model, the region the
        point is deepest inside). A grid index over the regions makes each query look at
        a few regions only.

        Parameters
        ----------
        points : array-like
            (n, 2) plane coordinates.

        Returns
        -------
        numpy.ndarray
            (n,) int64 region indices; -1 for points outside the domain.

        Examples
        --------
        >>> import splinecam
        >>> from splinecam import zoo
        >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
        >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
        >>> P.locate([[0.0, 0.0], [0.5, -0.5], [2.0, 0.0]])
        array([17, 17, -1])
        """
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
        f = self._faces
        return PolygonIndex(self._xy, f.face_offsets, f.face_verts)  # over the vertex ids: no (H, 2) copy

    # -- statistics and sampling (splinecam.analysis.stats, splinecam.analysis.sampling) --------------------
    def stats(self) -> dict:
        """Summarise the partition: regions, regions per layer, area, eccentricity, boundary length, ...

        See :func:`splinecam.analysis.stats.summary` for the keys.

        Returns
        -------
        dict
            Plain Python values (ready for JSON).

        Examples
        --------
        >>> import splinecam
        >>> from splinecam import zoo
        >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
        >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
        >>> s = P.stats()
        >>> s["regions"], s["regions_per_layer"], s["decision_segments"]
        (21, [11, 21], 4)
        """
        from splinecam.analysis.stats import summary
        return summary(self)

    def regions_per_layer(self) -> np.ndarray:
        """Count the regions after each hidden layer.

        Returns
        -------
        numpy.ndarray
            (L,) int64; the last entry is :attr:`num_regions`.
        """
        from splinecam.analysis.stats import regions_per_layer
        return regions_per_layer(self)

    def eccentricity(self) -> np.ndarray:
        """Compute each region's eccentricity: the square root of the ratio of its principal second moments of area.

        Returns
        -------
        numpy.ndarray
            (F,) float64, 1 for round regions, larger for elongated ones (see
            :func:`splinecam.analysis.stats.region_eccentricity`).
        """
        from splinecam.analysis.stats import region_eccentricity
        return region_eccentricity(self)

    def local_complexity(self, bins=64):
        """Compute the density of regions (regions per unit area) on a grid, from exact area fractions per cell.

        See :func:`splinecam.analysis.stats.local_complexity`.

        Parameters
        ----------
        bins : int or (int, int)
            Number of cells along x and y.

        Returns
        -------
        density : numpy.ndarray
            (nx, ny) float64 regions per unit area (NaN outside the domain).
        xedges : numpy.ndarray
            (nx + 1,) float64 cell edges along x.
        yedges : numpy.ndarray
            (ny + 1,) float64 cell edges along y.

        Raises
        ------
        ValueError
            When a number of bins is not positive.
        """
        from splinecam.analysis.stats import local_complexity
        return local_complexity(self, bins)

    def decision_boundary_length(self) -> float:
        """Compute the total length of the decision boundary.

        Returns
        -------
        float
            The length in plane units (0.0 without a decision boundary).
        """
        from splinecam.analysis.stats import decision_boundary_length
        return decision_boundary_length(self)

    def regions_on_boundary(self) -> np.ndarray:
        """Find the regions the decision boundary passes through.

        Returns
        -------
        numpy.ndarray
            (k,) int64 sorted region indices.
        """
        from splinecam.analysis.stats import regions_on_boundary
        return regions_on_boundary(self)

    def neighbor_pairs(self) -> np.ndarray:
        """List the pairs of neighbouring regions (sharing an edge): the edges of the region adjacency graph.

        Returns
        -------
        numpy.ndarray
            (K, 2) int64, each pair once with ``pairs[:, 0] < pairs[:, 1]``, sorted.
            Regions meeting only at a vertex are not neighbours.

        See Also
        --------
        adjacency_matrix, region_adjacency_graph

        Examples
        --------
        >>> import splinecam
        >>> from splinecam import zoo
        >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
        >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
        >>> P.neighbor_pairs()[:3].tolist()
        [[0, 1], [0, 14], [1, 9]]
        """
        from splinecam.analysis.stats import neighbor_pairs
        return neighbor_pairs(self)

    def adjacency_matrix(self):
        """Build the region adjacency graph as a sparse matrix of shared boundary lengths.

        Returns
        -------
        scipy.sparse.csr_matrix
            (F, F) float64, symmetric: entry ``(i, j)`` is the length of the boundary
            regions ``i`` and ``j`` share.

        Raises
        ------
        ImportError
            When scipy is not installed.
        """
        from splinecam.analysis.stats import adjacency_matrix
        return adjacency_matrix(self)

    def region_adjacency_graph(self):
        """Build the region adjacency (dual) graph as a ``networkx.Graph``.

        Nodes are regions (attributes ``area``, ``centroid``), edges join neighbours
        (attribute ``length``, the shared boundary length). Not to be confused with
        :meth:`to_networkx`, the planar graph of vertices and edges.

        Returns
        -------
        networkx.Graph
            The dual graph.

        Raises
        ------
        ImportError
            When networkx is not installed (it is not a dependency of splinecam).

        Examples
        --------
        >>> import splinecam
        >>> from splinecam import zoo
        >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
        >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
        >>> G = P.region_adjacency_graph()
        >>> G.number_of_nodes(), G.number_of_edges() == len(P.neighbor_pairs())
        (21, True)
        """
        from splinecam.analysis.stats import region_adjacency_graph
        return region_adjacency_graph(self)

    def adjacency(self, sparse: bool = False):
        """Return the region adjacency (dual) graph as pairs of neighbouring regions (and, optionally, a sparse matrix).

        Kept for compatibility: ``P.adjacency()`` is :meth:`neighbor_pairs`, and
        ``P.adjacency(sparse=True)`` is ``(P.neighbor_pairs(), P.adjacency_matrix())``.

        Parameters
        ----------
        sparse : bool
            Also return the scipy CSR matrix of shared boundary lengths.

        Returns
        -------
        pairs : numpy.ndarray
            (K, 2) int64 pairs of regions sharing an edge.
        matrix : scipy.sparse.csr_matrix
            (F, F) shared boundary lengths; only with ``sparse=True``.

        Raises
        ------
        ImportError
            With ``sparse=True`` when scipy is not installed.
        """
        from splinecam.analysis.stats import adjacency
        return adjacency(self, sparse=sparse)

    def sample_decision_boundary(self, n: int, rng=None, *, seed=None):
        """Draw ``n`` points uniformly distributed (by length) on the decision boundary.

        Parameters
        ----------
        n : int
            Number of points.
        rng : None, int or numpy.random.Generator, optional
            Random source, as :func:`numpy.random.default_rng` takes it: ``None`` (the
            default) gives fresh points on every call, an int reproducible ones
            (``rng=0`` repeats the former default ``seed=0``).
        seed : int, optional
            Deprecated spelling of ``rng`` (``DeprecationWarning``).

        Returns
        -------
        BoundarySample
            A named tuple ``(points, inputs)``: plane points, a (n, 2) float64 numpy
            array, and the model inputs there, a ``(n, *input_shape)`` float64 torch
            tensor (``P.slice.to_input(points)``). See
            :func:`splinecam.analysis.sampling.sample_decision_boundary`.

        Raises
        ------
        ValueError
            When ``n`` is negative or there is no decision boundary in the slice.
        TypeError
            When both ``rng`` and ``seed`` are given.

        Examples
        --------
        >>> import splinecam
        >>> from splinecam import zoo
        >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
        >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
        >>> points, inputs = P.sample_decision_boundary(100, rng=0)
        >>> type(points).__name__, points.shape, type(inputs).__name__, tuple(inputs.shape)
        ('ndarray', (100, 2), 'Tensor', (100, 2))
        """
        from splinecam.analysis.sampling import as_generator, sample_decision_boundary
        return sample_decision_boundary(self, n, as_generator(rng, seed, caller="Partition.sample_decision_boundary"))

    def sample_regions(self, regions=None, n_per_region: int = 1, rng=None, *, seed=None):
        """Draw points uniformly distributed inside the chosen regions.

        Parameters
        ----------
        regions : int array-like, optional
            Region indices (repeats allowed); default every region.
        n_per_region : int
            Points drawn in each listed region.
        rng : None, int or numpy.random.Generator, optional
            Random source, as :func:`numpy.random.default_rng` takes it: ``None`` (the
            default) gives fresh points on every call, an int reproducible ones
            (``rng=0`` repeats the former default ``seed=0``).
        seed : int, optional
            Deprecated spelling of ``rng`` (``DeprecationWarning``).

        Returns
        -------
        RegionSample
            A named tuple ``(points, region)``: plane points, a (k * n_per_region, 2)
            float64 numpy array grouped by region, and the region of each point,
            (k * n_per_region,) int64. See
            :func:`splinecam.analysis.sampling.sample_regions`.

        Raises
        ------
        IndexError
            When a region index is out of range.
        ValueError
            When ``n_per_region`` is negative.
        TypeError
            When both ``rng`` and ``seed`` are given.

        Examples
        --------
        >>> import splinecam
        >>> from splinecam import zoo
        >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
        >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
        >>> points, region = P.sample_regions([3, 7], 2, rng=0)
        >>> region.tolist(), P.locate(points).tolist()
        ([3, 3, 7, 7], [3, 3, 7, 7])
        """
        from splinecam.analysis.sampling import as_generator, sample_regions
        return sample_regions(self, regions, n_per_region, as_generator(rng, seed, caller="Partition.sample_regions"))

    # -- exports -------------------------------------------------------------------------
    @property
    def __geo_interface__(self) -> dict:
        """GeoJSON FeatureCollection (dict) of the region polygons in plane coordinates, for shapely and geopandas.

        One ``Polygon`` feature per region, in region order, with ``id`` the region
        index and properties ``kind`` (``"region"``), ``region``, ``area`` and, on a
        full partition, ``slope_norm`` and ``class``; the decision boundary is left out
        (see :meth:`to_geojson` for it). ``geopandas.GeoDataFrame.from_features(P)``
        and ``shapely.geometry.shape(feature["geometry"])`` read it.
        """
        from splinecam.analysis.export import to_geojson
        return to_geojson(self, decision_boundary=False)

    def to_geojson(self, path=None, *, indent=None, decision_boundary: bool = True) -> dict:
        """Convert the partition to a GeoJSON FeatureCollection of the regions and decision segments.

        See :func:`splinecam.analysis.export.to_geojson` for the features and their
        properties.

        Parameters
        ----------
        path : str or path-like, optional
            Also write it as JSON there.
        indent : int, optional
            Indentation of the JSON file.
        decision_boundary : bool
            Include a ``LineString`` per decision-boundary segment.

        Returns
        -------
        dict
            The FeatureCollection.

        Examples
        --------
        >>> import splinecam
        >>> from splinecam import zoo
        >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
        >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
        >>> kinds = [f["properties"]["kind"] for f in P.to_geojson()["features"]]
        >>> kinds.count("region"), kinds.count("decision_boundary")
        (21, 4)
        """
        from splinecam.analysis.export import to_geojson
        return to_geojson(self, path, indent=indent, decision_boundary=decision_boundary)

    def to_svg(self, path=None, **kwargs) -> str:
        """Draw the partition as plain SVG (no matplotlib needed).

        Parameters
        ----------
        path : str or path-like, optional
            Also write the SVG there.
        **kwargs
            Options of :func:`splinecam.analysis.export.to_svg`: ``width``, ``margin``,
            ``fill``, ``edgecolor``, ``linewidth``, ``edge_alpha``, ``boundary_color``,
            ``boundary_width``, ``title``.

        Returns
        -------
        str
            The SVG document.
        """
        from splinecam.analysis.export import to_svg
        return to_svg(self, path, **kwargs)

    def save(self, path, **kwargs) -> str:
        """Write the partition to ``path``, in the format its extension names.

        - no extension, or an existing directory: a store of ``.npy`` arrays
          (:func:`splinecam.result.store.save`), which :meth:`load` opens memory-mapped;
        - ``.npz``: numpy arrays (:func:`splinecam.analysis.export.save_npz`), which
          :meth:`load` opens again and ``np.load`` reads;
        - ``.geojson``, ``.json``: GeoJSON (:func:`splinecam.analysis.export.to_geojson`);
        - ``.gt``, ``.graphml``, ``.dot``, ``.gml``, each also compressed (``.gt.gz``,
          ``.gt.bz2``, ``.gt.xz``, ...): the planar graph in graph-tool's formats
          (:func:`splinecam.analysis.export.save_graph_tool`; needs graph-tool);
        - ``.png``, ``.svg``, ``.pdf``, ``.jpg``, ... (every format matplotlib's
          ``savefig`` writes): a figure (:func:`splinecam.plot.save`).

        Parameters
        ----------
        path : str or path-like
            The file or directory.
        **kwargs
            Options of the writer: ``rtol`` for a store; ``compressed``, ``loadable``
            for ``.npz``; ``indent``, ``decision_boundary`` for GeoJSON; ``dpi``,
            ``size`` and the options of :meth:`plot` for a figure.

        Returns
        -------
        str
            The path written (for ``.npz`` as ``np.savez`` names it).

        Raises
        ------
        ValueError
            When the extension is none of the above (the message lists them).

        Examples
        --------
        >>> import os, tempfile, splinecam
        >>> from splinecam import zoo
        >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
        >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
        >>> d = tempfile.mkdtemp()
        >>> path = P.save(os.path.join(d, "p.npz"))
        >>> os.path.basename(path), splinecam.Partition.load(path).num_regions
        ('p.npz', 21)
        >>> os.path.basename(P.save(os.path.join(d, "run")))
        'run'
        """
        kind = _save_kind(path)
        if kind == "store":
            from splinecam.result import store
            return store.save(self, path, **kwargs)
        from splinecam.analysis import export
        if kind == "npz":
            return export.save_npz(self, path, **kwargs)
        if kind == "geojson":
            export.to_geojson(self, path, **kwargs)
        elif kind == "graph":
            export.save_graph_tool(self, path, **kwargs)
        else:
            from splinecam.analysis import plot
            plot.save(self, path, **kwargs)
        return os.fspath(path)

    # -- checks and exports --------------------------------------------------------------
    def validate(self) -> None:
        """Check that the regions (and the decision-boundary refinement) form a valid planar subdivision.

        Closed cycles, consistent twins and labels, Euler's formula.

        Raises
        ------
        RuntimeError
            When they do not; the message says what is wrong.
        """
        f = self._faces
        msg = _core.validate(f.num_vertices, f.face_offsets, f.face_verts, f.he_layer, f.he_unit)
        if msg:
            raise RuntimeError(f"invalid partition: {msg}")
        if self._decision is not None:
            msg = _core.validate(len(self._xy), *self._decision["faces"])
            if msg:
                raise RuntimeError(f"invalid decision-boundary refinement: {msg}")

    def to_graph_tool(self):
        """Convert the planar graph to an undirected ``graph_tool.Graph``.

        Vertex property ``pos`` (vector<double>), edge properties ``layer``, ``unit``
        (int) and ``decision`` (bool), in the order of :attr:`vertices` and
        :attr:`edges`.

        Returns
        -------
        graph_tool.Graph
            The planar graph.

        Raises
        ------
        ImportError
            When graph-tool is not installed (it is not on PyPI).
        """
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
        """Convert the planar graph (vertices and edges) to a ``networkx.Graph``.

        Node attribute ``pos`` (an ``(x, y)`` tuple), edge attributes ``layer``,
        ``unit``, ``decision``; nodes are the indices of :attr:`vertices`. The region
        adjacency (dual) graph is :meth:`region_adjacency_graph`.

        Returns
        -------
        networkx.Graph
            The planar graph.

        Raises
        ------
        ImportError
            When networkx is not installed (it is not a dependency of splinecam).
        """
        try:
            import networkx as nx
        except ImportError as e:
            raise ImportError("to_networkx() needs networkx (pip install networkx)") from e
        g = nx.Graph()
        g.add_nodes_from((i, {"pos": tuple(p)}) for i, p in enumerate(self.vertices))
        g.add_edges_from((int(a), int(b), {"layer": int(l), "unit": int(u), "decision": bool(d)})
                         for (a, b), l, u, d in zip(self.edges, self.edge_layer, self.edge_unit, self.edge_decision))
        return g

    def explore(self, **kwargs):
        """Pan and zoom this partition's slice interactively, every view computed exactly.

        :func:`splinecam.explore`: a notebook cell inside Jupyter, else a page on
        ``localhost``. Needs the model: a partition opened from a store without one
        cannot be explored.

        Parameters
        ----------
        **kwargs
            Options of :func:`splinecam.explore`.

        Returns
        -------
        object
            What :func:`splinecam.explore` returns.

        Raises
        ------
        ValueError
            When the partition was opened without its model.
        """
        from splinecam.explorer import explore
        return explore(self._need_net().gm, self.slice, **kwargs)

    def plot(self, ax=None, *, color="slope", cmap=None, edgecolor="k", linewidth=None, alpha=1.0,
             edges_by_layer: bool = False, boundary_color="#d62728", boundary_width: float = 2.0, window=None,
             colorbar=None, title="auto", axis: bool = True, legend=None):
        """Draw the regions with the decision boundary on top (matplotlib).

        Regions are coloured by slope norm (by activation pattern for ``at_layer``
        partitions); a new figure (no ``ax``) gets a colorbar, a title and axis labels.
        The same as :func:`splinecam.plot.plot_partition_object`.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw; default a new 6 x 6 inch figure.
        color : str or array-like
            ``"slope"`` (the Frobenius norm of each region's slope; falls back to
            ``"pattern"`` on an ``at_layer`` partition), ``"pattern"`` (a colour per
            activation pattern), ``"class"`` (predicted class, with a legend), one
            matplotlib colour for all regions, or one value per region (mapped
            through ``cmap``).
        cmap : str, optional
            The colormap (default: viridis for values, tab20 for patterns, tab10 for
            classes).
        edgecolor : matplotlib colour
            Colour of the region edges.
        linewidth : float, optional
            Width of the region edges in points; default thinner for denser partitions
            (:func:`splinecam.plot.edge_width`).
        alpha : float
            Opacity of the region fills.
        edges_by_layer : bool
            Colour the edges by the hidden layer that made them (with a legend).
        boundary_color : matplotlib colour
            Colour of the decision boundary.
        boundary_width : float
            Width of the decision boundary in points.
        window : (xmin, xmax, ymin, ymax), optional
            Zoom in: only the regions that meet the window are drawn (default: the
            whole slice).
        colorbar : bool, optional
            A colorbar for value colourings (default: on a new figure only).
        title : str or None
            ``"auto"``: the number of regions, on a new figure only; ``None``: none.
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
        >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
        >>> P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=3), sl, progress=False)
        >>> ax = P.plot(color="class", window=(-0.5, 0.5, -0.5, 0.5))
        >>> ax.get_xlim()
        (-0.5, 0.5)
        """
        from splinecam.analysis.plot import plot_partition_object
        return plot_partition_object(self, ax=ax, color=color, cmap=cmap, edgecolor=edgecolor, linewidth=linewidth,
                                     alpha=alpha, edges_by_layer=edges_by_layer, boundary_color=boundary_color,
                                     boundary_width=boundary_width, window=window, colorbar=colorbar, title=title,
                                     axis=axis, legend=legend)

    def _repr_png_(self):  # exercised in a notebook by tests/project/test_packaging.py
        import io
        from matplotlib.figure import Figure
        fig = Figure(figsize=(5, 5))
        ax = fig.add_subplot()
        self.plot(ax=ax, colorbar=self._outputs is not None, title=f"{self.num_regions:,} linear regions")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        return buf.getvalue()


_GRAPH_FORMATS = ("gt", "graphml", "dot", "gml")
_COMPRESSIONS = ("gz", "bz2", "xz")
_FIGURE_FORMATS_FALLBACK = ("eps", "jpeg", "jpg", "pdf", "pgf", "png", "ps", "raw", "rgba", "svg", "svgz", "tif",
                            "tiff", "webp")


def _figure_formats() -> Tuple[str, ...]:
    """The file extensions matplotlib's ``savefig`` writes here."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
        return tuple(sorted(FigureCanvasBase.get_supported_filetypes()))
    except Exception:  # pragma: no cover - matplotlib is a dependency
        return _FIGURE_FORMATS_FALLBACK


def _save_kind(path) -> str:
    """What :meth:`Partition.save` writes to ``path``: ``"store"``, ``"npz"``,
    ``"geojson"``, ``"graph"`` or ``"figure"``; a ``ValueError`` listing every format for
    any other extension."""
    p = os.fspath(path)
    name = os.path.basename(os.path.normpath(p))
    if os.path.isdir(p) or "." not in name:
        return "store"
    parts = name.lower().split(".")
    ext = parts[-1]
    if ext == "npz":
        return "npz"
    if ext in ("geojson", "json"):
        return "geojson"
    if ext in _GRAPH_FORMATS or (ext in _COMPRESSIONS and len(parts) > 2 and parts[-2] in _GRAPH_FORMATS):
        return "graph"
    if ext in _figure_formats():
        return "figure"
    rows = [("a directory", "a path without an extension (or an existing directory): a store of .npy arrays, "
                            "opened again by splinecam.Partition.load(path)"),
            (".npz", "numpy arrays, opened again by splinecam.Partition.load(path)"),
            (".geojson .json", "GeoJSON of the regions and the decision boundary"),
            (" ".join("." + g for g in _GRAPH_FORMATS), "the planar graph with graph-tool (each also compressed: "
                                                        + ", ".join(".gt." + c for c in _COMPRESSIONS) + ", ...)"),
            ("figures", " ".join("." + e for e in _figure_formats()) + " (matplotlib)")]
    w = max(len(r[0]) for r in rows)
    raise ValueError(f"Partition.save cannot write {name!r}: .{ext} is not one of its formats. By the extension "
                     f"of the path, it writes\n" + "\n".join(f"  {a.ljust(w)}  {b}" for a, b in rows))

class _Inputs:
    """Model inputs at plane points, made batch by batch (see :meth:`Network.patterns`)."""

    def __init__(self, slice: Slice, points: np.ndarray):
        self.slice, self.points = slice, points

    def __len__(self) -> int:
        return len(self.points)

    def __call__(self, a: int, b: int):
        return self.slice.to_input(self.points[a:b])


def _first_halfedges(he: dict) -> np.ndarray:
    """The first half-edge (in face order) of each undirected edge of ``_core.halfedges``'s table."""
    edge_of = he["edge_of"]
    first = np.full(len(he["edge_lo"]), -1, np.int64)
    first[edge_of[::-1]] = np.arange(len(edge_of))[::-1]
    return first


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
