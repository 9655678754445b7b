"""The tolerance policy: when a value computed in float64 counts as exactly zero.

The engine decides topology from signs, so everything rests on one question: is a
breakpoint value at a vertex zero (the vertex lies on that unit's line) or not? A value
``z`` at a vertex is snapped to exactly 0 when ``|z| <= tol_j`` for its column ``j``:

    tol_j = max(min(rtol * max_v |z_j(v)|, cap_j), floor_j)

- ``rtol * max_v |z_j(v)|`` (the engine computes it over the current vertices) makes
  lines through vertices, coincident lines and concurrent lines exact, and never lets a
  line split off a sliver thinner than about ``rtol`` times the slice's diameter.
- ``floor_j`` is the column's **rounding floor**: float64 evaluates a value
  ``z = A a + c`` with an error of a few ulps of its *terms* ``A_ji a_i``, however small
  ``z`` itself is. So a value below ``ROUNDING_FLOOR`` times the size of its terms is
  an exact zero: a unit that vanishes in exact arithmetic (integer weights with zero
  biases, units that cancel, duplicated units) is not cut along its rounding noise.
  The size of the terms is measured once per slice (:meth:`Network.magnitudes` at a few
  points of the slice), one scale for the whole slice, and it depends on where the
  values come from. The driver's rows of layer 1 are interpolations of the values at
  the slice's corners (exact up to rounding of the values themselves: no floor), and
  those of layer ``l > 1`` are the glue applied to the rows of layer ``l - 1`` (the
  terms of that glue). Values from a forward pass from the input (lean layers,
  activation patterns at points) carry the error of every layer before: the terms
  accumulated from the input on.
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

#: Relative size, against the Euclidean norm of its terms, below which a float64 value
#: is rounding noise (16 ulps: the error of a sum grows with its number of terms).
ROUNDING_FLOOR = 2.0 ** -49


def sample_points(polygon: np.ndarray) -> np.ndarray:
    """Points of a convex polygon where the magnitudes are measured: its corners, its
    centroid, and the midpoints between them."""
    c = polygon.mean(axis=0)
    return np.concatenate([polygon, c[None], 0.5 * (polygon + c)])


class Tolerances:
    """Per-layer tolerance bounds of one slice (see the module doc), from
    :meth:`Network.magnitudes` ``(direct, accumulated)`` for layers ``1 .. L + 1``."""

    def __init__(self, net, magnitudes):
        self.net = net
        direct, self.accumulated = magnitudes
        self.direct = direct

    @classmethod
    def for_slice(cls, net, slice) -> "Tolerances":
        return cls(net, net.magnitudes(slice.to_input(sample_points(slice.polygon))))

    def floors(self, l: int, from_input: bool = False) -> np.ndarray:
        """(n_cut,) rounding floor of the breakpoint columns of hidden layer ``l``, for
        rows computed by the driver or (``from_input``) by forward passes from the input."""
        nl, lay = self.net.layers[l - 1], self.net.layout(l)
        mag = (self.accumulated if from_input else self.direct)[l - 1]
        if nl.kind == "elementwise":
            N = nl.width
            bps = np.abs(np.asarray(nl.breakpoints, dtype=np.float64))
            floor = ROUNDING_FLOOR * mag[:lay.n_cut]
            # z - b is rounded too when b is large against z
            return floor + np.repeat(np.spacing(bps), N) * (floor > 0)
        # Chain columns max(c_0..c_{s-1}) - c_s: differences of the window's candidates.
        x = mag[lay.n_cut:lay.n_cut + nl.in_numel]
        return 2 * ROUNDING_FLOOR * x[nl.idx].max(axis=1)

    def bounds(self, l: int, from_input: bool = False) -> np.ndarray:
        """(2, n_cut) float64: the floor and the cap of every breakpoint column of hidden
        layer ``l``, as the engine takes them."""
        nl = self.net.layers[l - 1]
        floor = self.floors(l, from_input)
        cap = np.full_like(floor, np.inf)
        if nl.kind == "elementwise" and len(nl.breakpoints) > 1:
            gaps = np.diff(np.sort(np.asarray(nl.breakpoints, dtype=np.float64)))
            gaps = gaps[gaps > 0]
            if len(gaps):
                cap[:] = 0.25 * gaps.min()
        return np.ascontiguousarray(np.stack([floor, cap]))

    def decision_bounds(self, c: int) -> np.ndarray:
        """(2, 1) bounds of the decision column of step ``c``: the single output itself
        (``c = 0``), or ``max(y_0..y_{c-1}) - y_c``."""
        y = self.direct[-1]
        floor = ROUNDING_FLOOR * y[0] if c == 0 else 2 * ROUNDING_FLOOR * y[:c + 1].max()
        return np.array([[floor], [np.inf]])

    def pattern_floors(self) -> List[np.ndarray]:
        """Per hidden layer, the floors that activation patterns (forward passes from the
        input) use: per column ``z - b`` of an elementwise layer, per window of a
        max-type layer."""
        return [self.floors(l, from_input=True) for l in range(1, self.net.num_layers + 1)]
