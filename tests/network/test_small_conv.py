"""Convolutions over a few positions as one matrix product (``network/small_conv.py``):
the matrix is the convolution's own map (checked against torch's convolution of the
identity basis, bit for bit), products agree with ``F.conv2d`` to rounding, the matrix
follows in-place weight changes, larger inputs are left to torch, and a CNN whose deep
layers take this path gets the same partition as with torch's convolution."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

splinecam = pytest.importorskip("splinecam")
from splinecam.network import small_conv  # noqa: E402
from splinecam.network.small_conv import SmallConv2d  # noqa: E402

# (in channels, out channels, size, kernel, stride, padding, dilation, groups, bias)
CONVS = [
    (8, 6, 1, 3, 1, 1, 1, 1, True),        # 1x1 map: the centre tap alone
    (8, 6, 2, 3, 1, 1, 1, 1, True),        # 2x2, padding 1
    (6, 4, 2, 3, 2, 1, 1, 1, False),       # stride 2 to 1x1, no bias
    (4, 8, 4, 3, 2, 1, 1, 2, True),        # groups, stride 2
    (4, 4, 3, 3, 1, 2, 2, 1, True),        # dilation 2, padding 2
    (3, 5, 2, (3, 1), (1, 2), (1, 0), 1, 1, True),  # rectangular kernel, stride and padding
    (6, 6, 3, 3, 1, "same", 1, 3, True),   # padding "same", groups
    (4, 2, 3, 3, 1, "valid", 1, 1, True),  # padding "valid": one output position
    (5, 5, 2, 2, 1, "same", 1, 1, True),   # "same" with an even kernel (padded after)
]


def _conv(spec, seed=0):
    C, O, H, k, s, p, d, g, b = spec
    torch.manual_seed(seed)
    return nn.Conv2d(C, O, k, stride=s, padding=p, dilation=d, groups=g, bias=b).double().eval(), H


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's note on even kernels
@pytest.mark.parametrize("spec", CONVS, ids=[str(c[:8]) for c in CONVS])
def test_the_matrix_is_the_convolution_of_the_identity_bit_for_bit(spec):
    m, H = _conv(spec)
    sc = SmallConv2d(m)
    x = torch.randn(5, m.in_channels, H, H, dtype=torch.float64)
    assert sc.applies(x)
    y = sc(x)
    n = m.in_channels * H * H
    basis = torch.eye(n, dtype=torch.float64).reshape(n, m.in_channels, H, H)
    with torch.no_grad():
        expect = F.conv2d(basis, m.weight, None, m.stride, m.padding, m.dilation, m.groups).reshape(n, -1)
        ref = m(x)
    assert torch.equal(sc._mat, expect)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=0, atol=1e-14 * float(ref.abs().max()))


def test_the_matrix_follows_in_place_weight_changes():
    m, H = _conv(CONVS[1])
    sc = SmallConv2d(m)
    x = torch.randn(4, m.in_channels, H, H, dtype=torch.float64)
    sc(x)
    with torch.no_grad():
        m.weight.mul_(-2.0)
        m.bias.add_(1.0)
        ref = m(x)
    np.testing.assert_allclose(sc(x).numpy(), ref.numpy(), rtol=0, atol=1e-14 * float(ref.abs().max()))


def test_large_inputs_and_other_padding_modes_are_left_to_torch(monkeypatch):
    m, _ = _conv((3, 4, 8, 3, 1, 1, 1, 1, True))  # 64 positions > 2 x 9 taps
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    sc = SmallConv2d(m)
    assert not sc.applies(x)
    with torch.no_grad():
        assert torch.equal(sc(x), m(x))
    r = nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect").double().eval()
    assert not SmallConv2d(r).applies(torch.randn(2, 3, 2, 2, dtype=torch.float64))
    m2, H = _conv(CONVS[1])
    monkeypatch.setattr(small_conv, "MAX_MATRIX_BYTES", 100)  # a matrix over the bound
    assert not SmallConv2d(m2).applies(torch.randn(2, m2.in_channels, H, H, dtype=torch.float64))


def _small_maps_cnn(seed=0):
    """A residual CNN on 1x8x8 inputs whose last stages run on 2x2 and 1x1 maps."""
    torch.manual_seed(seed)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 4, 3, stride=2, padding=1)     # 8x8 -> 4x4 (torch's convolution)
            self.down = nn.Conv2d(4, 6, 3, stride=2, padding=1)     # 4x4 -> 2x2 (16 positions: the matrix)
            self.conv = nn.Conv2d(6, 6, 3, padding=1)               # 2x2 -> 2x2
            self.last = nn.Conv2d(6, 8, 3, stride=2, padding=1)     # 2x2 -> 1x1
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            x = torch.relu(self.stem(x))
            x = torch.relu(self.down(x))
            x = torch.relu(self.conv(x) + x)
            x = torch.relu(self.last(x))
            return self.fc(x.flatten(1))

    return Net().double().eval()


def test_a_cnn_on_small_maps_gets_the_partition_torchs_convolution_gives(monkeypatch):
    """The same partition (count and every region's pattern, matched by location) with
    the matrix products as with torch's own convolution, and patterns that fresh torch
    forward passes confirm."""
    model = _small_maps_cnn()
    torch.manual_seed(3)
    imgs = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    sl = splinecam.Slice.through(imgs[0], imgs[1], imgs[2])
    calls = []
    real = SmallConv2d.__call__

    def counted(self, x):
        calls.append(self.applies(x))
        return real(self, x)

    monkeypatch.setattr(SmallConv2d, "__call__", counted)
    P = splinecam.partition(model, sl, progress=False)
    assert any(calls), "no convolution took the matrix path"
    monkeypatch.setattr(SmallConv2d, "applies", lambda self, x: False)  # torch's convolution throughout
    Q = splinecam.partition(model, sl, progress=False)
    assert P.num_regions == Q.num_regions
    at = Q.locate(P.centroids())  # every region of P is one region of Q, with its pattern
    assert (at >= 0).all() and len(np.unique(at)) == Q.num_regions
    np.testing.assert_array_equal(P.activation_patterns(), Q.activation_patterns()[at])
    splinecam.testing.check_partition(P)
