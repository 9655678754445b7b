"""Tiles on a Dask cluster (a LocalCluster of two worker processes): the result is the
local one bit for bit, a worker killed mid-run changes nothing, and an error on a
worker surfaces as the same clear error as locally."""
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

import splinecam
from splinecam.zoo import mlp

distributed = pytest.importorskip("distributed")

HERE = os.path.dirname(os.path.abspath(__file__))
SQUARE = np.array([[-2.0, -2.0], [2.0, -2.0], [2.0, 2.0], [-2.0, 2.0]])


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    c = distributed.Client(cluster)
    c.run(sys.path.insert, 0, HERE)  # the workers import this module's helpers
    yield c
    c.close()
    cluster.close()


def bitwise_equal(P, Q):
    return (np.array_equal(P._xy, Q._xy) and len(P._layers) == len(Q._layers)
            and all(np.array_equal(getattr(a, f), getattr(b, f)) for a, b in zip(P._layers, Q._layers)
                    for f in ("face_offsets", "face_verts", "he_layer", "he_unit", "face_parent"))
            and all(np.array_equal(a, b) for a, b in zip(P._decision["faces"], Q._decision["faces"])))


def test_cluster_result_is_the_local_one_bit_for_bit(client):
    from test_tiles import assert_same_partition
    model, sl = mlp((2, 32, 32, 32, 3), seed=1).double(), splinecam.Slice.plane2d(SQUARE)
    whole = splinecam.partition(model, sl, progress=False)
    for kw in (dict(tiles=3), dict(memory_limit=300_000)):
        local = splinecam.partition(model, sl, progress=False, **kw)
        remote = splinecam.partition(model, sl, progress=False, client=client, **kw)
        assert remote.run_info["tiles"] == local.run_info["tiles"] > 1
        assert bitwise_equal(local, remote), kw
        assert_same_partition(remote, whole)


def test_a_worker_killed_mid_run_changes_nothing(client, tmp_path):
    model, sl = mlp((2, 48, 48, 48, 3), seed=4).double(), splinecam.Slice.plane2d(SQUARE)
    local = splinecam.partition(model, sl, progress=False, tiles=6)
    pids = list(client.run(os.getpid).values())
    out = {}
    store = tmp_path / "run"

    def go():
        out["P"] = splinecam.partition(model, sl, progress=False, tiles=6, client=client, store=store)

    t = threading.Thread(target=go)
    t.start()
    deadline = time.time() + 60
    while not list((store / "tiles").glob("t*")) and time.time() < deadline:  # some tiles done
        time.sleep(0.02)
    killed = t.is_alive()
    if killed:
        os.kill(pids[0], signal.SIGKILL)
    t.join(120)
    assert killed, "the run finished before a worker could be killed: make the slice larger"
    assert bitwise_equal(local, out["P"])
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it


class ModelThatBreaksOnTheWorker(nn.Module):
    """ReLU in the process that made it; in any other process (a worker) GELU, which
    splinecam does not support."""

    def __init__(self, home=None):
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(2, 8), nn.Linear(8, 1)
        self.home = os.getpid() if home is None else home

    def forward(self, x):
        h = self.lin1(x)
        h = torch.relu(h) if os.getpid() == self.home else nn.functional.gelu(h)
        return self.lin2(h)


def test_an_error_on_a_worker_is_the_local_error(client):
    sl = splinecam.Slice.plane2d(SQUARE)
    with pytest.raises(splinecam.UnsupportedModelError) as here:
        splinecam.partition(ModelThatBreaksOnTheWorker(home=-1).eval(), sl, progress=False)
    model = ModelThatBreaksOnTheWorker().eval()
    assert splinecam.partition(model, sl, progress=False).num_regions > 1  # fine here
    with pytest.raises(splinecam.UnsupportedModelError) as there:
        splinecam.partition(model, sl, progress=False, tiles=2, client=client)
    assert str(there.value) == str(here.value) and "gelu" in str(there.value)
