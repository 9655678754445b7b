"""Bad input gets a clear error, never a wrong picture."""
import numpy as np
import pytest
import torch
from torch import nn

import splinecam

SQUARE = [[-1, -1], [1, -1], [1, 1], [-1, 1]]


def small():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)).eval()


@pytest.mark.parametrize("poly, match", [
    ([[0, 0], [2, 0], [1, 0.2], [2, 2], [0, 2]], "not convex"),
    ([[0, 0], [1, 1], [1, 0], [0, 1]], "not convex|self-intersecting"),
    ([[0, 0], [1, 1], [2, 2]], "zero area"),
    ([[0, 0], [1, 0]], "three distinct"),
    ([[0, 0], [1, 0], [np.nan, 1]], "NaN"),
    (np.zeros((3, 3)), "shape"),
])
def test_bad_polygons(poly, match):
    with pytest.raises(ValueError, match=match):
        splinecam.Slice.plane2d(poly)


def test_pentagram_is_self_intersecting():
    ang = np.pi / 2 + 4 * np.pi / 5 * np.arange(5)
    with pytest.raises(ValueError, match="self-intersecting|not convex"):
        splinecam.Slice.plane2d(np.stack([np.cos(ang), np.sin(ang)], axis=1))


def test_either_orientation_is_accepted():
    a = splinecam.Slice.plane2d(SQUARE)
    b = splinecam.Slice.plane2d(SQUARE[::-1])
    assert a.area == pytest.approx(4) and b.area == pytest.approx(4)


def test_bad_basis():
    with pytest.raises(ValueError, match="parallel"):
        splinecam.Slice(torch.zeros(3), torch.tensor([[1.0, 0, 0], [2.0, 0, 0]]), SQUARE)
    with pytest.raises(ValueError, match="shape"):
        splinecam.Slice(torch.zeros(3), torch.eye(2), SQUARE)
    with pytest.raises(ValueError, match="collinear"):
        splinecam.Slice.through(torch.zeros(4), torch.ones(4), 2 * torch.ones(4))


def test_training_mode_is_refused():
    m = small().train()
    with pytest.raises(ValueError, match=r"training mode.*model\.eval\(\)"):
        splinecam.partition(m, splinecam.Slice.plane2d(SQUARE), progress=False)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights(value):
    m = small()
    with torch.no_grad():
        m[0].weight[1, 0] = value
    with pytest.raises(ValueError, match="'0.weight' contains NaN or infinite"):
        splinecam.partition(m, splinecam.Slice.plane2d(SQUARE), progress=False)


def test_input_shape_mismatch():
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)).eval()
    with pytest.raises(ValueError, match=r"cannot take inputs of shape \(2,\)"):
        splinecam.partition(m, splinecam.Slice.plane2d(SQUARE), progress=False)


@pytest.mark.parametrize("module", [nn.Tanh(), nn.Sigmoid(), nn.GELU(), nn.Softplus()])
def test_unsupported_layer_names_itself_and_the_supported_list(module):
    m = nn.Sequential(nn.Linear(2, 4), nn.Sequential(nn.ReLU(), module), nn.Linear(4, 1)).eval()
    with pytest.raises(splinecam.UnsupportedModelError, match=rf"'1\.1' \({type(module).__name__}\).*Supported modules: .*Linear.*ReLU"):
        splinecam.partition(m, splinecam.Slice.plane2d(SQUARE), progress=False)


def test_data_dependent_control_flow_is_refused_clearly():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 1)

        def forward(self, x):
            if x.sum() > 0:  # depends on the data: cannot be traced
                return self.fc(x)
            return -self.fc(x)

    with pytest.raises(splinecam.UnsupportedModelError, match="cannot trace"):
        splinecam.partition(Net().eval(), splinecam.Slice.plane2d(SQUARE), progress=False)


def test_unsupported_function_names_the_node_and_source_line():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 3)

        def forward(self, x):
            return torch.tanh(self.fc(x))

    with pytest.raises(splinecam.UnsupportedModelError, match=r"function tanh.*test_errors\.py.*torch\.tanh"):
        splinecam.partition(Net().eval(), splinecam.Slice.plane2d(SQUARE), progress=False)


def test_softmax_inside_the_network_is_refused():
    m = nn.Sequential(nn.Linear(2, 3), nn.Softmax(dim=1), nn.Linear(3, 2)).eval()
    with pytest.raises(splinecam.UnsupportedModelError, match="Softmax.*only dropped as the final op"):
        splinecam.partition(m, splinecam.Slice.plane2d(SQUARE), progress=False)


def test_product_of_two_activations_is_refused():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 3), nn.Linear(2, 3)

        def forward(self, x):
            return torch.relu(self.a(x)) * self.b(x)

    with pytest.raises(splinecam.UnsupportedModelError, match="product of two tensors"):
        splinecam.partition(Net().eval(), splinecam.Slice.plane2d(SQUARE), progress=False)


def test_not_a_slice():
    with pytest.raises(TypeError, match="splinecam.Slice"):
        splinecam.partition(small(), SQUARE, progress=False)


def test_at_layer_out_of_range_and_affine_on_intermediate_partition():
    P = splinecam.partition(small(), splinecam.Slice.plane2d(SQUARE), progress=False)
    with pytest.raises(ValueError, match="1..1"):
        P.at_layer(2)
    with pytest.raises(ValueError, match="affine only on the regions of the full partition"):
        P.at_layer(1).affine(0)
