"""The 2-D slice of a model's input space that splinecam partitions."""
from __future__ import annotations

import math
import numbers
from typing import Optional

import numpy as np
import torch

from splinecam.geometry import polygon_area

__all__ = ["Slice", "convex_polygon"]

#: Bounds on polygon coordinates (largest magnitude) and extent (largest side of the
#: bounding box): squares of them stay far from float64's overflow and underflow.
_MAX_COORD, _MIN_EXTENT = 1e100, 1e-100


def convex_polygon(polygon, name: str = "polygon") -> np.ndarray:
    """Validate a convex polygon and return it counter-clockwise.

    Either orientation is accepted; a repeated closing vertex, repeated consecutive
    corners and straight-angle corners are dropped.

    Parameters
    ----------
    polygon : array-like or torch.Tensor
        ``(k, 2)`` corners in plane coordinates.
    name : str
        What to call the polygon in error messages.

    Returns
    -------
    numpy.ndarray
        ``(k', 2)`` float64 corners, counter-clockwise, C-contiguous.

    Raises
    ------
    ValueError
        Naming the problem, for non-finite, degenerate (fewer than three distinct
        corners, zero area, smaller than 1e-100), too large (coordinates beyond 1e100),
        non-convex or self-intersecting input.

    Examples
    --------
    >>> from splinecam.slice import convex_polygon
    >>> convex_polygon([[0, 0], [0, 1], [1, 1], [1, 0]])   # clockwise in, counter-clockwise out
    array([[1., 0.],
           [1., 1.],
           [0., 1.],
           [0., 0.]])
    """
    p = np.asarray(polygon.detach().cpu() if isinstance(polygon, torch.Tensor) else polygon, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"{name} must have shape (k, 2) (plane coordinates of its corners); got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    if len(p) > 1 and np.array_equal(p[0], p[-1]):
        p = p[:-1]
    # Drop repeated consecutive corners.
    keep = np.any(p != np.roll(p, 1, axis=0), axis=1)
    p = p[keep] if keep.any() else p[:1]
    if len(p) < 3:
        raise ValueError(f"{name} needs at least three distinct corners; got {len(p)}")
    # Products of coordinates (areas, cross products) must neither overflow nor underflow.
    fix = "; use Slice(origin, basis * s, polygon / s) with a scale s that brings its coordinates near 1"
    size, extent = float(np.max(np.abs(p))), float(np.max(np.ptp(p, axis=0)))
    if size > _MAX_COORD:
        raise ValueError(f"{name} has coordinates too large to compute with in float64 (up to {size:.3g}, the limit "
                         f"is {_MAX_COORD:.0e}: products of them overflow){fix}")
    if extent < _MIN_EXTENT:
        raise ValueError(f"{name} is too small to compute with in float64 (degenerate: it spans {extent:.3g}, the "
                         f"limit is {_MIN_EXTENT:.0e}: products of its sides underflow){fix}")
    d = np.roll(p, -1, axis=0) - p
    cross = d[:, 0] * np.roll(d, -1, axis=0)[:, 1] - d[:, 1] * np.roll(d, -1, axis=0)[:, 0]
    area2 = 2.0 * polygon_area(p)  # relative coordinates: accurate for a tiny polygon far from the origin
    scale = float(np.max(np.abs(p - p.mean(axis=0))))
    sv = np.linalg.svd(p - p.mean(axis=0), compute_uv=False)
    if sv[-1] <= 1e-12 * sv[0]:
        raise ValueError(f"{name} has zero area (its corners are collinear); give a polygon with a 2-D interior")
    if abs(area2) <= 1e-12 * scale * scale:
        raise ValueError(f"{name} is self-intersecting (its signed area is zero)")
    if area2 < 0:
        p, cross = p[::-1].copy(), None
        d = np.roll(p, -1, axis=0) - p
        cross = d[:, 0] * np.roll(d, -1, axis=0)[:, 1] - d[:, 1] * np.roll(d, -1, axis=0)[:, 0]
    lens = np.linalg.norm(d, axis=1)
    tol = 1e-12 * lens * np.roll(lens, -1)
    if np.any(cross < -tol):
        raise ValueError(f"{name} is not convex: splinecam partitions convex polygons; split the domain "
                         "into convex pieces or use its convex hull")
    # All turns are left turns; a simple convex polygon turns exactly once around.
    turn = np.arctan2(cross, np.sum(d * np.roll(d, -1, axis=0), axis=1)).sum()
    if turn > 2 * math.pi + 1e-6:
        raise ValueError(f"{name} is self-intersecting (its boundary winds {turn / (2 * math.pi):.0f} times)")
    # Remove straight-angle corners: they carry no information and would be flat vertices.
    straight = np.abs(np.roll(cross, 1)) <= np.roll(tol, 1)
    if straight.any() and (~straight).sum() >= 3:
        p = p[~straight]
    return np.ascontiguousarray(p)


def _as_f64_tensor(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(x.detach() if isinstance(x, torch.Tensor) else np.asarray(x), dtype=torch.float64)
    t = t.cpu()
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


class Slice:
    """A convex polygon in a 2-D plane of a model's input space.

    The plane is ``x(u) = origin + u[0] * basis[0] + u[1] * basis[1]`` for plane
    coordinates ``u`` in R^2; ``origin`` has the shape of one model input (no batch
    dimension) and ``basis`` is two such tensors, stacked as ``(2, *input_shape)``. The
    domain ``polygon`` is given in plane coordinates, shape ``(k, 2)``, in either
    orientation; it is stored counter-clockwise.

    Constructors for the common cases: :meth:`plane2d` for models with 2-D input and
    :meth:`through` for the plane through three inputs.

    Parameters
    ----------
    origin : array-like or torch.Tensor
        The input at plane coordinates ``(0, 0)``, shaped like one model input.
    basis : array-like or torch.Tensor
        ``(2, *input_shape)``: the plane's two direction vectors (non-zero, not
        parallel; they need not be orthonormal).
    polygon : array-like
        ``(k, 2)`` corners of a convex polygon in plane coordinates, either
        orientation (see :func:`splinecam.slice.convex_polygon`).

    Raises
    ------
    ValueError
        When the values are not finite, ``basis`` is mis-shaped, zero or parallel, or
        ``polygon`` is not a valid convex polygon.

    Examples
    --------
    >>> import torch, splinecam
    >>> sl = splinecam.Slice(torch.zeros(3), torch.eye(3)[:2], [[0, 0], [1, 0], [0, 1]])
    >>> sl
    Slice(input_shape=(3,), corners=3, area=0.5)
    >>> sl.to_input([[0.5, 0.25]])
    tensor([[0.5000, 0.2500, 0.0000]], dtype=torch.float64)
    """

    def __init__(self, origin, basis, polygon):
        origin = _as_f64_tensor(origin, "origin")
        basis = _as_f64_tensor(basis, "basis")
        if basis.dim() < 1 or basis.shape[0] != 2 or tuple(basis.shape[1:]) != tuple(origin.shape):
            raise ValueError(
                f"basis must hold two vectors shaped like origin, i.e. shape (2, {', '.join(map(str, origin.shape))}); "
                f"got {tuple(basis.shape)}")
        b = basis.reshape(2, -1)
        g = b @ b.T
        n0, n1 = float(g[0, 0]), float(g[1, 1])
        if n0 == 0 or n1 == 0:
            raise ValueError("basis vectors must be non-zero")
        if float(torch.det(g)) <= 1e-12 * n0 * n1:
            raise ValueError("basis vectors are parallel (or nearly so): they must span a plane")
        self._origin = origin
        self._basis = basis
        self._polygon = convex_polygon(polygon)

    # -- constructors ----------------------------------------------------------------
    @classmethod
    def plane2d(cls, polygon) -> "Slice":
        """Make the slice of a model with 2-D input: its input plane itself, ``x = u``.

        Parameters
        ----------
        polygon : array-like
            ``(k, 2)`` corners of a convex polygon in input coordinates, either
            orientation.

        Returns
        -------
        Slice
            Origin ``(0, 0)``, the identity basis, the polygon counter-clockwise.

        Examples
        --------
        >>> import splinecam
        >>> splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
        Slice(input_shape=(2,), corners=4, area=4)
        """
        return cls(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64), polygon)

    @classmethod
    def through(cls, a, b, c, pad: Optional[float] = None) -> "Slice":
        """Make the slice through three inputs.

        The plane has an orthonormal basis (Gram–Schmidt on ``b - a`` and ``c - a``) and
        its origin at the centroid of the three inputs. Without ``pad`` the domain is the
        triangle they span; with ``pad`` it is the rectangle (in plane coordinates)
        around them, enlarged on every side by ``pad`` times its larger side.

        Parameters
        ----------
        a, b, c : array-like or torch.Tensor
            Three model inputs of the same shape (no batch dimension), not collinear.
        pad : float, optional
            Non-negative: use the padded rectangle around the three instead of their
            triangle.

        Returns
        -------
        Slice
            The slice; ``to_plane(torch.stack([a, b, c]))`` gives the three inputs'
            plane coordinates (the triangle's corners).

        Raises
        ------
        ValueError
            When the shapes differ, two inputs coincide, the three are collinear or
            ``pad`` is negative.

        Examples
        --------
        >>> import torch, splinecam
        >>> a, b, c = torch.eye(3)
        >>> splinecam.Slice.through(a, b, c)
        Slice(input_shape=(3,), corners=3, area=0.866025)
        >>> splinecam.Slice.through(a, b, c, pad=0.1).polygon.shape
        (4, 2)
        """
        a, b, c = (_as_f64_tensor(t, n) for t, n in ((a, "a"), (b, "b"), (c, "c")))
        if not (a.shape == b.shape == c.shape):
            raise ValueError(f"a, b and c must have the same shape; got {tuple(a.shape)}, {tuple(b.shape)}, "
                             f"{tuple(c.shape)}")
        origin = (a + b + c) / 3
        e0 = (b - a).flatten()
        if float(e0.norm()) == 0:
            raise ValueError("a and b are the same point: three distinct, non-collinear inputs are needed")
        e0 = e0 / e0.norm()
        e1 = (c - a).flatten()
        e1 = e1 - (e1 @ e0) * e0
        if float(e1.norm()) <= 1e-12 * float((c - a).flatten().norm() + 1e-300):
            raise ValueError("a, b and c are collinear: they do not span a plane")
        e1 = e1 / e1.norm()
        basis = torch.stack([e0, e1]).reshape(2, *a.shape)
        pts = torch.stack([a, b, c]).reshape(3, -1) - origin.flatten()
        uv = (pts @ torch.stack([e0, e1]).T).numpy()
        if pad is None:
            poly = uv
        else:
            if not (pad >= 0):
                raise ValueError(f"pad must be a non-negative number; got {pad!r}")
            lo, hi = uv.min(axis=0), uv.max(axis=0)
            m = pad * float((hi - lo).max())
            lo, hi = lo - m, hi + m
            poly = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])
        return cls(origin, basis, poly)

    def scaled(self, factor: float, about=None) -> "Slice":
        """Scale the polygon about a point, in the same plane: ``factor < 1`` zooms in.

        Parameters
        ----------
        factor : float
            A positive scale factor.
        about : array-like, optional
            ``(2,)`` plane coordinates of the fixed point (default: the mean of the
            polygon's corners; for a slice through three inputs, their centroid).

        Returns
        -------
        Slice
            A new slice with the same origin and basis.

        Raises
        ------
        ValueError
            When ``factor`` is not a positive finite number.

        Examples
        --------
        >>> import splinecam
        >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
        >>> sl.scaled(0.5).area
        1.0
        """
        f = float(factor) if isinstance(factor, numbers.Real) and not isinstance(factor, bool) else math.nan
        if not (math.isfinite(f) and f > 0):
            raise ValueError(f"factor must be a positive number; got {factor!r}")
        c = self._polygon.mean(axis=0) if about is None else np.asarray(about, dtype=np.float64).reshape(2)
        return Slice(self._origin, self._basis, c + f * (self._polygon - c))

    # -- properties --------------------------------------------------------------------
    @property
    def polygon(self) -> np.ndarray:
        """``(k, 2)`` float64: the domain's corners in plane coordinates, counter-clockwise."""
        return self._polygon.copy()

    @property
    def origin(self) -> torch.Tensor:
        """The input at plane coordinates (0, 0), shaped like one model input."""
        return self._origin

    @property
    def basis(self) -> torch.Tensor:
        """``(2, *input_shape)``: the plane's two direction vectors."""
        return self._basis

    @property
    def input_shape(self) -> tuple:
        """The shape of one model input (tuple of int, no batch dimension)."""
        return tuple(self._origin.shape)

    @property
    def area(self) -> float:
        """The polygon's area in plane coordinates (float)."""
        return polygon_area(self._polygon)

    def to_input(self, u) -> torch.Tensor:
        """Map plane points to model inputs: ``origin + u[:, 0] * basis[0] + u[:, 1] * basis[1]``.

        Parameters
        ----------
        u : array-like or torch.Tensor
            ``(n, 2)`` plane coordinates.

        Returns
        -------
        torch.Tensor
            ``(n, *input_shape)`` float64 inputs on the CPU.

        Raises
        ------
        ValueError
            When ``u`` is not of shape ``(n, 2)``.
        """
        u = torch.as_tensor(np.asarray(u, dtype=np.float64) if not isinstance(u, torch.Tensor) else u,
                            dtype=torch.float64)
        if u.dim() != 2 or u.shape[1] != 2:
            raise ValueError(f"plane points must have shape (n, 2); got {tuple(u.shape)}")
        # origin + u @ basis in one call (the same rounding as the product, then the sum)
        x = torch.addmm(self._origin.reshape(-1), u, self._basis.reshape(2, -1))
        return x.reshape(u.shape[0], *self._origin.shape)

    def to_plane(self, x) -> np.ndarray:
        """Project model inputs orthogonally onto the plane.

        The inverse of :meth:`to_input` for inputs in the plane.

        Parameters
        ----------
        x : array-like or torch.Tensor
            ``(n, *input_shape)`` inputs.

        Returns
        -------
        numpy.ndarray
            ``(n, 2)`` float64 plane coordinates of their orthogonal projections.
        """
        x = _as_f64_tensor(x, "x").reshape(-1, self._origin.numel()) - self._origin.flatten()
        b = self._basis.reshape(2, -1)
        return torch.linalg.solve(b @ b.T, b @ x.T).T.numpy()

    def __repr__(self) -> str:
        return (f"Slice(input_shape={self.input_shape}, corners={len(self._polygon)}, "
                f"area={self.area:.6g})")
