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
"""
from __future__ import annotations

import json
import os
from typing import Optional

import numpy as np
import torch

from splinecam.result.partition import Layer, Partition
from splinecam.slice import Slice

__all__ = ["save", "load", "Writer", "FORMAT", "is_store"]

FORMAT = 1
_FACE_FIELDS = ("face_offsets", "face_verts", "he_layer", "he_unit")


def is_store(path) -> bool:
    """Whether ``path`` is a directory written by :func:`save`."""
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


class Writer:
    """A store written piece by piece (the stitcher writes each level as it finishes it
    and keeps only the memory-mapped copy): ``slice``, ``array``, ``layer``,
    ``decision``, then ``finish`` writes ``meta.json`` (a store without it is not one)."""

    def __init__(self, path):
        self.path = os.fspath(path)
        os.makedirs(self.path, exist_ok=True)
        self.meta_path = os.path.join(self.path, "meta.json")
        if os.path.exists(self.meta_path):
            os.remove(self.meta_path)  # an interrupted write leaves no store behind
        self.num_vertices: list = []
        self.decision_layer = None
        self.has_outputs = False

    def slice(self, sl: Slice):
        _write(self.path, "slice_origin", sl.origin.numpy())
        _write(self.path, "slice_basis", sl.basis.numpy())
        _write(self.path, "slice_polygon", sl.polygon)

    def array(self, name: str, a) -> np.ndarray:
        """Write ``a`` as ``name.npy``; returns it memory-mapped."""
        _write(self.path, name, a)
        if name == "outputs":
            self.has_outputs = True
        return np.load(os.path.join(self.path, name + ".npy"), mmap_mode="r")

    def layer(self, f: Layer) -> Layer:
        l = len(self.num_vertices) + 1
        d = os.path.join(self.path, f"layer_{l:03d}")
        os.makedirs(d, exist_ok=True)
        for name in _FACE_FIELDS + ("face_parent",):
            _write(d, name, getattr(f, name))
        self.num_vertices.append(int(f.num_vertices))
        return Layer(*(np.load(os.path.join(d, n + ".npy"), mmap_mode="r") for n in _FACE_FIELDS + ("face_parent",)),
                     int(f.num_vertices))

    def decision(self, dec: dict) -> dict:
        d = os.path.join(self.path, "decision")
        os.makedirs(d, exist_ok=True)
        for name, a in zip(_FACE_FIELDS, dec["faces"]):
            _write(d, name, a)
        _write(d, "winner", dec["winner"])
        _write(d, "parent", dec.get("parent", np.zeros(0, np.int64)))
        self.decision_layer = int(dec["layer"])
        m = lambda n: np.load(os.path.join(d, n + ".npy"), mmap_mode="r")
        return {"faces": tuple(m(n) for n in _FACE_FIELDS), "winner": m("winner"), "layer": self.decision_layer,
                "parent": m("parent")}

    def finish(self, regions: int, run_info: dict, rtol=None) -> str:
        meta = dict(format=FORMAT, num_layers=len(self.num_vertices), num_vertices=self.num_vertices,
                    has_outputs=self.has_outputs, decision_layer=self.decision_layer, regions=int(regions),
                    rtol=rtol if rtol is not None else run_info.get("rtol"), run_info=_jsonable(run_info))
        with open(self.meta_path + ".tmp", "w") as fh:
            json.dump(meta, fh, indent=1)
        os.replace(self.meta_path + ".tmp", self.meta_path)  # written last: a store with meta.json is complete
        return self.path


def save(P: Partition, path, *, rtol: Optional[float] = None) -> str:
    """Write ``P`` to the directory ``path`` (created; an existing store there is
    replaced). Returns the path."""
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
    """Open the store at ``path`` (memory-mapped unless ``mmap=False``). ``model``: the
    network it was computed for, needed by queries that evaluate it
    (``activation_patterns``, ``layer_names``, ``check_partition``)."""
    path = os.fspath(path)
    if not is_store(path):
        raise FileNotFoundError(f"{path!r} is not a splinecam store (no meta.json): write one with P.save(path)")
    with open(os.path.join(path, "meta.json")) as fh:
        meta = json.load(fh)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path!r} holds store format {meta.get('format')!r}; this splinecam reads format {FORMAT}")
    mode = "r" if mmap else None
    arr = lambda *p: np.load(os.path.join(path, *p) + ".npy", mmap_mode=mode)
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
