"""Bad input gets a clear error, never a wrong picture."""
import re
import time

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


# -- findings of the fuzz campaign: bad input used to give a silent wrong result or an
# -- unclear message ------------------------------------------------------------------------
def scaled(factor, seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1)).double().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(factor)
    return m


def test_weights_times_1e200_overflow_is_refused():
    # Used to return a Partition with NaN outputs (the forward pass overflows).
    with pytest.raises(ValueError, match=r"values at the slice are too large to compute with in float64 \(at the "
                                         r"input of hidden layer 1 .*overflow.*rescale the inputs or the weights"):
        splinecam.partition(scaled(1e200), splinecam.Slice.plane2d(SQUARE), progress=False)


def test_forward_pass_to_infinity_is_refused():
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)).double().eval()
    with torch.no_grad():
        m[0].weight.fill_(1e308)  # finite weights, infinite values: 1e308 + 1e308 overflows
    with pytest.raises(ValueError, match=r"values at the slice are not finite \(at the input of hidden layer 1 "
                                         r"\('1'\): infinite, the forward pass overflows float64\).*rescale"):
        splinecam.partition(m, splinecam.Slice.plane2d(SQUARE), progress=False)


@pytest.mark.parametrize("factor", [1e40, 1e140])
def test_large_but_safe_values_still_work(factor):
    # The first layer and every bias scaled: the model computes factor * f, same regions.
    m = scaled(1.0)
    with torch.no_grad():
        m[0].weight.mul_(factor)
        for k in (0, 2, 4):
            m[k].bias.mul_(factor)
    P = splinecam.partition(m, splinecam.Slice.plane2d(SQUARE), progress=False)
    Q = splinecam.partition(scaled(1.0), splinecam.Slice.plane2d(SQUARE), progress=False)
    assert P.num_regions == Q.num_regions


@pytest.mark.parametrize("rtol", [-1, 0.5, 1.5e-4, float("nan"), float("inf"), "1e-10", None])
def test_rtol_outside_its_range_is_refused(rtol):
    with pytest.raises(ValueError, match=rf"rtol must be a finite number in \[0, 0.0001\].*got {re.escape(repr(rtol))}"):
        splinecam.partition(small(), splinecam.Slice.plane2d(SQUARE), progress=False, rtol=rtol)


@pytest.mark.parametrize("rtol", [0, 0.0, 1e-12, 1e-4])
def test_rtol_inside_its_range_is_accepted(rtol):
    P = splinecam.partition(small(), splinecam.Slice.plane2d(SQUARE), progress=False, rtol=rtol)
    assert P.num_regions >= 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(memory_limit=-1), r"memory_limit must be a positive number of bytes.*got -1"),
    (dict(memory_limit=0), r"memory_limit must be a positive number of bytes.*got 0"),
    (dict(memory_limit=float("nan")), r"memory_limit must be a positive number of bytes.*got nan"),
    (dict(memory_limit="1GB"), r"memory_limit must be a positive number of bytes.*got '1GB'"),
    (dict(chunk=0), r"chunk must be a positive integer \(vertices per batch.*got 0"),
    (dict(chunk=-5), r"chunk must be a positive integer.*got -5"),
    (dict(chunk=2.5), r"chunk must be a positive integer.*got 2.5"),
    (dict(chunk=True), r"chunk must be a positive integer.*got True"),
    (dict(threads=0), r"threads must be None or a positive integer \(CPU threads.*got 0"),
    (dict(threads=-1), r"threads must be None or a positive integer.*got -1"),
    (dict(threads=1.5), r"threads must be None or a positive integer.*got 1.5"),
])
def test_bad_numeric_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        splinecam.partition(small(), splinecam.Slice.plane2d(SQUARE), progress=False, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(memory_limit=-1), "memory_limit must be a positive number of bytes"),
    (dict(rtol=0.5), r"rtol must be a finite number in \[0, 0.0001\]"),
    (dict(threads=0), "threads must be None or a positive integer"),
])
def test_partition_tiled_checks_the_same_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        splinecam.partition_tiled(small(), splinecam.Slice.plane2d(SQUARE), tiles=2, progress=False, **kwargs)


def test_good_numeric_arguments_are_accepted():
    P = splinecam.partition(small(), splinecam.Slice.plane2d(SQUARE), progress=False, memory_limit=1 << 30,
                            chunk=np.int64(100), threads=1)
    assert P.num_regions == splinecam.partition(small(), splinecam.Slice.plane2d(SQUARE), progress=False).num_regions


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
@pytest.mark.parametrize("widths, name", [((2, 4, 0), "2"), ((2, 4, 0, 1), "2"), ((2, 0, 1), "0")])
def test_a_layer_with_zero_units_is_named(widths, name):
    # Used to fail with numpy's "zero-size array to reduction operation maximum".
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    m = nn.Sequential(*layers[:-1]).eval()
    with pytest.raises(ValueError, match=rf"module '{name}' \(Linear\) has zero outputs.*at least one unit"):
        splinecam.partition(m, splinecam.Slice.plane2d(SQUARE), progress=False)


def test_maxpool_with_return_indices_is_refused_when_tracing():
    # Used to fail inside the driver with a tensor size mismatch.
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = nn.MaxPool2d(2, return_indices=True)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            values, _ = self.pool(x.view(-1, 1, 4, 4))
            return self.fc(values.flatten(1))

    sl = splinecam.Slice.through(torch.zeros(16), torch.eye(16)[0], torch.eye(16)[1])
    with pytest.raises(splinecam.UnsupportedModelError,
                       match=r"module 'pool' \(MaxPool2d\).*not supported with return_indices=True.*"
                             r"pass return_indices=False"):
        splinecam.partition(Net().eval(), sl, progress=False)


@pytest.mark.parametrize("poly, match", [
    (np.array(SQUARE) * 1e300, r"too large to compute with in float64 \(up to 1e\+300"),
    (np.array(SQUARE) * 1e120, "too large to compute with in float64"),
    (np.array(SQUARE) * 1e-300, r"too small to compute with in float64 \(degenerate"),
    (np.array([[0, 0], [1e-300, 0], [0, 1e-300]]), "too small to compute with in float64"),
])
def test_polygons_beyond_float64_are_refused_clearly(poly, match):
    # Used to say "self-intersecting".
    with pytest.raises(ValueError, match=match + r".*Slice\(origin, basis \* s, polygon / s\)"):
        splinecam.Slice.plane2d(poly)


def test_large_and_small_polygons_within_range_are_accepted():
    for s in (1e90, 1e-90):
        assert splinecam.Slice.plane2d(np.array(SQUARE) * s).area == pytest.approx(4 * s * s)


def test_lean_out_of_memory_names_the_real_layer_and_fails_fast():
    # Used to run on and fail naming an internal label ("layer 1048578").
    from splinecam.zoo import mlp
    model = mlp((2, 64, 64, 1), seed=0)
    sl = splinecam.Slice.plane2d(np.array(SQUARE) * 2)
    t = time.perf_counter()
    with pytest.raises(splinecam.MemoryLimitExceeded,
                       match=r"memory_limit = 390.62 KiB at layer 2 even with lean=True.*tiles='auto'") as e:
        splinecam.partition(model, sl, progress=False, memory_limit=400_000, lean=True, tiles=1)
    assert "1048" not in str(e.value)
    assert time.perf_counter() - t < 20


@pytest.mark.parametrize("build, name, why, absent", [
    (lambda: nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1)),
     r"module '1' \(BatchNorm1d\)", "BatchNorm then computes a different function", "Dropout"),
    (lambda: nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Dropout(0.1), nn.Linear(4, 1)),
     r"module '2' \(Dropout\)", "Dropout then computes a different function", "BatchNorm"),
    (lambda: nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Dropout(0.1), nn.Linear(4, 1)),
     r"module '1' \(BatchNorm1d\)", "BatchNorm and Dropout then compute", None),
    (lambda: nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)),
     r"module '0' \(Linear\)", "modules in training mode may compute a different function", "BatchNorm"),
    (lambda: nn.Linear(2, 1), r"the model \(Linear\)", "modules in training mode may compute", "Dropout"),
])
def test_training_mode_names_the_module_that_matters(build, name, why, absent):
    torch.manual_seed(0)
    m = build().train()
    with pytest.raises(ValueError, match=rf"training mode \({name} has training=True\): {why}.*model\.eval\(\)") as e:
        splinecam.partition(m, splinecam.Slice.plane2d(SQUARE), progress=False)
    assert "Sequential" not in str(e.value)
    if absent:
        assert absent not in str(e.value)


def test_training_mode_of_a_harmless_module_in_an_eval_model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1)).eval()
    m[3].train()
    with pytest.raises(ValueError, match=r"module '3' \(Linear\) has training=True\): modules in training mode") as e:
        splinecam.partition(m, splinecam.Slice.plane2d(SQUARE), progress=False)
    assert "BatchNorm" not in str(e.value)
