"""Regression tests for wrong partitions found by fuzzing, one per root cause.

Each case is held against evidence independent of the engine: hand-worked counts, fresh
forward passes of the model (``check_partition``: one pattern per region, neighbours
differ, areas, convexity), point-in-polygon tests and dense pattern sampling.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import splinecam as sc
from splinecam import _core
from splinecam.testing import check_partition
from splinecam.driver.tolerance import ROUNDING_FLOOR, Tolerances

SQUARE = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])


def _square(centre, half):
    return sc.Slice.plane2d(np.asarray(centre, dtype=np.float64) + half * SQUARE)


def _point_in_region(P, pts, regions):
    """Whether each point lies in (or on) the convex polygon of its region."""
    polys = P.polygons()
    ok = []
    for p, r in zip(pts, regions):
        q = polys[r]
        d = np.roll(q, -1, axis=0) - q
        w = p - q
        scale = np.abs(d).max() * np.abs(w).max()
        ok.append(np.all(d[:, 0] * w[:, 1] - d[:, 1] * w[:, 0] >= -1e-9 * scale))
    return np.array(ok)


def _region_patterns(P):
    return {bytes(r) for r in np.packbits(P.activation_patterns(), axis=1)}


# -- 1. max-type layers: coincident tie lines of different windows ----------------------------
def test_maxpool_keeps_a_boundary_that_two_windows_tie_on():
    # Window 0 (channel 0) is max(u, -u, u, -u) = |u|; window 1 (channel 1) is
    # max(100, 100, -100, -100 + v) = 100. Both tie along u = 0, and window 0's winner
    # changes there: the output's slope changes sign, so there are exactly 2 regions.
    model = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 1)).double().eval()
    origin = torch.tensor([[[0., 0., 0., 0.], [100., 100., -100., -100.]]], dtype=torch.float64)
    e_u = torch.tensor([[[1., -1., 1., -1.], [0., 0., 0., 0.]]], dtype=torch.float64)
    e_v = torch.zeros_like(e_u)
    e_v[0, 1, 3] = 1.0
    sl = sc.Slice(origin, torch.stack([e_u, e_v]), SQUARE)
    P = sc.partition(model, sl, progress=False)
    assert P.num_regions == 2
    check_partition(P)
    # The split is the line u = 0.
    xs = np.sort([p[:, 0].max() for p in P.polygons()])
    assert xs[0] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_maxpool_of_opposite_channels(seed):
    # Channels x and -x: every tie line of channel 0's windows is one of channel 1's.
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(1, 2, 1), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3)).double().eval()
    with torch.no_grad():
        m[0].weight[:] = torch.tensor([1.0, -1.0]).view(2, 1, 1, 1)
    pts = [torch.randn(1, 4, 4, dtype=torch.float64) for _ in range(3)]
    check_partition(sc.partition(m, sc.Slice.through(*pts), progress=False))


class _Maxout(nn.Module):
    """Linear(2, 2k) then the max of each pair; pairs come as (w, -w): |w.x + b|-like
    windows whose tie lines coincide with those of the duplicated pairs."""

    def __init__(self, seed, k=3):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(k, 2, generator=g, dtype=torch.float64)
        b = torch.randn(k, generator=g, dtype=torch.float64) * 0.3
        self.lin = nn.Linear(2, 4 * k).double()
        with torch.no_grad():
            self.lin.weight[:] = torch.cat([w, -w, w, -w]).view(4, k, 2).transpose(0, 1).reshape(4 * k, 2)
            self.lin.bias[:] = torch.cat([b, -b, b, -b]).view(4, k).t().reshape(4 * k)
        self.out = nn.Linear(2 * k, 2).double()

    def forward(self, x):
        y = self.lin(x).view(-1, 2 * self.out.in_features // 2, 2).amax(dim=2)
        return self.out(y)


@pytest.mark.parametrize("seed", range(4))
def test_maxout_with_coincident_tie_lines(seed):
    P = sc.partition(_Maxout(seed).eval(), sc.Slice.plane2d(SQUARE), progress=False)
    check_partition(P)
    # Each of the k pairs of windows computes |w.x + b| twice: k lines at most.
    assert P.num_regions <= 1 + 3 + 3


# -- 2. two breakpoints of one unit are never snapped together -----------------------------------
@pytest.mark.parametrize("act", [nn.ReLU6, lambda: nn.Hardtanh(-1.0, 1.0)])
@pytest.mark.parametrize("scale", [1e9, 1e11])
def test_breakpoints_of_one_unit_stay_apart_at_large_weights(act, scale):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(2, 4), act(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)).double().eval()
    with torch.no_grad():
        m[0].weight *= scale
        m[0].bias *= scale
    P = sc.partition(m, sc.Slice.plane2d(SQUARE), progress=False, validate=True)
    check_partition(P)
    # Layer 1 is an arrangement of the lines w.x + b = t / scale, t a breakpoint: count its
    # regions by hand (1 + lines crossing the square + crossings inside it).
    a = m[1]
    bps = (0.0, 6.0) if isinstance(a, nn.ReLU6) else (a.min_val, a.max_val)
    W, b = m[0].weight.detach().numpy(), m[0].bias.detach().numpy()
    lines = [(W[i], b[i] - t) for i in range(len(b)) for t in bps]  # w.x + c = 0
    assert _arrangement_regions(lines) == P.at_layer(1).num_regions


def _arrangement_regions(lines):
    """Regions of an arrangement of lines ``w.x + c = 0`` in general position inside the
    square [-1, 1]^2."""
    corners = SQUARE
    crossing = [(w, c) for w, c in lines if np.ptp(np.sign(corners @ w + c)) == 2]
    count = 1 + len(crossing)
    for i in range(len(crossing)):
        for j in range(i + 1, len(crossing)):
            A = np.array([crossing[i][0], crossing[j][0]])
            if abs(np.linalg.det(A)) < 1e-9 * np.abs(A).max() ** 2:
                continue  # parallel: two breakpoints of one unit
            p = np.linalg.solve(A, -np.array([crossing[i][1], crossing[j][1]]))
            count += int(np.all(np.abs(p) < 1))
    return count


@pytest.mark.parametrize("seed", range(6))
def test_deep_hardtanh_net_at_large_scale_is_valid(seed):
    torch.manual_seed(seed)
    layers = [nn.Linear(2, 6)]
    for _ in range(6):
        layers += [nn.ReLU6(), nn.Linear(6, 6)]
    m = nn.Sequential(*layers[:-1], nn.Linear(6, 1)).double().eval()
    with torch.no_grad():
        m[0].weight *= 1e10
        m[0].bias *= 1e10
    P = sc.partition(m, sc.Slice.plane2d(SQUARE), progress=False, validate=True)
    check_partition(P)


def test_engine_tolerance_bounds_floor_and_cap():
    xy = SQUARE.copy()
    u = xy[:, 0]
    faces = (np.array([0, 4], np.int64), np.arange(4, dtype=np.int32), np.full(4, -1, np.int32),
             np.full(4, -1, np.int32))

    def cut(rows, bounds, rtol, launcher):
        out = launcher(xy, rows.copy(), *faces, n_cut=2, layer_id=1, rtol=rtol, tol_bounds=bounds)
        return len(out["face_offsets"]) - 1

    noise = np.stack([u + 1e-12, u], axis=1)  # two lines 1e-12 apart: noise of one line
    pair = np.stack([u, u - 1e-3], axis=1)    # two breakpoints of one unit, 1e-3 apart
    for launcher in (_core.refine, _core.refine_batched):
        assert cut(noise, None, 0.0, launcher) == 3
        # A floor above the offset: the two are one line.
        assert cut(noise, np.array([[1e-11, 1e-11], [np.inf, np.inf]]), 0.0, launcher) == 2
        # rtol = 1e-2 makes the tolerance 1e-2 > the gap: the breakpoints snap together ...
        assert cut(pair, None, 1e-2, launcher) == 2
        # ... unless the tolerance is capped below half the gap.
        assert cut(pair, np.array([[0.0, 0.0], [2.5e-4, 2.5e-4]]), 1e-2, launcher) == 3
        with pytest.raises(ValueError, match="tol_bounds"):
            cut(pair, np.zeros((2, 3)), 0.0, launcher)


# -- 4. lean mode gives the default path's partition ---------------------------------------------
def _duplicated_mlp(seed, w=32):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(2, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, 1)).double().eval()
    with torch.no_grad():
        for lin in (m[0], m[2]):
            lin.weight[w // 2:] = lin.weight[:w // 2]
            lin.bias[w // 2:] = lin.bias[:w // 2]
    return m


@pytest.mark.parametrize("seed", [0, 1, 2, 5])
def test_lean_equals_default_with_duplicated_units_on_a_zoom(seed):
    m = _duplicated_mlp(seed)
    P0 = sc.partition(m, sc.Slice.plane2d([[2, 1], [3, 1], [3, 2], [2, 2]]), progress=False)
    c = P0.vertices[np.argmin(np.linalg.norm(P0.vertices - [2.4, 1.3], axis=1))] + 1e-7
    sl = _square(c, 0.5e-6)
    P = sc.partition(m, sl, progress=False)
    Q = sc.partition(m, sl, progress=False, lean=True, memory_limit=3000)
    assert Q.run_info["lean"]
    assert Q.num_regions == P.num_regions
    assert _region_patterns(Q) == _region_patterns(P)
    check_partition(P)
    check_partition(Q)
    # Duplicated units make the same lines: as many regions as distinct patterns seen.
    g = np.linspace(-0.5e-6, 0.5e-6, 161)
    pts = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2) + c
    seen = {bytes(r) for r in np.packbits(P._net.patterns(torch.from_numpy(pts), P.num_layers), axis=1)}
    assert seen == _region_patterns(P)


# -- 6. units that are exactly zero in exact arithmetic -------------------------------------------
def _cancelling_mlp(seed):
    """Integer weights, zero biases; units 4 and 5 of layer 1 are sums of units 0 + 1 and
    2 + 3, and units 0 and 1 of layer 2 subtract them again: where the summed units are
    active, those layer-2 units vanish in exact arithmetic, in float64 they are noise."""
    g = np.random.default_rng(seed)
    W1 = g.integers(-3, 4, (6, 2)).astype(float)
    W1[4], W1[5] = W1[0] + W1[1], W1[2] + W1[3]
    W2 = g.integers(-3, 4, (4, 6)).astype(float)
    W2[0], W2[1] = [1, 1, 0, 0, -1, 0], [0, 0, 1, 1, 0, -1]
    m = nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 1)).double().eval()
    with torch.no_grad():
        m[0].weight[:] = torch.from_numpy(W1)
        m[0].bias.zero_()
        m[2].weight[:] = torch.from_numpy(W2)
        m[2].bias.zero_()
    return m, g.uniform(-1, 1, 2), g.uniform(0.1, 1)


@pytest.mark.parametrize("seed", range(12))
def test_exact_zeros_are_not_cut_along_their_noise(seed):
    m, c, r = _cancelling_mlp(seed)
    P = sc.partition(m, _square(c, r), progress=False)
    check_partition(P)
    assert P.run_info["degenerate"] == 0
    rng = np.random.default_rng(seed)
    pts = c + 0.98 * r * rng.uniform(-1, 1, (300, 2))
    reg = P.locate(pts)
    assert _point_in_region(P, pts, reg).all()
    seen = {bytes(b) for b in np.packbits(P._net.patterns(torch.from_numpy(pts), P.num_layers), axis=1)}
    assert seen <= _region_patterns(P)


# -- 7. extreme planes: far from the origin, tiny domains ------------------------------------------
def _edge_lengths(P):
    coords, off = P.faces()
    nxt = np.roll(coords, -1, axis=0)
    nxt[off[1:] - 1] = coords[off[:-1]]
    return np.linalg.norm(nxt - coords, axis=1)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("far", [1e6, 1e8])
def test_plane_far_from_the_origin(seed, far):
    from splinecam.zoo import mlp
    m = mlp([8, 16, 16, 3], seed).double()
    origin = torch.full((8,), far, dtype=torch.float64)
    with torch.no_grad():
        m[0].bias -= m[0].weight @ origin  # the lines cross the slice
    basis = torch.randn(2, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    P = sc.partition(m, sc.Slice(origin, basis, SQUARE), progress=False)
    check_partition(P)
    a = P.areas()
    assert a.min() > 1e-12 * a.sum()  # no slivers of rounding noise
    assert _edge_lengths(P).min() > 1e-9


@pytest.mark.parametrize("seed", range(6))
def test_tiny_domain_has_no_zero_length_edges(seed):
    from splinecam.zoo import mlp
    m = mlp([2, 16, 16, 16, 2], seed).double()
    P0 = sc.partition(m, sc.Slice.plane2d(SQUARE), progress=False)
    side = 1e-9
    c = P0.vertices[len(P0.vertices) // 2] + 0.1 * side  # near a vertex of the partition
    P = sc.partition(m, _square(c, side / 2), progress=False)
    check_partition(P)
    assert _edge_lengths(P).min() > 1e-6 * side


# -- the tolerance policy itself --------------------------------------------------------------------
def test_rounding_floor_tracks_the_size_of_the_terms():
    # z = (1e6 x + 1e6 y) - (1e6 x + 1e6 y - 1): terms of 1e6, value 1.
    m = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)).double().eval()
    with torch.no_grad():
        m[0].weight[:] = torch.tensor([[1e6, 1e6], [1.0, 0.0]])
        m[0].bias[:] = torch.tensor([5e6, 0.0])
        m[2].weight[:] = torch.tensor([[1.0, -3.0]])
    from splinecam.network import Network
    net = Network.from_model(m, (2,))
    t = Tolerances.for_slice(net, sc.Slice.plane2d(SQUARE))
    # Layer 2's glue sums relu(z_0) ~ 5e6 and 3 relu(z_1) ~ 3: terms of about 5e6.
    out = t.direct[-1][0]
    assert 3e6 < out < 1.5e7
    assert t.decision_floor(0) == pytest.approx(ROUNDING_FLOOR * out)
    # Layer 1's pattern floors come from the input: |W x| + |b| ~ 1e6..7e6 for unit 0.
    f = t.pattern_floors()[0]
    assert 1e6 * ROUNDING_FLOOR < f[0] < 1e7 * ROUNDING_FLOOR
