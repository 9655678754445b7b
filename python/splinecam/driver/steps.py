"""The steps of one pass: one step per kind of layer, fed by a source of rows.

Kinds of layer (``Nonlinearity.kind``, :mod:`splinecam.network.ops`), one step each:

=============== ===========================================================================
``elementwise`` ReLU-like units: one refinement by their breakpoint columns
``max``         windows of candidates (max-pooling, maxout, ``torch.maximum``): k - 1
                chain refinements, then faces merged across lines that separate nothing
                (:func:`splinecam.driver.maxtype._max_layer`)
decision        after the last layer, the arg-max of the outputs: the same chain over one
                window of all outputs (:func:`splinecam.driver.maxtype._decision`)
=============== ===========================================================================

Sources of the rows a step cuts by (the values of the layer's breakpoint functions, and
every tensor still needed later, at every vertex):

- :class:`CarriedRows` (the default): the rows of every vertex, interpolated by the
  engine and pushed through the model's glue to the next layer; never a forward pass
  from the input.
- :class:`InputRows` (``lean``): a chunk of units at a time, each chunk's values from
  forward passes at the current vertices, so that no layer's rows are ever whole
  (:mod:`splinecam.driver.lean`). A pass switches to it at the layer whose carried rows
  would exceed the memory limit, when ``lean=True``.

Every array of a step lives in the backend's memory (:mod:`splinecam.driver.backends`).
"""
from __future__ import annotations

import numpy as np

from splinecam.driver.checks import check_finite_rows, values_at
from splinecam.driver.lean import _columns_from_input, _lean_layer
from splinecam.driver.maxtype import _max_layer
from splinecam.driver.refine import _refine

__all__ = ["STEPS", "CarriedRows", "InputRows"]


class PassContext:
    """What every step of one pass reads: the traced network, the slice's tolerances,
    the slice, the backend, the engine's settings and the pass's clock."""

    def __init__(self, net, tols, slice, backend, *, rtol, threads, chunk, limit, clock):
        self.net, self.tols, self.slice, self.backend = net, tols, slice, backend
        self.rtol, self.threads, self.chunk, self.limit, self.clock = rtol, threads, chunk, limit, clock


def elementwise_step(ctx, xy, rows, faces, lay, l, nl, budget):
    """Refine by the breakpoint columns of an elementwise layer. Returns ``(xy, faces,
    parent, degenerate, row blocks of every vertex)``."""
    b = ctx.backend
    out = _refine(b, xy, rows, faces, lay.n_cut, l, ctx.rtol, ctx.threads, budget, ctx.tols.bounds(l))
    unit = out["he_unit"]
    if len(nl.breakpoints) > 1:  # columns are (breakpoint, unit): label by unit
        unit[out["he_layer"] == l] %= nl.width
    faces = (out["face_offsets"], out["face_verts"], out["he_layer"], unit)
    return b.cat([xy, out["xy"]]), faces, b.to_host(out["face_parent"]), int(out["degenerate"]), out["rows_blocks"]


def max_step(ctx, xy, rows, faces, lay, l, nl, budget):
    """Refine by a max-type layer (see the module doc); returns as :func:`elementwise_step`."""
    xy, rows, faces, parent, deg = _max_layer(ctx.backend, xy, rows, faces, lay, nl, l, ctx.rtol, ctx.threads, budget,
                                              ctx.tols.bounds(l), ctx.tols.tie_tolerance(l))
    return xy, faces, parent, deg, [rows]


#: The step of each kind of layer.
STEPS = {"elementwise": elementwise_step, "max": max_step}


class CarriedRows:
    """Rows carried from layer to layer (see the module doc). Made at the first layer
    from a forward pass of the polygon's corners ``x_in``."""

    def __init__(self, ctx, x_in):
        self.ctx = ctx
        self.rows, self.lay = self._forward(1, x_in)

    def _forward(self, l, source):
        ctx = self.ctx
        rows, lay = ctx.clock("forward", ctx.net.rows_for, l, source, ctx.chunk, ctx.backend.keeps_tensors)
        check_finite_rows(rows, values_at(ctx.net, l))
        return rows, lay

    def refine(self, l, nl, xy, faces):
        """Layer ``l``'s step on the carried rows, then the next layer's rows at every
        vertex (the blocks feed the glue in order, never concatenated). Returns ``(xy,
        faces, parent, degenerate)``. Raises MemoryLimitExceeded (nothing changed) when
        the new vertices would not fit."""
        ctx = self.ctx
        budget = (ctx.limit, ctx.net.layout(l + 1).n_cols)
        xy, faces, parent, deg, blocks = ctx.clock("geometry", STEPS[nl.kind], ctx, xy, self.rows, faces, self.lay, l,
                                                   nl, budget)
        self.rows = None  # the blocks hold them (snapped in place); the next rows replace them
        self.rows, self.lay = self._forward(l + 1, (blocks, self.lay, l))
        return xy, faces, parent, deg

    def outputs(self, xy):
        """The model's outputs at every vertex (the rows after the last layer)."""
        return self.rows


class InputRows:
    """Rows from forward passes at the current vertices, a chunk of units at a time
    (see the module doc)."""

    def __init__(self, ctx):
        self.ctx = ctx

    def refine(self, l, nl, xy, faces):
        """Layer ``l``'s step a chunk of units at a time; returns as :meth:`CarriedRows.refine`."""
        ctx = self.ctx
        return ctx.clock("lean", _lean_layer, ctx.backend, ctx.net, ctx.slice, xy, faces, l, nl, ctx.rtol,
                         ctx.threads, ctx.limit, ctx.chunk, ctx.tols)

    def outputs(self, xy):
        ctx = self.ctx
        C = ctx.net.num_outputs
        return ctx.backend.asarray(_columns_from_input(ctx.backend, ctx.net, ctx.slice, xy, ctx.net.num_layers + 1,
                                                       np.arange(C), ctx.chunk, ctx.limit))
