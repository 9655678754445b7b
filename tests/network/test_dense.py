"""Segments that are one ``nn.Linear`` (every layer of an MLP) are evaluated without
interpreting the graph (``Network._dense``): one ``addmm`` into the rows' columns, and
the tolerance probes by one matrix product. They must give what the general path
(the traced graph, node by node) gives: the rows bit for bit, the term sizes within
rounding, the same partition; and they must step aside for whatever the general path
alone handles (forward hooks, a subclass's own ``forward``, several inputs)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

splinecam = pytest.importorskip("splinecam")
from splinecam.driver.tolerance import sample_points  # noqa: E402
from splinecam.network.model import Network  # noqa: E402

SQUARE = [[-2.0, -2.0], [2.0, -2.0], [2.0, 2.0], [-2.0, 2.0]]


def _mlps():
    torch.manual_seed(0)
    yield "relu", nn.Sequential(nn.Linear(2, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 1))
    # Hardtanh and ReLU6: two breakpoint columns, z carried (no breakpoint is 0)
    yield "mixed", nn.Sequential(nn.Linear(2, 9), nn.LeakyReLU(0.1), nn.Linear(9, 9), nn.Hardtanh(),
                                 nn.Linear(9, 9), nn.ReLU6(), nn.Linear(9, 9), nn.PReLU(), nn.Linear(9, 3))
    yield "no bias", nn.Sequential(nn.Linear(2, 8, bias=False), nn.ReLU(), nn.Linear(8, 8, bias=False), nn.Hardtanh(),
                                   nn.Linear(8, 2, bias=False))


def _general(net):
    """The same network with the one-Linear shortcut turned off."""
    net._dense = lambda l: None
    return net


@pytest.mark.parametrize("name,model", list(_mlps()), ids=[n for n, _ in _mlps()])
def test_one_linear_segments_give_the_general_paths_rows_bit_for_bit(name, model):
    model = model.double().eval()
    net = Network.from_model(model, (2,))
    assert all(net._dense(l) is not None for l in range(1, net.num_layers + 2))
    ref = _general(Network.from_model(model, (2,)))
    x = torch.randn(300, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    a, b = net.rows_for(1, x), ref.rows_for(1, x)
    for l in range(1, net.num_layers + 1):
        assert a[1] == b[1]
        np.testing.assert_array_equal(a[0], b[0])
        # the next rows from the rows in two blocks (as the engine hands them back)
        src_a = ([a[0][:100], a[0][100:]], a[1], l)
        src_b = ([b[0][:100], b[0][100:]], b[1], l)
        a, b = net.rows_for(l + 1, src_a), ref.rows_for(l + 1, src_b)
    np.testing.assert_array_equal(a[0], b[0])
    # and the outputs are the model's own
    np.testing.assert_allclose(a[0], model(x).detach().numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,model", list(_mlps()), ids=[n for n, _ in _mlps()])
def test_one_linear_segments_give_the_general_paths_term_sizes(name, model):
    model = model.double().eval()
    sl = splinecam.Slice.plane2d(SQUARE)
    x = sl.to_input(sample_points(sl.polygon))
    got = Network.from_model(model, (2,)).magnitudes(x)
    want = _general(Network.from_model(model, (2,))).magnitudes(x)
    for kind, (g, w) in enumerate(zip(got, want)):
        assert len(g) == len(w)
        for gl, wl in zip(g, w):
            assert gl.shape == wl.shape
            # the same probes and signs; only the bias's round trip (added, then
            # subtracted with the zero probe) is missing
            np.testing.assert_allclose(gl, wl, rtol=1e-13, atol=0, err_msg=f"kind {kind}")


@pytest.mark.parametrize("name,model", list(_mlps()), ids=[n for n, _ in _mlps()])
def test_one_linear_segments_give_the_same_partition(name, model, monkeypatch):
    model = model.eval()
    sl = splinecam.Slice.plane2d(SQUARE)
    P = splinecam.partition(model, sl, progress=False)
    monkeypatch.setattr(Network, "_dense", lambda self, l: None)
    Q = splinecam.partition(model, sl, progress=False)
    assert P.num_regions == Q.num_regions
    np.testing.assert_array_equal(P.vertices, Q.vertices)
    for f, g in zip(P.faces(), Q.faces()):
        np.testing.assert_array_equal(f, g)
    np.testing.assert_array_equal(P.edge_layer, Q.edge_layer)
    np.testing.assert_array_equal(P.decision_boundary, Q.decision_boundary)


class _Twice(nn.Linear):
    def forward(self, x):
        return 2 * super().forward(x)


def test_segments_the_shortcut_must_not_take():
    torch.manual_seed(0)
    hooked = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)).double().eval()
    calls = []
    hooked[2].register_forward_hook(lambda m, i, o: calls.append(len(o)))
    net = Network.from_model(hooked, (2,))
    assert net._dense(1) is not None and net._dense(2) is None  # the hook must be called
    net.rows_for(2, ([net.rows_for(1, torch.zeros(5, 2, dtype=torch.float64))[0]], net.layout(1), 1))
    assert calls and calls[-1] == 5
    # a subclass with its own forward, and a segment of two modules
    own = nn.Sequential(_Twice(2, 4), nn.ReLU(), nn.Linear(4, 4), nn.Linear(4, 1)).double().eval()
    net = Network.from_model(own, (2,))
    assert net._dense(1) is None and net._dense(2) is None
    x = torch.randn(7, 2, dtype=torch.float64)
    rows, lay = net.rows_for(1, x)
    out, _ = net.rows_for(2, ([rows], lay, 1))
    np.testing.assert_allclose(out, own(x).detach().numpy(), rtol=1e-12)
    # a residual MLP: the second Linear's output is added to its input (two inputs)
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(2, 4), nn.Linear(4, 4), nn.Linear(4, 1)

        def forward(self, x):
            h = torch.relu(self.a(x))
            return self.c(torch.relu(h + self.b(h)))
    net = Network.from_model(Res().double().eval(), (2,))
    assert net._dense(1) is not None and net._dense(2) is None
