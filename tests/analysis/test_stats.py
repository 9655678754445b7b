"""splinecam.analysis.stats against independent evidence: Monte Carlo hit rates through fresh
forward passes, Cauchy-Crofton line counts of the model's sign changes, hand-worked
shapes and models, and brute-force geometry."""
import copy
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

import splinecam
from splinecam import zoo
from splinecam.analysis import stats

SQUARE = [[-1, -1], [1, -1], [1, 1], [-1, 1]]


# -- models ---------------------------------------------------------------------------------
def relu_net(W, b, v, c):
    """u -> v . relu(W u + b) + c, hand-set weights (float64, eval)."""
    W = torch.tensor(W, dtype=torch.float64)
    lin1 = nn.Linear(W.shape[1], W.shape[0]).double()
    lin2 = nn.Linear(W.shape[0], 1).double()
    with torch.no_grad():
        lin1.weight.copy_(W)
        lin1.bias.copy_(torch.tensor(b, dtype=torch.float64))
        lin2.weight.copy_(torch.tensor([v], dtype=torch.float64))
        lin2.bias.fill_(c)
    return nn.Sequential(lin1, nn.ReLU(), lin2).eval()


def affine_model():
    """No nonlinearity: one region, the whole domain."""
    return nn.Sequential(nn.Linear(2, 1)).eval()


def part(model, poly=SQUARE, **kw):
    return splinecam.partition(model, splinecam.Slice.plane2d(poly), progress=False, **kw)


@pytest.fixture(scope="module")
def mc(net1):
    """100k uniform points of the square and the region each lies in (by P.locate:
    activation patterns of a fresh forward pass)."""
    _, P = net1
    g = np.random.default_rng(123)
    u = g.uniform(-1, 1, (100_000, 2))
    return u, P.locate(u)


def forward(model, u):
    with torch.no_grad():
        return model(torch.as_tensor(u, dtype=torch.float64)).numpy()


# -- region counts --------------------------------------------------------------------------
def test_regions_per_layer(net1):
    model, P = net1
    r = stats.regions_per_layer(P)
    assert r.shape == (P.num_layers,) and r.dtype == np.int64
    assert r[-1] == P.num_regions and np.all(np.diff(r) >= 0)
    # Layer 1 is an arrangement of lines in general position: 1 + (lines meeting the
    # open square) + (pairwise intersections inside it).
    W, b = model[0].weight.detach().numpy(), model[0].bias.detach().numpy()
    t = np.linspace(-1, 1, 20001)
    border = np.concatenate([np.stack([t, -np.ones_like(t)], 1), np.stack([t, np.ones_like(t)], 1),
                             np.stack([-np.ones_like(t), t], 1), np.stack([np.ones_like(t), t], 1)])
    z = border @ W.T + b
    lines = int(np.sum((z.min(0) < 0) & (z.max(0) > 0)))
    cuts = 0
    for i, j in itertools.combinations(range(len(W)), 2):
        p = np.linalg.solve(W[[i, j]], -b[[i, j]])
        cuts += int(np.all(np.abs(p) < 1))
    assert r[0] == 1 + lines + cuts


# -- areas and moments ----------------------------------------------------------------------
def test_areas_match_monte_carlo_hit_rates(net1, mc):
    _, P = net1
    u, reg = mc
    a = stats.region_areas(P)
    assert a.shape == (P.num_regions,) and np.all(a > 0)
    assert a.sum() == pytest.approx(4.0, rel=1e-12)
    assert np.all(reg >= 0)
    p_hat = np.bincount(reg, minlength=P.num_regions) / len(u)
    p = a / 4.0
    sigma = np.sqrt(p * (1 - p) / len(u))
    assert np.all(np.abs(p_hat - p) <= 5 * sigma + 2 / len(u))


def test_moments_match_monte_carlo(net1, mc):
    _, P = net1
    u, reg = mc
    area, cen, M = stats.region_moments(P)
    assert cen.shape == (P.num_regions, 2) and M.shape == (P.num_regions, 2, 2)
    for r in np.argsort(area)[-5:]:      # the five largest regions: thousands of hits each
        q = u[reg == r]
        assert np.abs(q.mean(0) - cen[r]).max() < 5 * np.sqrt(M[r].trace() / area[r] / len(q))
        cov = np.cov(q.T, bias=True)
        assert np.allclose(cov, M[r] / area[r], atol=0.05 * np.trace(M[r]) / area[r])


@pytest.mark.parametrize("poly, ecc, diam", [
    ([[0, 0], [1, 0], [1, 1], [0, 1]], 1.0, math.sqrt(2)),                       # square
    ([[0, 0], [2, 0], [2, 1], [0, 1]], 2.0, math.sqrt(5)),                       # 2:1 rectangle
    ([[0, 0], [3, 0], [3, 1], [0, 1]], 3.0, math.sqrt(10)),                      # 3:1 rectangle
    ([[0, 0], [2, 2], [1, 3], [-1, 1]], 2.0, math.sqrt(10)),                     # rotated 2:1 (√8 x √2)
    ([[0, 0], [1, 0], [0.5, math.sqrt(3) / 2]], 1.0, 1.0),                       # equilateral triangle
    ([[math.cos(a), math.sin(a)] for a in np.arange(6) * np.pi / 3], 1.0, 2.0),  # regular hexagon
    ([[0, 0], [1, 0], [2, 0], [2, 1], [0, 1]], 2.0, math.sqrt(5)),               # straight-angle vertex kept
])
def test_eccentricity_and_diameter_of_hand_made_shapes(poly, ecc, diam):
    P = part(affine_model(), poly)
    assert P.num_regions == 1
    assert stats.region_eccentricity(P) == pytest.approx([ecc], rel=1e-9)
    assert stats.region_diameters(P) == pytest.approx([diam], rel=1e-12)


def test_rectangle_second_moment_by_hand():
    P = part(affine_model(), [[1, 2], [4, 2], [4, 4], [1, 4]])   # 3 x 2 rectangle
    area, cen, M = stats.region_moments(P)
    assert area == pytest.approx([6.0]) and cen[0] == pytest.approx([2.5, 3.0])
    assert M[0] == pytest.approx(np.array([[3 ** 3 * 2 / 12, 0], [0, 3 * 2 ** 3 / 12]]), abs=1e-12)
    assert stats.region_eccentricity(P) == pytest.approx([1.5])


def test_diameters_brute_force_and_monte_carlo(net1, mc):
    _, P = net1
    d = stats.region_diameters(P)
    brute = np.array([max(math.dist(a, b) for a, b in itertools.combinations(p, 2)) for p in P.polygons()])
    assert np.allclose(d, brute, rtol=1e-12)
    u, reg = mc
    for r in np.unique(reg)[:40]:
        q = u[reg == r][:200]
        if len(q) > 1:
            assert np.linalg.norm(q[:, None] - q[None], axis=-1).max() <= d[r] * (1 + 1e-12)
    assert np.all(stats.region_eccentricity(P) >= 1)


# -- local complexity -----------------------------------------------------------------------
def test_local_complexity_single_region_is_one_over_area():
    dens, xe, ye = stats.local_complexity(part(affine_model()), bins=8)
    assert dens.shape == (8, 8) and np.allclose(dens, 0.25) and np.allclose(xe, np.linspace(-1, 1, 9))
    # A triangle: cells outside are NaN; every cell meeting it has density 1 / area.
    P = part(affine_model(), [[0, 0], [1, 0], [0, 1]])
    dens, xe, ye = stats.local_complexity(P, bins=(4, 5))
    assert dens.shape == (4, 5)
    xc, yc = np.meshgrid(xe[:-1], ye[:-1], indexing="ij")
    inside = xc + yc < 1 - 1e-9           # lower-left corner strictly inside the triangle
    assert np.allclose(dens[inside], 2.0)
    assert np.all(np.isnan(dens[(xc + yc) > 1 + 1e-9]))


def test_local_complexity_counts_every_region_once(net1):
    _, P = net1
    for bins in (1, 7, (16, 5), 64):
        dens, xe, ye = stats.local_complexity(P, bins=bins)
        cell = np.diff(xe)[0] * np.diff(ye)[0]
        assert np.nansum(dens) * cell == pytest.approx(P.num_regions, rel=1e-9)
    # Refining the grid 2x2 and pooling gives the same coarse densities.
    coarse, _, _ = stats.local_complexity(P, bins=8)
    fine, _, _ = stats.local_complexity(P, bins=16)
    assert np.allclose(fine.reshape(8, 2, 8, 2).mean(axis=(1, 3)), coarse, rtol=1e-9)


def test_local_complexity_matches_monte_carlo_on_hand_set_lines():
    # Five lines, none axis-aligned only: regions are at least a few hundredths in area,
    # so E[1 / area(region at u)] over a cell has a small Monte Carlo error.
    W = [[1, 0], [1, 0], [0, 1], [1, 1], [1, -2]]
    b = [0.5, -0.2, -0.1, -0.3, 0.4]
    P = part(relu_net(W, b, [1, -1, 1, 1, -1], 0.05))
    a = P.areas()
    assert a.min() > 1e-3
    dens, xe, ye = stats.local_complexity(P, bins=4)
    g = np.random.default_rng(7)
    u = g.uniform(-1, 1, (80_000, 2))
    f = 1.0 / a[P.locate(u)]
    ix = np.clip(np.searchsorted(xe, u[:, 0]) - 1, 0, 3)
    iy = np.clip(np.searchsorted(ye, u[:, 1]) - 1, 0, 3)
    for i in range(4):
        for j in range(4):
            s = f[(ix == i) & (iy == j)]
            assert abs(s.mean() - dens[i, j]) <= 5 * s.std() / np.sqrt(len(s)) + 1e-9


# -- decision boundary ----------------------------------------------------------------------
def test_straight_decision_boundary_by_hand():
    # relu(x) - relu(-x) + relu(y) - relu(-y) - 0.25 = x + y - 0.25: a line from
    # (1, -0.75) to (-0.75, 1), through three of the four quadrant regions.
    P = part(relu_net([[1, 0], [-1, 0], [0, 1], [0, -1]], [0, 0, 0, 0], [1, -1, 1, -1], -0.25))
    assert P.num_regions == 4
    assert stats.decision_boundary_length(P) == pytest.approx(1.75 * math.sqrt(2), rel=1e-12)
    q = P.locate([[0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    assert list(stats.regions_on_boundary(P)) == sorted(q)
    # A line that stays in one region: x + y = 1.5 only meets the upper-right quadrant.
    P = part(relu_net([[1, 0], [-1, 0], [0, 1], [0, -1]], [0, 0, 0, 0], [1, -1, 1, -1], -1.5))
    assert stats.decision_boundary_length(P) == pytest.approx(0.5 * math.sqrt(2), rel=1e-12)
    assert list(stats.regions_on_boundary(P)) == list(P.locate([[0.9, 0.9]]))


def test_diamond_decision_boundary_by_hand():
    # |x| + |y| = 0.5: perimeter 4 * 0.5 * sqrt(2), crossing all four quadrant regions.
    P = part(relu_net([[1, 0], [-1, 0], [0, 1], [0, -1]], [0, 0, 0, 0], [1, 1, 1, 1], -0.5))
    assert P.num_regions == 4
    assert stats.decision_boundary_length(P) == pytest.approx(2 * math.sqrt(2), rel=1e-12)
    assert list(stats.regions_on_boundary(P)) == [0, 1, 2, 3]
    # Shift it off the square: no boundary at all.
    P = part(relu_net([[1, 0], [-1, 0], [0, 1], [0, -1]], [0, 0, 0, 0], [1, 1, 1, 1], 0.5))
    assert stats.decision_boundary_length(P) == 0.0 and len(stats.regions_on_boundary(P)) == 0


def crofton_length(model, classes, n_theta=64, n_p=64, n_s=600, seed=0):
    """Cauchy-Crofton: length = (pi R / 2) * E[crossings] * 2 / 2 for lines
    {u . (cos t, sin t) = p}, t uniform on [0, pi), p uniform on [-R, R]; crossings
    counted as changes of the model's sign (or arg-max) between fine samples inside the
    square."""
    R = math.sqrt(2)
    g = np.random.default_rng(seed)
    th = (np.arange(n_theta) + g.random(n_theta)) * np.pi / n_theta
    p = -R + (np.arange(n_p) + g.random(n_p)) * 2 * R / n_p
    th, p = np.meshgrid(th, p, indexing="ij")
    th, p = th.ravel(), p.ravel()
    s = np.linspace(-R, R, n_s)
    n = np.stack([np.cos(th), np.sin(th)], 1)
    t = np.stack([-np.sin(th), np.cos(th)], 1)
    u = p[:, None, None] * n[:, None, :] + s[None, :, None] * t[:, None, :]      # (lines, s, 2)
    y = forward(model, u.reshape(-1, 2))
    lab = (y[:, 0] > 0) if classes == 1 else y.argmax(1)
    lab = lab.reshape(len(th), n_s)
    ins = np.all(np.abs(u) <= 1, axis=2)
    change = (lab[:, 1:] != lab[:, :-1]) & ins[:, 1:] & ins[:, :-1]
    return change.sum(1).mean() * math.pi * R


@pytest.mark.parametrize("which", ["net1", "net3"])
def test_boundary_length_matches_cauchy_crofton(which, request):
    model, P = request.getfixturevalue(which)
    L = stats.decision_boundary_length(P)
    est = crofton_length(model, 1 if which == "net1" else 3)
    assert est == pytest.approx(L, rel=0.03)


def shrunk_vertex_values(model, P, shrink=1e-7):
    """Fresh forward pass at every region's vertices pulled slightly inside."""
    coords, off = P.faces()
    face = np.repeat(np.arange(P.num_regions), np.diff(off))
    c = P.centroids()[face]
    return forward(model, c + (1 - shrink) * (coords - c)), face, off


@pytest.mark.parametrize("which", ["net1", "net3"])
def test_regions_on_boundary_match_forward_passes(which, request):
    model, P = request.getfixturevalue(which)
    y, face, off = shrunk_vertex_values(model, P)
    if y.shape[1] == 1:
        crossed = (np.minimum.reduceat(y[:, 0], off[:-1]) < 0) & (np.maximum.reduceat(y[:, 0], off[:-1]) > 0)
    else:
        # The arg-max is constant on a convex region iff it is the same at every vertex.
        lab = y.argmax(1)
        crossed = np.minimum.reduceat(lab, off[:-1]) != np.maximum.reduceat(lab, off[:-1])
    got = stats.regions_on_boundary(P)
    assert got.dtype == np.int64
    assert list(got) == list(np.flatnonzero(crossed))


def test_regions_on_boundary_without_decision_boundary(net1):
    _, P = net1
    assert len(stats.regions_on_boundary(P.at_layer(1))) == 0
    assert stats.decision_boundary_length(P.at_layer(1)) == 0.0


# -- adjacency --------------------------------------------------------------------------------
def test_adjacency_matches_brute_force_shared_vertices(net1):
    # Two convex regions with disjoint interiors share a positive-length edge iff they
    # share at least two points of their boundaries - here, two vertices (the cycles
    # include every vertex on their sides).
    _, P = net1
    pairs = stats.adjacency(P)
    assert pairs.dtype == np.int64 and pairs.shape[1] == 2 and np.all(pairs[:, 0] < pairs[:, 1])
    keys = [set(map(tuple, np.round(p, 12))) for p in P.polygons()]
    brute = {(i, j) for i, j in itertools.combinations(range(P.num_regions), 2) if len(keys[i] & keys[j]) >= 2}
    assert set(map(tuple, pairs.tolist())) == brute
    assert len(brute) == len(pairs)


def test_adjacency_matches_sampling_across_edges(net1):
    _, P = net1
    pairs = set(map(tuple, stats.adjacency(P).tolist()))
    mids, nrms = [], []
    for p in P.polygons():
        q = np.roll(p, -1, axis=0)
        d = q - p
        nrms.append(np.stack([d[:, 1], -d[:, 0]], 1) / np.linalg.norm(d, axis=1)[:, None])
        mids.append(0.5 * (p + q))
    mid, nrm = np.concatenate(mids), np.concatenate(nrms)
    a, b = P.locate(mid - 1e-9 * nrm), P.locate(mid + 1e-9 * nrm)
    found = {(min(i, j), max(i, j)) for i, j in zip(a, b) if i >= 0 and j >= 0 and i != j}
    assert found == pairs


def test_adjacency_sparse_lengths_add_up(net1):
    pytest.importorskip("scipy")
    _, P = net1
    pairs, m = stats.adjacency(P, sparse=True)
    assert m.shape == (P.num_regions, P.num_regions) and (m != m.T).nnz == 0 and m.nnz == 2 * len(pairs)
    perim = sum(np.linalg.norm(np.roll(p, -1, 0) - p, axis=1).sum() for p in P.polygons())
    # Every interior edge is counted by both its regions; the domain's boundary once.
    assert m.sum() + 8.0 == pytest.approx(perim, rel=1e-12)


def test_summary(net3):
    _, P = net3
    s = stats.summary(P)
    assert s["regions"] == P.num_regions and s["regions_per_layer"][-1] == P.num_regions
    assert s["decision_boundary_length"] == pytest.approx(stats.decision_boundary_length(P))
    assert s["area_mean"] == pytest.approx(4.0 / P.num_regions)
    assert 0 < s["regions_on_boundary"] < P.num_regions
    assert all(isinstance(v, (int, float, list)) for v in s.values())
    import json
    json.dumps(s)


# -- areas far from the plane's origin (fuzz finding) ----------------------------------------
FAR = np.array([1e6, 1e6])


def mlp_crossing(centre=FAR, side=1.0, seed=0, widths=(2, 16, 16, 1)):
    """zoo.mlp with the first layer's biases shifted so that every unit's zero line
    passes through its own random point of the square of ``side`` around ``centre``."""
    m = zoo.mlp(widths, seed=seed).double()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        p = torch.tensor(centre, dtype=torch.float64) + side * (
            torch.rand(widths[1], 2, generator=g, dtype=torch.float64) - 0.5)
        m[0].bias.copy_(-(m[0].weight * p).sum(1))
    return m


def test_areas_of_a_unit_square_far_from_the_origin_are_positive_and_add_up():
    """The shoelace on absolute coordinates cancels terms of 1e12 there: P.areas() gave
    regions of a valid partition areas like -6.1e-5 and check_partition failed. Areas
    are now computed relative to each region's own vertex."""
    model = mlp_crossing()
    P = part(model, FAR + np.array(SQUARE) / 2)
    assert P.slice.area == 1.0
    a = P.areas()
    assert P.num_regions > 100 and np.all(a > 0)
    assert abs(a.sum() - 1.0) <= 1e-9
    splinecam.testing.check_partition(P)
    assert np.array_equal(stats.region_areas(P), a)
    area, _, _ = stats.region_moments(P)
    assert np.allclose(area, a, rtol=1e-9, atol=0)
    from splinecam import utils
    assert np.allclose([float(utils.region_area_2d(p)) for p in P.polygons()], a, rtol=1e-12, atol=0)
    density, xe, ye = stats.local_complexity(P, bins=4)
    assert (density * (xe[1] - xe[0]) * (ye[1] - ye[0])).sum() == pytest.approx(P.num_regions, rel=1e-9)
    # The same model moved to the origin has the same regions, up to the float64
    # resolution of coordinates at 1e6 (times a region's perimeter).
    moved = copy.deepcopy(model)
    with torch.no_grad():
        moved[0].bias.add_(moved[0].weight @ torch.tensor(FAR))
    Q = part(moved, np.array(SQUARE) / 2)
    assert Q.num_regions == P.num_regions
    atol = 16 * np.spacing(2e6) * 4
    assert np.allclose(np.sort(a), np.sort(Q.areas()), rtol=0, atol=atol)


@pytest.mark.parametrize("shift, scale", [(0.0, 1.0), (1e6, 1.0), (1.0, 1e-9), (-3e8, 2.0 ** -7)])
def test_polygon_areas_are_translation_invariant(shift, scale):
    """splinecam.geometry's shoelace (ragged and single) on a square split into a
    triangle, a quadrilateral and a pentagon, anywhere in the plane."""
    from splinecam.geometry import polygon_area, polygon_areas
    tri = np.array([[0, 0], [1, 0], [0, 1]], float)
    quad = np.array([[1, 0], [2, 0], [2, 1], [0, 1]], float)
    pent = np.array([[0, 1], [2, 1], [2, 2], [1, 2.5], [0, 2]], float)
    exact = np.array([0.5, 1.5, 2.5]) * scale ** 2
    polys = [shift + scale * p for p in (tri, quad, pent)]
    coords = np.concatenate(polys)
    off = np.array([0, 3, 7, 12])
    assert np.allclose(polygon_areas(coords, off), exact, rtol=1e-6, atol=0)
    assert np.allclose([polygon_area(p) for p in polys], exact, rtol=1e-6, atol=0)
    assert polygon_area(polys[2][::-1]) == pytest.approx(-exact[2], rel=1e-6)
    # empty polygons get 0; the others are unaffected
    off2 = np.array([0, 0, 3, 3, 7, 12, 12])
    assert np.allclose(polygon_areas(coords, off2), [0, exact[0], 0, exact[1], exact[2], 0], rtol=1e-6, atol=0)


@pytest.mark.parametrize("centre, side", [((0.0, 0.0), 1e-9), (tuple(FAR), 1.0), ((1e6, 0.0), 1e-3)])
def test_locate_on_small_and_far_slices(centre, side):
    """locate()'s tolerances were absolute: on a slice of side 1e-9 the geometric
    fallback (points on edges and vertices) accepted every region within 1e-9 - the
    whole slice - and returned region 0; at (1e6, 1e6) points 5e-8 outside the domain
    were located inside."""
    c = np.asarray(centre)
    P = part(mlp_crossing(c, side), c + side * np.array(SQUARE) / 2)
    polys = P.polygons()
    assert P.num_regions > 20
    # every vertex (on the edges of several regions: the deepest, or the pattern, decides) goes to
    # a region it is a corner of
    for v, r in zip(P.vertices, P.locate(P.vertices)):
        assert r >= 0 and np.any(np.all(polys[r] == v, axis=1))
    assert np.array_equal(P.locate(P.centroids()), np.arange(P.num_regions))
    outside = c + side * np.array([[0.5 + 1e-6, 0.0], [0.0, -0.5 - 1e-6], [0.6, 0.6]])
    assert np.array_equal(P.locate(outside), [-1, -1, -1])


@pytest.mark.parametrize("chunk", [7, 1 << 18])
def test_polygon_index_candidates_match_brute_force_containment(monkeypatch, chunk):
    """The point index built a chunk at a time over vertex ids lists, for every point, the
    same candidates and depths as the index over the polygons' coordinates; and the
    deepest candidate of a point is a polygon that contains it, by a brute-force
    half-plane test over every polygon."""
    from splinecam.geometry import PolygonIndex
    P = part(mlp_crossing((0.0, 0.0), 1.0), np.array(SQUARE) / 2)
    f = P._faces
    monkeypatch.setattr(PolygonIndex, "CHUNK", chunk)
    by_ids = PolygonIndex(P.vertices, f.face_offsets, f.face_verts)
    coords, off = P.faces()
    by_coords = PolygonIndex(coords, off)
    assert np.array_equal(by_ids.members, by_coords.members) and np.array_equal(by_ids.start, by_coords.start)
    pts = np.random.default_rng(3).uniform(-0.5, 0.5, (400, 2))
    a, b = by_ids.candidates(pts), by_coords.candidates(pts)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    point, poly, depth = a
    best = np.full(len(pts), -np.inf)
    np.maximum.at(best, point, depth)
    for i, q in enumerate(pts):
        inside = []
        for r in range(P.num_regions):
            p = coords[off[r]:off[r + 1]]
            d = np.roll(p, -1, axis=0) - p
            if np.all(d[:, 0] * (q[1] - p[:, 1]) - d[:, 1] * (q[0] - p[:, 0]) >= -1e-12):
                inside.append(r)
        assert inside, "the regions tile the domain"
        deepest = poly[point == i][np.argmax(depth[point == i])]
        assert deepest in inside and best[i] > -1e-9
