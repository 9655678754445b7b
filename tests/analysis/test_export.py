"""splinecam.analysis.sampling and splinecam.analysis.export: sampled points checked with fresh forward
passes and point location; exports read back with independent parsers (json,
xml.etree, graph_tool.load_graph, np.load)."""
import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from torch import nn

import splinecam
from splinecam.analysis import export, sampling

SQUARE = [[-1, -1], [1, -1], [1, 1], [-1, 1]]


def part(model, poly=SQUARE):
    return splinecam.partition(model, splinecam.Slice.plane2d(poly), progress=False)


def forward(model, x):
    with torch.no_grad():
        return model(torch.as_tensor(x, dtype=torch.float64)).numpy()


def shoelace(p):
    p = np.asarray(p, dtype=np.float64)
    return 0.5 * np.sum(p[:, 0] * np.roll(p[:, 1], -1) - p[:, 1] * np.roll(p[:, 0], -1))


def ks_uniform(x):
    """Kolmogorov-Smirnov distance of a sample from U(0, 1)."""
    x = np.sort(x)
    n = len(x)
    return max(np.max(np.arange(1, n + 1) / n - x), np.max(x - np.arange(n) / n))


# -- sampling -------------------------------------------------------------------------------
def test_boundary_samples_are_on_the_zero_set(net1):
    model, P = net1
    pts, x = sampling.sample_decision_boundary(P, 2000, rng=3)
    assert pts.shape == (2000, 2) and pts.dtype == np.float64
    assert isinstance(x, torch.Tensor) and tuple(x.shape) == (2000, 2)
    assert torch.equal(x, P.slice.to_input(pts))
    y = forward(model, x)[:, 0]
    scale = np.abs(forward(model, np.random.default_rng(0).uniform(-1, 1, (1000, 2)))).max()
    assert np.abs(y).max() <= 1e-9 * scale
    assert np.all(np.abs(pts) <= 1 + 1e-12)
    # Same seed, same points; another seed, other points.
    assert np.array_equal(sampling.sample_decision_boundary(P, 2000, rng=3)[0], pts)
    assert not np.array_equal(sampling.sample_decision_boundary(P, 2000, rng=4)[0], pts)


def test_boundary_samples_tie_the_top_two_classes(net3):
    model, P = net3
    pts, x = sampling.sample_decision_boundary(P, 1000, rng=0)
    y = np.sort(forward(model, x), axis=1)
    assert np.abs(y[:, -1] - y[:, -2]).max() <= 1e-9 * np.abs(y).max()


def test_boundary_samples_are_uniform_by_length():
    # relu(x) - relu(-x) + relu(y) - relu(-y) - 0.25 = x + y - 0.25: the line from
    # (1, -0.75) to (-0.75, 1), cut by the axes into segments of lengths 3 : 1 : 3.
    # Uniform by length means x is uniform on [-0.75, 1].
    W = torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]], dtype=torch.float64)
    m = nn.Sequential(nn.Linear(2, 4).double(), nn.ReLU(), nn.Linear(4, 1).double()).eval()
    with torch.no_grad():
        m[0].weight.copy_(W)
        m[0].bias.zero_()
        m[2].weight.copy_(torch.tensor([[1.0, -1, 1, -1]]))
        m[2].bias.fill_(-0.25)
    P = part(m)
    assert len(P.decision_boundary) == 3
    pts, _ = sampling.sample_decision_boundary(P, 4000, rng=1)
    assert np.allclose(pts.sum(1), 0.25)
    assert ks_uniform((pts[:, 0] + 0.75) / 1.75) < 1.63 / math.sqrt(len(pts))       # 1 % level


def test_boundary_sampling_without_boundary_raises(net1):
    _, P = net1
    with pytest.raises(ValueError, match="no decision boundary"):
        sampling.sample_decision_boundary(P.at_layer(1), 10)


def test_region_samples_locate_to_their_region(net1):
    _, P = net1
    regions = np.array([0, 5, 5, P.num_regions - 1, 17])
    pts, reg = sampling.sample_regions(P, regions, 50, rng=2)
    assert pts.shape == (250, 2) and reg.dtype == np.int64
    assert list(reg) == list(np.repeat(regions, 50))
    assert np.array_equal(P.locate(pts), reg)
    # All regions at once, including ones with straight-angle vertices.
    pts, reg = sampling.sample_regions(P, None, 4, rng=0)
    assert np.array_equal(P.locate(pts), reg)
    assert np.array_equal(np.bincount(reg), np.full(P.num_regions, 4))
    with pytest.raises(IndexError):
        sampling.sample_regions(P, [P.num_regions], 1)


def test_region_samples_are_uniform():
    # One region: a trapezoid with a straight-angle vertex. Uniform points have
    # P(x <= s) = area to the left of s / total area (by hand), checked with KS.
    poly = [[0, 0], [1, 0], [2, 0], [2, 1], [0, 2]]        # (1, 0) is a straight angle
    P = part(nn.Sequential(nn.Linear(2, 1)).eval(), poly)
    pts, reg = sampling.sample_regions(P, [0], 4000, rng=5)
    assert np.all(reg == 0)
    x, y = pts[:, 0], pts[:, 1]
    assert np.all((y >= -1e-12) & (x >= -1e-12) & (x <= 2 + 1e-12) & (y <= 2 - x / 2 + 1e-12))
    # Height at x is 2 - x/2: area left of s is 2 s - s^2 / 4, total 3.
    cdf = (2 * x - x ** 2 / 4) / 3
    assert ks_uniform(cdf) < 1.63 / math.sqrt(len(x))
    # Given x, y is uniform on [0, 2 - x/2].
    assert ks_uniform(y / (2 - x / 2)) < 1.63 / math.sqrt(len(x))


# -- GeoJSON ----------------------------------------------------------------------------------
def test_geojson_round_trip(net1, tmp_path):
    _, P = net1
    path = tmp_path / "p.geojson"
    d = export.to_geojson(P, path)
    back = json.loads(path.read_text())
    assert back == json.loads(json.dumps(d))
    assert back["type"] == "FeatureCollection"
    polys = [f for f in back["features"] if f["geometry"]["type"] == "Polygon"]
    lines = [f for f in back["features"] if f["geometry"]["type"] == "LineString"]
    assert len(polys) == P.num_regions and len(lines) == len(P.decision_boundary)
    areas = []
    for i, f in enumerate(polys):
        ring = f["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1] and len(ring) >= 4
        assert f["properties"]["region"] == i and f["properties"]["kind"] == "region"
        a = shoelace(ring[:-1])
        assert a > 0                                        # exterior rings counter-clockwise
        assert f["properties"]["area"] == pytest.approx(a, rel=1e-9)
        assert f["properties"]["slope_norm"] >= 0
        areas.append(a)
    assert sum(areas) == pytest.approx(4.0, rel=1e-12)
    seg = np.array([f["geometry"]["coordinates"] for f in lines])
    assert np.array_equal(seg, P.decision_boundary)        # floats survive JSON exactly
    # Intermediate layers have no outputs: no slope_norm, no lines.
    d1 = export.to_geojson(P.at_layer(1))
    assert all("slope_norm" not in f["properties"] for f in d1["features"])
    assert len(d1["features"]) == P.at_layer(1).num_regions


# -- SVG --------------------------------------------------------------------------------------
def test_svg_parses_and_flips_y(net3, tmp_path):
    _, P = net3
    path = tmp_path / "p.svg"
    text = export.to_svg(P, path, width=400, margin=10, title="a <test> & more")
    assert path.read_text() == text
    root = ET.parse(path).getroot()
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert float(root.get("width")) == pytest.approx(420) and float(root.get("height")) == pytest.approx(420)
    regions = root.findall(".//s:g[@id='regions']/s:polygon", ns)
    assert len(regions) == P.num_regions
    db = root.find(".//s:path[@id='decision_boundary']", ns)
    assert db is not None and db.get("d").count("M") == len(P.decision_boundary)
    # Region 0's first vertex maps to px with y flipped.
    p0 = P.polygons()[0][0]
    x, y = map(float, regions[0].get("points").split()[0].split(","))
    assert x == pytest.approx((p0[0] + 1) * 200 + 10, abs=1e-3)
    assert y == pytest.approx((1 - p0[1]) * 200 + 10, abs=1e-3)
    # Every fill is a colour; a custom per-region array and a single colour work too.
    assert all(r.get("fill").startswith("#") and len(r.get("fill")) == 7 for r in regions)
    ET.fromstring(export.to_svg(P, fill=np.arange(P.num_regions), linewidth=0))
    one = ET.fromstring(export.to_svg(P.at_layer(1), fill="#ffffff"))
    assert {r.get("fill") for r in one.iter("{http://www.w3.org/2000/svg}polygon") if r.get("id") != "domain"} \
        == {"#ffffff"}


# -- graph-tool -------------------------------------------------------------------------------
def test_graph_tool_round_trip(net1, tmp_path):
    gt = pytest.importorskip("graph_tool")
    _, P = net1
    path = tmp_path / "p.gt"
    export.save_graph_tool(P, path)
    g = gt.load_graph(str(path))
    assert g.num_vertices() == len(P.vertices) and g.num_edges() == len(P.edges)
    e = g.get_edges([g.ep["layer"], g.ep["unit"], g.ep["decision"]])
    assert np.array_equal(np.sort(e[:, :2], axis=1), np.sort(P.edges, axis=1))
    assert np.array_equal(e[:, 2], P.edge_layer) and np.array_equal(e[:, 3], P.edge_unit)
    assert np.array_equal(e[:, 4].astype(bool), P.edge_decision)
    assert np.array_equal(g.vp["pos"].get_2d_array([0, 1]).T, P.vertices)


# -- npz --------------------------------------------------------------------------------------
def test_npz_round_trip(net3, tmp_path):
    _, P = net3
    path = tmp_path / "p.npz"
    export.save_npz(P, path)
    d = export.load_npz(path)
    assert set(export.NPZ_KEYS) <= set(d)
    coords, off = P.faces()
    expect = dict(vertices=P.vertices, edges=P.edges, edge_layer=P.edge_layer, edge_unit=P.edge_unit,
                  edge_decision=P.edge_decision, face_coords=coords, face_offsets=off,
                  decision_boundary=P.decision_boundary, domain=P.slice.polygon, slope_norms=P.slope_norms())
    for k, v in expect.items():
        assert d[k].dtype == np.asarray(v).dtype and np.array_equal(d[k], v), k
    assert int(d["num_layers"]) == P.num_layers
    polys = np.split(d["face_coords"], d["face_offsets"][1:-1])
    assert len(polys) == P.num_regions and all(np.array_equal(a, b) for a, b in zip(polys, P.polygons()))
    # Plain np.load works too (no pickles); uncompressed as well.
    export.save_npz(P.at_layer(1), tmp_path / "q.npz", compressed=False)
    with np.load(tmp_path / "q.npz", allow_pickle=False) as f:
        assert "slope_norms" not in f.files and len(f["decision_boundary"]) == 0


@pytest.mark.parametrize("color", ["slope", "pattern", "class"])
def test_a_window_draws_only_the_regions_that_meet_it(net3, color):
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.collections import PolyCollection
    P = net3[1]
    win = (-0.3, 0.2, -0.1, 0.4)
    ax = P.plot(window=win, color=color)
    drawn = [c for c in ax.collections if isinstance(c, PolyCollection)][0]
    polys = P.polygons()
    meets = [i for i, p in enumerate(polys) if p[:, 0].max() >= win[0] and p[:, 0].min() <= win[1]
             and p[:, 1].max() >= win[2] and p[:, 1].min() <= win[3]]
    assert 0 < len(drawn.get_paths()) == len(meets) < P.num_regions
    assert np.array_equal(P.regions_meeting(win), meets)
    assert np.array_equal(P.centroids(meets), P.centroids()[meets])
    # the colours are those of the same regions in the full figure
    full = [c for c in P.plot(color=color).collections if isinstance(c, PolyCollection)][0]
    if color == "slope":
        assert np.allclose(drawn.get_array(), np.asarray(full.get_array())[meets])
    else:
        assert np.allclose(drawn.get_facecolor(), full.get_facecolor()[meets])
    matplotlib.pyplot.close("all")


@pytest.mark.parametrize("win", [(-0.3, 0.2, -0.1, 0.4), (0.9, 1.5, 0.9, 1.5), (0.1, 0.1, 0.2, 0.2)])
def test_a_window_draws_every_edge_and_boundary_segment_that_meets_it(net3, win):
    """A zoomed figure builds its edges from the regions that meet the window only: every
    edge and decision segment of the whole graph whose bounding box meets the window is
    drawn, with its layer, and nothing that is not an edge of the graph."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.collections import LineCollection
    P = net3[1]
    v, e = P.vertices, P.edges

    def key(seg):  # a segment, its two ends in a fixed order
        seg = np.asarray(seg)
        return tuple(seg[np.lexsort(seg.T[::-1])].ravel())

    seg = np.stack([v[e[:, 0]], v[e[:, 1]]], axis=1)
    meets = ((seg[:, :, 0].max(1) >= win[0]) & (seg[:, :, 0].min(1) <= win[1])
             & (seg[:, :, 1].max(1) >= win[2]) & (seg[:, :, 1].min(1) <= win[3]))
    hidden = (P.edge_layer >= 1) & (P.edge_layer <= P.num_layers) & ~P.edge_decision
    ax = P.plot(window=win, color="C0", edges_by_layer=True)
    lines = [c for c in ax.collections if isinstance(c, LineCollection)]
    by_layer = {int(c.get_label().split()[1]): {key(s) for s in c.get_segments()}
                for c in lines if c.get_label().startswith("layer")}
    boundary = {key(s) for c in lines if not c.get_label().startswith("layer") for s in c.get_segments()}
    assert sorted(by_layer) == list(range(1, P.num_layers + 1))
    for l in range(1, P.num_layers + 1):
        # The drawn edges are the regions' edges; the graph's may be cut where the decision
        # boundary crosses them: each drawn edge is the union of graph edges of its layer
        # lying on it, and every graph edge of the layer that meets the window lies on one.
        full = seg[hidden & (P.edge_layer == l)]
        on = np.zeros(len(full), bool)
        for drawn in by_layer[l]:
            a, b = np.array(drawn).reshape(2, 2)
            d = b - a
            t = ((full - a) @ d) / (d @ d)
            off_line = np.abs(d[0] * (full[..., 1] - a[1]) - d[1] * (full[..., 0] - a[0])) / np.hypot(*d)
            inside = np.all((off_line < 1e-12) & (t > -1e-12) & (t < 1 + 1e-12), axis=1)
            assert np.isclose(np.hypot(*(full[inside, 1] - full[inside, 0]).T).sum(), np.hypot(*d), rtol=1e-12)
            on |= inside
        assert np.all(on[meets[hidden & (P.edge_layer == l)]])
    full = {key(s) for s in seg[P.edge_decision]}
    assert boundary <= full and {key(s) for s in seg[P.edge_decision & meets]} <= boundary
    matplotlib.pyplot.close("all")


def test_a_new_figure_has_colorbar_title_labels_and_a_class_legend(net3):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection
    from splinecam.analysis.plot import edge_width
    P = net3[1]
    ax = P.plot()
    assert len(ax.figure.axes) == 2, "no colorbar"  # the plot and its colorbar
    assert ax.figure.axes[1].get_ylabel() == "slope norm"
    assert ax.get_title() == f"{P.num_regions:,} linear regions"
    assert ax.get_xlabel().startswith("u") and ax.get_ylabel().startswith("v")
    # edges thin out with the number of regions drawn
    drawn = [c for c in ax.collections if isinstance(c, PolyCollection)][0]
    assert np.isclose(drawn.get_linewidths()[0], edge_width(P.num_regions))
    assert edge_width(100) == 0.5 and edge_width(240_000) < 0.05 and edge_width(10 ** 9) == 0.02
    # classes: one legend entry per class present
    ax = P.plot(color="class")
    from splinecam.analysis.plot import region_classes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [f"class {c}" for c in np.unique(region_classes(P))]
    # into given axes: no colorbar or title unless asked
    fig, a = plt.subplots()
    P.plot(ax=a)
    assert len(fig.axes) == 1 and a.get_title() == ""
    plt.close("all")
