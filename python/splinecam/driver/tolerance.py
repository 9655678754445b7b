"""The tolerance policy: when a value computed in float64 counts as exactly zero.

The engine decides topology from signs, so everything rests on one question: is a
breakpoint value at a vertex zero (the vertex lies on that unit's line) or not? A value
``z`` at a vertex is snapped to exactly 0 when ``|z| <= tol_j`` for its column ``j``:

    tol_j = max(min(rtol * scale_j, cap_j), floor_j)

**One tolerance per column for the whole slice.** Every term is measured once per slice,
at the same few points (:func:`sample_points`: the corners, the centroid and the
midpoints between them), before any refinement; the engine is given ``tol_j`` as it is.
So the snapping never depends on which vertices a computation happens to hold: a tile of
the slice snaps exactly as the whole slice does, and the vertices a seam between two
tiles gets are the same from both sides (:mod:`splinecam.driver.tiles`).

- ``rtol * scale_j``, with ``scale_j`` the largest magnitude of the column at the sample
  points (for layer 1, affine on the slice, that is its largest magnitude over the slice),
  makes lines through vertices, coincident lines and concurrent lines exact, and never
  lets a line split off a sliver thinner than about ``rtol`` times the slice's diameter.
- ``floor_j`` is the column's **rounding floor**: float64 evaluates a value
  ``z = A a + c`` with an error of a few ulps of its *terms* ``A_ji a_i``, however small
  ``z`` itself is. So a value below ``ROUNDING_FLOOR`` times the size of its terms is
  an exact zero: a unit that vanishes in exact arithmetic (integer weights with zero
  biases, units that cancel, duplicated units) is not cut along its rounding noise.
  The size of the terms (:meth:`Network.magnitudes`) depends on where the values come
  from. The driver's rows of layer 1 are interpolations of the values at the slice's
  corners (exact up to rounding of the values themselves: no floor), and those of layer
  ``l > 1`` are the glue applied to the rows of layer ``l - 1`` (the terms of that glue).
  Values from a forward pass from the input (lean layers, activation patterns at
  points) carry the error of every layer before: the terms accumulated from the input on.
- ``cap_j`` keeps two breakpoints of one unit apart: for Hardtanh/ReLU6 the columns
  ``z - b_1`` and ``z - b_2`` of a unit differ by the constant ``b_2 - b_1``, so a
  tolerance of at least half that gap would snap a vertex on one breakpoint onto the
  other. The cap is a quarter of the smallest gap between the layer's breakpoints: a
  value is snapped to at most one breakpoint, never two breakpoints together - unless
  the gap is below the rounding floor, where float64 cannot tell the two apart and the
  strip between them (thinner than the noise) collapses onto one line.

Activation patterns (region patterns, ``locate``, the checks) use the same floors: a
value within its floor of zero counts as zero (inactive), and candidates of a max within
the floor of the maximum count as tied (the first one wins), so patterns evaluated by
fresh forward passes agree with the engine's snapping.
"""
from __future__ import annotations

from typing import List

import numpy as np

__all__ = ["ROUNDING_FLOOR", "Tolerances", "sample_points"]


def _bounds(tol: np.ndarray, axis: int = 0) -> np.ndarray:
    """Floor and cap for the engine, both the tolerance: (2, n) (or (K, 2, n) with
    ``axis=1`` for K networks' (K, n))."""
    return np.ascontiguousarray(np.stack([tol, tol], axis=axis).astype(np.float64))


def _tolerances(nl, rtol: float, scales: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """``tol_j = max(min(rtol * scale_j, cap_j), floor_j)`` (the module doc) of the
    breakpoint columns of the hidden layer ``nl``, over the last axis of ``scales`` and
    ``floor`` (any leading axes: several networks)."""
    cap = np.full_like(floor, np.inf)
    if nl.kind == "elementwise" and len(nl.breakpoints) > 1:
        gaps = np.diff(np.sort(np.asarray(nl.breakpoints, dtype=np.float64)))
        gaps = gaps[gaps > 0]
        if len(gaps):
            cap[...] = 0.25 * gaps.min()
    return np.maximum(np.minimum(rtol * scales, cap), floor)

#: Relative size, against the Euclidean norm of its terms, below which a float64 value
#: is rounding noise (16 ulps: the error of a sum grows with its number of terms).
ROUNDING_FLOOR = 2.0 ** -49


def sample_points(polygon: np.ndarray) -> np.ndarray:
    """Points of a convex polygon where the magnitudes are measured: its corners, its
    centroid, and the midpoints between them."""
    c = polygon.mean(axis=0)
    return np.concatenate([polygon, c[None], 0.5 * (polygon + c)])


class Tolerances:
    """Per-column tolerances of one slice (see the module doc), from
    :meth:`Network.magnitudes` ``(direct, accumulated, values)`` for layers
    ``1 .. L + 1`` at the slice's sample points."""

    def __init__(self, net, magnitudes, rtol: float = 1e-10):
        self.net = net
        self.direct, self.accumulated, self.values = magnitudes
        self.rtol = float(rtol)
        # bounds and ties by (kind, layer, from_input): every tile of the slice,
        # and every chunk of a lean layer, asks for the same ones
        self._memo = {}

    def _kept(self, key, make) -> np.ndarray:
        """``make()`` once per key, kept read-only (the arrays are shared)."""
        out = self._memo.get(key)
        if out is None:
            out = self._memo[key] = make()
            out.setflags(write=False)
        return out

    @classmethod
    def for_slice(cls, net, slice, rtol: float = 1e-10) -> "Tolerances":
        return cls(net, net.magnitudes(slice.to_input(sample_points(slice.polygon))), rtol)

    @classmethod
    def for_slice_many(cls, nets, slice, rtol: float = 1e-10) -> List["Tolerances"]:
        """:meth:`for_slice` of several copies of one network (checkpoints of one
        architecture), measured together (:meth:`Network.magnitudes_many`); the bounds of
        their elementwise layers are worked out together too, by the same rule."""
        from splinecam.network.model import Network
        x = slice.to_input(sample_points(slice.polygon))
        out = [cls(net, m, rtol) for net, m in zip(nets, Network.magnitudes_many(nets, x))]
        if len(out) > 1:
            net = out[0].net
            for l, nl in enumerate(net.layers, 1):
                if nl.kind != "elementwise":
                    continue
                n_cut = net.layout(l).n_cut
                scales = _elementwise_scales(np.stack([t.values[l - 1] for t in out]), n_cut)
                floors = _floors(net, l, np.stack([t.direct[l - 1] for t in out]))
                bounds = _bounds(_tolerances(nl, rtol, scales, floors), axis=1)
                for t, b in zip(out, bounds):
                    b.setflags(write=False)
                    t._memo[("bounds", l, False)] = b
        return out

    def _candidates(self, l: int) -> np.ndarray:
        """(n, W, k) the candidates of max-type layer ``l``'s windows at the sample points."""
        nl, lay = self.net.layers[l - 1], self.net.layout(l)
        return self.values[l - 1][:, lay.n_cut:lay.n_cut + nl.in_numel][:, nl.idx]

    def scales(self, l: int) -> np.ndarray:
        """(n_cut,) the largest magnitude of each breakpoint column of hidden layer ``l``
        at the sample points: ``z - b``, or for a max-type layer's window the chain values
        ``max(c_0..c_{s-1}) - c_s`` over its steps ``s``."""
        nl, lay = self.net.layers[l - 1], self.net.layout(l)
        if nl.kind == "elementwise":
            return _elementwise_scales(self.values[l - 1], lay.n_cut)
        cand = self._candidates(l)
        chain = np.maximum.accumulate(cand, axis=2)[:, :, :-1] - cand[:, :, 1:]
        return np.abs(chain).max(axis=(0, 2)) if chain.size else np.zeros(cand.shape[1])

    def tie_tolerance(self, l: int, from_input: bool = False) -> np.ndarray:
        """(W,) per window of max-type layer ``l``: two candidates this close at a vertex
        are tied there (four times the snapping of the candidates' own size, above the
        chain columns' tolerance)."""
        def make():
            cand = np.abs(self._candidates(l)).max(axis=(0, 2))
            return 4 * (self.rtol * cand + self.floors(l, from_input))
        return self._kept(("ties", l, from_input), make)

    def floors(self, l: int, from_input: bool = False) -> np.ndarray:
        """(n_cut,) rounding floor of the breakpoint columns of hidden layer ``l``, for
        rows computed by the driver or (``from_input``) by forward passes from the input."""
        return _floors(self.net, l, (self.accumulated if from_input else self.direct)[l - 1])

    def tolerances(self, l: int, from_input: bool = False) -> np.ndarray:
        """(n_cut,) the snapping tolerance of every breakpoint column of hidden layer
        ``l`` (the module doc's ``tol_j``)."""
        return _tolerances(self.net.layers[l - 1], self.rtol, self.scales(l), self.floors(l, from_input))

    def bounds(self, l: int, from_input: bool = False) -> np.ndarray:
        """(2, n_cut) float64, as the engine takes them: floor and cap of every
        breakpoint column of hidden layer ``l``, both the column's tolerance (so the
        engine's own per-call scale plays no part)."""
        return self._kept(("bounds", l, from_input), lambda: _bounds(self.tolerances(l, from_input)))

    def decision_bounds(self, c: int) -> np.ndarray:
        """(2, 1) bounds of the decision column of step ``c``: the single output itself
        (``c = 0``), or ``max(y_0..y_{c-1}) - y_c``."""
        v = self.values[-1]
        scale = np.abs(v[:, 0]).max() if c == 0 else np.abs(v[:, :c].max(axis=1) - v[:, c]).max()
        return _bounds(np.array([max(self.rtol * scale, self.decision_floor(c))]))

    def decision_floor(self, c: int) -> float:
        """The rounding floor of the decision column of step ``c``."""
        y = self.direct[-1]
        return float(ROUNDING_FLOOR * y[0] if c == 0 else 2 * ROUNDING_FLOOR * y[:c + 1].max())

    def pattern_floors(self) -> List[np.ndarray]:
        """Per hidden layer, the floors that activation patterns (forward passes from the
        input) use: per column ``z - b`` of an elementwise layer, per window of a
        max-type layer."""
        return self.lazy_pattern_floors()(self.net)

    def lazy_pattern_floors(self):
        """:meth:`pattern_floors` as a function of the network, for
        :attr:`Network.pattern_floors` to call at its first use. It holds the term sizes
        alone, not the network (nor these tolerances, which hold the network): a
        partition let go is freed at once."""
        accumulated = self.accumulated
        return lambda net: [_floors(net, l, accumulated[l - 1]) for l in range(1, net.num_layers + 1)]


def _elementwise_scales(values: np.ndarray, n_cut: int) -> np.ndarray:
    """:meth:`Tolerances.scales` of an elementwise layer from its rows ``values`` at the
    sample points ``(..., n, n_cols)`` (any leading axes: several networks)."""
    return np.abs(values[..., :n_cut]).max(axis=-2)


def _floors(net, l: int, mag: np.ndarray) -> np.ndarray:
    """:meth:`Tolerances.floors` of hidden layer ``l`` from the term sizes ``mag`` of its
    columns (the last axis; any leading axes: several networks)."""
    nl, lay = net.layers[l - 1], net.layout(l)
    if nl.kind == "elementwise":
        N = nl.width
        bps = np.abs(np.asarray(nl.breakpoints, dtype=np.float64))
        floor = ROUNDING_FLOOR * mag[..., :lay.n_cut]
        # z - b is rounded too when b is large against z
        return floor + np.repeat(np.spacing(bps), N) * (floor > 0)
    # Chain columns max(c_0..c_{s-1}) - c_s: differences of the window's candidates.
    x = mag[..., lay.n_cut:lay.n_cut + nl.in_numel]
    return 2 * ROUNDING_FLOOR * x[..., nl.idx].max(axis=-1)
