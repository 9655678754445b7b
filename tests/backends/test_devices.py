"""The launchers agree: the CPU launcher, the GPU's batched launcher run on the host,
and (where a GPU is present) the batched launcher on CUDA give the same refinement,
bit for bit, for the same float64 input. Plus how ``device=`` is chosen and refused."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import splinecam
from splinecam import _core, zoo
from splinecam.driver import backends, engine
from splinecam.driver.backends import CpuBackend
from splinecam.testing import partition_difference
from conftest import batched_launcher, partition_on

SQUARE = [[-1, -1], [1, -1], [1, 1], [-1, 1]]
needs_gpu = pytest.mark.skipif(not splinecam.cuda_available(),
                               reason="no CUDA device here (the CUDA launcher is compiled but cannot run)")
OUTPUT_KEYS = ("xy", "rows_edge", "face_offsets", "face_verts", "he_layer", "he_unit", "face_parent")


def _degenerate_mlp(kind):
    """Zero biases (every first-layer line through the origin), duplicated units, or a
    unit whose line runs along the domain's diagonal through two corners."""
    m = zoo.mlp([2, 12, 12, 1], seed=3)
    with torch.no_grad():
        if kind == "zero-bias":
            for lin in m:
                if isinstance(lin, nn.Linear):
                    lin.bias.zero_()
        elif kind == "duplicated":
            m[0].weight[6:] = m[0].weight[:6]
            m[0].bias[6:] = m[0].bias[:6]
        elif kind == "through-corners":
            m[0].weight[0] = torch.tensor([1.0, -1.0])
            m[0].bias[0] = 0.0
            m[0].weight[1] = torch.tensor([1.0, 1.0])
            m[0].bias[1] = 0.0
    return m


CASES = {
    "random-2-24x3-1": lambda: zoo.mlp([2, 24, 24, 24, 1], seed=1),
    "random-2-48x2-3": lambda: zoo.mlp([2, 48, 48, 3], seed=2),
    "zero-bias": lambda: _degenerate_mlp("zero-bias"),
    "duplicated": lambda: _degenerate_mlp("duplicated"),
    "through-corners": lambda: _degenerate_mlp("through-corners"),
    "maxpool-cnn": lambda: _maxpool_cnn(),
}


def _maxpool_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 3)).double().eval()


class _Compare(CpuBackend):
    """The CPU backend, with every refinement also run by the batched launcher on the
    host and compared bit for bit."""

    def __init__(self, scratch_bytes):
        self.scratch, self.calls, self.rounds, self.batches = scratch_bytes, 0, [], []

    def _launch_host(self, xy, rows, faces, kw):
        rows_b = rows.copy()  # rows are snapped in place
        a = _core.refine(xy, rows, *faces, **kw)
        b = _core.refine_batched(xy, rows_b, *faces, scratch_bytes=self.scratch, **kw)
        np.testing.assert_array_equal(rows, rows_b)  # same snapping
        for k in OUTPUT_KEYS:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        np.testing.assert_array_equal(np.concatenate([np.zeros((0, rows.shape[1])), *a["rows_face"]]),
                                      np.concatenate(b["rows_face"]))
        assert a["degenerate"] == b["degenerate"]
        self.calls += 1
        self.rounds.append(b["face_rounds"])
        self.batches.append(b["face_batches"])
        return a


def _slice_for(name, model):
    if name == "maxpool-cnn":
        torch.manual_seed(1)
        imgs = torch.rand(3, 1, 8, 8, dtype=torch.float64)
        c = imgs.mean(0)
        imgs = c + 0.2 * (imgs - c)
        return splinecam.Slice.through(imgs[0], imgs[1], imgs[2])
    return splinecam.Slice.plane2d(SQUARE)


@pytest.mark.parametrize("scratch", [512 << 20, 1 << 14], ids=["one-batch", "tiny-pool"])
@pytest.mark.parametrize("name", list(CASES))
def test_batched_launcher_is_bitwise_the_cpu_launcher(name, scratch):
    model = CASES[name]().eval()
    cmp = _Compare(scratch)
    P = splinecam.partition(model, _slice_for(name, model), progress=False, backend=cmp)
    assert cmp.calls >= 2 and P.num_regions > 1
    if scratch < 1 << 20:
        assert max(cmp.batches) > 1, "the tiny pool should force several face batches"


class _Record(CpuBackend):
    """The CPU backend, with what each refinement reports recorded."""

    def __init__(self):
        self.outputs = []

    def _launch_host(self, xy, rows, faces, kw):
        out = _core.refine(xy, rows, *faces, **kw)
        self.outputs.append({k: out[k] for k in ("face_retries", "degenerate")})
        return out


@pytest.mark.parametrize("launcher", ["cpu", "host-batched"])
def test_face_scratch_levels_are_exercised_and_exact(launcher):
    """The first layer's faces are cut by many lines: some scratch overflows level 0 and
    those faces run again at higher levels, on both launchers. The result must still
    be the exact partition (the published 6,668 regions of this net)."""
    model = zoo.mlp([2, 64, 64, 64, 1], seed=0).double()
    sl = splinecam.Slice.plane2d(SQUARE)
    if launcher == "cpu":
        rec = _Record()
        P = splinecam.partition(model, sl, decision_boundary=False, progress=False, backend=rec)
        assert max(o["face_retries"] for o in rec.outputs) >= 1
    else:
        with batched_launcher() as shim:
            P = splinecam.partition(model, sl, decision_boundary=False, progress=False)
        assert max(shim.face_rounds) > 1
    assert P.num_regions == 6668


def test_batched_launcher_respects_the_memory_budget():
    model = zoo.mlp([2, 64, 64, 1], seed=0)
    with batched_launcher():
        with pytest.raises(splinecam.MemoryLimitExceeded, match="memory_limit"):
            splinecam.partition(model, splinecam.Slice.plane2d(SQUARE), memory_limit=200_000, progress=False,
                                tiles=1)


# --------------------------------------------------------------------------- #
# choosing the device
# --------------------------------------------------------------------------- #
def test_default_device_is_the_models():
    model = zoo.mlp([2, 8, 1], seed=0)
    assert engine.resolve_device(model) == torch.device("cpu")
    assert engine.resolve_device(nn.Sequential(nn.ReLU())) == torch.device("cpu")  # no parameters
    P = splinecam.partition(model, splinecam.Slice.plane2d(SQUARE), progress=False)
    assert P.run_info["device"] == "cpu"


@pytest.mark.parametrize("bad", ["tpu", "mps", "not a device", 3.5])
def test_unknown_device_is_refused(bad):
    with pytest.raises(ValueError, match="device"):
        splinecam.partition(zoo.mlp([2, 8, 1], seed=0), splinecam.Slice.plane2d(SQUARE), device=bad,
                            progress=False)


@pytest.mark.skipif(splinecam.cuda_available(), reason="checks the message given where CUDA cannot run")
def test_cuda_without_a_gpu_says_why():
    msg = "not built with CUDA" if not splinecam.build_info()["cuda"] else "no usable CUDA device"
    with pytest.raises(RuntimeError, match=msg) as e:
        splinecam.partition(zoo.mlp([2, 8, 1], seed=0), splinecam.Slice.plane2d(SQUARE), device="cuda",
                            progress=False)
    assert "device='cpu'" in str(e.value)
    assert splinecam.cuda_available() is False
    if splinecam.build_info()["cuda"]:  # the driver's own reason is passed on
        assert _core.cuda_status() and _core.cuda_status() in str(e.value)


def test_refine_cuda_entry_point_fails_cleanly_without_a_gpu():
    if splinecam.cuda_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="CUDA"):
        _core.refine_cuda(0, 0, 4, 1, 1, 0, 0, 0, 0, 1, 4, 1)


def test_build_info_reports_the_cuda_build():
    info = splinecam.build_info()
    if info["cuda"]:
        assert info["cuda_version"].split(".")[0].isdigit()
        assert "80-real" in info["cuda_architectures"] and "90" in info["cuda_architectures"]
        assert hasattr(_core, "DeviceArray")
    else:
        assert info["cuda_architectures"] == "" and not splinecam.cuda_available()


# --------------------------------------------------------------------------- #
# on a GPU
# --------------------------------------------------------------------------- #
def _same_partition(A, B):
    diff = partition_difference(A, B)
    assert diff is None, diff


def test_partition_difference_finds_what_differs():
    """The comparison the GPU checks rely on: silent on the same partition, and names
    a different count, a different cycle, or vertices moved beyond rounding."""
    sl = splinecam.Slice.plane2d(SQUARE)
    P = splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=0), sl, progress=False)
    assert partition_difference(P, splinecam.partition(zoo.mlp([2, 8, 8, 1], seed=0), sl, progress=False)) is None
    other = splinecam.partition(zoo.mlp([2, 9, 8, 1], seed=5), sl, progress=False)
    assert partition_difference(P, other) is not None
    Q = copy.deepcopy(P)
    Q.vertices[len(Q.vertices) // 2] += 1e-9
    assert "vertices differ by" in partition_difference(P, Q)
    R = copy.deepcopy(P)
    lay = R._layers[-1]
    lay.face_verts[[0, 1]] = lay.face_verts[[1, 0]]
    assert partition_difference(P, R) == f"layer {len(R._layers) - 1} face_verts"


@needs_gpu
@pytest.mark.parametrize("name", list(CASES))
def test_gpu_partition_equals_cpu(name):
    model = CASES[name]().eval()
    sl = _slice_for(name, model)
    A = splinecam.partition(model, sl, progress=False, device="cpu")
    B = splinecam.partition(model, sl, progress=False, device="cuda")
    assert B.run_info["device"].startswith("cuda")
    _same_partition(A, B)


@pytest.mark.parametrize("name", ["host-batched", pytest.param("cuda", marks=needs_gpu)])
def test_backend_refine_is_bitwise_the_cpu_refine(name):
    """Same float64 rows in, same refinement out: the one body, two launchers, through
    the backends' own interface (tensors in the backend's memory)."""
    model = zoo.mlp([2, 32, 32, 1], seed=4)
    sl = splinecam.Slice.plane2d(SQUARE)
    P = splinecam.partition(model, sl, progress=False, decision_boundary=False)
    layer = P._layers[0]
    xy = P.vertices[:layer.num_vertices]
    rows = np.ascontiguousarray(np.random.default_rng(0).normal(size=(len(xy), 20)))
    rows[:, 3] = 0.0  # a column that vanishes everywhere: never cuts
    faces = (layer.face_offsets, layer.face_verts, layer.he_layer, layer.he_unit)
    kw = dict(n_cut=16, layer_id=2, rtol=1e-10, threads=None, max_new=0, cut_begin=0, bounds=None)
    cpu = CpuBackend().refine(xy, rows.copy(), faces, **kw)
    be = backends.get_backend(torch.device("cuda" if name == "cuda" else "cpu"), name)
    dev = be.device
    out = be.refine(torch.as_tensor(xy, device=dev), torch.as_tensor(rows.copy(), device=dev),
                    tuple(torch.as_tensor(f, device=dev) for f in faces), **kw)
    for k in OUTPUT_KEYS:
        np.testing.assert_array_equal(cpu[k], out[k].cpu().numpy(), err_msg=k)
    np.testing.assert_array_equal(np.concatenate(cpu["rows_face"]),
                                  torch.cat([b.cpu() for b in out["rows_face"]]).numpy())


def test_backend_is_chosen_explicitly():
    model = zoo.mlp([2, 16, 16, 1], seed=0)
    sl = splinecam.Slice.plane2d(SQUARE)
    P = splinecam.partition(model, sl, progress=False)
    assert P.run_info["backend"] == "cpu"
    Q = splinecam.partition(model, sl, progress=False, backend="host-batched")
    assert Q.run_info["backend"] == "host-batched"
    with backends.use("host-batched") as b:
        R = splinecam.partition(model, sl, progress=False)
    assert R.run_info["backend"] == "host-batched" and len(b.face_rounds) >= 3
    _same_partition(P, Q)
    _same_partition(P, R)
    with pytest.raises(ValueError, match="backend must be one of"):
        splinecam.partition(model, sl, progress=False, backend="tpu")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        splinecam.partition(model, sl, progress=False, backend="cuda")


@needs_gpu
def test_model_on_gpu_runs_there_by_default():
    model = zoo.mlp([2, 16, 16, 1], seed=0).cuda()
    P = splinecam.partition(model, splinecam.Slice.plane2d(SQUARE), progress=False)
    assert P.run_info["device"].startswith("cuda")
    Q = partition_on("cpu", model.cpu(), splinecam.Slice.plane2d(SQUARE), progress=False)
    _same_partition(P, Q)
