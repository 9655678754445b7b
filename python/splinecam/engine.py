"""The network driver: forward passes of vertices in torch, refinement in the C++ engine.

For each hidden layer ``l`` the driver holds the layer's pre-activations at every vertex
of the current partition (``rows``, ``(V, width)``); the engine splits every face along
the zero sets and interpolates the rows of the vertices it creates (exact: the
pre-activations are affine on each face of the previous partition). The next layer's
pre-activations are then one affine segment applied to the nonlinearity of those rows
- never a forward pass from the input.

The decision boundary uses the same refinement: ``max(a, b) = b + relu(a - b)``, so the
arg-max over C outputs is C - 1 refinements by one breakpoint function each
(``max(y_0..y_{c-1}) - y_c``); faces then have one winner each, and the edges between
faces with different winners are the decision boundary. A single output is split by its
zero level set.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch

from . import _core
from .network import Network
from .slice import Slice

__all__ = ["partition", "Layer"]


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


def _refine(xy, rows, faces, n_cut, layer_id, rtol, threads):
    off, verts, lay, unit = faces
    try:
        return _core.refine(xy, rows, off, verts, lay, unit, n_cut=n_cut, layer_id=layer_id, rtol=rtol,
                            num_threads=threads or 0)
    except MemoryError:
        n_faces = len(off) - 1
        per_vertex = 8 * rows.shape[1]
        raise MemoryError(
            f"out of memory at layer {layer_id}: {n_faces} regions and {len(xy)} vertices so far, each new vertex "
            f"carries {rows.shape[1]} values ({per_vertex / 1024:.1f} KiB); a convex region cut by k lines can hold "
            f"up to k(k+1)/2 + 1 pieces. Use a smaller slice (zoom in) or a narrower model.") from None


def _progress(total, enabled, desc):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, desc=desc, unit="layer", leave=False)


def partition(model: torch.nn.Module, slice: Slice, *, decision_boundary: bool = True, progress: bool = True,
              rtol: float = 1e-10, threads: Optional[int] = None, validate: bool = False,
              chunk: int = 65536) -> "Partition":
    """Compute the exact partition of ``slice`` into the linear regions of ``model``.

    Parameters
    ----------
    model : torch.nn.Module
        An ``nn.Sequential`` (nesting allowed) of Linear, Conv2d, BatchNorm1d/2d,
        AvgPool2d, Flatten, Dropout, Identity, ReLU and LeakyReLU modules, in eval mode.
        It is copied and evaluated in float64 on the CPU; the caller's model is untouched.
    slice : Slice
        The convex polygon in a plane of the input space.
    decision_boundary : bool
        Also compute the decision boundary: the zero level set of a single output, or
        where the arg-max of several outputs changes.
    progress : bool
        Show a progress bar over layers.
    rtol : float
        Snapping tolerance: a pre-activation whose magnitude at a vertex is at most
        ``rtol`` times its largest magnitude over the slice counts as exactly zero there
        (the vertex lies on that unit's line). This makes lines through vertices,
        coincident lines and concurrent lines exact, and never splits off slivers thinner
        than about ``rtol`` times the slice's diameter.
    threads : int, optional
        CPU threads for the engine (default: all).
    validate : bool
        Check the planar-graph invariants after every layer (slower; for debugging).

    Returns
    -------
    Partition
    """
    from .result import Partition

    if not isinstance(slice, Slice):
        raise TypeError(f"slice must be a splinecam.Slice; got {type(slice).__name__}")
    t0 = time.perf_counter()
    net = Network.from_model(model, slice.input_shape)
    poly = slice.polygon
    k = len(poly)
    xy = np.ascontiguousarray(poly)
    faces = (np.array([0, k], dtype=np.int64), np.arange(k, dtype=np.int32), np.full(k, -1, np.int32),
             np.full(k, -1, np.int32))
    rows = net.first(slice.to_input(xy), chunk)
    layers: List[Layer] = []
    stats = {"degenerate": 0}
    bar = _progress(net.num_layers + (1 if decision_boundary else 0), progress, "splinecam")
    for l in range(1, net.num_layers + 1):
        out = _refine(xy, rows, faces, rows.shape[1], l, rtol, threads)
        stats["degenerate"] += int(out["degenerate"])
        xy = np.concatenate([xy, out["xy"]])
        faces = (out["face_offsets"], out["face_verts"], out["he_layer"], out["he_unit"])
        layer = Layer(*faces, out["face_parent"], len(xy))
        layers.append(layer)
        if validate:
            _check(layer, f"after layer {l}")
        # The next layer's values at every vertex: old rows and the engine's new rows
        # feed the next affine segment block by block, never concatenated.
        rows = net.next(l, [rows, out["rows_edge"], out["rows_face"]], chunk)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(regions=layer.num_faces)
    outputs = rows  # (V, C) model outputs at every vertex of the final partition
    if not layers:
        # No nonlinearity: the model is affine on the whole slice.
        layers.append(Layer(*faces, np.zeros(1, np.int32), len(xy)))
    decision = None
    if decision_boundary:
        xy, outputs, decision = _decision(xy, outputs, faces, net.num_layers + 1, rtol, threads, validate)
        stats["degenerate"] += decision.pop("degenerate")
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    stats["seconds"] = time.perf_counter() - t0
    return Partition(xy=xy, layers=layers, outputs=outputs, decision=decision, net=net, slice=slice,
                     stats=stats)


def _check(layer: Layer, where: str) -> None:
    msg = _core.validate(layer.num_vertices, layer.face_offsets, layer.face_verts, layer.he_layer, layer.he_unit)
    if msg:
        raise RuntimeError(f"splinecam produced an invalid partition {where}: {msg}")


def face_means(values: np.ndarray, face_offsets: np.ndarray, face_verts: np.ndarray) -> np.ndarray:
    """Mean of per-vertex ``values`` (V, C) over each face's cycle: (F, C). Inside a face
    where the values are affine this is their value at an interior point."""
    counts = np.diff(face_offsets)
    sums = np.add.reduceat(values[face_verts], face_offsets[:-1], axis=0)
    return sums / counts[:, None]


def _decision(xy, outputs, faces, layer_id, rtol, threads, validate):
    """Refine the final hidden partition by the arg-max of the outputs (see module doc)."""
    V, C = outputs.shape
    # Column 0 is the breakpoint function being cut (snapped by the engine); columns
    # 1..C carry the outputs, interpolated exactly at every new vertex.
    rows = np.empty((V, C + 1))
    rows[:, 1:] = outputs
    degenerate = 0
    for c in range(1, max(C, 2)):
        if C == 1:
            rows[:, 0] = rows[:, 1]  # zero level set of the single output
        else:
            rows[:, 0] = rows[:, 1:c + 1].max(axis=1) - rows[:, c + 1]
        out = _refine(xy, rows, faces, 1, layer_id, rtol, threads)
        degenerate += int(out["degenerate"])
        xy = np.concatenate([xy, out["xy"]])
        rows = np.concatenate([rows, out["rows_edge"], out["rows_face"]])
        unit = out["he_unit"]
        if C > 1:
            unit[(out["he_layer"] == layer_id) & (unit == 0)] = c
        faces = (out["face_offsets"], out["face_verts"], out["he_layer"], unit)
    values = np.ascontiguousarray(rows[:, 1:])
    means = face_means(values, faces[0], faces[1])
    winner = (means[:, 0] > 0).astype(np.int32) if C == 1 else np.argmax(means, axis=1).astype(np.int32)
    if validate:
        msg = _core.validate(len(xy), *faces)
        if msg:
            raise RuntimeError(f"splinecam produced an invalid decision-boundary refinement: {msg}")
    return xy, values, {"faces": faces, "winner": winner, "layer": layer_id, "degenerate": degenerate}
