"""Helpers of the original SplineCam API (``splinecam.utils``).

The original workflow describes a 2-D slice of the input space by a *domain* — a closed
polygon of input-space vertices, shape ``(k+1, D)`` with the first vertex repeated last —
and a *projection matrix* ``T = get_proj_mat(domain)`` of shape ``(D, 3)``:

* ``T[:, 0]`` and ``T[:, 1]`` are the unit vectors along ``domain[1] - domain[0]`` and
  ``domain[-2] - domain[0]`` (the two edges leaving the first vertex);
* ``T[:, 2]`` is the mean of the distinct domain vertices.

Plane ("slice") coordinates of an input ``x`` are ``u = T[:, :2].T @ (x - T[:, 2])``;
regions and decision-boundary segments are returned in these coordinates. The two edge
vectors need not be orthogonal, so the inverse map on the plane is
``x = T[:, 2] + V @ inv(V.T @ V) @ u`` with ``V = T[:, :2]`` (see
:func:`from_plane_coords`), not ``T[:, 2] + V @ u``.
"""

import numpy as np
import torch

from splinecam.geometry import convex_hull, polygon_area

__all__ = [
    "get_proj_mat",
    "to_plane_coords",
    "from_plane_coords",
    "create_polytope_2d",
    "region_area_2d",
    "region_eccentricity_2d",
    "centrality",
    "get_region_statistics",
    "get_region_means",
    "split_domain_by_edge",
    "get_square_slice_from_one_anchor",
    "get_square_slice_from_two_anchors",
    "get_square_slice_from_centroid",
]


# ----------------------------------------------------------------------------- helpers


def _as_f64(x):
    """A float64 CPU torch tensor viewing / copying ``x`` (torch tensor, numpy, list)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(device="cpu", dtype=torch.float64)
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def _like(result, ref):
    """Return ``result`` (float64 CPU tensor) as the same kind of object as ``ref``:
    a numpy array for numpy input, else a tensor with ``ref``'s dtype and device."""
    if isinstance(ref, torch.Tensor):
        dtype = ref.dtype if ref.is_floating_point() else torch.float64
        return result.to(device=ref.device, dtype=dtype)
    return result.numpy()


def _distinct_vertices(poly):
    """Rows of a polygon without the closing repeat of the first vertex (if present)."""
    if poly.shape[0] > 1 and torch.equal(poly[0], poly[-1]):
        return poly[:-1]
    return poly


def _flat_domain(domain):
    """Domain as a float64 ``(n, D)`` tensor of distinct vertices (the closing vertex
    dropped); images are flattened."""
    d = _as_f64(domain)
    if d.ndim < 2:
        raise ValueError(f"domain must have shape (k+1, D), got {tuple(d.shape)}")
    d = d.reshape(d.shape[0], -1)
    d = _distinct_vertices(d)
    if d.shape[0] < 3:
        raise ValueError("domain needs at least 3 distinct vertices")
    return d


def _plane(T):
    """Split a projection matrix into ``(mean [D], V [D,2], B [D,2])`` (float64, CPU),
    where ``B = V @ inv(V.T V)`` maps plane coordinates back into the input space."""
    T = _as_f64(T)
    if T.ndim != 2 or T.shape[1] != 3:
        raise ValueError(f"T must have shape (D, 3) = [v1 v2 mean], got {tuple(T.shape)}")
    V, mean = T[:, :2], T[:, 2]
    G = V.T @ V
    # A (nearly) singular Gram matrix means v1 and v2 are (nearly) parallel or zero.
    sv = torch.linalg.svdvals(G)
    if not torch.isfinite(sv).all() or sv[-1] <= 1e-12 * max(float(sv[0]), 1e-300):
        raise ValueError("the two plane vectors T[:, 0] and T[:, 1] are (nearly) parallel or zero")
    B = V @ torch.linalg.inv(G)
    return mean, V, B


# ----------------------------------------------------------------------------- the plane


def get_proj_mat(domain):
    """Compute the projection matrix ``T`` of a closed input-space polygon.

    Parameters
    ----------
    domain : torch.Tensor or numpy.ndarray
        ``(k+1, D)`` vertices, the first repeated last (an open polygon is accepted
        too); image-shaped vertices ``(k+1, *input_shape)`` are flattened.

    Returns
    -------
    torch.Tensor or numpy.ndarray
        ``(D, 3)``: ``[v1 v2 mean]`` with ``v1 = domain[1] - domain[0]`` and
        ``v2 = domain[-2] - domain[0]`` (the last distinct vertex) scaled to unit
        length, and ``mean`` the mean of the distinct vertices; the same kind of object
        (and, for tensors, dtype and device) as ``domain``.

    Raises
    ------
    ValueError
        When the first vertex is repeated or its two edges are parallel.

    Examples
    --------
    >>> import torch
    >>> from splinecam.compat.utils import get_proj_mat
    >>> domain = torch.tensor([[0., 0.], [2., 0.], [2., 2.], [0., 2.], [0., 0.]])
    >>> get_proj_mat(domain)
    tensor([[1., 0., 1.],
            [0., 1., 1.]])
    """
    d = _flat_domain(domain)
    v = torch.stack([d[1] - d[0], d[-1] - d[0]])
    norms = torch.linalg.norm(v, dim=1, keepdim=True)
    if not (norms > 0).all():
        raise ValueError("domain has repeated consecutive vertices at its first vertex")
    T = torch.cat([(v / norms).T, d.mean(0, keepdim=True).T], dim=1)
    _plane(T)  # raises if the two edges are parallel
    return _like(T, domain)


def to_plane_coords(x, T):
    """Compute plane coordinates ``u = T[:, :2].T @ (x - T[:, 2])`` of inputs.

    Parameters
    ----------
    x : torch.Tensor or numpy.ndarray
        ``(N, D)`` or ``(N, *input_shape)`` inputs, or one input ``(D,)``.
    T : torch.Tensor or numpy.ndarray
        ``(D, 3)`` projection matrix (:func:`get_proj_mat`).

    Returns
    -------
    torch.Tensor or numpy.ndarray
        ``(N, 2)`` (or ``(2,)``) plane coordinates, of the same kind as ``x``.
    """
    mean, V, _ = _plane(T)
    xf = _as_f64(x)
    single = xf.ndim == 1
    xf = xf.reshape(1 if single else xf.shape[0], -1)
    u = (xf - mean) @ V
    return _like(u[0] if single else u, x)


def from_plane_coords(u, T, input_shape=None):
    """Map plane coordinates back to inputs: the inverse of :func:`to_plane_coords` on the plane.

    ``x = mean + V (V^T V)^-1 u`` with ``V = T[:, :2]`` (the two edge vectors need not
    be orthogonal).

    Parameters
    ----------
    u : torch.Tensor or numpy.ndarray
        ``(N, 2)`` or ``(2,)`` plane coordinates.
    T : torch.Tensor or numpy.ndarray
        ``(D, 3)`` projection matrix (:func:`get_proj_mat`).
    input_shape : tuple of int, optional
        Reshape the inputs to ``(N, *input_shape)``.

    Returns
    -------
    torch.Tensor or numpy.ndarray
        ``(N, D)`` (or ``(N, *input_shape)``; one input for ``u`` of shape ``(2,)``),
        of the same kind as ``u``.
    """
    mean, _, B = _plane(T)
    uf = _as_f64(u)
    single = uf.ndim == 1
    uf = uf.reshape(-1, 2)
    x = mean + uf @ B.T
    if input_shape is not None:
        x = x.reshape(x.shape[0], *tuple(input_shape))
    return _like(x[0] if single else x, u)


# ----------------------------------------------------------------------------- polygons


def create_polytope_2d(scale=1, seed=None, init_points_n=30):
    """Draw a random convex polygon in the plane.

    The convex hull of ``init_points_n`` uniform points of the unit square, centred on
    its vertex mean and scaled by ``scale``.

    Parameters
    ----------
    scale : float
        Scale factor.
    seed : int, optional
        Seed of the numpy generator (default: fresh randomness).
    init_points_n : int
        Number of random points.

    Returns
    -------
    numpy.ndarray
        ``(k+1, 2)`` the closed polygon, counter-clockwise.
    """
    rng = np.random.default_rng(seed=seed)
    pts = rng.random((init_points_n, 2))
    hull = convex_hull(pts)
    hull = (hull - hull.mean(0)) * scale
    return np.vstack([hull, hull[:1]])


def _open_poly(poly):
    """float64 tensor of a polygon's distinct vertices, whether given closed or open."""
    return _distinct_vertices(_as_f64(poly))


def region_area_2d(poly):
    """Compute the area of a 2-D polygon.

    Parameters
    ----------
    poly : torch.Tensor or array-like
        ``(k, 2)`` vertices, closed or open.

    Returns
    -------
    torch.Tensor
        0-d float64: the area.
    """
    # shoelace relative to the polygon's first vertex (splinecam.geometry)
    return torch.tensor(abs(polygon_area(_open_poly(poly).numpy())), dtype=torch.float64)


def region_eccentricity_2d(poly, eps=1e-10):
    """Compute a polygon's eccentricity: longest over shortest pairwise vertex distance.

    Parameters
    ----------
    poly : torch.Tensor or array-like
        ``(k, 2)`` vertices, closed or open.
    eps : float
        Added to the shortest distance.

    Returns
    -------
    torch.Tensor
        0-d float64: the ratio.
    """
    d = torch.pdist(_open_poly(poly))
    return d.max() / (d.min() + eps)


def centrality(polys):
    """Compute the mean and standard deviation of the vertices' distances to their centroid.

    Parameters
    ----------
    polys : list of torch.Tensor or array-like
        Regions as ``(k, 2)`` vertex lists, closed or open; the centroid is the mean of
        all their vertices.

    Returns
    -------
    mean, std : torch.Tensor
        0-d float64 tensors.
    """
    verts = torch.cat([_open_poly(p) for p in polys])
    dist = torch.linalg.norm(verts - verts.mean(0), dim=-1)
    return dist.mean(0), dist.std(0)


def get_region_statistics(polys):
    """Compute summary statistics of a list of regions.

    Parameters
    ----------
    polys : list of torch.Tensor or array-like
        Regions as ``(k, 2)`` vertex lists, closed or open.

    Returns
    -------
    names : list of str
        ``['vol_m', 'vol_std', 'nverts', 'nregions', 'ecc_m', 'ecc_std', 'centr_m',
        'centr_std']``.
    values : torch.Tensor
        ``(8,)`` float64: mean / std of region areas, total vertex count (summed over
        regions), number of regions, mean / std of region eccentricities, mean / std of
        vertex distances to the centroid of all vertices.
    """
    names = ["vol_m", "vol_std", "nverts", "nregions", "ecc_m", "ecc_std", "centr_m", "centr_std"]
    opened = [_open_poly(p) for p in polys]
    vols = torch.stack([region_area_2d(p) for p in opened])
    eccs = torch.stack([region_eccentricity_2d(p) for p in opened])
    centr_m, centr_std = centrality(opened)
    values = torch.stack([
        vols.mean(), vols.std(),
        torch.tensor(float(sum(p.shape[0] for p in opened)), dtype=torch.float64),
        torch.tensor(float(len(opened)), dtype=torch.float64),
        eccs.mean(), eccs.std(), centr_m, centr_std,
    ])
    return names, values


def get_region_means(regions, dims=2, dtype=torch.float64, device="cpu"):
    """Compute the vertex mean of each region: a point inside the convex region.

    Parameters
    ----------
    regions : list of torch.Tensor or array-like
        Regions as ``(k, dims)`` vertex lists, closed or open.
    dims : int
        Coordinates per vertex.
    dtype : torch.dtype
        The result's dtype.
    device : str or torch.device
        The result's device.

    Returns
    -------
    torch.Tensor
        ``(n_regions, dims)``.
    """
    means = torch.zeros(len(regions), dims, dtype=dtype, device=device)
    for i, r in enumerate(regions):
        means[i] = _open_poly(r).mean(0).to(dtype=dtype, device=device)
    return means


def split_domain_by_edge(domain):
    """Split a closed polygon into triangles ``[v_i, v_{i+1}, centroid, v_i]``, one per edge.

    Parameters
    ----------
    domain : torch.Tensor or array-like
        ``(k+1, D)`` the closed polygon (an open one is accepted too).

    Returns
    -------
    list of torch.Tensor
        ``k`` closed triangles of shape ``(4, D)``, float64.
    """
    d = _as_f64(domain)
    d = d.reshape(d.shape[0], -1)
    opened = _distinct_vertices(d)
    c = opened.mean(0)
    closed = torch.cat([opened, opened[:1]])
    return [torch.stack([a, b, c, a]) for a, b in zip(closed[:-1], closed[1:])]


# ----------------------------------------------------------------------------- square slices


def _square_domain(centre, u1, u2, pad_dist):
    """Closed square ``[c+p*u1, c+p*u2, c-p*u1, c-p*u2, c+p*u1]`` with unit u1 ⟂ u2."""
    dirs = torch.stack([u1, u2])
    dirs = dirs / torch.linalg.norm(dirs, dim=-1, keepdim=True)
    verts = torch.cat([centre + pad_dist * dirs, centre - pad_dist * dirs])
    return torch.cat([verts, verts[:1]])


def _orthogonalise(u1, z):
    """Component of ``z`` orthogonal to ``u1``."""
    return z - (u1 @ z) / (u1 @ u1) * u1


def _randn_like(x, seed):
    if seed is None:
        return torch.randn_like(x)
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)


def get_square_slice_from_one_anchor(anchors, pad_dist=1, seed=None):
    """Make a square domain centred on one anchor, spanned by two random orthonormal directions.

    Parameters
    ----------
    anchors : torch.Tensor
        ``(1, D)`` one flattened input.
    pad_dist : float
        Half the square's diagonal.
    seed : int, optional
        Seed of the two random directions (default: torch's global generator).

    Returns
    -------
    torch.Tensor
        ``(5, D)`` the closed square (first vertex repeated last), half-diagonal
        ``pad_dist``, in the anchors' dtype and device.

    Raises
    ------
    ValueError
        When the number of anchors is wrong.
    """
    if len(anchors) != 1:
        raise ValueError("expected exactly one anchor")
    c = anchors[0]
    z1 = _randn_like(c, seed)
    z2 = _randn_like(c, None if seed is None else int(seed) + 1)
    return _square_domain(c, z1, _orthogonalise(z1, z2), pad_dist)


def get_square_slice_from_two_anchors(anchors, pad_dist=1, seed=0):
    """Make a square domain centred on the mean of two anchors.

    As in the original, the first direction is the vector ``anchors[0]`` itself; the
    second is ``anchors[2]`` (if given) or a random vector, orthogonalised against it.

    Parameters
    ----------
    anchors : torch.Tensor
        ``(2, D)`` or ``(3, D)`` flattened inputs.
    pad_dist : float
        Half the square's diagonal.
    seed : int, optional
        Seed of the random second direction (used without a third anchor; None: torch's
        global generator).

    Returns
    -------
    torch.Tensor
        ``(5, D)`` the closed square (first vertex repeated last), half-diagonal
        ``pad_dist``, in the anchors' dtype and device.

    Raises
    ------
    ValueError
        When the number of anchors is wrong.
    """
    if len(anchors) < 2:
        raise ValueError("expected at least two anchors")
    c = anchors[:2].mean(0)
    u1 = anchors[0]
    z = anchors[2] if len(anchors) >= 3 else _randn_like(u1, seed)
    return _square_domain(c, u1, _orthogonalise(u1, z), pad_dist)


def get_square_slice_from_centroid(anchors, pad_dist=1, seed=0):
    """Make a square domain centred on the mean of three anchors.

    The directions are ``anchors[0]`` and ``anchors[1]`` orthogonalised against it, as
    in the original.

    Parameters
    ----------
    anchors : torch.Tensor
        ``(3, D)`` flattened inputs.
    pad_dist : float
        Half the square's diagonal.
    seed : int
        Not used (kept for the original's signature).

    Returns
    -------
    torch.Tensor
        ``(5, D)`` the closed square (first vertex repeated last), half-diagonal
        ``pad_dist``, in the anchors' dtype and device.

    Raises
    ------
    ValueError
        When the number of anchors is wrong.
    """
    if len(anchors) != 3:
        raise ValueError("expected exactly three anchors")
    c = anchors.mean(0)
    u1 = anchors[0]
    return _square_domain(c, u1, _orthogonalise(u1, anchors[1]), pad_dist)
