"""The original SplineCam README usage, run unchanged against this package.

Independent evidence only: region areas against the domain's area, activation patterns
of the real model at points mapped back into the input space, model outputs on the
decision-boundary segments.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import splinecam  # noqa: E402


# ----------------------------------------------------------------------------- fixtures


def mlp_2d():
    torch.manual_seed(5)  # a seed whose output zero set crosses the square
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))
    model.input_shape = (2,)
    domain = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0]],
                          dtype=torch.float64)
    return model, domain


def mlp_784():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Sequential(nn.Linear(784, 32), nn.ReLU()),
        nn.Linear(32, 32), nn.LeakyReLU(0.1), nn.Dropout(0.2),
        nn.Linear(32, 10),
    )
    model.input_shape = (1, 28, 28)
    g = torch.Generator().manual_seed(100)  # three inputs of three different classes
    images = torch.randn(3, 1, 28, 28, dtype=torch.float64, generator=g)
    flat = images.reshape(3, -1)
    domain = torch.cat([flat, flat[:1]])  # closed triangle through three inputs
    return model, domain


def run_readme(model, domain):
    """The README's usage, verbatim apart from the device and the figure handling."""
    T = splinecam.utils.get_proj_mat(domain)

    model.eval()
    model.type(torch.float64)

    NN = splinecam.wrappers.model_wrapper(
        model,
        input_shape=model.input_shape,
        T=T,
        dtype=torch.float64,
        device="cpu",
    )
    flag = NN.verify()
    assert flag

    regions, db_edges = splinecam.compute.get_partitions_with_db(domain, T, NN)

    fig, ax = plt.subplots()
    splinecam.plot.plot_partition(regions,
                                  alpha=0.3, edgecolor="#a70000", ax=ax,
                                  color_range=[.3, .8], linewidth=.5)
    for each in db_edges:
        ax.plot(each[:, 0], each[:, 1], c="r", linewidth=5)
    fig.canvas.draw()
    n_patches = sum(len(c.get_paths()) for c in ax.collections)
    n_lines = len(ax.lines)
    plt.close(fig)
    assert n_patches == len(regions)
    assert n_lines == len(db_edges)
    return T, regions, db_edges


# ----------------------------------------------------------------------------- checks


def shoelace(p):
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - y * np.roll(x, -1)))


def plane_maps(T):
    """Plane coordinates of inputs, and the inverse map from plane coordinates, as the
    compatibility semantics define them (computed here independently)."""
    T = np.asarray(T, dtype=np.float64)
    V, mean = T[:, :2], T[:, 2]
    B = V @ np.linalg.inv(V.T @ V)
    return (lambda x: (x - mean) @ V), (lambda u: mean + u @ B.T)


def activation_patterns(model, x):
    """Concatenated signs of the inputs of every ReLU / LeakyReLU at inputs ``x``."""
    signs = []
    hooks = [m.register_forward_hook(lambda m, inp, out: signs.append(inp[0] > 0))
             for m in model.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in hooks:
            h.remove()
    return torch.cat([s.reshape(len(x), -1) for s in signs], dim=1).numpy(), out


def check_results(model, domain, T, regions, db_edges):
    to_plane, from_plane = plane_maps(T)
    shape = model.input_shape

    # formats: open CCW float64 polygons, (m, 2, 2) segments
    assert isinstance(regions, list) and len(regions) > 1
    for r in regions:
        assert isinstance(r, torch.Tensor) and r.dtype == torch.float64
        assert r.ndim == 2 and r.shape[1] == 2 and r.shape[0] >= 3
        assert not torch.equal(r[0], r[-1])
        assert shoelace(r.numpy()) > 0
    assert isinstance(db_edges, torch.Tensor) and db_edges.dtype == torch.float64
    assert db_edges.ndim == 3 and db_edges.shape[1:] == (2, 2)

    # areas sum to the domain's area in plane coordinates
    dom = np.asarray(domain, dtype=np.float64).reshape(len(domain), -1)[:-1]
    dom_uv = to_plane(dom)
    total = sum(shoelace(r.numpy()) for r in regions)
    assert total == pytest.approx(abs(shoelace(dom_uv)), rel=1e-9)

    # one activation pattern per region: the same at interior points of a region,
    # different between regions (a pattern's set is convex, so it is one region)
    pts, owner = [], []
    for i, r in enumerate(regions):
        r = r.numpy()
        c = r.mean(0)
        for p in np.vstack([c, 0.8 * c + 0.2 * r]):
            pts.append(p)
            owner.append(i)
    x = torch.as_tensor(from_plane(np.array(pts))).reshape(-1, *shape)
    pat, _ = activation_patterns(model, x)
    owner = np.array(owner)
    centre_pat = {}
    for i in range(len(regions)):
        mine = pat[owner == i]
        assert (mine == mine[0]).all(), f"region {i} holds several activation patterns"
        centre_pat[mine[0].tobytes()] = i
    assert len(centre_pat) == len(regions), "two regions share an activation pattern"

    # decision boundary: inside the domain, and where the model's decision is tied
    assert len(db_edges) > 0
    mid = db_edges.numpy().mean(1)
    with torch.no_grad():
        y = model(torch.as_tensor(from_plane(mid)).reshape(-1, *shape)).numpy()
    scale = 1 + np.abs(y).max()
    if y.shape[1] == 1:
        assert np.abs(y[:, 0]).max() <= 1e-8 * scale
    else:
        top = np.sort(y, axis=1)
        assert (top[:, -1] - top[:, -2]).max() <= 1e-8 * scale
    lo, hi = dom_uv.min(0) - 1e-9, dom_uv.max(0) + 1e-9
    ends = db_edges.numpy().reshape(-1, 2)
    assert ((ends >= lo) & (ends <= hi)).all()


# ----------------------------------------------------------------------------- tests


def test_readme_usage_2d_mlp_on_a_square():
    model, domain = mlp_2d()
    T, regions, db_edges = run_readme(model, domain)
    # the square's edges are orthonormal: plane coordinates are the input coordinates
    assert torch.allclose(T, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=torch.float64))
    check_results(model, domain, T, regions, db_edges)


def test_readme_usage_784_input_mlp_on_a_triangle():
    model, domain = mlp_784()
    T, regions, db_edges = run_readme(model, domain)
    check_results(model, domain, T, regions, db_edges)


def test_region_count_matches_the_published_count(seeded_mlp):
    # 2-16-16-16-1, torch.manual_seed(0), [-1, 1]^2: 178 regions (peers' agreed count,
    # without the output's zero set, as the original's regions are)
    model = seeded_mlp([2, 16, 16, 16, 1])
    model.input_shape = (2,)
    _, domain = mlp_2d()
    _, regions, _ = run_readme(model, domain)
    assert len(regions) == 178


def test_get_proj_mat():
    torch.manual_seed(0)
    pts = torch.randn(3, 5, dtype=torch.float64)
    domain = torch.cat([pts, pts[:1]])
    T = splinecam.utils.get_proj_mat(domain)
    assert T.shape == (5, 3) and T.dtype == torch.float64
    v1, v2 = pts[1] - pts[0], pts[2] - pts[0]
    assert torch.allclose(T[:, 0], v1 / v1.norm())
    assert torch.allclose(T[:, 1], v2 / v2.norm())
    assert torch.allclose(T[:, 2], pts.mean(0))  # mean of the distinct vertices

    Tn = splinecam.utils.get_proj_mat(domain.numpy())
    assert isinstance(Tn, np.ndarray) and np.allclose(Tn, T.numpy())
    assert splinecam.utils.get_proj_mat(domain.float()).dtype == torch.float32

    # v1, v2 are not orthogonal: the inverse map still recovers points of the plane
    u = splinecam.utils.to_plane_coords(pts, T)
    assert torch.allclose(splinecam.utils.from_plane_coords(u, T), pts)

    with pytest.raises(ValueError):
        splinecam.utils.get_proj_mat(torch.tensor([[0.0, 0], [1, 1], [2, 2], [0, 0]]))


def test_model_wrapper_checks():
    model, domain = mlp_2d()
    T = splinecam.utils.get_proj_mat(domain)
    with pytest.raises(ValueError):  # training mode
        splinecam.wrappers.model_wrapper(model, T=T, dtype=torch.float64, device="cpu")
    with pytest.raises(NotImplementedError):
        splinecam.wrappers.model_wrapper(nn.Sequential(nn.Linear(2, 3), nn.Tanh()).eval(),
                                         T=T, dtype=torch.float64, device="cpu")
    with pytest.raises(ValueError):  # input_shape does not match T
        splinecam.wrappers.model_wrapper(model.eval(), input_shape=(3,), T=T, device="cpu")

    # verify() notices a layer that is not affine any more (BatchNorm in training mode)
    torch.manual_seed(0)
    bn = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1)).eval()
    NN = splinecam.wrappers.model_wrapper(bn, T=T, dtype=torch.float64, device="cpu")
    assert NN.verify(check_engine=False)
    bn.train()
    with pytest.warns(UserWarning, match="differ"):
        assert not NN.verify(check_engine=False)

    # a T that differs from the wrapped one is refused
    NN = splinecam.wrappers.model_wrapper(model.eval(), T=T, dtype=torch.float64, device="cpu")
    with pytest.raises(ValueError):
        splinecam.compute.get_partitions_with_db(domain, 2 * T, NN)


def test_plot_partition_options():
    squares = [np.array([[0, 0], [1, 0], [1, 1], [0, 1]]) + k for k in range(3)]
    fig, ax = plt.subplots()
    np.random.seed(0)
    splinecam.plot.plot_partition(squares, ax=ax, xlims=None, colors=["#ff0000", "#00ff00"])
    fig.canvas.draw()
    coll = ax.collections[0]
    assert len(coll.get_paths()) == 3
    assert ax.get_xlim()[1] >= 3 and ax.get_xticks().size == 0
    face = coll.get_facecolors()[:, :3]
    assert all(tuple(f) in {(1.0, 0.0, 0.0), (0.0, 1.0, 0.0)} for f in map(tuple, face))
    plt.close(fig)

    fig, ax = plt.subplots()
    splinecam.plot.plot_partition([torch.tensor(s, dtype=torch.float64) for s in squares], ax=ax,
                                  color_range=[.3, .8])
    face = ax.collections[0].get_facecolors()[:, :3]
    assert (face >= .3 - 1e-9).all() and (face <= .8 + 1e-9).all()
    assert ax.get_xlim() == (-2, 2)  # the original's default window
    plt.close(fig)
