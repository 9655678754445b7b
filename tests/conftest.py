"""Shared helpers for the test-suite: seeded model builders and the reference."""

from __future__ import annotations

import importlib.util
import os
import pathlib

import pytest
import torch
from torch import nn

_REPO = pathlib.Path(__file__).resolve().parents[1]

# Hypothesis profiles for tests/driver/test_properties.py, chosen by SPLINECAM_HYPOTHESIS_PROFILE:
#   default  few examples per test, derandomized (the same examples on every run: CI is
#            deterministic), no example database;
#   fuzz     `make fuzz`: many random examples, without the explicit @example cases (the
#            default profile runs those); failures are kept in .pytest_cache/hypothesis and
#            replayed first on the next run.
# The rest of the suite does not need hypothesis.
try:
    from hypothesis import HealthCheck, Phase, settings as _hyp_settings
    from hypothesis.database import DirectoryBasedExampleDatabase
except ImportError:  # pragma: no cover - hypothesis not installed
    pass
else:
    _hyp_settings.register_profile(
        "default", max_examples=25, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow])
    _hyp_settings.register_profile(
        "fuzz", max_examples=500, deadline=None, derandomize=False,
        database=DirectoryBasedExampleDatabase(str(_REPO / ".pytest_cache" / "hypothesis")),
        phases=[Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow])
    _hyp_settings.load_profile(os.environ.get("SPLINECAM_HYPOTHESIS_PROFILE", "default"))


def _load_standalone(name):
    """splinecam.<name>, even when the compiled engine is not importable (then loaded from
    its file: reference.py and zoo.py need torch and numpy only)."""
    try:
        return importlib.import_module(f"splinecam.{name}")
    except Exception:  # engine not built / not installed yet
        path = _REPO / "python" / "splinecam" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"splinecam_{name}_standalone", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


reference_module = _load_standalone("reference")
_zoo = _load_standalone("zoo")


def build_seeded_mlp(widths, seed=0, act=nn.ReLU):
    """:func:`splinecam.zoo.mlp` in float64: ``torch.manual_seed(seed)``, then
    ``nn.Linear`` layers created in order (default init) with ``act()`` between them;
    eval mode.

    This is the construction behind the published peer region counts
    (2-16-16-16-1 on [-1,1]^2 -> 178 regions, etc.).
    """
    return _zoo.mlp(widths, seed, act).double().eval()


@pytest.fixture(scope="session")
def seeded_mlp():
    """Fixture form of :func:`build_seeded_mlp`."""
    return build_seeded_mlp


def centred_mlp(widths, seed):
    """splinecam.zoo.mlp with the output biases shifted so that every output is (nearly)
    0 at the origin: the decision boundary then crosses the square around it."""
    from splinecam import zoo
    m = zoo.mlp(widths, seed)
    with torch.no_grad():
        y0 = m(torch.zeros(1, widths[0]))[0]
        m[-1].bias -= y0 - (0 if widths[-1] == 1 else torch.linspace(0, 0.05, widths[-1]))
    return m


def _centred_partition(widths, seed):
    import copy
    import splinecam
    m = centred_mlp(widths, seed)
    P = splinecam.partition(m, splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]]), progress=False)
    assert len(P.decision_boundary) > 5
    return copy.deepcopy(m).double(), P


@pytest.fixture(scope="session")
def net1():
    """(float64 model, Partition) of a centred 2-16-16-1 MLP on [-1, 1]^2."""
    return _centred_partition((2, 16, 16, 1), 0)


@pytest.fixture(scope="session")
def net3():
    """(float64 model, Partition) of a centred 2-16-16-3 MLP on [-1, 1]^2."""
    return _centred_partition((2, 16, 16, 3), 1)


# --------------------------------------------------------------------------- #
# Devices. Geometry tests take a ``device`` argument and run once per launcher:
#   "cpu"           the CPU launcher (threads over blocks of the step bodies);
#   "host-batched"  the GPU path on the host: the driver with torch tensors, and the
#                   launcher with the GPU's pooled face pass on the host backend
#                   (launcher.h) and a small scratch pool, so that the face pass runs in many batches
#                   and retries faces at higher capacity levels;
#   "cuda"          the GPU's launcher on a GPU (skipped where there is none).
# --------------------------------------------------------------------------- #
def _cuda_available():
    try:
        import splinecam
        return splinecam.cuda_available()
    except Exception:  # engine not built
        return False


DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("host-batched", id="host-batched"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(
        not _cuda_available(), reason="no CUDA device here: the CUDA launcher is compiled, and its launcher logic "
                                      "and step bodies run on the CPU as 'host-batched'")),
]


def pytest_generate_tests(metafunc):
    if "device" in metafunc.fixturenames:
        metafunc.parametrize("device", DEVICES)


def batched_launcher(scratch_bytes=1 << 16):
    """Every CPU refinement inside runs the GPU's launcher on the host backend, with a
    small pool: many face batches."""
    from splinecam.testing import host_batched_launcher
    return host_batched_launcher(scratch_bytes)


def partition_on(device, model, sl, **kwargs):
    """splinecam.partition on one of DEVICES."""
    import splinecam
    if device == "host-batched":
        with batched_launcher():
            return splinecam.partition(model, sl, device="cpu", **kwargs)
    return splinecam.partition(model, sl, device=device, **kwargs)
