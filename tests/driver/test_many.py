"""Many partitions of one architecture: the traced-network cache, partition_many, and
the engine's persistent thread pool (concurrent callers, forked processes).

The evidence is always a computation that cannot share what is under test: a network
traced afresh (the cache emptied), a partition computed alone, a serial run."""
import multiprocessing
import threading

import numpy as np
import pytest
import torch
from torch import nn

import splinecam
from splinecam.network import cache as network_cache
from splinecam.zoo import mlp, small_cnn


def square(r=2.0):
    return splinecam.Slice.plane2d([[-r, -r], [r, -r], [r, r], [-r, r]])


def fresh(model, sl, **kw):
    """The partition with nothing reused: the traced-network cache emptied first."""
    network_cache.clear()
    return splinecam.partition(model, sl, progress=False, **kw)


def assert_identical(P, Q):
    assert P.num_regions == Q.num_regions
    assert np.array_equal(P.vertices, Q.vertices)
    (ca, oa), (cb, ob) = P.faces(), Q.faces()
    assert np.array_equal(oa, ob) and np.array_equal(ca, cb)
    assert np.array_equal(P.decision_boundary, Q.decision_boundary)


def perturbed(model, seed, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


# -- the traced-network cache ---------------------------------------------------------------
def test_cached_trace_gives_the_fresh_partition_after_the_weights_change():
    model, sl = mlp((2, 12, 12, 1)), square()
    network_cache.clear()
    first = splinecam.partition(model, sl, progress=False)  # traced and kept
    kept = list(network_cache._TRACED.values())
    assert len(kept) == 1 and first._net is not kept[0] and kept[0].pattern_floors is None, \
        "the kept template must never be a partition's network"
    before = splinecam.partition(model, sl, progress=False)
    perturbed(model, 1)
    P = splinecam.partition(model, sl, progress=False)  # the kept trace, new weights
    assert_identical(P, fresh(model, sl))
    assert P.num_regions != before.num_regions or not np.array_equal(P.vertices, before.vertices)
    # the earlier result keeps the weights it was computed with
    x = torch.randn(7, 2, dtype=torch.float64)
    assert np.allclose(before._net.forward(x), fresh(mlp((2, 12, 12, 1)), sl)._net.forward(x))
    assert not np.allclose(before._net.forward(x), P._net.forward(x))


def test_cached_trace_on_a_cnn_is_bitwise_the_fresh_one():
    model = small_cnn(input_shape=(1, 8, 8), channels=(2, 3), dense=(6,), classes=3)
    torch.manual_seed(3)
    sl = splinecam.Slice.through(*torch.randn(3, 1, 8, 8))
    splinecam.partition(model, sl, progress=False)
    perturbed(model, 2, 0.05)
    assert_identical(splinecam.partition(model, sl, progress=False), fresh(model, sl))


def test_a_changed_hyperparameter_is_traced_again():
    model, sl = nn.Sequential(nn.Linear(2, 8), nn.LeakyReLU(0.0), nn.Linear(8, 1)).eval(), square()
    splinecam.partition(model, sl, progress=False)
    model[1].negative_slope = 0.5  # same weights, a different function
    P = splinecam.partition(model, sl, progress=False)
    assert_identical(P, fresh(model, sl))
    x = torch.randn(5, 2)
    with torch.no_grad():
        assert np.allclose(P._net.forward(x.double()), model.double()(x.double()).numpy())


def test_models_the_key_cannot_see_into_are_traced_every_time():
    model = mlp((2, 6, 1))
    model[0].register_forward_hook(lambda m, i, o: o)
    assert network_cache._structure_key(model, (2,)) is None
    odd = mlp((2, 6, 1))
    odd.extra = [nn.ReLU()]  # an attribute of a kind the key does not describe
    assert network_cache._structure_key(odd, (2,)) is None
    assert network_cache._structure_key(mlp((2, 6, 1)), (2,)) == network_cache._structure_key(mlp((2, 6, 1), seed=4),
                                                                                               (2,))
    assert network_cache._structure_key(mlp((2, 6, 1)), (2,)) != network_cache._structure_key(mlp((2, 7, 1)), (2,))


def test_checks_still_run_on_a_cached_architecture():
    model, sl = mlp((2, 6, 1)), square()
    splinecam.partition(model, sl, progress=False)
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        splinecam.partition(model, sl, progress=False)
    with pytest.raises(ValueError, match="training mode"):
        splinecam.partition(mlp((2, 6, 1)).train(), sl, progress=False)


# -- partition_many -------------------------------------------------------------------------
def checkpoints(n=4):
    model = mlp((2, 10, 10, 1))
    states = []
    for i in range(n):
        perturbed(model, 10 + i, 0.2)
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    return model, states


def test_partition_many_is_each_partition_alone():
    model, states = checkpoints()
    sl = square()
    parts = splinecam.partition_many(states, sl, model=model, progress=False)
    assert len(parts) == len(states)
    for i, (P, sd) in enumerate(zip(parts, states)):
        m = mlp((2, 10, 10, 1))
        m.load_state_dict(sd)
        assert_identical(P, fresh(m, sl))
        assert P.run_info["checkpoint"] == i
    # the caller's model is not changed
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), states[-1].values()))


def test_partition_many_of_modules_lazily_and_with_options():
    model, states = checkpoints(3)
    mods = []
    for sd in states:
        m = mlp((2, 10, 10, 1))
        m.load_state_dict(sd)
        mods.append(m)
    it = splinecam.partition_many(iter(mods), square(), lazy=True, progress=True, decision_boundary=False)
    assert not isinstance(it, list)
    got = list(it)
    assert [P.num_regions for P in got] == [fresh(m, square()).num_regions for m in mods]
    assert all(P.decision_boundary.shape[0] == 0 for P in got)


def test_partition_many_errors_name_the_checkpoint():
    model, states = checkpoints(2)
    sl = square()
    with pytest.raises(TypeError, match="checkpoint 0 is a state dict: pass the architecture as model="):
        splinecam.partition_many(states, sl, progress=False)
    bad = dict(states[1])
    bad.pop("0.weight")
    with pytest.raises(ValueError, match="checkpoint 1 does not fit the model"):
        splinecam.partition_many([states[0], bad], sl, model=model, progress=False)
    with pytest.raises(TypeError, match="checkpoint 0 is a int"):
        splinecam.partition_many([3], sl, progress=False)
    with pytest.raises(ValueError, match="store="):
        splinecam.partition_many(states, sl, model=model, store="somewhere")
    with pytest.raises(TypeError, match="a sequence of models"):
        splinecam.partition_many(model, sl)


def test_partition_many_in_groups_is_each_partition_alone(monkeypatch):
    """Checkpoints are made into networks and measured a group at a time (state dicts
    copied straight into the network, tolerances of a group computed together): groups
    of 3 over 8 checkpoints, state dicts mixed with modules, float32 and float64."""
    from splinecam.driver import many
    monkeypatch.setattr(many, "GROUP", 3)
    model, states = checkpoints(8)
    mods = {2: mlp((2, 10, 10, 1)), 6: mlp((2, 10, 10, 1))}
    for k, m in mods.items():
        m.load_state_dict(states[k])
    states[5] = {k: v.double() for k, v in states[5].items()}
    cks = [mods.get(i, sd) for i, sd in enumerate(states)]
    sl = square()
    parts = splinecam.partition_many(cks, sl, model=model, progress=False)
    for i, (P, sd) in enumerate(zip(parts, states)):
        m = mlp((2, 10, 10, 1))
        m.load_state_dict(sd)
        assert_identical(P, fresh(m, sl))
        assert P.run_info["checkpoint"] == i
        # the tolerances measured together are the partition's own
        alone = splinecam.driver.tolerance.Tolerances.for_slice(P._net, sl)
        for l in range(1, P._net.num_layers + 1):
            np.testing.assert_array_equal(P._net.pattern_floors[l - 1], alone.pattern_floors()[l - 1])


def test_tolerances_of_a_group_are_each_networks_own():
    """The bounds that Tolerances.for_slice_many works out for the elementwise layers of
    a group at once are, bit for bit, the per-network rule on each network's own
    magnitudes (two breakpoints per unit: the cap too; zero biases: the floors)."""
    from splinecam.driver.tolerance import Tolerances, _bounds
    from splinecam.network.model import Network
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(2, 6), nn.Hardtanh(), nn.Linear(6, 5, bias=False), nn.LeakyReLU(0.1),
                         nn.Linear(5, 4), nn.ReLU6(), nn.Linear(4, 1)).double().eval()
    nets = [Network.from_model(perturbed(mlp_copy(base), s), (2,)) for s in range(4)]
    sl = square(1.5)
    for rtol in (1e-9, 0.0):  # rtol = 0: the floors alone
        group = Tolerances.for_slice_many(nets, sl, rtol=rtol)
        for t in group:
            alone = Tolerances(t.net, (t.direct, t.accumulated, t.values), rtol=rtol)
            for l in range(1, t.net.num_layers + 1):
                got = t.bounds(l)
                assert got.shape == (2, t.net.layout(l).n_cut) and got.flags.c_contiguous and not got.flags.writeable
                np.testing.assert_array_equal(got, _bounds(alone.tolerances(l)))
        # and they differ between the networks (each has its own)
        assert not np.array_equal(group[0].bounds(1), group[1].bounds(1))


def mlp_copy(model):
    import copy
    return copy.deepcopy(model)


def test_partition_many_takes_large_models_one_at_a_time(monkeypatch):
    from splinecam.driver import many
    from splinecam.network.model import Network
    model, states = checkpoints(4)
    net = Network.from_model(model.eval(), (2,))
    nbytes = 8 * sum(p.numel() for p in model.parameters())
    assert many._group_size(net) == many.GROUP
    monkeypatch.setattr(many, "GROUP_BYTES", 2 * nbytes + 1)
    assert many._group_size(net) == 2
    monkeypatch.setattr(many, "GROUP_BYTES", nbytes // 2)
    assert many._group_size(net) == 1
    parts = splinecam.partition_many(states, square(), model=model, progress=False)
    assert [P.run_info["checkpoint"] for P in parts] == [0, 1, 2, 3]
    for P, sd in zip(parts, states):
        m = mlp((2, 10, 10, 1))
        m.load_state_dict(sd)
        assert_identical(P, fresh(m, square()))


def test_partition_many_yields_the_partitions_before_a_bad_checkpoint(monkeypatch):
    from splinecam.driver import many
    monkeypatch.setattr(many, "GROUP", 3)
    model, states = checkpoints(6)
    bad = {k: v.clone() for k, v in states[4].items()}
    bad["2.bias"][0] = float("nan")
    states[4] = bad
    got = []
    with pytest.raises(ValueError, match=r"checkpoint 4: the model's tensor '2.bias' contains NaN"):
        for P in splinecam.partition_many(states, square(), model=model, progress=False, lazy=True):
            got.append(P.run_info["checkpoint"])
    assert got == [0, 1, 2, 3]
    with pytest.raises(TypeError, match="does not take"):
        splinecam.partition_many(states, square(), model=model, progress=False, rtl=1e-9)


def test_animate_takes_partition_many_output(tmp_path):
    pytest.importorskip("PIL")
    model, states = checkpoints(2)
    parts = splinecam.partition_many(states, square(), model=model, progress=False)
    out = splinecam.plot.animate(parts, tmp_path / "run.gif", fps=2, size=2.0, dpi=40)
    from PIL import Image
    with Image.open(out) as im:
        assert im.n_frames == 2


# -- the engine's thread pool ---------------------------------------------------------------
def _cnn_case():
    model = small_cnn(input_shape=(1, 10, 10), channels=(3, 4), dense=(8,), classes=3)
    torch.manual_seed(5)
    return model, splinecam.Slice.through(*torch.randn(3, 1, 10, 10))


def _partition_cnn(threads=None, case=None):
    model, sl = case or _cnn_case()
    return splinecam.partition(model, sl, progress=False, threads=threads)


def test_concurrent_callers_share_the_pool_and_agree_with_a_serial_run():
    serial = _partition_cnn(threads=1)
    results, errors = [None] * 3, []
    cases = [_cnn_case() for _ in results]  # built here: torch's global generator is not per thread

    def work(i):
        try:
            results[i] = _partition_cnn(threads=2, case=cases[i])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    for P in results:
        assert_identical(P, serial)


def _child(q):
    # torch's own OpenMP threads do not survive a fork (GNU OpenMP hangs in the child's
    # first parallel region): the child's torch runs on one thread, the engine on two
    torch.set_num_threads(1)
    q.put(_partition_cnn(threads=2).num_regions)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_forked_process_gets_a_pool_of_its_own():
    parent = _partition_cnn(threads=2)  # the pool's threads exist in this process now
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q,))
    p.start()
    p.join(60)
    assert p.exitcode == 0, "the forked child hung or failed"
    assert q.get(timeout=5) == parent.num_regions
