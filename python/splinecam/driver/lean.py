"""Lean layers: a layer whose rows do not fit in memory, cut a chunk of units at a time
with each chunk's values computed by forward passes from the input
(``partition(..., lean=True)``)."""
from __future__ import annotations

import numpy as np
import torch

from splinecam.driver.checks import check_finite_rows, format_bytes, values_at
from splinecam.driver.maxtype import _max_layer
from splinecam.driver.refine import MemoryLimitExceeded, _refine

__all__ = []


def _columns_from_input(backend, net, slice, xy, l, cols, chunk, limit=None):
    """Columns ``cols`` of layer ``l``'s rows at the points ``xy`` (the backend's memory),
    by forward passes from the input in batches on the network's device: no (V, width)
    matrix is ever whole. Returns a host array."""
    xy = backend.to_host(xy)
    out = np.empty((len(xy), len(cols)))
    # Every layer up to l is built per batch, with the glue's temporaries: a batch's
    # values stay within a tenth of the memory limit.
    widths = [net.layout(k).n_cols for k in range(1, l + 1)]
    step = max(16, min(chunk, (1 << 21) // max(max(widths), 1)))
    if limit is not None:
        step = max(16, min(step, int(0.1 * limit) // (16 * sum(widths))))
    for a in range(0, len(xy), step):
        r, _ = net.rows_from_input(l, slice.to_input(xy[a:a + step]).to(net.device), chunk)
        out[a:a + step] = torch.as_tensor(r)[:, torch.as_tensor(cols)].cpu().numpy()
    check_finite_rows(out, values_at(net, l))
    return out


def _lean_layer(backend, net, slice, xy, faces, layer_id, nl, rtol, threads, limit, chunk, tols):
    """Refine by one layer whose rows do not fit in memory: its units (or pooling
    windows) a chunk at a time, each chunk's values computed from the input at the
    current vertices. Cutting by some units of a layer, then by others, gives the same
    partition as cutting by all at once; every vertex still has one value per unit.
    ``xy`` and ``faces`` are in the backend's memory, and so are the results."""
    bounds = tols.bounds(layer_id, from_input=True)
    ties = tols.tie_tolerance(layer_id, from_input=True) if nl.kind != "elementwise" else None
    tmp = layer_id + (1 << 20)  # marks the edges of the chunk being cut
    n_units = nl.width if nl.kind == "elementwise" else nl.idx.shape[0]
    per_unit = len(nl.breakpoints) if nl.kind == "elementwise" else 1 + nl.idx.shape[1]
    u = max(1, min(n_units, int(0.05 * limit) // (8 * per_unit * max(len(xy), 64))))
    parent = np.arange(len(faces[0]) - 1, dtype=np.int32)
    degenerate, j = 0, 0
    while j < n_units:
        uc = min(u, n_units - j)
        if 0.5 * limit // (16 * per_unit + 64) <= len(xy):  # not even one unit fits (see _budget_vertices)
            _lean_over_limit(layer_id, len(xy), limit)
        try:
            if nl.kind == "elementwise":
                N = nl.width
                cols = np.concatenate([b * N + np.arange(j, j + uc) for b in range(len(nl.breakpoints))])
                rows = backend.asarray(_columns_from_input(backend, net, slice, xy, layer_id, cols, chunk, limit))
                out = _refine(backend, xy, rows, faces, len(cols), tmp, rtol, threads, (limit, 0), bounds[:, cols])
                degenerate += int(out["degenerate"])
                new_xy = backend.cat([xy, out["xy"]])
                new_faces = (out["face_offsets"], out["face_verts"], out["he_layer"], out["he_unit"])
                step_parent = backend.to_host(out["face_parent"])
            else:
                sub_idx = nl.idx[j:j + uc]
                cand, inv = np.unique(sub_idx, return_inverse=True)
                x0 = net.layout(layer_id).n_cut
                rows = np.zeros((len(xy), uc + len(cand)))
                rows[:, uc:] = _columns_from_input(backend, net, slice, xy, layer_id, x0 + cand, chunk, limit)
                sub = _Sub(idx=inv.reshape(sub_idx.shape), in_numel=len(cand), n_cut=uc)
                new_xy, _, new_faces, step_parent, deg = _max_layer(backend, xy, rows, faces, sub, sub, tmp, rtol, threads,
                                                                    (limit, 0), bounds[:, j:j + uc], ties[j:j + uc])
                degenerate += deg
        except MemoryLimitExceeded:
            if uc == 1:  # the refinement was labelled tmp: name the real layer
                _lean_over_limit(layer_id, len(xy), limit)
            u = max(1, uc // 2)
            continue
        lay_, unit = new_faces[2], new_faces[3]
        sel = lay_ == tmp
        lay_[sel] = layer_id
        unit[sel] = j + unit[sel] % uc
        xy, faces = new_xy, new_faces
        parent = parent[step_parent]
        j += uc
    return xy, faces, parent.astype(np.int32), degenerate


def _lean_over_limit(layer_id, n_vertices, limit):
    raise MemoryLimitExceeded(
        f"the partition of this slice needs more than memory_limit = {format_bytes(limit)} at layer {layer_id} even "
        f"with lean=True ({n_vertices} vertices so far; cutting by one unit at a time does not fit): compute it in "
        "tiles (tiles='auto', the default), zoom in, or raise memory_limit") from None


class _Sub:
    """A chunk of a max-type layer, shaped like its Nonlinearity and RowLayout."""

    def __init__(self, **kw):
        self.__dict__.update(kw)
