"""The Partition API's conventions: ``rng`` for randomness (``seed`` a deprecated alias),
the types the samplers return, the names of the adjacency queries, properties against
methods, ``__geo_interface__``, what ``save`` writes and refuses, and the ``.npz``
round trip through ``Partition.load``."""
import copy
import inspect
import json
import os
import warnings

import numpy as np
import pytest
import torch

import splinecam
from splinecam import zoo
from splinecam.analysis import sampling, stats

SQUARE = [[-1, -1], [1, -1], [1, 1], [-1, 1]]


@pytest.fixture(scope="module")
def small():
    """(model, Partition) of a 2-8-8-1 MLP with 21 regions and 4 decision segments."""
    model = zoo.mlp([2, 8, 8, 1], seed=3)
    return model, splinecam.partition(model, splinecam.Slice.plane2d(SQUARE), progress=False)


# -- 1. randomness: rng=None | int | Generator; seed= deprecated -----------------------------
SAMPLERS = [
    ("boundary", lambda P, **kw: sampling.sample_decision_boundary(P, 40, **kw)),
    ("regions", lambda P, **kw: sampling.sample_regions(P, [0, 2, 2], 5, **kw)),
    ("P.boundary", lambda P, **kw: P.sample_decision_boundary(40, **kw)),
    ("P.regions", lambda P, **kw: P.sample_regions([0, 2, 2], 5, **kw)),
]


@pytest.mark.parametrize("name,draw", SAMPLERS, ids=[s[0] for s in SAMPLERS])
def test_rng_takes_none_an_int_or_a_generator(small, name, draw):
    _, P = small
    # an int: reproducible
    assert np.array_equal(draw(P, rng=7).points, draw(P, rng=7).points)
    assert not np.array_equal(draw(P, rng=7).points, draw(P, rng=8).points)
    # None (the default): fresh points on every call
    assert not np.array_equal(draw(P).points, draw(P).points)
    # a Generator: used as it is, and advanced
    g = np.random.default_rng(7)
    first, second = draw(P, rng=g).points, draw(P, rng=g).points
    assert np.array_equal(first, draw(P, rng=7).points) and not np.array_equal(first, second)


@pytest.mark.parametrize("func", [sampling.sample_decision_boundary, sampling.sample_regions,
                                  splinecam.Partition.sample_decision_boundary, splinecam.Partition.sample_regions])
def test_rng_defaults_to_none_and_seed_is_keyword_only(func):
    params = inspect.signature(func).parameters
    assert params["rng"].default is None
    assert params["seed"].kind is inspect.Parameter.KEYWORD_ONLY and params["seed"].default is None
    assert "rng" in func.__doc__ and "default_rng" in func.__doc__


@pytest.mark.parametrize("name,draw", SAMPLERS, ids=[s[0] for s in SAMPLERS])
def test_seed_is_a_deprecated_alias_of_rng(small, name, draw):
    _, P = small
    with pytest.warns(DeprecationWarning, match=r"seed=\.\.\.\) is deprecated; use rng="):
        old = draw(P, seed=0)
    assert np.array_equal(old.points, draw(P, rng=0).points)      # the former default seed=0 is rng=0
    with pytest.raises(TypeError, match="not both"):
        draw(P, rng=1, seed=1)


def test_the_deprecation_warning_points_at_the_callers_line(small):
    _, P = small
    for call in (lambda: P.sample_regions([0], 2, seed=1), lambda: sampling.sample_regions(P, [0], 2, seed=1)):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            call()
        assert [os.path.basename(w.filename) for w in rec] == ["test_api.py"]


# -- 2. sampler results: numpy plane points, torch model inputs, named ---------------------
def test_boundary_sample_types(small):
    model, P = small
    s = P.sample_decision_boundary(30, rng=0)
    assert isinstance(s, sampling.BoundarySample) and isinstance(s, tuple) and s._fields == ("points", "inputs")
    points, inputs = s                                             # still unpacks as before
    assert isinstance(points, np.ndarray) and points.dtype == np.float64 and points.shape == (30, 2)
    assert isinstance(inputs, torch.Tensor) and inputs.dtype == torch.float64 and inputs.device.type == "cpu"
    assert torch.equal(inputs, P.slice.to_input(points))
    with torch.no_grad():                                          # the inputs feed the model as they are
        y = copy.deepcopy(model).double()(inputs)
    assert float(y.abs().max()) < 1e-9


def test_region_sample_types(small):
    _, P = small
    s = P.sample_regions([1, 4], 3, rng=0)
    assert isinstance(s, sampling.RegionSample) and s._fields == ("points", "region")
    assert s.points.dtype == np.float64 and s.points.shape == (6, 2)
    assert s.region.dtype == np.int64 and s.region.tolist() == [1, 1, 1, 4, 4, 4]
    assert np.array_equal(P.locate(s.points), s.region)


# -- 3. adjacency: names that say what they return -----------------------------------------
def test_neighbor_pairs_and_adjacency_matrix(small):
    _, P = small
    pairs = P.neighbor_pairs()
    assert np.array_equal(pairs, P.adjacency()) and np.array_equal(pairs, stats.neighbor_pairs(P))
    assert pairs.dtype == np.int64 and np.all(pairs[:, 0] < pairs[:, 1])
    pytest.importorskip("scipy")
    m = P.adjacency_matrix()
    old_pairs, old_m = P.adjacency(sparse=True)
    assert np.array_equal(old_pairs, pairs) and (m != old_m).nnz == 0
    assert m.shape == (P.num_regions, P.num_regions) and (m != m.T).nnz == 0
    # Every region's perimeter is its shared boundaries plus its part of the domain's:
    # summed, the shared lengths count twice.
    perim = sum(np.linalg.norm(np.roll(p, -1, 0) - p, axis=1).sum() for p in P.polygons())
    dom = P.slice.polygon
    assert m.sum() + np.linalg.norm(np.roll(dom, -1, 0) - dom, axis=1).sum() == pytest.approx(perim, rel=1e-12)


def test_region_adjacency_graph(small):
    pytest.importorskip("networkx")
    _, P = small
    G = P.region_adjacency_graph()
    assert sorted(G.nodes) == list(range(P.num_regions))
    assert sorted(map(tuple, map(sorted, G.edges))) == list(map(tuple, P.neighbor_pairs().tolist()))
    areas, cen = P.areas(), P.centroids()
    for i, d in G.nodes(data=True):
        assert d["area"] == areas[i] and d["centroid"] == tuple(cen[i])
    m = P.adjacency_matrix()
    for a, b, d in G.edges(data=True):
        assert d["length"] == pytest.approx(m[a, b], rel=1e-12) and d["length"] > 0
    # the other graph: to_networkx is the planar graph of vertices and edges
    assert P.to_networkx().number_of_nodes() == P.num_vertices


# -- 4. properties hold, methods compute ---------------------------------------------------
PROPERTIES = ["num_regions", "num_layers", "num_vertices", "num_edges", "layer_names", "vertices", "edges",
              "edge_layer", "edge_unit", "edge_decision", "decision_boundary", "__geo_interface__"]
METHODS = ["faces", "polygons", "areas", "centroids", "parents", "at_layer", "activation_patterns", "patterns_at",
           "affine", "affine_maps", "slope_norms", "locate", "stats", "regions_per_layer", "eccentricity",
           "local_complexity", "decision_boundary_length", "regions_on_boundary", "neighbor_pairs",
           "adjacency_matrix", "region_adjacency_graph", "adjacency", "sample_decision_boundary", "sample_regions",
           "to_geojson", "to_svg", "save", "validate", "to_graph_tool", "to_networkx", "explore", "plot"]


def test_properties_and_methods_follow_the_stated_rule(small):
    _, P = small
    for name in PROPERTIES:
        assert isinstance(inspect.getattr_static(splinecam.Partition, name), property), name
    for name in METHODS:
        assert inspect.isfunction(inspect.getattr_static(splinecam.Partition, name)), name
    assert "Properties and methods" in splinecam.Partition.__doc__
    assert P.num_vertices == len(P.vertices) and P.num_edges == len(P.edges)
    assert isinstance(P.num_vertices, int) and isinstance(P.num_edges, int)
    # held: the same array on every access; computed: a new one the caller owns
    for name in ("vertices", "edges", "edge_layer", "edge_unit", "edge_decision", "decision_boundary"):
        assert getattr(P, name) is getattr(P, name), name
    assert P.areas() is not P.areas() and P.centroids() is not P.centroids()
    Q = P.at_layer(1)
    assert Q.num_vertices == len(Q.vertices) and Q.decision_boundary is Q.decision_boundary


def test_plot_lists_the_options_of_plot_partition_object():
    from splinecam.analysis.plot import plot_partition_object
    mine = inspect.signature(splinecam.Partition.plot).parameters
    theirs = inspect.signature(plot_partition_object).parameters
    assert list(mine)[1:] == list(theirs)[1:]                     # the same options, in the same order
    for name, p in theirs.items():
        if name != "partition":
            assert mine[name].default == p.default, name
            assert f"\n        {name} :" in splinecam.Partition.plot.__doc__, name


def test_plot_shim_keeps_its_import_path():
    import splinecam.analysis.plot
    from splinecam import plot
    assert plot is splinecam.analysis.plot and callable(plot.plot_partition) and callable(plot.plot_layers)


# -- 5. __geo_interface__ ------------------------------------------------------------------
def test_geo_interface_is_a_feature_collection_of_regions(small):
    _, P = small
    fc = P.__geo_interface__
    assert json.loads(json.dumps(fc)) == fc                       # plain JSON values
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == P.num_regions
    areas, slopes = P.areas(), P.slope_norms()
    from splinecam.analysis.plot import region_classes
    classes = region_classes(P)
    for i, (f, poly) in enumerate(zip(fc["features"], P.polygons())):
        assert f["type"] == "Feature" and f["id"] == i and f["geometry"]["type"] == "Polygon"
        ring = np.array(f["geometry"]["coordinates"][0])
        assert np.array_equal(ring[0], ring[-1]) and np.array_equal(ring[:-1], poly)
        assert f["properties"]["kind"] == "region" and f["properties"]["region"] == i
        assert f["properties"]["area"] == pytest.approx(areas[i], rel=1e-12)
        assert f["properties"]["slope_norm"] == pytest.approx(slopes[i], rel=1e-12)
        assert f["properties"]["class"] == classes[i]
    # an intermediate layer: regions without the model's output properties
    f1 = P.at_layer(1).__geo_interface__["features"]
    assert len(f1) == P.at_layer(1).num_regions and all("slope_norm" not in f["properties"] for f in f1)
    # to_geojson still has the decision boundary, and the same regions
    full = P.to_geojson()["features"]
    assert full[:P.num_regions] == fc["features"] and len(full) == P.num_regions + len(P.decision_boundary)


def test_shapely_reads_the_geo_interface(small):
    shapely_geometry = pytest.importorskip("shapely.geometry")
    _, P = small
    shapes = [shapely_geometry.shape(f["geometry"]) for f in P.__geo_interface__["features"]]
    assert all(s.is_valid for s in shapes)
    np.testing.assert_allclose([s.area for s in shapes], P.areas(), rtol=1e-12)


# -- 6. save refuses what it cannot write, naming every format ----------------------------
@pytest.mark.parametrize("name", ["x.txt", "x.gz", "x.csv"])
def test_save_to_an_unknown_extension_lists_every_format(small, tmp_path, name):
    _, P = small
    with pytest.raises(ValueError) as e:
        P.save(tmp_path / name)
    msg = str(e.value)
    for fmt in ("directory", ".npz", ".geojson", ".json", ".gt", ".graphml", ".png", ".svg", ".pdf",
                "Partition.load"):
        assert fmt in msg, fmt
    assert name in msg and os.listdir(tmp_path) == []


def test_save_returns_the_path_for_every_format(small, tmp_path):
    _, P = small
    for name in ("p.npz", "p.geojson", "p.gt", "p.gt.gz", "p.svg", "p.png", "store"):
        out = P.save(tmp_path / name, **({"dpi": 30} if name.endswith(".png") else {}))
        assert out == str(tmp_path / name) and os.path.exists(out), name
    gt = pytest.importorskip("graph_tool")
    assert gt.load_graph(str(tmp_path / "p.gt.gz")).num_edges() == P.num_edges


# -- 7. Partition.load(P.save("p.npz")) ----------------------------------------------------
def _same(P, Q):
    for name in ("vertices", "edges", "edge_layer", "edge_unit", "edge_decision", "decision_boundary"):
        a, b = getattr(P, name), getattr(Q, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert all(np.array_equal(a, b) for a, b in zip(P.polygons(), Q.polygons()))
    assert np.array_equal(P.regions_per_layer(), Q.regions_per_layer())


def test_npz_round_trip_through_partition_load(small, tmp_path):
    model, P = small
    path = P.save(tmp_path / "p.npz")
    assert path == str(tmp_path / "p.npz")
    Q = splinecam.Partition.load(path)
    assert repr(Q) == repr(P)
    _same(P, Q)
    for l in range(1, P.num_layers + 1):
        _same(P.at_layer(l), Q.at_layer(l))
    for a, b in zip(P.affine_maps(), Q.affine_maps()):
        assert np.array_equal(a, b)
    pts = np.random.default_rng(0).uniform(-1.2, 1.2, (500, 2))
    assert np.array_equal(P.locate(pts), Q.locate(pts))
    assert Q.stats() == P.stats() and Q.run_info["store"] == path
    assert np.array_equal(Q.slice.polygon, P.slice.polygon) and torch.equal(Q.slice.basis, P.slice.basis)
    # with the model, the queries that evaluate it work too
    R = splinecam.Partition.load(path, model)
    assert np.array_equal(R.activation_patterns(), P.activation_patterns()) and R.layer_names == P.layer_names
    # and the file is still the plain arrays for np.load
    with np.load(path, allow_pickle=False) as f:
        assert np.array_equal(f["vertices"], P.vertices) and np.array_equal(f["face_offsets"], P.faces()[1])


def test_npz_without_the_partition_is_refused_by_load(small, tmp_path):
    from splinecam.analysis import export
    _, P = small
    path = export.save_npz(P, tmp_path / "plain", loadable=False)
    assert path == str(tmp_path / "plain.npz")                     # named as np.savez names it
    with pytest.raises(ValueError, match="load_npz"):
        splinecam.Partition.load(path)
    (tmp_path / "junk.npz").write_text("not a zip file")
    with pytest.raises(ValueError, match="neither"):
        splinecam.Partition.load(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError):
        splinecam.Partition.load(tmp_path / "missing")
