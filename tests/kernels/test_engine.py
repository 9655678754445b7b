"""The engine on its own terms: hand-worked cuts through _core.refine, invariants on
random and degenerate networks, determinism across thread counts."""
import numpy as np
import pytest
import torch
from torch import nn

import splinecam
from splinecam.zoo import mlp
from splinecam import _core
from splinecam.testing import check_partition

SQUARE = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])


def square_faces():
    return (np.array([0, 4], np.int64), np.arange(4, dtype=np.int32), np.full(4, -1, np.int32),
            np.full(4, -1, np.int32))


def refine_lines(lines, rtol=1e-10):
    """Refine the square by lines a*x + b*y + c = 0 given as rows (a, b, c)."""
    lines = np.asarray(lines, dtype=np.float64)
    rows = np.ascontiguousarray(SQUARE @ lines[:, :2].T + lines[:, 2])
    return _core.refine(SQUARE.copy(), rows, *square_faces(), n_cut=len(lines), layer_id=1, rtol=rtol)


def polygons(out, xy0=SQUARE):
    xy = np.concatenate([xy0, out["xy"]])
    off = out["face_offsets"]
    return [xy[out["face_verts"][off[i]:off[i + 1]]] for i in range(len(off) - 1)]


def shoelace(p):
    return 0.5 * np.sum(p[:, 0] * np.roll(p[:, 1], -1) - p[:, 1] * np.roll(p[:, 0], -1))


def test_one_line_halves_the_square():
    out = refine_lines([[1, 0, 0]])
    polys = polygons(out)
    assert len(polys) == 2
    assert sorted(shoelace(p) for p in polys) == pytest.approx([2.0, 2.0])
    # Two new vertices, on the bottom and top edges, at x = 0.
    assert np.allclose(np.sort(out["xy"][:, 1]), [-1, 1]) and np.allclose(out["xy"][:, 0], 0)
    # The new edge is labelled layer 1, unit 0 on both sides.
    assert np.sum((out["he_layer"] == 1) & (out["he_unit"] == 0)) == 2


def test_two_lines_make_four_quadrants_with_one_centre_vertex():
    out = refine_lines([[1, 0, 0], [0, 1, 0]])
    polys = polygons(out)
    assert len(polys) == 4
    assert all(shoelace(p) == pytest.approx(1.0) for p in polys)
    centre = np.flatnonzero(np.all(np.abs(out["xy"]) < 1e-15, axis=1))
    assert len(centre) == 1  # the crossing is one vertex shared by all four faces


def test_concurrent_lines_through_the_centre():
    # Six lines through the origin: 12 sectors, one shared centre vertex.
    ang = np.linspace(0, np.pi, 6, endpoint=False) + 0.1
    out = refine_lines(np.stack([np.cos(ang), np.sin(ang), np.zeros(6)], axis=1))
    polys = polygons(out)
    assert len(polys) == 12
    assert sum(shoelace(p) for p in polys) == pytest.approx(4.0)
    assert np.sum(np.all(np.abs(out["xy"]) < 1e-12, axis=1)) == 1
    msg = _core.validate(4 + len(out["xy"]), out["face_offsets"], out["face_verts"], out["he_layer"], out["he_unit"])
    assert msg == ""


def test_line_through_a_corner_and_coincident_lines():
    # The diagonal through two corners, twice (a duplicated unit), and x = 0.
    out = refine_lines([[1, -1, 0], [2, -2, 0], [1, 0, 0]])
    polys = polygons(out)
    assert len(polys) == 4
    # x = y splits into two triangles of area 2; x = 0 cuts each into 0.5 + 1.5.
    assert sorted(round(shoelace(p), 12) for p in polys) == [0.5, 0.5, 1.5, 1.5]
    # No vertex was created at the corners: they already existed.
    assert not np.any(np.all(np.isclose(np.abs(out["xy"]), 1.0), axis=1))


def test_line_along_an_edge_does_not_cut():
    out = refine_lines([[0, 1, 1]])  # y = -1, the bottom edge
    assert len(polygons(out)) == 1 and len(out["xy"]) == 0


def test_parallel_lines_make_strips():
    out = refine_lines([[1, 0, -0.5], [1, 0, 0], [2, 0, 1], [1, 0, 0.9]])
    polys = polygons(out)
    assert len(polys) == 5
    widths = sorted(p[:, 0].max() - p[:, 0].min() for p in polys)
    assert widths == pytest.approx(sorted([0.1, 0.4, 0.5, 0.5, 0.5]))


def test_a_crossing_next_to_a_vertex_is_placed_from_that_vertex():
    """A line 1e-20 from a corner at the origin, on an edge of length 2 whose other end
    has the smaller vertex id: interpolated from the far end the crossing would round onto
    the corner (a region of area 0); from the nearer end it lands at 1e-20, and the sliver
    it cuts off has its exact area 1e-20 (hand-worked: half of 1e-20 x 2)."""
    tri = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    rows = np.ascontiguousarray(tri[:, :1] - 1e-20)                      # x - 1e-20
    faces = (np.array([0, 3], np.int64), np.arange(3, dtype=np.int32), np.full(3, -1, np.int32),
             np.full(3, -1, np.int32))
    out = _core.refine(tri.copy(), rows, *faces, n_cut=1, layer_id=1, rtol=0.0)
    polys = polygons(out, tri)
    assert len(polys) == 2
    areas = sorted(shoelace(p) for p in polys)
    assert areas[0] == pytest.approx(1e-20, rel=1e-12)
    assert areas[0] + areas[1] == pytest.approx(2.0, rel=1e-15)
    on_bottom = out["xy"][np.abs(out["xy"][:, 1]) == 0.0]
    assert on_bottom[:, 0] == pytest.approx([1e-20], rel=1e-15)


U = 2.0 ** -52  # one ulp of 1.0


def refine_polygon(poly, rows):
    poly = np.asarray(poly, np.float64)
    k = len(poly)
    faces = (np.array([0, k], np.int64), np.arange(k, dtype=np.int32), np.full(k, -1, np.int32),
             np.full(k, -1, np.int32))
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    out = _core.refine(poly.copy(), rows, *faces, n_cut=rows.shape[1], layer_id=1, rtol=0.0)
    return out, polygons(out, poly)


def assert_distinct_vertices_and_positive_exact_areas(polys):
    from splinecam.reference import exact_polygon_area

    for p in polys:
        assert len(np.unique(p, axis=0)) == len(p), f"two vertices at one point: {p.tolist()}"
        assert exact_polygon_area(p) > 0


def test_two_crossings_closer_than_an_ulp_stay_two_vertices():
    """Hand-worked: on the edge x = 1 from y = 1 to 1 + 8u, the lines y = 1 + 3.2u and
    y = 1 + 3.4u (two parallel lines, values given at the corners of the triangle) both
    round to 1 + 3u; the second is stepped to the next float, 1 + 4u, so the strip between
    them stays a region with distinct vertices and a positive area."""
    tri = [[1.0, 1.0], [1.0, 1.0 + 8 * U], [0.0, 1.0 + 4 * U]]
    rows = [[-3.2 * U, -3.4 * U], [4.8 * U, 4.6 * U], [0.8 * U, 0.6 * U]]    # y - c at the corners
    out, polys = refine_polygon(tri, rows)
    assert len(polys) == 3
    assert_distinct_vertices_and_positive_exact_areas(polys)
    right = np.sort(out["xy"][out["xy"][:, 0] == 1.0, 1])
    assert right.tolist() == [1.0 + 3 * U, 1.0 + 4 * U]


def test_a_crossing_on_an_edge_one_ulp_long_passes_through_its_end():
    """Hand-worked: the edge x = 1 from y = 1 to 1 + u holds no float between its ends;
    the line y = 1 + 0.4u lands on (1, 1), so it passes through that corner (its value
    there becomes 0) instead of adding a second vertex at the same point."""
    tri = [[1.0, 1.0], [1.0, 1.0 + U], [0.0, 1.0 + U]]
    rows = [[-0.4 * U], [0.6 * U], [0.6 * U]]
    out, polys = refine_polygon(tri, rows)
    assert not np.any(out["xy"][:, 0] == 1.0)          # nothing new on the short edge
    assert_distinct_vertices_and_positive_exact_areas(polys)


@pytest.mark.parametrize("case", ["few vertices", "a vertex of high degree", "sparse ids", "few sparse ids"])
def test_edge_table_numbers_edges_in_key_order(case):
    """The host's edge-table sort (a bucket sort by the lower end; for keys with many
    high words the radix sort, which sorts a few thousand keys by comparison) against
    numpy: edges numbered in (lo, hi) order, every half-edge pointing at its own edge."""
    rng = np.random.default_rng(7)
    n_vertices = {"few vertices": 40, "a vertex of high degree": 300}.get(case, 2 ** 30)
    cycles = []
    for _ in range(40 if case == "few sparse ids" else 400):
        k = int(rng.integers(3, 9))
        c = rng.choice(min(n_vertices, 10 ** 6), size=k, replace=False)
        if case.endswith("sparse ids"):
            c = c * 1024 + int(rng.integers(0, 1024))
        if case == "a vertex of high degree":
            c[0] = 0  # vertex 0 ends edges of every cycle: one bucket of hundreds of keys
        cycles.append(c)
    off = np.concatenate([[0], np.cumsum([len(c) for c in cycles])]).astype(np.int64)
    verts = np.concatenate(cycles).astype(np.int32)
    nxt = np.concatenate([np.roll(c, -1) for c in cycles]).astype(np.int64)
    lo, hi = np.minimum(verts, nxt), np.maximum(verts, nxt)
    keys, edge_of = np.unique((lo << 32) | hi, return_inverse=True)
    he = _core.halfedges(int(verts.max()) + 1, off, verts)
    assert np.array_equal(he["edge_of"], edge_of.ravel())
    assert np.array_equal(he["edge_lo"], keys >> 32) and np.array_equal(he["edge_hi"], keys & 0xFFFFFFFF)


def test_validate_detects_a_broken_graph():
    # Two triangles sharing the diagonal 0-2 of the square 0-1-2-3.
    off = np.array([0, 3, 6], np.int64)
    ok = np.array([0, 1, 2, 2, 3, 0], np.int32)
    lab = np.array([-1, -1, 1, -1, -1, 1], np.int32)  # the diagonal is labelled layer 1 on both sides
    unit = np.zeros(6, np.int32)
    assert _core.validate(4, off, ok, lab, unit) == ""
    # The second triangle walked clockwise (0-3-2): the diagonal is used twice as 2 -> 0.
    assert "same direction" in _core.validate(4, off, np.array([0, 1, 2, 0, 3, 2], np.int32),
                                              np.array([-1, -1, 1, -1, -1, 1], np.int32), unit)
    # Different labels on the two sides of the diagonal.
    assert "different labels" in _core.validate(4, off, ok, lab, np.array([0, 0, 5, 0, 0, 0], np.int32))
    # An interior edge seen from one side only (a T-junction): a vertex on the diagonal
    # that only the first triangle has.
    off5 = np.array([0, 4, 7], np.int64)
    t = np.array([0, 1, 2, 4, 2, 3, 0], np.int32)
    lab5 = np.array([-1, -1, 1, 1, -1, -1, 1], np.int32)
    assert _core.validate(5, off5, t, lab5, np.zeros(7, np.int32)) != ""


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("act", [nn.ReLU, lambda: nn.LeakyReLU(0.1)])
def test_invariants_random_mlps(seed, act):
    model = mlp((2, 24, 24, 24, 3), seed, act)
    P = splinecam.partition(model, splinecam.Slice.plane2d(SQUARE * 1.5), progress=False, validate=True)
    check_partition(P)
    assert P.run_info["degenerate"] == 0


def test_zero_bias_lines_through_the_origin():
    model = mlp((2, 16, 16, 1), seed=3)
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                m.bias.zero_()
    P = splinecam.partition(model, splinecam.Slice.plane2d(SQUARE), progress=False, validate=True)
    check_partition(P)
    # A positively homogeneous network: the regions are sectors around the origin, and
    # exactly one vertex sits at the origin.
    assert np.sum(np.all(np.abs(P.vertices) < 1e-12, axis=1)) == 1


def test_duplicated_units_give_the_same_partition():
    model = mlp((2, 8, 8, 1), seed=4)
    lin1, lin2 = model[0], model[2]
    dup = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 1)).eval()
    with torch.no_grad():
        dup[0].weight.copy_(torch.cat([lin1.weight, lin1.weight]))
        dup[0].bias.copy_(torch.cat([lin1.bias, lin1.bias]))
        dup[2].weight.copy_(torch.cat([lin2.weight, torch.zeros_like(lin2.weight)], dim=1))
        dup[2].bias.copy_(lin2.bias)
        dup[4].load_state_dict(model[4].state_dict())
    sl = splinecam.Slice.plane2d(SQUARE)
    P = splinecam.partition(model, sl, progress=False)
    Q = splinecam.partition(dup, sl, progress=False, validate=True)
    Q.validate()
    assert Q.num_regions == P.num_regions
    assert np.allclose(np.sort(Q.areas()), np.sort(P.areas()))


def test_thread_count_does_not_change_the_result():
    model = mlp((2, 32, 32, 2), seed=5)
    sl = splinecam.Slice.plane2d(SQUARE)
    a = splinecam.partition(model, sl, progress=False, threads=1)
    b = splinecam.partition(model, sl, progress=False, threads=2)
    assert np.array_equal(a.vertices, b.vertices)
    assert np.array_equal(a.edges, b.edges)
    assert np.array_equal(a.decision_boundary, b.decision_boundary)


def test_at_layer_is_refined_by_later_layers():
    model = mlp((2, 16, 16, 16, 1), seed=6)
    P = splinecam.partition(model, splinecam.Slice.plane2d(SQUARE), progress=False)
    counts = [P.at_layer(l).num_regions for l in (1, 2, 3)]
    assert counts[0] <= counts[1] <= counts[2] == P.num_regions
    for l in (1, 2):
        Pl = P.at_layer(l)
        check_partition(Pl)
        # Each final region lies inside its layer-l parent.
        par = P.parents(l)
        assert np.array_equal(Pl.locate(P.centroids()), par)
        # Areas of children add up to their parent's area.
        sums = np.bincount(par, weights=P.areas(), minlength=Pl.num_regions)
        assert np.allclose(sums, Pl.areas())
        # Edge labels of the layer-l partition never exceed l.
        assert P.at_layer(l).edge_layer.max() <= l


def test_edge_labels_point_at_the_unit_whose_zero_set_they_lie_on():
    model = mlp((2, 12, 12, 1), seed=7)
    P = splinecam.partition(model, splinecam.Slice.plane2d(SQUARE), progress=False, decision_boundary=False)
    mid = P.vertices[P.edges].mean(axis=1)
    pre = P._net.all_preactivations(P.slice.to_input(mid))
    for l in (1, 2):
        sel = P.edge_layer == l
        z = pre[l - 1][sel, P.edge_unit[sel]]
        scale = np.abs(pre[l - 1]).max()
        assert np.all(np.abs(z) < 1e-9 * scale)


def test_graph_tool_export():
    pytest.importorskip("graph_tool")
    model = mlp((2, 8, 8, 2), seed=8)
    P = splinecam.partition(model, splinecam.Slice.plane2d(SQUARE), progress=False)
    g = P.to_graph_tool()
    assert g.num_vertices() == len(P.vertices) and g.num_edges() == len(P.edges)
    assert np.array_equal(g.ep["layer"].a, P.edge_layer)
    assert np.array_equal(g.ep["decision"].a.astype(bool), P.edge_decision)
    assert np.allclose(g.vp["pos"].get_2d_array([0, 1]).T, P.vertices)


def test_plot_draws_regions_and_boundary(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    model = mlp((2, 8, 8, 1), seed=9)
    P = splinecam.partition(model, splinecam.Slice.plane2d(SQUARE), progress=False)
    fig, ax = plt.subplots()
    P.plot(ax=ax)
    assert len(ax.collections[0].get_paths()) == P.num_regions
    fig.savefig(tmp_path / "p.png")
    plt.close(fig)
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_build_info():
    info = splinecam.build_info()
    assert set(info) >= {"version", "cuda", "cuda_architectures", "cuda_version"}
    if info["cuda"]:
        assert "80" in info["cuda_architectures"] and "90" in info["cuda_architectures"]




def test_window_steps_match_their_numpy_definitions():
    """The max-type window bodies (src/splinecam/windows.h) give exactly what the numpy
    expressions of their definitions give: chain columns max(c_0..c_{s-1}) - c_s, and
    which windows change winner (first candidate within the floor of the maximum)."""
    rng = np.random.default_rng(0)
    for trial in range(30):
        V, W, k = int(rng.integers(1, 300)), int(rng.integers(1, 40)), int(rng.integers(2, 6))
        D = W * k + int(rng.integers(0, 10))
        x0 = W + int(rng.integers(0, 5))
        # integer values make ties and equal candidates common
        rows = (rng.integers(-3, 4, size=(V, x0 + D)).astype(float) if trial % 2
                else rng.standard_normal((V, x0 + D)))
        idx = rng.integers(0, D, size=(W, k))
        for s in range(1, k):
            want = rows.copy()
            X = want[:, x0:]
            want[:, :W] = X[:, idx[:, :s]].max(axis=2) - X[:, idx[:, s]]
            got = rows.copy()
            _core.window_chain(got, x0, idx, s)
            assert np.array_equal(want, got)
        floor = np.abs(rng.standard_normal(W)) * (0.0 if trial % 3 == 0 else 0.5)
        c = rows[:, x0:][:, idx]
        win = np.argmax(c >= c.max(axis=-1, keepdims=True) - floor[:, None], axis=-1)
        want = (win != win[0]).any(axis=0)
        assert np.array_equal(_core.winner_changes(rows, x0, idx, floor).astype(bool), want)
    with pytest.raises(ValueError, match="outside the rows"):
        _core.winner_changes(np.zeros((2, 4)), 2, np.array([[0, 2]]), np.zeros(1))
