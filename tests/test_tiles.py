"""Tiles: a slice computed in pieces and stitched by activation pattern must equal the
slice computed whole; the memory limit is enforced before the machine runs out."""
import numpy as np
import pytest
import torch

import splinecam
from splinecam.geometry import polygon_area
from splinecam.driver.tiles import tile_polygons
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
def test_tiled_equals_whole(tiles):
    model = mlp((2, 32, 32, 32, 1), seed=1)
    sl = splinecam.Slice.plane2d(SQUARE)
    P = splinecam.partition(model, sl, progress=False)
    T = splinecam.partition_tiled(model, sl, tiles=tiles, progress=False)
    assert T.num_pieces > T.num_regions == P.num_regions
    assert np.allclose(np.sort(T.areas()), np.sort(P.areas()), atol=1e-12)
    # Each stitched region's hull has the area of its pieces together (regions are convex).
    hull_areas = np.array([shoelace(p) for p in T.polygons()])
    assert np.allclose(hull_areas, T.areas(), rtol=1e-9, atol=1e-13)
    # The decision boundary, cut at tile edges, has the same total length.
    length = lambda db: np.linalg.norm(db[:, 1] - db[:, 0], axis=1).sum()
    assert length(T.decision_boundary) == pytest.approx(length(P.decision_boundary), rel=1e-9, abs=1e-12)


def test_memory_limit_is_enforced_and_tiles_split_until_they_fit(tmp_path):
    model = mlp((2, 48, 48, 1), seed=2)
    sl = splinecam.Slice.plane2d(SQUARE)
    P = splinecam.partition(model, sl, progress=False)
    limit = 300_000  # bytes: far less than the whole slice needs
    with pytest.raises(splinecam.MemoryLimitExceeded, match="partition_tiled"):
        splinecam.partition(model, sl, progress=False, memory_limit=limit)
    T = splinecam.partition_tiled(model, sl, tiles=1, memory_limit=limit, out_dir=str(tmp_path), progress=False)
    assert len(T.tiles) > 1 and T.num_regions == P.num_regions
    assert np.allclose(np.sort(T.areas()), np.sort(P.areas()), atol=1e-12)
    assert all(p is None for p in T.partitions) and all((tmp_path / p.split("/")[-1]).exists() for p in T.paths)
    with pytest.raises(ValueError, match="streamed"):
        T.polygons()


def test_tiled_cnn_slice_matches_whole():
    model = small_cnn(input_shape=(3, 8, 8), channels=(4, 4), dense=(16,), classes=3, seed=0)
    g = torch.Generator().manual_seed(0)
    a, b, c = torch.randn(3, 3, 8, 8, generator=g)
    sl = splinecam.Slice.through(a, b, c)
    P = splinecam.partition(model, sl, progress=False)
    T = splinecam.partition_tiled(model, sl, tiles=2, progress=False)
    assert T.num_regions == P.num_regions
    assert np.allclose(np.sort(T.areas()), np.sort(P.areas()), rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("which", ["mlp", "hardtanh-maxpool", "cnn"])
def test_lean_mode_gives_the_same_partition(which):
    from torch import nn
    if which == "mlp":
        model, sl = mlp((2, 32, 32, 3), seed=3), splinecam.Slice.plane2d(SQUARE)
    elif which == "hardtanh-maxpool":
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(2, 24), nn.Hardtanh(), nn.Linear(24, 16), nn.Unflatten(1, (1, 16)),
                              nn.MaxPool1d(2), nn.Flatten(), nn.Linear(8, 2)).eval()
        sl = splinecam.Slice.plane2d(SQUARE)
    else:
        model = small_cnn(input_shape=(3, 6, 6), channels=(3,), dense=(8,), classes=3, seed=1)
        g = torch.Generator().manual_seed(0)
        sl = splinecam.Slice.through(*torch.randn(3, 3, 6, 6, generator=g))
    P = splinecam.partition(model, sl, progress=False)
    limit = 400_000 if which == "cnn" else 200_000  # below one pass, above one unit at a time
    with pytest.raises(splinecam.MemoryLimitExceeded, match="lean=True"):
        splinecam.partition(model, sl, progress=False, memory_limit=limit)
    Q = splinecam.partition(model, sl, progress=False, memory_limit=limit, lean=True, validate=True)
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
    assert T.num_pieces == 16 and T.num_regions == 1
    assert T.areas()[0] == pytest.approx(sl.area, rel=1e-9)
    hull = T.polygons()[0]
    assert polygon_area(hull) == pytest.approx(sl.area, rel=1e-9)


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
    assert T.num_pieces > T.num_regions == P.num_regions
    # Vertices are only known to the float64 resolution at these coordinates: a region's
    # area to about (its perimeter) x (that resolution).
    atol = 16 * np.spacing(np.abs(sl.polygon).max()) * side
    assert np.allclose(np.sort(T.areas()), np.sort(P.areas()), rtol=0, atol=atol)
    assert T.areas().sum() == pytest.approx(sl.area, rel=1e-9)
    hull_areas = np.array([polygon_area(p) for p in T.polygons()])
    assert np.all(hull_areas > 0)
    assert np.allclose(hull_areas, T.areas(), rtol=1e-6, atol=atol)
