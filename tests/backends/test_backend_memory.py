"""Every step of a partition runs in its backend's memory.

A backend that keeps torch tensors (``host-batched``: the GPU's launcher and memory
model on the host) must see every refinement of a partition in its own memory: the
elementwise layers, the k - 1 chain refinements of a max-type layer, the decision
boundary's chain over the outputs and lean layers, with their arrays as tensors:
nothing falls back to numpy refinements on the host. The window steps of each backend must equal
their numpy definitions bit for bit, and the partitions must equal the CPU backend's.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import splinecam
from splinecam.driver.backends import CpuBackend, HostBatchedBackend

SQUARE = [[-1, -1], [1, -1], [1, 1], [-1, 1]]


class _Recording(HostBatchedBackend):
    """host-batched, recording the kind of every array handed to a refinement."""

    def __init__(self):
        super().__init__(scratch_bytes=1 << 16)
        self.backend_calls, self.kinds = 0, set()

    def refine(self, xy, rows, faces, **args):
        self.backend_calls += 1
        self.kinds.update(type(a).__name__ for a in (xy, rows, *faces))
        return super().refine(xy, rows, faces, **args)


def _maxpool_cnn(classes=3):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(3 * 3 * 3, 8), nn.ReLU(), nn.Linear(8, classes)).double().eval()


def _image_slice(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    a, b, c = torch.randn(3, *shape, generator=g, dtype=torch.float64)
    return splinecam.Slice.through(a, b, c)


def _tie_at_centroid(model, sl):
    """Shift the output bias so that every class ties at the slice's centroid: the
    decision boundary then crosses the slice (the regions do not change)."""
    with torch.no_grad():
        model[-1].bias -= model(sl.to_input(sl.polygon.mean(axis=0, keepdims=True)))[0]
    return model


def _same(P, Q):
    """The same partition bit for bit: vertices, regions after every layer, boundary."""
    assert P.num_regions == Q.num_regions and P.num_vertices == Q.num_vertices
    np.testing.assert_array_equal(P.vertices, Q.vertices)
    for a, b in zip(P.polygons(), Q.polygons()):
        np.testing.assert_array_equal(a, b)
    for l in range(1, P.num_layers + 1):
        assert P.at_layer(l).num_regions == Q.at_layer(l).num_regions
    np.testing.assert_array_equal(P.decision_boundary, Q.decision_boundary)


@pytest.mark.parametrize("lean", [False, True])
def test_max_type_layers_and_the_decision_stay_in_the_backends_memory(lean):
    sl = _image_slice((1, 6, 6))
    model = _tie_at_centroid(_maxpool_cnn(), sl)
    rec = _Recording()
    kw = dict(progress=False, memory_limit=(1 << 20) if lean else None, lean=lean, tiles=1)
    P = splinecam.partition(model, sl, backend=rec, **kw)
    Q = splinecam.partition(model, sl, backend="cpu", **kw)
    assert P.run_info["lean"] == lean == Q.run_info["lean"]
    # conv-ReLU, max-pool (8 candidates' chain: 3 refinements), dense-ReLU, decision (2)
    assert rec.backend_calls >= 1 + 3 + 1 + 2
    assert rec.kinds == {"Tensor"}
    _same(P, Q)
    assert len(P.decision_boundary) > 0  # the decision's chain ran (3 classes tie somewhere)
    splinecam.testing.check_partition(P)


def _windows(rng, V=300, W=7, k=4, integer=False):
    x0 = W + 2
    rows = rng.integers(-3, 4, (V, x0 + 12)).astype(np.float64) if integer else rng.standard_normal((V, x0 + 12))
    idx = np.stack([rng.choice(12, k, replace=False) for _ in range(W)]).astype(np.int64)
    floor = np.full(W, 1e-12)
    return rows, x0, idx, floor


@pytest.mark.parametrize("backend", [CpuBackend(), HostBatchedBackend()], ids=["cpu", "host-batched"])
@pytest.mark.parametrize("integer", [False, True], ids=["real", "integer (ties)"])
def test_window_steps_of_a_backend_are_their_numpy_definitions(backend, integer):
    rng = np.random.default_rng(5)
    for _ in range(5):
        rows, x0, idx, floor = _windows(rng, integer=integer)
        X = rows[:, x0:]
        for s in range(1, idx.shape[1]):
            want = rows.copy()
            want[:, :len(idx)] = X[:, idx[:, :s]].max(axis=2) - X[:, idx[:, s]]
            got = backend.asarray(rows)
            backend.window_chain(got, x0, idx, s)
            np.testing.assert_array_equal(backend.to_host(got), want)
        cand = X[:, idx]  # (V, W, k)
        winners = np.argmax(cand >= cand.max(axis=2, keepdims=True) - floor[None, :, None], axis=2)
        np.testing.assert_array_equal(backend.winner_changes(backend.asarray(rows), x0, idx, floor),
                                      (winners != winners[:1]).any(axis=0))
        v = rng.integers(0, len(rows), 50)
        np.testing.assert_array_equal(backend.take(backend.asarray(rows), v[:, None], x0 + idx[v % len(idx)]),
                                      rows[v[:, None], x0 + idx[v % len(idx)]])
