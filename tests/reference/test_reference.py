"""Tests of the reference partition alone, so that it can be trusted as evidence.

Everything here is checked against hand-worked geometry, published counts or
conservation laws — never against the engine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import splinecam
from conftest import build_seeded_mlp, reference_module as ref

SQUARE = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
ORIGIN2 = np.zeros(2)
BASIS2 = np.eye(2)


def linear(weight, bias):
    """A float64 nn.Linear with the given weight (out, in) and bias (out,)."""
    weight = torch.as_tensor(np.asarray(weight, dtype=np.float64))
    lin = nn.Linear(weight.shape[1], weight.shape[0]).double()
    with torch.no_grad():
        lin.weight.copy_(weight)
        lin.bias.copy_(torch.as_tensor(np.asarray(bias, dtype=np.float64)))
    return lin


def partition2d(model, polygon=SQUARE, **kw):
    return ref.reference_partition(model, ORIGIN2, BASIS2, polygon, **kw)


def areas(polys):
    return np.array([ref.polygon_area(p) for p in polys])


def sorted_areas(polys):
    return np.sort(areas(polys))


def assert_convex_ccw(poly, tol=1e-12):
    p = np.asarray(poly)
    assert p.shape[0] >= 3 and p.shape[1] == 2
    e = np.roll(p, -1, axis=0) - p
    cross = e[:, 0] * np.roll(e[:, 1], -1) - e[:, 1] * np.roll(e[:, 0], -1)
    scale = np.max(np.abs(e)) ** 2
    assert np.all(cross >= -tol * scale), "polygon is not convex / not CCW"
    assert ref.polygon_area(p) > 0


def interior_points(poly):
    """Centroid plus every vertex pulled half-way and 90% toward the centroid."""
    c = ref.polygon_centroid(poly)
    return np.vstack([c[None], 0.5 * (poly + c), 0.1 * poly + 0.9 * c])


def point_in_convex(poly, pts, tol=1e-12):
    p = np.asarray(poly)
    a, b = p, np.roll(p, -1, axis=0)
    e = b - a
    d = pts[:, None, :] - a[None, :, :]
    cross = e[None, :, 0] * d[:, :, 1] - e[None, :, 1] * d[:, :, 0]
    scale = np.max(np.abs(e), axis=1) ** 2
    return np.all(cross >= -tol * scale[None, :], axis=1)


# --------------------------------------------------------------------------- #
# hand-worked cases
# --------------------------------------------------------------------------- #
def test_two_axis_lines_give_four_unit_squares():
    model = nn.Sequential(linear([[1, 0], [0, 1]], [0, 0]), nn.ReLU(), linear([[1, 1]], [0]))
    polys = partition2d(model)
    assert len(polys) == 4
    np.testing.assert_allclose(sorted_areas(polys), [1, 1, 1, 1], rtol=0, atol=1e-14)
    corners = {tuple(np.round(ref.polygon_centroid(p), 12)) for p in polys}
    assert corners == {(0.5, 0.5), (-0.5, 0.5), (-0.5, -0.5), (0.5, -0.5)}
    for p in polys:
        assert_convex_ccw(p)
        assert len(p) == 4


def test_three_lines_in_general_position_give_seven_regions():
    # x = 0, y = 0, x + y = 0.5: all three pairwise intersections (0,0), (0.5,0),
    # (0,0.5) lie inside the square -> 7 regions. By hand: the small triangle
    # (0,0),(0.5,0),(0,0.5) has area 1/8; in quadrants II and IV the line cuts a
    # triangle of area 1/8 off a unit square; quadrant III is untouched.
    model = nn.Sequential(
        linear([[1, 0], [0, 1], [1, 1]], [0, 0, -0.5]), nn.ReLU(), linear([[1, 1, 1]], [0])
    )
    polys = partition2d(model)
    assert len(polys) == 7
    expected = np.sort([0.125, 0.875, 0.125, 0.875, 0.125, 0.875, 1.0])
    np.testing.assert_allclose(sorted_areas(polys), expected, rtol=0, atol=1e-14)


def test_three_lines_with_crossings_outside_give_five_regions():
    # x + y = 1.5 meets x = 0 at y = 1.5 (outside) and y = 0 at x = 1.5 (outside):
    # it only cuts the corner triangle (0.5,1),(1,1),(1,0.5) off quadrant I:
    # 4 quadrants + 1 corner triangle.
    model = nn.Sequential(
        linear([[1, 0], [0, 1], [1, 1]], [0, 0, -1.5]), nn.ReLU(), linear([[1, 1, 1]], [0])
    )
    polys = partition2d(model)
    assert len(polys) == 5
    np.testing.assert_allclose(
        sorted_areas(polys), np.sort([1, 1, 1, 0.875, 0.125]), rtol=0, atol=1e-14
    )


@pytest.mark.parametrize("act, left_upper", [(nn.ReLU, 1.0), (lambda: nn.LeakyReLU(0.1), 1.1)])
def test_bent_line_second_layer(act, left_upper):
    # layer 1: h1 = act(x) (line x = 0), h2 = act(y + 1) (line y = -1, lies along the
    # domain edge: must not split). layer 2: z = h2 - 1 - 2 h1 = y - 2 act(x).
    #   x > 0: the line y = 2x from (0,0) to (0.5,1): triangle of area 1/4 above.
    #   x < 0, ReLU: the line y = 0 -> two unit squares.
    #   x < 0, LeakyReLU(0.1): y = 0.2 x; area above = int_{-1}^0 (1 - 0.2x) dx = 1.1.
    model = nn.Sequential(
        linear([[1, 0], [0, 1]], [0, 1]), act(), linear([[-2, 1]], [-1]), act(), linear([[1]], [0])
    )
    polys = partition2d(model)
    assert len(polys) == 4
    expected = np.sort([0.25, 1.75, left_upper, 2.0 - left_upper])
    np.testing.assert_allclose(sorted_areas(polys), expected, rtol=0, atol=1e-14)
    one_layer = partition2d(model, num_layers=1)
    np.testing.assert_allclose(sorted_areas(one_layer), [2, 2], rtol=0, atol=1e-14)


def test_output_layer_does_not_split():
    model = nn.Sequential(linear([[1, 0]], [0]), nn.ReLU(), linear([[1]], [-0.5]))
    assert len(partition2d(model)) == 2
    # a bare affine model has a single region
    assert len(partition2d(nn.Sequential(linear([[1, 2]], [0.1])))) == 1


def test_clockwise_polygon_and_ccw_output():
    model = build_seeded_mlp([2, 8, 8, 1], seed=3)
    a = partition2d(model, SQUARE)
    b = partition2d(model, SQUARE[::-1])
    assert len(a) == len(b)
    np.testing.assert_allclose(sorted_areas(a), sorted_areas(b), rtol=1e-12, atol=1e-15)
    for p in b:
        assert_convex_ccw(p)


# --------------------------------------------------------------------------- #
# degenerate arrangements with known answers
# --------------------------------------------------------------------------- #
def test_concurrent_lines_through_origin():
    # k lines through the origin in distinct directions -> 2k sectors
    k = 5
    ang = np.pi * (np.arange(k) + 0.3) / k
    w = np.column_stack([np.cos(ang), np.sin(ang)])
    model = nn.Sequential(linear(w, np.zeros(k)), nn.ReLU(), linear(np.ones((1, k)), [0]))
    polys = partition2d(model)
    assert len(polys) == 2 * k
    assert abs(areas(polys).sum() - 4.0) < 1e-13


def test_duplicated_and_opposite_units_do_not_add_regions():
    # rows: a line, its exact copy, its negation (same zero set), a scaled copy
    w = np.array([[0.3, 0.7], [0.3, 0.7], [-0.3, -0.7], [0.6, 1.4]])
    b = np.array([0.1, 0.1, -0.1, 0.2])
    model = nn.Sequential(linear(w, b), nn.ReLU(), linear(np.ones((1, 4)), [0]))
    assert len(partition2d(model)) == 2


def test_parallel_lines():
    # x = -0.5, x = 0 and x = 0.5 written with different scales -> 4 strips
    w = np.array([[1.0, 0.0], [2.0, 0.0], [-4.0, 0.0]])
    b = np.array([0.5, 0.0, 2.0])
    model = nn.Sequential(linear(w, b), nn.ReLU(), linear(np.ones((1, 3)), [0]))
    polys = partition2d(model)
    np.testing.assert_allclose(sorted_areas(polys), [1, 1, 1, 1], rtol=0, atol=1e-14)


def test_lines_through_corner_and_along_edges():
    # On [-1,1]^2: 0.5x + 0.25y - 0.75 <= 0 with equality only at the corner (1,1),
    # and so does x + y - 2; y + 1 = 0 and x - 1 = 0 lie along edges; none of these
    # splits. x - y = 0 is the diagonal through two corners -> exactly 2 triangles.
    w = np.array([[0.5, 0.25], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, -1.0]])
    b = np.array([-0.75, -2.0, 1.0, -1.0, 0.0])
    model = nn.Sequential(linear(w, b), nn.ReLU(), linear(np.ones((1, 5)), [0]))
    polys = partition2d(model)
    assert len(polys) == 2
    np.testing.assert_allclose(sorted_areas(polys), [2, 2], rtol=0, atol=1e-14)
    for p in polys:
        assert len(p) == 3


def test_identically_zero_unit_in_dead_region_does_not_split():
    # All biases zero: layer 1 lines through the origin, and wherever every
    # layer-1 unit is off, every layer-2 pre-activation is identically 0.
    # Rows (1,0),(0,1): the quadrant x<0,y<0 is dead for layer 2.
    w1 = np.array([[1.0, 0.0], [0.0, 1.0]])
    w2 = np.array([[1.0, -2.0], [-1.0, 0.5]])
    model = nn.Sequential(
        linear(w1, [0, 0]), nn.ReLU(), linear(w2, [0, 0]), nn.ReLU(), linear([[1, 1]], [0])
    )
    polys = partition2d(model)
    # layer 1: 4 quadrants. layer 2 in quadrant I: z1 = x - 2y, z2 = -x + y/2,
    # lines y = x/2 and y = 2x -> 3 pieces; quadrant II: z = (-2y, y/2), no line
    # inside; quadrant IV: z = (x, -x): no line inside; quadrant III: z = 0, no split.
    assert len(polys) == 6
    assert abs(areas(polys).sum() - 4.0) < 1e-13


# --------------------------------------------------------------------------- #
# conservation, patterns, published counts
# --------------------------------------------------------------------------- #
TRIANGLE = np.array([[-0.9, -0.8], [1.1, -0.2], [0.1, 1.3]])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("polygon", [SQUARE, TRIANGLE], ids=["square", "triangle"])
def test_area_conservation_and_convexity(seed, polygon):
    model = build_seeded_mlp([2, 10, 10, 10, 1], seed=seed)
    polys = partition2d(model, polygon)
    total = abs(ref.polygon_area(polygon))
    assert abs(areas(polys).sum() - total) <= 1e-12 * total
    for p in polys:
        assert_convex_ccw(p)
        assert np.all(point_in_convex(polygon if ref.polygon_area(polygon) > 0 else polygon[::-1],
                                      p, tol=1e-12))


@pytest.mark.parametrize("seed", [0, 4])
@pytest.mark.parametrize("act", [nn.ReLU, nn.LeakyReLU], ids=["relu", "leaky"])
def test_patterns_one_per_region_and_distinct(seed, act):
    model = build_seeded_mlp([2, 8, 8, 8, 1], seed=seed, act=act)
    polys = partition2d(model)
    pats = []
    for p in polys:
        s = ref.sample_patterns(model, ORIGIN2, BASIS2, interior_points(p))
        assert np.all(s == s[0]), "one region holds several activation patterns"
        pats.append(s[0].tobytes())
    assert len(set(pats)) == len(polys), "two regions share an activation pattern"

    # dense sampling: every sampled pattern is a region's pattern, and the point
    # lies in the region with that pattern
    g = np.linspace(-1, 1, 97)[1:-1] + 1e-3 / np.pi
    pts = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    grid = ref.sample_patterns(model, ORIGIN2, BASIS2, pts)
    index = {k: i for i, k in enumerate(pats)}
    for q, row in zip(pts, grid):
        i = index.get(row.tobytes())
        assert i is not None, f"pattern at {q} belongs to no region"
        assert point_in_convex(polys[i], q[None], tol=1e-9)[0]


def test_sample_patterns_shape_and_order():
    model = nn.Sequential(
        nn.Sequential(linear([[1, 0], [0, 1], [1, 1]], [0, 0, -10]), nn.ReLU()),
        nn.Dropout(0.5),
        linear([[1, 1, 1]], [-5]),
        nn.LeakyReLU(0.2),
        linear([[1]], [0]),
    )
    pts = np.array([[0.5, -0.5], [-0.5, 0.5]])
    pats = ref.sample_patterns(model, ORIGIN2, BASIS2, pts)
    assert pats.shape == (2, 4) and pats.dtype == bool
    np.testing.assert_array_equal(pats, [[True, False, False, False], [False, True, False, False]])
    assert ref.hidden_layer_sizes(model, ORIGIN2) == [3, 1]


def test_peer_count_2_16_16_16_1():
    model = build_seeded_mlp([2, 16, 16, 16, 1], seed=0)
    polys = partition2d(model)
    assert len(polys) == 178
    assert abs(areas(polys).sum() - 4.0) < 1e-12


def test_num_layers_equals_truncated_model():
    model = build_seeded_mlp([2, 8, 8, 8, 1], seed=5)
    truncated = nn.Sequential(*list(model)[:4], nn.ReLU(), linear(np.ones((1, 8)), [0]))
    a = partition2d(model, num_layers=2)
    b = partition2d(truncated)
    assert len(a) == len(b)
    np.testing.assert_allclose(sorted_areas(a), sorted_areas(b), rtol=1e-12, atol=1e-15)


def test_cnn_plane_through_three_inputs():
    torch.manual_seed(7)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(18, 5), nn.ReLU(), nn.Linear(5, 3),
    ).double()
    bn = model[1]
    with torch.no_grad():
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.1, 0.1)
    model.eval()
    a, b, c = (np.random.default_rng(s).standard_normal((1, 6, 6)) for s in (1, 2, 3))
    origin = a
    basis = np.stack([b - a, c - a])
    tri = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # a slightly larger triangle around the three images
    poly = (tri - 1 / 3) * 1.5 + 1 / 3
    polys = ref.reference_partition(model, origin, basis, poly)
    assert len(polys) > 3
    assert abs(areas(polys).sum() - ref.polygon_area(poly)) < 1e-12
    pats = set()
    for p in polys:
        s = ref.sample_patterns(model, origin, basis, interior_points(p))
        assert np.all(s == s[0])
        pats.add(s[0].tobytes())
    assert len(pats) == len(polys)
    # pre-activations at the three images equal a plain forward pass
    z = ref.sample_preactivations(model, origin, basis, tri)
    with torch.no_grad():
        x = torch.as_tensor(np.stack([a, b, c]))
        first = model[1](model[0](x)).reshape(3, -1).numpy()
    np.testing.assert_allclose(z[:, : first.shape[1]], first, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- #
# exact activation patterns
# --------------------------------------------------------------------------- #
def _network(model, input_shape=(2,)):
    from splinecam.network.model import Network

    return Network.from_model(model.double().eval(), input_shape)


def test_exact_preactivations_agree_with_float64_where_it_is_sure():
    from splinecam.reference import exact_preactivations

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 5), nn.Hardtanh(), nn.Linear(5, 4),
                          nn.LeakyReLU(0.1), nn.Linear(4, 3), nn.ReLU6(), nn.Linear(3, 1))
    net = _network(model)
    sl = splinecam.Slice.plane2d(2.0 * SQUARE)
    pts = np.random.default_rng(0).uniform(-2, 2, (60, 2))
    ex = exact_preactivations(net, sl, pts)
    fl = net.all_preactivations(sl.to_input(pts))[:-1]
    assert [e.shape for e in ex] == [f.shape for f in fl] == [(60, 6), (60, 10), (60, 4), (60, 6)]
    for e, f in zip(ex, fl):
        sure = np.abs(f) > 1e-9 * (np.abs(f).max() + 1)
        assert sure.mean() > 0.9
        assert np.array_equal(e[sure], np.sign(f[sure]).astype(np.int8))


def test_exact_preactivations_resolve_what_float64_cannot():
    """Hand-worked: z = 3 x at x = fl(1/3) = (1 - 2^-54) / 3 is exactly 1 - 2^-54, just
    below the clamp's upper breakpoint 1; float64 rounds 3 x to 1.0 and reads z - 1 = 0."""
    from splinecam.reference import exact_preactivations

    net = _network(nn.Sequential(linear([[3.0, 0.0]], [0.0]), nn.Hardtanh()))
    sl = splinecam.Slice.plane2d(2.0 * SQUARE)
    pt = np.array([[1.0 / 3.0, 0.0]])
    assert net.all_preactivations(sl.to_input(pt))[0].tolist() == [[2.0, 0.0]]
    assert exact_preactivations(net, sl, pt)[0].tolist() == [[1, -1]]   # z + 1 > 0, z - 1 < 0
    # a model the evaluator does not know gives None, not a guess
    conv = nn.Sequential(nn.Unflatten(1, (1, 2)), nn.Conv1d(1, 1, 1), nn.ReLU(), nn.Flatten())
    assert exact_preactivations(_network(conv), sl, np.zeros((1, 2))) is None
