"""Max-type layers and the decision boundary: maxima as chains of ReLU refinements.

Max-type layers (max-pooling, maxout, ``torch.maximum``) and the decision boundary use
the same refinement: ``max(a, b) = b + relu(a - b)``, so a maximum over k candidates is
k - 1 refinements by ``max(c_0..c_{s-1}) - c_s``; faces then have one winner each. Split
lines with the same winner on both sides separate nothing: for a max-type layer the
faces across them are merged again (``_core.merge``); for the decision boundary they are
left out of the boundary. A single output is split by its zero level set.
"""
from __future__ import annotations

import functools

import numpy as np

from splinecam import _core
from splinecam.driver.refine import _refine
from splinecam.result.partition import face_means

__all__ = []


def _max_layer(backend, xy, rows, faces, lay, nl, layer_id, rtol, threads, budget, bounds, ties):
    """A max-type layer: for windows of k candidates, k - 1 refinements by
    ``max(c_0..c_{s-1}) - c_s`` (each a ReLU, max(a, b) = b + relu(a - b)), then the
    faces on both sides of a split line with the same winner are merged again.
    ``bounds`` (2, W): the chain columns' tolerances; ``ties`` (W,): how close two
    candidates are tied (:class:`splinecam.driver.tolerance.Tolerances`).

    ``xy``, ``rows`` and ``faces`` are in the backend's memory, and so are the results:
    the chain columns and the winner test run there (:meth:`Backend.window_chain`,
    :meth:`Backend.winner_changes`); the merge is decided on the host from the face
    arrays and a few candidate values per split edge (:meth:`Backend.take`)."""
    idx = nl.idx
    W, k = idx.shape
    x0 = lay.n_cut
    parent = None
    degenerate = 0
    idx64 = np.ascontiguousarray(idx, dtype=np.int64)
    rows = backend.asarray(rows)
    for s in range(1, k):
        backend.window_chain(rows, x0, idx64, s, threads)  # rows[:, :W] = max(c_0..c_{s-1}) - c_s
        out = _refine(backend, xy, rows, faces, W, layer_id, rtol, threads, budget, bounds)
        degenerate += int(out["degenerate"])
        xy = backend.cat([xy, out["xy"]])
        rows = backend.cat_rows(out["rows_blocks"], spare=3 * len(xy) if s < k - 1 else 0)
        faces = (out["face_offsets"], out["face_verts"], out["he_layer"], out["he_unit"])
        step_parent = backend.to_host(out["face_parent"])
        parent = step_parent if parent is None else parent[step_parent]
    if parent is None:
        parent = np.arange(len(faces[0]) - 1, dtype=np.int32)
    off, verts, lay_, unit = (backend.to_host(f) for f in faces)
    he = _core.halfedges(len(xy), off, verts)
    twin, face = he["twin"], he["face"]
    h = np.flatnonzero((lay_ == layer_id) & (twin > np.arange(len(twin))))  # one half of each split edge
    if len(h):
        # A split edge separates nothing when no window changes its winner across it. A
        # window can only change winner across an edge that lies on one of its tie lines,
        # wherever that line came from (coincident tie lines of different windows make
        # one edge): so the windows to compare are those tied at both ends of the edge.
        take = functools.partial(backend.take, rows)
        cols = x0 + idx64  # the candidates' columns in the rows
        floor = np.ascontiguousarray(bounds[0], dtype=np.float64)
        active = backend.winner_changes(rows, x0, idx64, floor, threads)
        edge, w = _tied_windows(take, cols, verts[h], he["origin"][he["next"][h]], active,
                                np.asarray(ties, np.float64))
        fa, fb = face[h][edge], face[twin[h]][edge]
        win = _face_window_argmax(take, cols, off, verts, np.concatenate([fa, fb]), np.concatenate([w, w]),
                                  floor)
        differs = np.bincount(edge, weights=win[: len(w)] != win[len(w):], minlength=len(h)) > 0
        remove = np.zeros(len(verts), np.uint8)
        remove[h[~differs]] = 1
        remove[twin[h[~differs]]] = 1
        if remove.any():
            m = _core.merge(len(xy), off, verts, lay_, unit, remove)
            first = np.full(int(m["group"].max()) + 1, -1, np.int64)
            first[m["group"][::-1]] = np.arange(len(m["group"]))[::-1]
            parent = parent[first]
            faces = tuple(backend.asarray(m[key]) for key in ("face_offsets", "face_verts", "he_layer", "he_unit"))
    return xy, rows, faces, parent.astype(np.int32), degenerate


def _ragged_positions(off, rows):
    """Positions in the flat array of a ragged array ``(off, flat)`` of the entries of
    ``rows``, concatenated, and each row's length."""
    lens = np.diff(off)[rows]
    seg_start = np.cumsum(lens) - lens
    pos = np.arange(int(lens.sum())) - np.repeat(seg_start, lens) + np.repeat(off[:-1][rows], lens)
    return pos, lens


def _winners(cand, floor):
    """Winner (candidate position, last axis) of windows whose candidates are ``cand``:
    the first candidate within ``floor`` (broadcast over the candidates) of the maximum,
    so that candidates equal up to rounding noise do not flip the winner."""
    return np.argmax(cand >= cand.max(axis=-1, keepdims=True) - floor[..., None], axis=-1)


def _tied_windows(take, idx, a, b, active, tie_tol, budget=1 << 24):
    """The pairs ``(edge, window)`` of the edges ``a[e] -> b[e]`` with the windows whose
    two largest candidates are tied (within ``tie_tol``) at both ends of the edge, among
    the ``active`` windows: those whose winner is not the same at every vertex
    (``_core.winner_changes``; candidates within the floor of the maximum are tied for
    the winner). ``take(vertices, cols)``: the rows' values there (host numpy; ``idx``
    are the candidates' columns in the rows). Temporaries are bounded by ``budget``
    values."""
    W, k = idx.shape
    empty = np.zeros(0, np.int64)
    if k < 2 or len(a) == 0:
        return empty, empty
    act = np.flatnonzero(active)
    if len(act) == 0:
        return empty, empty
    tie_tol = tie_tol[act]
    ends, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    tied = np.empty((len(ends), len(act)), bool)
    step = max(1, budget // (len(act) * k))
    for s in range(0, len(ends), step):
        top = np.partition(take(ends[s:s + step, None, None], idx[act][None]), k - 2, axis=2)[:, :, k - 2:]
        tied[s:s + step] = top[:, :, 1] - top[:, :, 0] <= tie_tol
    ia, ib = inv[:len(a)], inv[len(a):]
    edges, wins = [], []
    step = max(1, budget // len(act))
    for s in range(0, len(a), step):
        e, j = np.nonzero(tied[ia[s:s + step]] & tied[ib[s:s + step]])
        edges.append(e + s)
        wins.append(act[j])
    return np.concatenate(edges), np.concatenate(wins)


def _face_window_argmax(take, idx, off, verts, face, window, floor):
    """Winner (candidate position) of ``window[p]`` inside ``face[p]``, from the mean of
    the candidates over the face's vertices (an interior point: they are affine there).
    ``take`` and ``idx`` as for :func:`_tied_windows`."""
    flat, lens = _ragged_positions(off, face)
    seg_start = np.cumsum(lens) - lens
    v = verts[flat]
    cand = take(v[:, None], idx[np.repeat(window, lens)])          # (total, k)
    means = np.add.reduceat(cand, seg_start, axis=0) / lens[:, None]
    return _winners(means, floor[window])


def _decision(backend, xy, outputs, faces, layer_id, rtol, threads, validate, tols=None):
    """Refine the final hidden partition by the arg-max of the outputs (see module doc):
    the chain of a max-type window over the C outputs, in the backend's memory. Returns
    host arrays: the vertices, their outputs and the decision faces."""
    V, C = outputs.shape
    # Column 0 is the breakpoint function being cut (snapped by the engine); columns
    # 1..C carry the outputs, interpolated exactly at every new vertex.
    rows = _with_cut_column(backend, outputs)
    window = np.arange(C, dtype=np.int64)[None]  # one window: every output
    degenerate = 0
    parent = None
    for c in range(1, max(C, 2)):
        if C == 1:
            rows[:, 0] = rows[:, 1]  # zero level set of the single output
        else:
            backend.window_chain(rows, 1, window, c, threads)  # max(outputs[:c]) - outputs[c]
        out = _refine(backend, xy, rows, faces, 1, layer_id, rtol, threads, None,
                      None if tols is None else tols.decision_bounds(0 if C == 1 else c))
        degenerate += int(out["degenerate"])
        step_parent = backend.to_host(out["face_parent"])
        parent = step_parent if parent is None else parent[step_parent]
        xy = backend.cat([xy, out["xy"]])
        rows = backend.cat_rows(out["rows_blocks"], spare=len(out["xy"]) if c < max(C, 2) - 1 else 0)
        unit = out["he_unit"]
        if C > 1:
            unit[(out["he_layer"] == layer_id) & (unit == 0)] = c
        faces = (out["face_offsets"], out["face_verts"], out["he_layer"], unit)
    xy, faces = backend.to_host(xy), tuple(backend.to_host(f) for f in faces)
    values = np.ascontiguousarray(backend.to_host(rows)[:, 1:])
    means = face_means(values, faces[0], faces[1])
    winner = (means[:, 0] > 0).astype(np.int32) if C == 1 else np.argmax(means, axis=1).astype(np.int32)
    if validate:
        msg = _core.validate(len(xy), *faces)
        if msg:
            raise RuntimeError(f"splinecam produced an invalid decision-boundary refinement: {msg}")
    return xy, values, {"faces": faces, "winner": winner, "layer": layer_id, "degenerate": degenerate,
                        "parent": parent.astype(np.int64)}


def _with_cut_column(backend, outputs):
    """``(V, 1 + C)`` rows in the backend's memory: a column to cut by, then the outputs."""
    V, C = outputs.shape
    rows = backend.empty((V, C + 1))
    rows[:, 1:] = backend.asarray(outputs)
    return rows
