"""The engine against independent evidence.

Evidence used here, none of which comes from the engine itself:

* the brute-force reference (`splinecam.reference`: fresh forward passes,
  least-squares affine fits, half-plane clipping) — region-by-region equality;
* area conservation;
* activation patterns sampled by plain torch forward passes (inside every region,
  and on a dense grid);
* region counts that several independent tools agree on (peers.md);
* the decision boundary checked against logits of plain forward passes;
* per-region affine maps checked against plain forward passes.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

from conftest import build_seeded_mlp, partition_on, reference_module as ref

splinecam = pytest.importorskip("splinecam")
if not hasattr(splinecam, "partition") or not hasattr(splinecam, "Slice"):
    pytest.skip("splinecam engine (partition / Slice) not available yet", allow_module_level=True)

SQUARE = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
HEXAGON = np.array([[1.2, 0.1], [0.7, 1.0], [-0.5, 1.1], [-1.3, 0.2], [-0.6, -0.9], [0.8, -1.0]])
TRIANGLE_CW = np.array([[-0.9, -0.8], [0.1, 1.3], [1.1, -0.2]])  # clockwise on purpose

AREA_RTOL = 1e-9


# --------------------------------------------------------------------------- #
# small geometry helpers (numpy only)
# --------------------------------------------------------------------------- #
def signed_area(poly):
    return ref.polygon_area(poly)


def centroid(poly):
    return ref.polygon_centroid(poly)


def ccw(poly):
    poly = np.asarray(poly, dtype=np.float64)
    return poly if signed_area(poly) > 0 else poly[::-1].copy()


def point_in_convex(poly, pts, tol=1e-12):
    """Which of ``pts`` (n,2) lie in CCW convex ``poly`` (closed, with tolerance)."""
    p = np.asarray(poly, dtype=np.float64)
    e = np.roll(p, -1, axis=0) - p
    d = np.asarray(pts, dtype=np.float64)[:, None, :] - p[None, :, :]
    cross = e[None, :, 0] * d[:, :, 1] - e[None, :, 1] * d[:, :, 0]
    scale = np.linalg.norm(e, axis=1) * max(np.ptp(p, axis=0).max(), 1e-300)
    return np.all(cross >= -tol * scale[None, :], axis=1)


def interior_points(poly):
    """Strictly interior points: centroid, vertices pulled 50% / 90% toward it."""
    c = centroid(poly)
    return np.vstack([c[None], 0.5 * (poly + c), 0.1 * poly + 0.9 * c])


def frame(sl):
    """(origin, basis) of a slice, read off its own `to_input` map."""
    x = sl.to_input(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    x = x.detach().cpu().double().numpy() if torch.is_tensor(x) else np.asarray(x, np.float64)
    return x[0], np.stack([x[1] - x[0], x[2] - x[0]])


def forward(model, origin, basis, pts):
    """Plain torch forward pass of plane points (n,2) -> outputs (n, C)."""
    u = torch.as_tensor(np.asarray(pts, dtype=np.float64))
    o = torch.as_tensor(origin)
    b = torch.as_tensor(basis)
    x = o[None] + u[:, 0].reshape((-1,) + (1,) * o.dim()) * b[0] + \
        u[:, 1].reshape((-1,) + (1,) * o.dim()) * b[1]
    with torch.no_grad():
        y = model(x)
    return y.reshape(len(u), -1).numpy()


def grid_in(poly, n, margin=0.0):
    """An n x n grid over the bounding box (irrational offsets), kept inside poly."""
    lo, hi = poly.min(0), poly.max(0)
    t = (np.arange(n) + 0.5 + 1e-3 / np.pi) / n
    gx = lo[0] + t * (hi[0] - lo[0])
    gy = lo[1] + t * (hi[1] - lo[1])
    pts = np.stack(np.meshgrid(gx, gy, indexing="ij"), -1)  # (n, n, 2)
    inside = point_in_convex(poly, pts.reshape(-1, 2), tol=-margin).reshape(n, n)
    return pts, inside


def num_hidden_layers(model):
    return sum(isinstance(m, (nn.ReLU, nn.LeakyReLU)) for m in model.modules())


# --------------------------------------------------------------------------- #
# the model zoo
# --------------------------------------------------------------------------- #
def _mlp_case(widths, seed, polygon, act=nn.ReLU):
    def build():
        model = build_seeded_mlp(widths, seed=seed, act=act)
        return model, splinecam.Slice.plane2d(polygon)

    return build


def _mlp784():
    torch.manual_seed(11)
    model = nn.Sequential(
        nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 10)
    ).double().eval()
    g = torch.Generator().manual_seed(12)
    a, b, c = (torch.randn(784, generator=g, dtype=torch.float64) for _ in range(3))
    return model, splinecam.Slice.through(a, b, c)


def _cnn():
    torch.manual_seed(13)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(72, 5), nn.ReLU(), nn.Linear(5, 3),
    ).double().eval()
    g = torch.Generator().manual_seed(14)
    a, b, c = (torch.randn(1, 6, 6, generator=g, dtype=torch.float64) for _ in range(3))
    return model, splinecam.Slice.through(a, b, c)


def _nested_bn():
    torch.manual_seed(15)
    model = nn.Sequential(
        nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU()),
        nn.Dropout(0.3),
        nn.Sequential(nn.Linear(8, 8), nn.Identity(), nn.LeakyReLU(0.05)),
        nn.Linear(8, 3),
    ).double()
    bn = model[0][1]
    with torch.no_grad():
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    return model.eval(), splinecam.Slice.plane2d(SQUARE)


def _cnn_zero_bias_through_origin():
    """Zero biases and a plane through the zero input: every first-layer line (one
    per conv output pixel and channel) passes through u = (0, 0); channel 1 is a
    copy of channel 0, so every line is doubled. General Slice constructor."""
    torch.manual_seed(16)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(72, 5), nn.ReLU(), nn.Linear(5, 3),
    ).double().eval()
    with torch.no_grad():
        model[0].weight[1] = model[0].weight[0]
        for m in model:
            if hasattr(m, "bias") and m.bias is not None:
                m.bias.zero_()
    g = torch.Generator().manual_seed(17)
    basis = torch.randn(2, 1, 6, 6, generator=g, dtype=torch.float64)
    return model, splinecam.Slice(torch.zeros(1, 6, 6, dtype=torch.float64), basis, SQUARE)


def _random_convex(seed):
    rng = np.random.default_rng(seed)
    ang = np.sort(rng.uniform(0, 2 * np.pi, 7))
    return np.column_stack([np.cos(ang), np.sin(ang)]) * rng.uniform(0.8, 1.6)


def _tiny_domain_on_crossing():
    """A 2e-5 wide square around the crossing of two first-layer lines (the crossing
    nearest the origin, away from it): absolute tolerances would merge or drop its
    regions."""
    model = build_seeded_mlp([2, 8, 8, 1], seed=6)
    w = model[0].weight.detach().numpy()
    b = model[0].bias.detach().numpy()
    crossings = [np.linalg.solve(w[[i, j]], -b[[i, j]]) for i in range(8) for j in range(i)]
    p = min(crossings, key=np.linalg.norm)
    return model, splinecam.Slice.plane2d(p + 1e-5 * SQUARE)


CASES = {
    "mlp-2-8-8-1-s0-square": _mlp_case([2, 8, 8, 1], 0, SQUARE),
    "mlp-2-8-8-1-s1-hexagon": _mlp_case([2, 8, 8, 1], 1, HEXAGON),
    "mlp-2-8-8-1-s2-triangle-cw": _mlp_case([2, 8, 8, 1], 2, TRIANGLE_CW),
    "mlp-2-8-8-3-s3-square": _mlp_case([2, 8, 8, 3], 3, SQUARE),
    "mlp-2-12-12-12-1-s0-square": _mlp_case([2, 12, 12, 12, 1], 0, SQUARE),
    "mlp-2-12-12-12-1-s1-hexagon": _mlp_case([2, 12, 12, 12, 1], 1, HEXAGON * 1.5),
    "leaky-2-10-10-1-s4": _mlp_case([2, 10, 10, 1], 4, SQUARE, act=lambda: nn.LeakyReLU(0.1)),
    "mlp-784-16-12-10": _mlp784,
    "cnn-1x6x6": _cnn,
    "nested-bn-dropout-leaky": _nested_bn,
    "cnn-zero-bias-through-origin": _cnn_zero_bias_through_origin,
    "peer-2-32-32-32-1": _mlp_case([2, 32, 32, 32, 1], 0, SQUARE),
    "mlp-2-8-8-1-large-domain": _mlp_case([2, 8, 8, 1], 5, SQUARE * 40.0),
    "mlp-2-8-8-1-tiny-domain-on-a-crossing": _tiny_domain_on_crossing,
    **{f"mlp-2-6-6-6-1-s{s}-random-polygon": _mlp_case([2, 6, 6, 6, 1], s, _random_convex(s))
       for s in range(30, 38)},
}


# --------------------------------------------------------------------------- #
# degenerate models (exactly representable weights, 2-D input)
# --------------------------------------------------------------------------- #
def _set_linear(lin, w, b):
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(np.asarray(w, dtype=np.float64)))
        lin.bias.copy_(torch.as_tensor(np.asarray(b, dtype=np.float64)))


def _degenerate(kind):
    def build():
        model = build_seeded_mlp([2, 8, 8, 1], seed=21)
        l1, l2 = model[0], model[2]
        w1 = l1.weight.detach().numpy().copy()
        b1 = l1.bias.detach().numpy().copy()
        w2 = l2.weight.detach().numpy().copy()
        b2 = l2.bias.detach().numpy().copy()
        if kind == "zero-bias":
            for m in model:
                if isinstance(m, nn.Linear):
                    with torch.no_grad():
                        m.bias.zero_()
            return model, splinecam.Slice.plane2d(SQUARE)
        if kind == "duplicated-units":
            w1[1], b1[1] = w1[0], b1[0]
            w1[3], b1[3] = w1[2], b1[2]
            w2[5], b2[5] = w2[4], b2[4]
        elif kind == "opposite-units":  # same zero set, opposite orientation
            w1[1], b1[1] = -w1[0], -b1[0]
            w2[5], b2[5] = -2.0 * w2[4], -2.0 * b2[4]
        elif kind == "parallel-lines":
            w1[1], b1[1] = 2.0 * w1[0], 2.0 * b1[0] + 0.25
            w1[2], b1[2] = -0.5 * w1[0], -0.5 * b1[0] + 0.125
            w1[3], b1[3] = 4.0 * w1[0], 4.0 * b1[0]  # coincident with unit 0
        elif kind == "corner-and-edges":
            # through the corners (1,1) and (-1,1), exactly; along the edge y = -1;
            # the diagonal y = x through two corners
            w1[0], b1[0] = [0.5, 0.25], -0.75
            w1[1], b1[1] = [0.5, -0.25], 0.25
            w1[2], b1[2] = [0.0, 1.0], 1.0
            w1[3], b1[3] = [1.0, -1.0], 0.0
        elif kind == "concurrent":
            # units 0, 1, 2 all pass through (0.25, -0.5)
            p = np.array([0.25, -0.5])
            for i, w in enumerate([[1.0, 0.5], [-0.5, 1.0], [1.0, 2.0]]):
                w1[i], b1[i] = w, -float(np.dot(w, p))
        elif kind == "layer2-through-vertex":
            # layer-1 units 0, 1, 2 meet at p; layer-2 units 0, 1 vanish at p too
            p = np.array([0.25, -0.5])
            for i, w in enumerate([[1.0, 0.5], [-0.5, 1.0], [1.0, 2.0]]):
                w1[i], b1[i] = w, -float(np.dot(w, p))
            h = np.maximum(w1 @ p + b1, 0.0)
            for i in (0, 1):
                b2[i] = -float(w2[i] @ h)
        elif kind == "pruned-units":
            w1[0], b1[0] = 0.0, 0.0  # identically zero
            w1[1], b1[1] = 0.0, 0.5  # constant
            w2[0], b2[0] = 0.0, 0.0
        else:  # pragma: no cover
            raise ValueError(kind)
        _set_linear(l1, w1, b1)
        _set_linear(l2, w2, b2)
        return model, splinecam.Slice.plane2d(SQUARE)

    return build


DEGENERATE = {
    f"degenerate-{k}": _degenerate(k)
    for k in [
        "zero-bias",
        "duplicated-units",
        "opposite-units",
        "parallel-lines",
        "corner-and-edges",
        "concurrent",
        "layer2-through-vertex",
        "pruned-units",
    ]
}

def _centred(name):
    """A case whose last Linear layer is shifted (and scaled up) so that the
    output's zero set / the class changes cross the middle of the slice."""

    def build():
        model, sl = ALL_CASES[name]()
        head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        origin, basis = frame(sl)
        polygon = np.asarray(sl.polygon, dtype=np.float64)
        with torch.no_grad():
            head.weight.mul_(10.0)
            head.bias.mul_(10.0)
            pts, inside = grid_in(polygon, 40)
            y = forward(model, origin, basis, pts.reshape(-1, 2)[inside.ravel()])
            head.bias.sub_(torch.as_tensor(np.median(y, axis=0)))
        return model, sl

    return build


ALL_CASES = {**CASES, **DEGENERATE}
DB_CASES = {
    f"db-{k}": _centred(k)
    for k in ["mlp-2-12-12-12-1-s0-square", "leaky-2-10-10-1-s4", "mlp-2-8-8-3-s3-square",
              "nested-bn-dropout-leaky", "cnn-1x6x6", "mlp-784-16-12-10"]
}
ALL_CASES.update(DB_CASES)
REGION_CASES = list(CASES) + list(DEGENERATE)


# --------------------------------------------------------------------------- #
# cached computations
# --------------------------------------------------------------------------- #
@functools.lru_cache(maxsize=None)
def setup(name):
    model, sl = ALL_CASES[name]()
    origin, basis = frame(sl)
    polygon = np.asarray(sl.polygon, dtype=np.float64)
    return model, sl, origin, basis, polygon


@functools.lru_cache(maxsize=None)
def engine(name, decision_boundary=False, device="cpu"):
    model, sl, *_ = setup(name)
    return partition_on(device, model, sl, decision_boundary=decision_boundary, progress=False)


@functools.lru_cache(maxsize=None)
def reference(name):
    model, _, origin, basis, polygon = setup(name)
    return ref.reference_partition(model, origin, basis, polygon)


@functools.lru_cache(maxsize=None)
def engine_polygons(name, device="cpu"):
    return [np.asarray(p, dtype=np.float64) for p in engine(name, device=device).polygons()]


def assert_same_regions(eng_polys, ref_polys, domain_area, located=None, label=""):
    """Identical region sets: same count; each reference centroid lies in exactly
    one engine polygon, a bijection, with equal areas; and vice versa."""
    assert len(eng_polys) == len(ref_polys), (
        f"{label}: engine has {len(eng_polys)} regions, reference {len(ref_polys)}"
    )
    ref_c = np.array([centroid(p) for p in ref_polys])
    ref_a = np.array([signed_area(p) for p in ref_polys])
    eng_c = np.array([centroid(p) for p in eng_polys])
    eng_a = np.array([signed_area(p) for p in eng_polys])
    hit = np.stack([point_in_convex(p, ref_c, tol=1e-10) for p in eng_polys], axis=1)
    counts = hit.sum(axis=1)
    bad = np.flatnonzero(counts != 1)
    assert bad.size == 0, (
        f"{label}: {bad.size} reference centroids lie in {counts[bad][:5]} engine regions "
        f"(first at {ref_c[bad[0]]}, reference area {ref_a[bad[0]]:.3e})"
    )
    match = hit.argmax(axis=1)
    assert len(set(match.tolist())) == len(match), f"{label}: two reference regions map to one"
    err = np.abs(eng_a[match] - ref_a)
    tol = AREA_RTOL * ref_a + 1e-13 * domain_area
    worst = int(np.argmax(err - tol))
    assert np.all(err <= tol), (
        f"{label}: area mismatch at reference region {worst}: engine {eng_a[match[worst]]!r} "
        f"vs reference {ref_a[worst]!r}"
    )
    back = np.stack([point_in_convex(p, eng_c, tol=1e-10) for p in ref_polys], axis=1)
    assert np.all(back.sum(axis=1) == 1), f"{label}: engine centroid not in exactly one reference region"
    if located is not None:
        np.testing.assert_array_equal(located, match, err_msg=f"{label}: locate() disagrees")


# --------------------------------------------------------------------------- #
# (a) + (f): identical region sets, (b) area conservation
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", REGION_CASES)
def test_matches_reference(name, device):
    _, _, _, _, polygon = setup(name)
    P = engine(name, device=device)
    eng = engine_polygons(name, device)
    refp = reference(name)
    assert P.num_regions == len(eng)
    domain_area = abs(signed_area(polygon))
    located = np.asarray(P.locate(np.array([centroid(p) for p in refp])))
    assert_same_regions(eng, refp, domain_area, located=located, label=name)


@pytest.mark.parametrize("name", REGION_CASES)
def test_area_conservation_and_convexity(name, device):
    _, _, _, _, polygon = setup(name)
    P = engine(name, device=device)
    P.validate()
    assert signed_area(polygon) > 0, "Slice.polygon must be CCW"
    eng = engine_polygons(name, device)
    total = sum(signed_area(p) for p in eng)
    assert abs(total - signed_area(polygon)) <= 1e-11 * signed_area(polygon), (
        f"area sum {total!r} vs polygon {signed_area(polygon)!r}"
    )
    domain = ccw(polygon)
    for p in eng:
        assert signed_area(p) > 0, "engine polygon not CCW"
        e = np.roll(p, -1, 0) - p
        cross = e[:, 0] * np.roll(e[:, 1], -1) - e[:, 1] * np.roll(e[:, 0], -1)
        assert np.all(cross >= -1e-10 * np.abs(e).max() ** 2), "engine polygon not convex"
        assert np.all(point_in_convex(domain, p, tol=1e-10)), "engine polygon leaves the domain"


def test_polygon_orientation_is_normalised():
    sl = splinecam.Slice.plane2d(TRIANGLE_CW)
    poly = np.asarray(sl.polygon, dtype=np.float64)
    assert poly.shape == (3, 2) and signed_area(poly) > 0


# --------------------------------------------------------------------------- #
# (c) one pattern per region, distinct patterns; (d) dense sampling
# --------------------------------------------------------------------------- #
@functools.lru_cache(maxsize=None)
def region_patterns(name, device="cpu"):
    model, _, origin, basis, _ = setup(name)
    eng = engine_polygons(name, device)
    pts = [interior_points(p) for p in eng]
    allpat = ref.sample_patterns(model, origin, basis, np.vstack(pts))
    out, k = [], 0
    for p in pts:
        out.append(allpat[k:k + len(p)])
        k += len(p)
    return out


@pytest.mark.parametrize("name", REGION_CASES)
def test_one_pattern_per_region_and_distinct(name, device):
    pats = region_patterns(name, device)
    keys = []
    for r, s in enumerate(pats):
        bad = np.flatnonzero(np.any(s != s[0], axis=1))
        assert bad.size == 0, f"region {r} holds several activation patterns"
        keys.append(s[0].tobytes())
    dup = len(keys) - len(set(keys))
    assert dup == 0, f"{dup} regions share an activation pattern with another region (over-split)"


@pytest.mark.parametrize("name", REGION_CASES)
def test_engine_activation_patterns_match_sampling(name, device):
    P = engine(name, device=device)
    eng_pats = np.asarray(P.activation_patterns(), dtype=bool)
    sampled = np.array([s[0] for s in region_patterns(name, device)])
    assert eng_pats.shape == sampled.shape
    bad = np.flatnonzero(np.any(eng_pats != sampled, axis=1))
    assert bad.size == 0, f"activation_patterns() wrong for regions {bad[:10]}"


@pytest.mark.parametrize("name", REGION_CASES)
def test_dense_sampling(name, device):
    model, _, origin, basis, polygon = setup(name)
    P = engine(name, device=device)
    pts, inside = grid_in(polygon, 90)
    pts = pts.reshape(-1, 2)[inside.ravel()]
    z = ref.sample_preactivations(model, origin, basis, pts)
    pats = z > 0
    # ignore points within rounding of some unit's zero set (units identically
    # zero everywhere are not ambiguous: their sign is never > 0)
    live = np.abs(z).max(axis=0) > 0
    scale = np.abs(z).max()
    clear = ~np.any((np.abs(z) < 1e-9 * scale) & live[None, :], axis=1)
    keys = {s[0].tobytes(): r for r, s in enumerate(region_patterns(name, device))}
    missing = [i for i, row in enumerate(pats) if row.tobytes() not in keys]
    assert not missing, (
        f"{len(missing)} grid points have a pattern of no engine region (first at {pts[missing[0]]})"
    )
    where = np.asarray(P.locate(pts[clear]))
    expect = np.array([keys[row.tobytes()] for row in pats[clear]])
    wrong = np.flatnonzero(where != expect)
    assert wrong.size == 0, (
        f"locate() puts {wrong.size} grid points in the wrong region "
        f"(first {pts[clear][wrong[0]]}: got {where[wrong[0]]}, expected {expect[wrong[0]]})"
    )


def test_locate_outside_is_minus_one():
    _, _, _, _, polygon = setup("mlp-2-8-8-1-s1-hexagon")
    P = engine("mlp-2-8-8-1-s1-hexagon")
    far = np.array([[5.0, 5.0], [-3.0, 0.0], [0.0, -2.0]])
    np.testing.assert_array_equal(np.asarray(P.locate(far)), [-1, -1, -1])


# --------------------------------------------------------------------------- #
# edge labels: an edge of layer l, unit j lies on that unit's zero set
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", ["mlp-2-12-12-12-1-s0-square", "cnn-1x6x6", "degenerate-zero-bias"])
def test_edge_labels_lie_on_their_unit(name, device):
    model, _, origin, basis, polygon = setup(name)
    P = engine(name, device=device)
    V = np.asarray(P.vertices)
    E = np.asarray(P.edges)
    layer = np.asarray(P.edge_layer)
    unit = np.asarray(P.edge_unit)
    mid = 0.5 * (V[E[:, 0]] + V[E[:, 1]])
    sizes = ref.hidden_layer_sizes(model, origin)
    start = np.concatenate([[0], np.cumsum(sizes)])
    z = ref.sample_preactivations(model, origin, basis, mid)
    scale = np.abs(ref.sample_preactivations(model, origin, basis, ccw(polygon))).max()
    hidden = (layer >= 1) & (layer <= len(sizes))
    col = start[layer[hidden] - 1] + unit[hidden]
    val = np.abs(z[np.flatnonzero(hidden), col])
    assert np.all(val <= 1e-8 * scale), f"edge off its unit's zero set by {val.max():.3e}"
    # boundary edges lie on the domain boundary
    dom = ccw(polygon)
    b = mid[layer == -1]
    e = np.roll(dom, -1, 0) - dom
    d = b[:, None, :] - dom[None]
    cross = np.abs(e[None, :, 0] * d[:, :, 1] - e[None, :, 1] * d[:, :, 0]) / np.linalg.norm(e, axis=1)
    assert np.all(cross.min(axis=1) <= 1e-10 * np.ptp(dom, 0).max())


# --------------------------------------------------------------------------- #
# (e) published region counts
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("width, expected", [(16, 178), (32, 1180), (64, 6668)])
def test_peer_region_counts(width, expected, device):
    model = build_seeded_mlp([2, width, width, width, 1], seed=0)
    P = partition_on(device, model, splinecam.Slice.plane2d(SQUARE), decision_boundary=False, progress=False)
    assert P.num_regions == expected
    total = sum(signed_area(p) for p in P.polygons())
    assert abs(total - 4.0) < 1e-10


def test_decision_boundary_does_not_change_region_count():
    model = build_seeded_mlp([2, 16, 16, 16, 1], seed=0)
    P = splinecam.partition(model, splinecam.Slice.plane2d(SQUARE), decision_boundary=True,
                            progress=False)
    assert P.num_regions == 178
    assert len(P.polygons()) == 178


# --------------------------------------------------------------------------- #
# (g) decision boundary
# --------------------------------------------------------------------------- #
def _decision(y):
    """Class label per row: sign for one output, argmax otherwise."""
    return (y[:, 0] > 0).astype(int) if y.shape[1] == 1 else y.argmax(axis=1)


@pytest.mark.parametrize("name", list(DB_CASES))
def test_decision_segments_lie_on_the_boundary(name, device):
    model, _, origin, basis, polygon = setup(name)
    P = engine(name, decision_boundary=True, device=device)
    seg = np.asarray(P.decision_boundary, dtype=np.float64).reshape(-1, 2, 2)
    assert len(seg) > 0, "no decision boundary found"
    pts, inside = grid_in(polygon, 60)
    yscale = np.abs(forward(model, origin, basis, pts.reshape(-1, 2)[inside.ravel()])).max()
    a, b = seg[:, 0], seg[:, 1]
    length = np.linalg.norm(b - a, axis=1)
    assert np.all(length > 0), "zero-length decision segment"
    mid = 0.5 * (a + b)
    y = forward(model, origin, basis, mid)
    if y.shape[1] == 1:
        gap = np.abs(y[:, 0])
    else:
        top = np.sort(y, axis=1)
        gap = top[:, -1] - top[:, -2]
    assert np.all(gap <= 1e-8 * yscale), f"decision segment midpoint off the boundary by {gap.max():.3e}"
    # the graph's edges labelled num_hidden_layers + 1 are exactly these segments
    V, E = np.asarray(P.vertices), np.asarray(P.edges)
    labelled = E[np.asarray(P.edge_layer) == num_hidden_layers(model) + 1]
    graph_mid = 0.5 * (V[labelled[:, 0]] + V[labelled[:, 1]])
    assert len(graph_mid) == len(mid)
    np.testing.assert_allclose(graph_mid[np.lexsort(graph_mid.T)], mid[np.lexsort(mid.T)],
                               rtol=0, atol=1e-12 * np.ptp(polygon, 0).max())
    normal = np.stack([-(b - a)[:, 1], (b - a)[:, 0]], 1) / length[:, None]
    eps = 1e-7 * np.ptp(polygon, 0).max()
    lab_p = _decision(forward(model, origin, basis, mid + eps * normal))
    lab_m = _decision(forward(model, origin, basis, mid - eps * normal))
    same = np.flatnonzero(lab_p == lab_m)
    assert same.size == 0, (
        f"{same.size}/{len(seg)} decision segments have the same class on both sides "
        f"(first: {seg[same[0]].tolist()})"
    )


def _segment_distance(p0, p1, q0, q1):
    """Distance between segments p0p1 (n,2) and q0q1 (m,2) -> (n, m)."""

    def point_seg(x, a, b):
        ab = b - a
        t = np.clip(((x - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-300), 0, 1)
        return np.linalg.norm(x - (a + t[..., None] * ab), axis=-1)

    P0, P1 = p0[:, None], p1[:, None]
    Q0, Q1 = q0[None], q1[None]

    def orient(a, b, c):
        return (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])

    crosses = (np.sign(orient(P0, P1, Q0)) * np.sign(orient(P0, P1, Q1)) <= 0) & \
              (np.sign(orient(Q0, Q1, P0)) * np.sign(orient(Q0, Q1, P1)) <= 0)
    d = np.minimum.reduce([
        point_seg(P0, Q0, Q1), point_seg(P1, Q0, Q1), point_seg(Q0, P0, P1), point_seg(Q1, P0, P1)
    ])
    return np.where(crosses, 0.0, d)


@pytest.mark.parametrize("name", list(DB_CASES))
def test_every_class_change_on_a_grid_crosses_a_decision_segment(name, device):
    model, _, origin, basis, polygon = setup(name)
    P = engine(name, decision_boundary=True, device=device)
    seg = np.asarray(P.decision_boundary, dtype=np.float64).reshape(-1, 2, 2)
    pts, inside = grid_in(polygon, 80)
    lab = _decision(forward(model, origin, basis, pts.reshape(-1, 2))).reshape(pts.shape[:2])
    pairs = []
    for sa, sb in [((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
                   ((slice(None), slice(None, -1)), (slice(None), slice(1, None)))]:
        change = (lab[sa] != lab[sb]) & inside[sa] & inside[sb]
        pairs.append(np.stack([pts[sa][change], pts[sb][change]], 1))
    pairs = np.concatenate(pairs)
    assert len(pairs) > 0, "test model has no class change on the grid"
    assert len(seg) > 0
    d = _segment_distance(pairs[:, 0], pairs[:, 1], seg[:, 0], seg[:, 1]).min(axis=1)
    tol = 1e-9 * np.ptp(polygon, 0).max()
    miss = np.flatnonzero(d > tol)
    assert miss.size == 0, (
        f"{miss.size}/{len(pairs)} class changes between grid neighbours cross no decision "
        f"segment (first between {pairs[miss[0]].tolist()}, distance {d[miss[0]]:.3e})"
    )


# --------------------------------------------------------------------------- #
# (h) per-region affine maps
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", list(CASES) + ["degenerate-zero-bias", "degenerate-pruned-units"])
def test_affine_maps_equal_forward_pass(name, device):
    model, _, origin, basis, polygon = setup(name)
    P = engine(name, device=device)
    eng = engine_polygons(name, device)
    step = max(1, len(eng) // 150)
    worst = 0.0
    yscale = np.abs(forward(model, origin, basis, ccw(polygon))).max() + 1e-300
    for r in range(0, len(eng), step):
        A, c = P.affine(r)
        A = np.asarray(A, dtype=np.float64)
        c = np.asarray(c, dtype=np.float64)
        pts = interior_points(eng[r])
        pred = pts @ A.T + c
        true = forward(model, origin, basis, pts)
        worst = max(worst, np.abs(pred - true).max() / yscale)
    assert worst <= 1e-9, f"affine map differs from the forward pass by {worst:.3e} (relative)"


# --------------------------------------------------------------------------- #
# (i) the partition after each layer
# --------------------------------------------------------------------------- #
def truncated(model, layer):
    """Leaf modules up to and including the ``layer``-th nonlinearity, then
    Flatten and a Linear head (the head does not split regions)."""
    leaves, seen = [], 0

    def walk(m):
        nonlocal seen
        if isinstance(m, nn.Sequential):
            for child in m:
                if seen < layer:
                    walk(child)
        else:
            leaves.append(m)
            if isinstance(m, (nn.ReLU, nn.LeakyReLU)):
                seen += 1

    walk(model)
    return leaves


@pytest.mark.parametrize("name", ["mlp-2-12-12-12-1-s1-hexagon", "cnn-1x6x6", "nested-bn-dropout-leaky",
                                  "mlp-784-16-12-10", "degenerate-parallel-lines"])
def test_at_layer_matches_truncated_reference(name, device):
    model, _, origin, basis, polygon = setup(name)
    P = engine(name, device=device)
    L = num_hidden_layers(model)
    domain_area = abs(signed_area(polygon))
    counts = []
    for layer in range(1, L + 1):
        leaves = truncated(model, layer)
        x = torch.as_tensor(origin)[None]
        with torch.no_grad():
            width = nn.Sequential(*leaves)(x).reshape(1, -1).shape[1]
        head = nn.Linear(width, 1).double()
        sub = nn.Sequential(*leaves, nn.Flatten(), head).eval()
        refp = ref.reference_partition(sub, origin, basis, polygon)
        Pl = P.at_layer(layer)
        counts.append((Pl.num_regions, len(refp)))
        eng = [np.asarray(p, dtype=np.float64) for p in Pl.polygons()]
        assert_same_regions(eng, refp, domain_area, label=f"{name} at layer {layer}")
    assert counts[-1][0] == P.num_regions


# --------------------------------------------------------------------------- #
# small domains far from the plane's origin (zooming in)
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("centre, half", [((1.8, -9.2), 1e-8), ((100.0, 100.0), 1e-7)])
def test_tiny_domain_far_from_origin(centre, half):
    # An axis-aligned square stays an exact rectangle after rounding, so it is a
    # valid convex CCW polygon however small; the slice must accept it as such.
    square = np.asarray(centre) + half * SQUARE
    sl = splinecam.Slice.plane2d(square)
    poly = np.asarray(sl.polygon, dtype=np.float64)
    assert signed_area(poly) > 0
    assert {tuple(v) for v in poly} == {tuple(v) for v in square}
    model = build_seeded_mlp([2, 8, 8, 1], seed=6)
    P = splinecam.partition(model, sl, decision_boundary=False, progress=False)
    refp = ref.reference_partition(model, np.zeros(2), np.eye(2), square)
    assert_same_regions([np.asarray(p, dtype=np.float64) for p in P.polygons()], refp,
                        signed_area(poly), label=f"tiny square at {centre}")
