"""One refinement in the engine: the faces cut by the zero sets of some columns of the
vertex rows, within a memory budget (:func:`_refine`).

The engine is called through a backend (:mod:`splinecam.driver.backends`); a budget of
``(memory_limit, width of the next rows)`` makes it stop before the vertices it creates
would exceed the limit, which surfaces as :class:`MemoryLimitExceeded` (and makes
:func:`splinecam.partition` cut the slice into tiles).
"""
from __future__ import annotations

import numpy as np

from splinecam import _core
from splinecam.driver.checks import format_bytes

__all__ = ["MemoryLimitExceeded", "FEW_FACES"]


class MemoryLimitExceeded(MemoryError):
    """The partition of the slice (or of one tile) needs more memory than
    ``memory_limit`` allows.

    Raised before the memory is taken, so the process stays usable. The message says
    at which layer, how many vertices and how much memory one pass would need, and what
    to do: tiles (the default, ``tiles="auto"``), a higher ``memory_limit``, or a smaller
    slice (:meth:`splinecam.Slice.scaled`). A subclass of :class:`MemoryError`.
    """


#: Faces below which a refinement cuts by a few columns at a time (see _refine).
FEW_FACES = 256


def _refine(backend, xy, rows, faces, n_cut, layer_id, rtol, threads, budget=None, bounds=None):
    """Refine the faces by the zero sets of the breakpoint columns ``[0, n_cut)`` of
    ``rows``. ``budget`` = (memory_limit bytes, width of the next rows): the engine stops
    (MemoryLimitExceeded) before the vertices it creates, with their rows and the next
    layer's rows, would exceed the limit. ``bounds`` (2, n_cut): per column the floor
    and the cap of the snapping tolerance (:mod:`splinecam.driver.tolerance`). The arrays
    are in the backend's memory.

    While there are few faces (the first layer has one), one face takes all the work of
    many columns and the launchers have nothing to spread over threads; so the columns
    are cut a few at a time (8, then 4 times more each step) until the faces are many,
    then the rest at once. Cutting by some columns, then by others, gives the same
    partition as cutting by all at once (each face is cut column by column anyway).

    Returns the engine's dict for the whole refinement: ``xy`` the new vertices, faces,
    ``face_parent`` (into the given faces), ``degenerate``, and ``rows_blocks``: the rows
    of all vertices, old then new, as blocks in order (the given ``rows`` first, snapped
    in place, when a single step did it all)."""
    b, size, parent, deg = 0, 8, None, 0
    new_xy = []
    while True:
        e = n_cut if len(faces[0]) - 1 >= FEW_FACES or b + 2 * size >= n_cut else b + size
        out = _refine_range(backend, xy, rows, faces, e, layer_id, rtol, threads, budget, b,
                            None if bounds is None else bounds[:, :e])
        deg += int(out["degenerate"])
        parent = out["face_parent"] if parent is None else parent[out["face_parent"]]
        faces = (out["face_offsets"], out["face_verts"], out["he_layer"], out["he_unit"])
        new_xy.append(out["xy"])
        blocks = [rows, out["rows_edge"], *out["rows_face"]]
        if e >= n_cut:
            break
        b, size = e, 4 * size
        xy, rows = backend.cat([xy, out["xy"]]), backend.cat_rows(blocks, spare=4 * len(out["xy"]))
    res = dict(zip(("face_offsets", "face_verts", "he_layer", "he_unit"), faces))
    res.update(xy=backend.cat(new_xy) if len(new_xy) > 1 else new_xy[0], face_parent=parent, degenerate=deg,
               rows_blocks=blocks)
    return res


def _refine_range(backend, xy, rows, faces, n_cut, layer_id, rtol, threads, budget, cut_begin=0, bounds=None):
    """One engine call: cut by the columns ``[cut_begin, n_cut)``; those before are
    snapped (they were cut already), those after are carried like any other value."""
    if bounds is not None:
        bounds = np.ascontiguousarray(bounds, dtype=np.float64)
    max_new = _budget_vertices(budget, len(xy), rows.shape[1], layer_id)
    try:
        return backend.refine(xy, rows, faces, n_cut=n_cut, layer_id=layer_id, rtol=rtol, threads=threads, max_new=max_new,
                   cut_begin=cut_begin, bounds=bounds)
    except _core.BudgetExceeded:
        _over_limit(layer_id, len(xy), budget[0], rows.shape[1])
    except MemoryError:
        raise backend.out_of_memory(layer_id, len(faces[0]) - 1, len(xy), rows.shape[1]) from None


def _budget_vertices(budget, n_vertices, width, layer_id):
    """New vertices a refinement may create within ``budget`` (see :func:`_refine`)."""
    if budget is None:
        return 0
    limit, next_width = budget
    # At the peak, every vertex (old and new) holds its rows twice (the rows of a
    # refinement by some columns, concatenated before the next columns are cut), the
    # next layer's rows and the engine's sign bits of the columns cut (two bits per
    # column, at most the row's width); 5% of the limit is left for coordinates, faces
    # and temporaries.
    per_vertex = 8 * (2 * width + next_width) + 16 * ((width + 63) // 64) + 64
    max_new = int(0.95 * limit // per_vertex) - n_vertices
    if max_new <= 0:
        _over_limit(layer_id, n_vertices, limit, width)
    return max_new


def _over_limit(layer_id, n_vertices, limit, width):
    raise MemoryLimitExceeded(
        f"the partition of this slice needs more than memory_limit = {format_bytes(limit)} at layer {layer_id} "
        f"({n_vertices} vertices so far, {width} values each): compute it in tiles (tiles='auto', the default), "
        "pass lean=True (slower), zoom in, or raise memory_limit") from None
