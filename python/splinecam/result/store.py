"""A partition on disk: a directory of ``.npy`` arrays, opened memory-mapped.

Layout (``FORMAT`` 1)::

    meta.json                  sizes, the snapping rtol, run_info (what is JSON), format
    slice_origin.npy, slice_basis.npy, slice_polygon.npy
    xy.npy                     (V, 2) every vertex
    outputs.npy                (V, C) the model's outputs at the vertices (when known)
    layer_001/face_offsets.npy, face_verts.npy, he_layer.npy, he_unit.npy, face_parent.npy
    ...
    decision/face_offsets.npy, face_verts.npy, he_layer.npy, he_unit.npy, winner.npy, parent.npy

:func:`load` maps the arrays (``mmap_mode="r"``): nothing is read until it is used, so a
partition larger than memory can be opened, and its regions, edges and per-layer
partitions queried piece by piece. The model is not stored; queries that evaluate it
(``activation_patterns``, ``layer_names``) need it passed to :func:`load` (``locate``
works without it, taking the deepest region for points on edges).

The same arrays also travel inside a ``.npz`` file: ``P.save("p.npz")``
(:func:`splinecam.analysis.export.save_npz`) writes them under the keys
``store/<name>`` (``store/xy``, ``store/layer_001/face_offsets``, ...) next to its plain
arrays, with ``meta.json`` as the text array ``store/meta.json``, and :func:`load` opens
such a file as well (read into memory: a zipped array cannot be memory-mapped).
"""
from __future__ import annotations

import json
import os
from typing import Optional

import numpy as np
import torch

from splinecam.result.partition import Layer, Partition
from splinecam.slice import Slice

__all__ = ["save", "load", "Writer", "NpyColumn", "FORMAT", "is_store", "npz_arrays", "NPZ_PREFIX"]

FORMAT = 1
#: the prefix of the store's arrays inside a ``.npz`` file
NPZ_PREFIX = "store/"
_FACE_FIELDS = ("face_offsets", "face_verts", "he_layer", "he_unit")


def is_store(path) -> bool:
    """Tell whether ``path`` is a directory written by :func:`save`.

    Parameters
    ----------
    path : str or path-like
        The directory.

    Returns
    -------
    bool
        Whether it holds a complete store (its ``meta.json``).
    """
    return os.path.isfile(os.path.join(os.fspath(path), "meta.json"))


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, (bool, int, float, str)) or v is None:
            out[k] = v
        elif isinstance(v, (np.integer, np.floating)):
            out[k] = v.item()
    return out


def _write(path, name, a):
    np.save(os.path.join(path, name + ".npy"), np.ascontiguousarray(a))


class NpyColumn:
    """A ``.npy`` file of known dtype and shape, written front to back in chunks along
    its first axis: an array larger than memory is written without ever being whole.

    Parameters
    ----------
    path : str
        The file (``name.npy``).
    dtype : numpy dtype
        Its dtype.
    shape : tuple of int
        Its shape; the chunks' lengths along the first axis must sum to ``shape[0]``.
    """

    def __init__(self, path, dtype, shape):
        self.path, self.dtype, self.shape = os.fspath(path), np.dtype(dtype), tuple(int(s) for s in shape)
        self.left = self.shape[0]
        self._fh = open(self.path, "wb")
        np.lib.format.write_array_header_1_0(self._fh, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                        "fortran_order": False, "shape": self.shape})

    def write(self, a) -> None:
        """Append the chunk ``a`` (rows of the array)."""
        a = np.ascontiguousarray(a, dtype=self.dtype)
        if a.shape[1:] != self.shape[1:] or len(a) > self.left:
            raise ValueError(f"{self.path}: a chunk of shape {a.shape} does not fit the {self.left} rows left of "
                             f"{self.shape}")
        self._fh.write(a.data)
        self.left -= len(a)

    def close(self) -> np.ndarray:
        """Finish the file and return it memory-mapped read-only."""
        self._fh.close()
        if self.left:
            raise ValueError(f"{self.path}: {self.left} of {self.shape[0]} rows were never written")
        return np.load(self.path, mmap_mode="r")


class Writer:
    """Write a store piece by piece.

    The stitcher writes each level as it finishes it and keeps only the memory-mapped
    copy: :meth:`slice`, :meth:`array`, :meth:`layer`, :meth:`decision`, then
    :meth:`finish` writes ``meta.json`` (a store without it is not one).

    Parameters
    ----------
    path : str or path-like
        The directory (created; a ``meta.json`` already there is removed first, so an
        interrupted write leaves no store behind).
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        os.makedirs(self.path, exist_ok=True)
        self.meta_path = os.path.join(self.path, "meta.json")
        if os.path.exists(self.meta_path):
            os.remove(self.meta_path)  # an interrupted write leaves no store behind
        self.num_vertices: list = []
        self.decision_layer = None
        self.has_outputs = False

    def slice(self, sl: Slice) -> None:
        """Write the slice's plane and polygon.

        Parameters
        ----------
        sl : Slice
            The slice of the partition.
        """
        _write(self.path, "slice_origin", sl.origin.numpy())
        _write(self.path, "slice_basis", sl.basis.numpy())
        _write(self.path, "slice_polygon", sl.polygon)

    def array(self, name: str, a) -> np.ndarray:
        """Write one array of the store.

        Parameters
        ----------
        name : str
            Its name (``"xy"``, ``"outputs"``): written as ``name.npy``.
        a : array-like
            The array.

        Returns
        -------
        numpy.ndarray
            The written array, memory-mapped read-only.
        """
        _write(self.path, name, a)
        if name == "outputs":
            self.has_outputs = True
        return np.load(os.path.join(self.path, name + ".npy"), mmap_mode="r")

    def column(self, name: str, dtype, shape) -> NpyColumn:
        """Open one array of the store (``"xy"``, ``"outputs"``) to be written in chunks.

        Parameters
        ----------
        name : str
            Its name: written as ``name.npy``.
        dtype : numpy dtype
            Its dtype.
        shape : tuple of int
            Its shape.

        Returns
        -------
        NpyColumn
            Takes the chunks; its ``close()`` returns the array memory-mapped.
        """
        if name == "outputs":
            self.has_outputs = True
        return NpyColumn(os.path.join(self.path, name + ".npy"), dtype, shape)

    def layer(self, f: Layer) -> Layer:
        """Write the next hidden layer's faces (as ``layer_NNN/``).

        Parameters
        ----------
        f : Layer
            The partition after that layer.

        Returns
        -------
        Layer
            The same layer over the written arrays, memory-mapped read-only.
        """
        d = self.layer_dir()
        for name in _FACE_FIELDS + ("face_parent",):
            _write(d, name, getattr(f, name))
        return self.layer_written(f.num_vertices)

    def layer_dir(self) -> str:
        """The directory of the next hidden layer (created), for a caller that writes its
        arrays itself (:class:`NpyColumn`); :meth:`layer_written` then records it.

        Returns
        -------
        str
            ``layer_NNN/`` of the next layer.
        """
        d = os.path.join(self.path, f"layer_{len(self.num_vertices) + 1:03d}")
        os.makedirs(d, exist_ok=True)
        return d

    def layer_written(self, num_vertices: int) -> Layer:
        """Record the layer whose arrays were written to :meth:`layer_dir`.

        Parameters
        ----------
        num_vertices : int
            Its bound on the vertex ids (the layer's ``num_vertices``).

        Returns
        -------
        Layer
            The layer over the written arrays, memory-mapped read-only.
        """
        d = self.layer_dir()
        self.num_vertices.append(int(num_vertices))
        return Layer(*(np.load(os.path.join(d, n + ".npy"), mmap_mode="r") for n in _FACE_FIELDS + ("face_parent",)),
                     int(num_vertices))

    def decision(self, dec: dict) -> dict:
        """Write the decision-boundary refinement (as ``decision/``).

        Parameters
        ----------
        dec : dict
            ``faces`` (offsets, vertices, layers, units), ``winner``, ``layer`` and
            optionally ``parent``, as a Partition keeps it.

        Returns
        -------
        dict
            The same refinement over the written arrays, memory-mapped read-only.
        """
        d = self.decision_dir()
        for name, a in zip(_FACE_FIELDS, dec["faces"]):
            _write(d, name, a)
        _write(d, "winner", dec["winner"])
        _write(d, "parent", dec.get("parent", np.zeros(0, np.int64)))
        return self.decision_written(dec["layer"])

    def decision_dir(self) -> str:
        """The directory of the decision-boundary refinement (created), for a caller that
        writes its arrays itself; :meth:`decision_written` then records it.

        Returns
        -------
        str
            ``decision/``.
        """
        d = os.path.join(self.path, "decision")
        os.makedirs(d, exist_ok=True)
        return d

    def decision_written(self, layer: int) -> dict:
        """Record the refinement whose arrays were written to :meth:`decision_dir`.

        Parameters
        ----------
        layer : int
            The layer id of its edges (the number of hidden layers + 1).

        Returns
        -------
        dict
            As :meth:`decision` returns it.
        """
        d = self.decision_dir()
        self.decision_layer = int(layer)
        m = lambda n: np.load(os.path.join(d, n + ".npy"), mmap_mode="r")
        return {"faces": tuple(m(n) for n in _FACE_FIELDS), "winner": m("winner"), "layer": self.decision_layer,
                "parent": m("parent")}

    def finish(self, regions: int, run_info: dict, rtol=None) -> str:
        """Write ``meta.json`` last: from then on the directory is a complete store.

        Parameters
        ----------
        regions : int
            The number of regions.
        run_info : dict
            ``Partition.run_info``; its JSON-able values are kept.
        rtol : float, optional
            The snapping tolerance of the run (default: ``run_info["rtol"]``).

        Returns
        -------
        str
            The store's path.
        """
        meta = _meta(self.num_vertices, self.has_outputs, self.decision_layer, regions, run_info, rtol)
        with open(self.meta_path + ".tmp", "w") as fh:
            json.dump(meta, fh, indent=1)
        os.replace(self.meta_path + ".tmp", self.meta_path)  # written last: a store with meta.json is complete
        return self.path


def _meta(num_vertices, has_outputs, decision_layer, regions, run_info, rtol) -> dict:
    return dict(format=FORMAT, num_layers=len(num_vertices), num_vertices=[int(n) for n in num_vertices],
                has_outputs=bool(has_outputs), decision_layer=decision_layer, regions=int(regions),
                rtol=rtol if rtol is not None else run_info.get("rtol"), run_info=_jsonable(run_info))


def npz_arrays(P: Partition, *, rtol: Optional[float] = None) -> dict:
    """Collect the store of ``P`` as arrays for a ``.npz`` file.

    Parameters
    ----------
    P : Partition
        The partition.
    rtol : float, optional
        The snapping tolerance to record (default: ``P.run_info["rtol"]``).

    Returns
    -------
    dict
        ``{NPZ_PREFIX + name: array}`` for every array of the directory layout (``name``
        its path there without ``.npy``), plus ``NPZ_PREFIX + "meta.json"``, the
        metadata as a 0-d text array. ``np.savez(path, **arrays)`` writes a file that
        :func:`load` opens.
    """
    out = {"slice_origin": P.slice.origin.numpy(), "slice_basis": P.slice.basis.numpy(),
           "slice_polygon": P.slice.polygon, "xy": np.asarray(P._xy)}
    if P._outputs is not None:
        out["outputs"] = np.asarray(P._outputs)
    for l, f in enumerate(P._layers, start=1):
        for name in _FACE_FIELDS + ("face_parent",):
            out[f"layer_{l:03d}/{name}"] = np.asarray(getattr(f, name))
    dec = P._decision
    if dec is not None:
        for name, a in zip(_FACE_FIELDS, dec["faces"]):
            out[f"decision/{name}"] = np.asarray(a)
        out["decision/winner"] = np.asarray(dec["winner"])
        out["decision/parent"] = np.asarray(dec.get("parent", np.zeros(0, np.int64)))
    meta = _meta([f.num_vertices for f in P._layers], P._outputs is not None,
                 None if dec is None else int(dec["layer"]), P.num_regions, P.run_info, rtol)
    out = {NPZ_PREFIX + k: v for k, v in out.items()}
    out[NPZ_PREFIX + "meta.json"] = np.array(json.dumps(meta))
    return out


def save(P: Partition, path, *, rtol: Optional[float] = None) -> str:
    """Write ``P`` as a store: a directory of ``.npy`` arrays.

    Parameters
    ----------
    P : Partition
        The partition.
    path : str or path-like
        The directory (created; an existing store there is replaced).
    rtol : float, optional
        The snapping tolerance to record (default: ``P.run_info["rtol"]``); used to
        measure the rounding floors of activation patterns when the store is opened
        with a model.

    Returns
    -------
    str
        The path.
    """
    w = Writer(path)
    w.slice(P.slice)
    w.array("xy", P._xy)
    if P._outputs is not None:
        w.array("outputs", P._outputs)
    for f in P._layers:
        w.layer(f)
    if P._decision is not None:
        w.decision(P._decision)
    return w.finish(P.num_regions, P.run_info, rtol)


def load(path, model: Optional[torch.nn.Module] = None, *, mmap: bool = True) -> Partition:
    """Open a partition written by :func:`save` (a directory) or by ``P.save("p.npz")``.

    Parameters
    ----------
    path : str or path-like
        A store directory, or a ``.npz`` file written by
        :func:`splinecam.analysis.export.save_npz` with ``loadable=True`` (the default,
        and what ``P.save("p.npz")`` writes).
    model : torch.nn.Module, optional
        The network it was computed for, needed by queries that evaluate it
        (``activation_patterns``, ``patterns_at``, ``layer_names``, ``explore``).
    mmap : bool
        Memory-map the arrays of a directory (read-only) instead of reading them; a
        ``.npz`` file is always read into memory.

    Returns
    -------
    Partition
        The partition; ``run_info["store"]`` is ``path``.

    Raises
    ------
    FileNotFoundError
        When ``path`` is neither a store nor a file.
    ValueError
        When the store is of another format version, a ``.npz`` file holds only the
        plain arrays, or ``model`` has fewer hidden layers than the partition.
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        return _load_npz(path, model)
    if not is_store(path):
        raise FileNotFoundError(f"{path!r} is not a splinecam store (no meta.json): write one with P.save(path)")
    with open(os.path.join(path, "meta.json")) as fh:
        meta = json.load(fh)
    mode = "r" if mmap else None
    return _open(meta, lambda *p: np.load(os.path.join(path, *p) + ".npy", mmap_mode=mode), model, path)


def _load_npz(path: str, model) -> Partition:
    try:
        f = np.load(path, allow_pickle=False)
    except Exception as e:  # not a zip file, or not numpy's
        raise ValueError(f"{path!r} is neither a splinecam store directory nor a .npz file: {e}") from e
    with f:
        key = NPZ_PREFIX + "meta.json"
        if key not in f.files:
            raise ValueError(f"{path!r} holds the plain arrays of a partition only (written with loadable=False, "
                             f"by the command line before it stored more, or by another tool): read them with "
                             f"splinecam.analysis.export.load_npz(path); Partition.load needs a file written by "
                             f"P.save('p.npz')")
        meta = json.loads(str(f[key]))
        arrays = {k[len(NPZ_PREFIX):]: f[k] for k in f.files if k.startswith(NPZ_PREFIX) and k != key}
    return _open(meta, lambda *p: arrays["/".join(p)], model, path)


def _open(meta: dict, arr, model, path: str) -> Partition:
    """A Partition over the arrays ``arr(*parts)`` of a store whose ``meta.json`` is ``meta``."""
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path!r} holds store format {meta.get('format')!r}; this splinecam reads format {FORMAT}")
    sl = Slice(torch.from_numpy(np.array(arr("slice_origin"))), torch.from_numpy(np.array(arr("slice_basis"))),
               np.array(arr("slice_polygon")))
    layers = []
    for l, nv in enumerate(meta["num_vertices"], start=1):
        d = f"layer_{l:03d}"
        layers.append(Layer(*(arr(d, n) for n in _FACE_FIELDS), arr(d, "face_parent"), int(nv)))
    decision = None
    if meta["decision_layer"] is not None:
        decision = {"faces": tuple(arr("decision", n) for n in _FACE_FIELDS), "winner": arr("decision", "winner"),
                    "layer": int(meta["decision_layer"]), "parent": arr("decision", "parent")}
    net = None
    if model is not None:
        from splinecam.driver.tolerance import Tolerances
        from splinecam.network.model import Network
        net = Network.from_model(model, sl.input_shape)
        if net.num_layers < len(layers):
            raise ValueError(f"the model has {net.num_layers} hidden layers; the store at {path!r} holds "
                             f"{len(layers)}: not the model it was computed for")
        net.pattern_floors = Tolerances.for_slice(net, sl, meta.get("rtol") or 1e-10).pattern_floors()
    stats = dict(meta.get("run_info", {}))
    stats["store"] = path
    return Partition(xy=arr("xy"), layers=layers, outputs=arr("outputs") if meta["has_outputs"] else None,
                     decision=decision, net=net, slice=sl, stats=stats)
