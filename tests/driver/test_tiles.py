"""Tiles: a slice computed in pieces and stitched into one partition must equal the
slice computed whole; the memory limit is enforced before the machine runs out, and
partition() plans tiles by itself when one pass does not fit."""
import numpy as np
import pytest
import torch
from torch import nn

import splinecam
from splinecam.driver.tiles import tile_polygons
from splinecam.testing import check_partition
from splinecam.zoo import mlp, small_cnn

SQUARE = np.array([[-2.0, -2.0], [2.0, -2.0], [2.0, 2.0], [-2.0, 2.0]])


def shoelace(p):
    q = p - p[0]
    return 0.5 * np.sum(q[:, 0] * np.roll(q[:, 1], -1) - q[:, 1] * np.roll(q[:, 0], -1))


def test_tiles_cover_the_polygon_exactly():
    tri = np.array([[0.0, 0.0], [3.0, 0.5], [1.0, 2.5]])
    tiles = tile_polygons(tri, (3, 4))
    assert sum(shoelace(t) for t in tiles) == pytest.approx(shoelace(tri), rel=1e-12)
    for t in tiles:
        splinecam.slice.convex_polygon(t)  # each tile is a valid convex polygon


@pytest.mark.parametrize("tiles", [2, (3, 2)])
# -- the stitched partition is the partition of the slice -----------------------------------
def assert_same_partition(T, P, rtol=1e-9):
    """``T`` (tiled) is ``P`` (whole), checked through the model, not through the engine:
    a valid planar subdivision with one pattern per region and different patterns across
    every edge (check_partition), the same regions (matched by pattern) with the same
    areas, the same regions after every layer, the same decision boundary, the same
    adjacency, and the same region for random points."""
    check_partition(T)
    for l in range(1, T.num_layers + 1):
        T.at_layer(l).validate()
    assert T.num_regions == P.num_regions
    key = lambda Q: [bytes(r) for r in np.packbits(Q.activation_patterns(), axis=1)]
    kp, kt = key(P), key(T)
    assert set(kp) == set(kt)
    where = {k: i for i, k in enumerate(kt)}
    match = np.array([where[k] for k in kp])  # region of T for each region of P
    scale = P.slice.area
    assert np.allclose(T.areas()[match], P.areas(), rtol=rtol, atol=1e-13 * scale)
    assert list(T.regions_per_layer()) == list(P.regions_per_layer())
    assert T.decision_boundary_length() == pytest.approx(P.decision_boundary_length(), rel=rtol, abs=1e-12)
    assert len(T.adjacency()) == len(P.adjacency())
    assert np.array_equal(np.bincount(T.edge_layer + 1), np.bincount(P.edge_layer + 1))
    pts = P.sample_regions(n_per_region=1, rng=1)[0]
    assert np.array_equal(T.locate(pts), match[P.locate(pts)])


def mlp_slice():
    return mlp((2, 32, 32, 32, 3), seed=1).double(), splinecam.Slice.plane2d(SQUARE)


def conv_maxpool_slice():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 3)).double().eval()
    g = torch.Generator().manual_seed(1)
    return model, splinecam.Slice.through(*torch.randn(3, 1, 6, 6, generator=g, dtype=torch.float64))


def residual_slice():
    from splinecam.zoo import small_resnet
    model = small_resnet(widths=(4, 4, 4), classes=3, seed=0).double()
    g = torch.Generator().manual_seed(0)
    a, b, c = torch.randn(3, 3, 32, 32, generator=g, dtype=torch.float64)
    return model, splinecam.Slice.through(a, b, c).scaled(0.015)


def hardtanh_maxpool1d():
    """Hardtanh, then MaxPool1d over the units of a Linear layer (float32, eval mode)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 24), nn.Hardtanh(), nn.Linear(24, 16), nn.Unflatten(1, (1, 16)),
                         nn.MaxPool1d(2), nn.Flatten(), nn.Linear(8, 2)).eval()


def hardtanh_maxpool_slice():
    return hardtanh_maxpool1d().double(), splinecam.Slice.plane2d(SQUARE)


SLICES = {"mlp": mlp_slice, "conv-maxpool": conv_maxpool_slice, "residual": residual_slice,
          "hardtanh-maxpool1d": hardtanh_maxpool_slice}


@pytest.fixture(scope="module", params=sorted(SLICES))
def whole(request):
    model, sl = SLICES[request.param]()
    P = splinecam.partition(model, sl, progress=False)
    assert P.num_regions > 50 and P.run_info["tiles"] == 1
    return model, sl, P


@pytest.mark.parametrize("tiles", [3, (4, 2)])
def test_tiled_equals_whole(whole, tiles):
    model, sl, P = whole
    T = splinecam.partition(model, sl, progress=False, tiles=tiles)
    assert T.run_info["tiles"] > 1
    assert_same_partition(T, P)


def test_tiles_with_t_junctions_equal_whole(whole):
    """Tiles of different sizes: the corners of the small ones lie inside the big ones'
    edges, where those have no vertex of their own."""
    model, sl, P = whole
    left, right = tile_polygons(sl.polygon, (2, 1))
    quarters = tile_polygons(right, 2)
    polys = [left] + quarters[1:] + tile_polygons(quarters[0], 2)
    T = splinecam.partition(model, sl, progress=False, tiles=polys)
    assert T.run_info["tiles"] == len(polys) >= 7
    assert_same_partition(T, P)


def test_memory_limit_plans_tiles_by_itself():
    model, sl = mlp_slice()
    P = splinecam.partition(model, sl, progress=False)
    limit = 300_000  # bytes: far less than the whole slice needs
    with pytest.raises(splinecam.MemoryLimitExceeded, match="tiles"):
        splinecam.partition(model, sl, progress=False, memory_limit=limit, tiles=1)
    T = splinecam.partition(model, sl, progress=False, memory_limit=limit)
    assert T.run_info["tiles"] > 4 and T.run_info["tile_splits"] > 0
    assert_same_partition(T, P)
    # the explicit form gives the same
    T2 = splinecam.partition_tiled(model, sl, tiles=2, memory_limit=limit, progress=False)
    assert T2.num_regions == P.num_regions


@pytest.mark.parametrize("tiles", [0, -1, (2,), (2, 0), 1.5, "many", True])
def test_bad_tiles_are_refused(tiles):
    model, sl = mlp_slice()
    with pytest.raises(ValueError, match="tiles"):
        splinecam.partition(model, sl, progress=False, tiles=tiles)


def test_tiles_that_do_not_cover_the_slice_are_refused():
    model, sl = mlp_slice()
    with pytest.raises(ValueError, match="cover"):
        splinecam.partition(model, sl, progress=False, tiles=tile_polygons(SQUARE, 2)[:3])


@pytest.mark.parametrize("which", ["mlp", "hardtanh-maxpool", "cnn"])
def test_lean_mode_gives_the_same_partition(which):
    if which == "mlp":
        model, sl = mlp((2, 32, 32, 3), seed=3), splinecam.Slice.plane2d(SQUARE)
    elif which == "hardtanh-maxpool":
        model, sl = hardtanh_maxpool1d(), splinecam.Slice.plane2d(SQUARE)
    else:
        model = small_cnn(input_shape=(3, 6, 6), channels=(3,), dense=(8,), classes=3, seed=1)
        g = torch.Generator().manual_seed(0)
        sl = splinecam.Slice.through(*torch.randn(3, 3, 6, 6, generator=g))
    P = splinecam.partition(model, sl, progress=False)
    limit = 400_000 if which == "cnn" else 200_000  # below one pass, above one unit at a time
    with pytest.raises(splinecam.MemoryLimitExceeded, match="lean=True"):
        splinecam.partition(model, sl, progress=False, memory_limit=limit, tiles=1)
    Q = splinecam.partition(model, sl, progress=False, memory_limit=limit, lean=True, validate=True, tiles=1)
    assert Q.run_info["lean"] and Q.num_regions == P.num_regions
    assert np.allclose(np.sort(Q.areas()), np.sort(P.areas()), rtol=1e-9, atol=1e-13)
    length = lambda db: np.linalg.norm(db[:, 1] - db[:, 0], axis=1).sum()
    assert length(Q.decision_boundary) == pytest.approx(length(P.decision_boundary), rel=1e-9, abs=1e-12)


# -- small slices far from the plane's origin (fuzz findings) -----------------------------
def square_at(centre, side):
    c, h = np.asarray(centre, dtype=np.float64), side / 2
    return np.array([c + [-h, -h], c + [h, -h], c + [h, h], c + [-h, h]])


def mlp_through(centre, side, seed=0, widths=(2, 8, 8, 1)):
    """zoo.mlp with the biases shifted so that the zero line of every unit of both hidden
    layers passes through its own random point of the square: lines cross it however
    small it is and wherever it lies."""
    m = mlp(widths, seed=seed).double()
    g = torch.Generator().manual_seed(seed)
    c = torch.tensor(centre, dtype=torch.float64)
    with torch.no_grad():
        p = c + side * (torch.rand(widths[1], 2, generator=g, dtype=torch.float64) - 0.5)
        m[0].bias.copy_(-(m[0].weight * p).sum(1))
        q = c + side * (torch.rand(widths[2], 2, generator=g, dtype=torch.float64) - 0.5)
        m[2].bias.sub_(torch.diagonal(m[2](m[:2](q))))
    return m


FAR_SMALL = [((1.0, 1.0), 1e-9), ((1e6, 0.0), 1e-3)]


@pytest.mark.parametrize("centre, side", FAR_SMALL)
def test_tiled_small_slice_far_from_origin_without_lines_is_one_region(centre, side):
    """The piece keys' tolerance was relative to the absolute coordinates: on a small
    slice away from (0, 0) every tile edge looked like the slice boundary, nothing was
    stitched, and 4 x 4 tiles gave 16 regions instead of 1."""
    model = mlp((2, 16, 16, 1), seed=0)
    sl = splinecam.Slice.plane2d(square_at(centre, side))
    P = splinecam.partition(model, sl, progress=False)
    assert P.num_regions == 1
    T = splinecam.partition_tiled(model, sl, tiles=4, progress=False)
    assert T.run_info["tiles"] == 16 and T.num_regions == 1
    assert T.areas()[0] == pytest.approx(sl.area, rel=1e-9)
    # the seams are gone: the one region is the square, corners only
    assert len(T.polygons()[0]) == 4 and len(T.vertices) == 4


@pytest.mark.parametrize("centre, side", FAR_SMALL + [((0.0, 0.0), 2.0)])
def test_tiled_small_slice_far_from_origin_with_lines_matches_whole(centre, side):
    """Same slices, crossed by the lines of both hidden layers: the stitched regions are
    the untiled ones, with the same areas up to the rounding of coordinates there."""
    model = mlp_through(centre, side)
    sl = splinecam.Slice.plane2d(square_at(centre, side))
    P = splinecam.partition(model, sl, progress=False)
    assert P.num_regions > 50
    splinecam.testing.check_partition(P)
    T = splinecam.partition_tiled(model, sl, tiles=4, progress=False)
    assert T.run_info["tiles"] == 16 and T.num_regions == P.num_regions
    check_partition(T)
    # Vertices are only known to the float64 resolution at these coordinates: a region's
    # area to about (its perimeter) x (that resolution).
    atol = 16 * np.spacing(np.abs(sl.polygon).max()) * side
    assert np.allclose(np.sort(T.areas()), np.sort(P.areas()), rtol=0, atol=atol)
    assert T.areas().sum() == pytest.approx(sl.area, rel=1e-9)


# -- the store: tiles on disk, interrupt and resume -----------------------------------------
def test_store_roundtrip_is_memory_mapped_and_needs_the_model_only_to_evaluate_it(tmp_path):
    model, sl = mlp_slice()
    P = splinecam.partition(model, sl, progress=False)
    P.save(tmp_path / "p")
    L = splinecam.Partition.load(tmp_path / "p")
    assert isinstance(L._xy, np.memmap)
    assert (L.num_regions, len(L.edges), L.num_layers) == (P.num_regions, len(P.edges), P.num_layers)
    assert np.array_equal(L.edge_layer, P.edge_layer) and np.array_equal(L.vertices, P.vertices)
    assert list(L.regions_per_layer()) == list(P.regions_per_layer())
    assert L.decision_boundary_length() == P.decision_boundary_length()
    L.validate()
    with pytest.raises(ValueError, match="model"):
        L.activation_patterns()
    pts = P.sample_regions(n_per_region=1, rng=2)[0]
    assert np.array_equal(L.locate(pts), P.locate(pts))  # geometric: no model needed
    M = splinecam.Partition.load(tmp_path / "p", model)
    assert_same_partition(M, P)
    with pytest.raises(FileNotFoundError, match="not a splinecam store"):
        splinecam.Partition.load(tmp_path / "nothing")


def test_interrupted_tiles_resume_from_the_store(tmp_path, monkeypatch):
    from splinecam.driver import engine
    model, sl = mlp_slice()
    P = splinecam.partition(model, sl, progress=False)
    real, calls = engine._partition_polygon, []

    def counted(*a, **k):
        calls.append(a[3])
        if stop_after is not None and len(calls) > stop_after:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(engine, "_partition_polygon", counted)
    store = tmp_path / "run"
    stop_after = 3
    with pytest.raises(KeyboardInterrupt):
        splinecam.partition(model, sl, progress=False, tiles=3, store=store)
    assert len(list((store / "tiles").glob("t*"))) == 3
    calls.clear()
    stop_after = None
    R = splinecam.partition(model, sl, progress=False, tiles=3, store=store)
    assert len(calls) == 9 - 3 and R.run_info["tiles"] == 9  # only the tiles not done
    assert_same_partition(R, P)
    assert not (store / "tiles").exists()
    calls.clear()
    again = splinecam.partition(model, sl, progress=False, tiles=3, store=store)  # finished: opened, not recomputed
    assert not calls and again.num_regions == P.num_regions and isinstance(again._xy, np.memmap)
    with pytest.raises(ValueError, match="another model, slice or setting"):
        splinecam.partition(model, sl.scaled(0.5), progress=False, store=store)


def _arrays(P):
    """Every array of a partition, by name, as its store holds them."""
    from splinecam.result.store import npz_arrays
    return {k: np.asarray(v) for k, v in npz_arrays(P).items() if not k.endswith("meta.json")}


@pytest.mark.parametrize("which", ["conv-maxpool", "hardtanh-maxpool1d"])
def test_stitch_streamed_into_a_store_equals_the_stitch_in_memory(tmp_path, which):
    """With a store, the stitcher writes every level tile by tile into its files (no level
    is whole in memory); the result is the in-memory stitch's, array for array."""
    model, sl = SLICES[which]()
    M = splinecam.partition(model, sl, progress=False, tiles=3)
    S = splinecam.partition(model, sl, progress=False, tiles=3, store=tmp_path / "s")
    assert isinstance(S._layers[-1].face_verts, np.memmap) and isinstance(S._xy, np.memmap)
    a, b = _arrays(M), _arrays(S)
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def test_npy_column_writes_an_array_in_chunks(tmp_path):
    from splinecam.result.store import NpyColumn
    full = np.arange(30, dtype=np.int32).reshape(10, 3)
    col = NpyColumn(tmp_path / "a.npy", np.int32, full.shape)
    for s in (slice(0, 4), slice(4, 4), slice(4, 10)):
        col.write(full[s])
    got = col.close()
    assert isinstance(got, np.memmap) and np.array_equal(got, full) and np.array_equal(np.load(tmp_path / "a.npy"), full)
    col = NpyColumn(tmp_path / "b.npy", np.float64, (3,))
    with pytest.raises(ValueError, match="does not fit"):
        col.write(np.zeros(4))
    col.write(np.zeros(2))
    with pytest.raises(ValueError, match="1 of 3 rows were never written"):
        col.close()


def test_seam_twins_and_merge_on_the_seams_equal_whole_level_ones(monkeypatch):
    """The stitcher keys only the seams' half-edges and merges only the faces on seams;
    on every level of a tiled run (MLP and a max-pool CNN) that gives exactly what a
    half-edge table and a merge of the whole level give (_core.halfedges, _core.merge)."""
    from splinecam import _core
    from splinecam.driver import stitch as S

    seen = {"twins": 0, "merge": 0}
    seam_twins, merge_touched = S._seam_twins, S._merge_touched

    def twins_checked(off, verts, lay, nv):
        h, th, fa, fb = seam_twins(off, verts, lay, nv)
        he = _core.halfedges(nv, off, verts)
        ref = np.flatnonzero((lay == -1) & (he["twin"] > np.arange(len(verts))))
        assert np.array_equal(h, ref) and np.array_equal(th, he["twin"][ref])
        assert np.array_equal(fa, he["face"][ref]) and np.array_equal(fb, he["face"][he["twin"][ref]])
        seen["twins"] += 1
        return h, th, fa, fb

    def merge_checked(nv, off, verts, lay, unit, remove):
        got, ref = merge_touched(nv, off, verts, lay, unit, remove), _core.merge(nv, off, verts, lay, unit, remove)
        for k in ("group", "face_offsets", "face_verts", "he_layer", "he_unit"):
            assert np.array_equal(np.asarray(got[k]), np.asarray(ref[k])), k
        seen["merge"] += 1
        return got

    monkeypatch.setattr(S, "_seam_twins", twins_checked)
    monkeypatch.setattr(S, "_merge_touched", merge_checked)
    splinecam.partition(mlp((2, 16, 16, 3), seed=2), splinecam.Slice.plane2d(SQUARE), tiles=3, progress=False)
    cnn = small_cnn(input_shape=(1, 8, 8), channels=(2,), dense=(6,), classes=3, seed=0).eval()
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.rand(1, 8, 8, generator=g) for _ in range(3))
    splinecam.partition(cnn, splinecam.Slice.through(a, b, c), tiles=2, progress=False)
    assert seen["twins"] >= 6 and seen["merge"] >= 6
