"""Tiles as tasks of a Dask distributed cluster.

``splinecam.partition(model, slice, client=client)`` runs every tile of the slice as a
task on the cluster behind a ``distributed.Client`` (a ``LocalCluster`` on one machine,
or a scheduler of many machines). The model, the slice and the settings are scattered to
the workers once; each worker traces the model and measures the slice's tolerances once
(cached per worker) and then runs the tiles it is given. A tile that does not fit the
memory limit (which applies to each task) comes back as such and its four quarters are
submitted in its place. Finished tiles are taken as they complete (``as_completed``),
written to the store if there is one, and stitched in the order of their place in the
slice, so the result does not depend on how many workers there were or which finished
first: it is the partition a local run gives, bit for bit.

Dask's own fault tolerance applies: a task on a worker that dies is run again elsewhere;
with a store, a run that is interrupted resumes from its finished tiles. Tasks on a GPU
ask for ``resources={"GPU": 1}`` (start such workers with ``--resources GPU=1``).
"""
from __future__ import annotations

import threading
from typing import Dict, List


from splinecam.driver.tiles import Tile

__all__ = ["DaskTiles", "require_distributed"]


def require_distributed():
    try:
        import distributed
    except ImportError as e:  # pragma: no cover - distributed is installed by the set-up
        raise ImportError("partition(..., client=...) needs Dask distributed: pip install 'splinecam[dask]' (or pip "
                          "install distributed)") from e
    return distributed


# -- on the workers ------------------------------------------------------------------------
_CACHE: Dict[str, object] = {}
_CACHE_LOCK = threading.Lock()


def _runner(ctx):
    """The tile runner of one run on this worker, built once: the traced model and the
    whole slice's tolerances (computed here, as a local run computes them)."""
    key = ctx["fingerprint"] + repr(sorted(ctx["options"].items()))
    with _CACHE_LOCK:
        run = _CACHE.get(key)
        if run is None:
            from splinecam.driver import engine
            _CACHE.clear()  # one run at a time per worker is the common case: keep memory for it
            run = engine.tile_runner(ctx["model"], ctx["slice"], **ctx["options"])
            _CACHE[key] = run
    return run


def _payload(P) -> dict:
    """What a finished tile sends back: its arrays, without the traced model."""
    return dict(xy=P._xy, layers=P._layers, outputs=P._outputs, decision=P._decision, run_info=P.run_info)


def run_tile_task(ctx, polygon):
    """One tile on a worker: its payload, or the :class:`MemoryLimitExceeded` it raised.
    Torch evaluates with the client's number of intra-op threads: float64 reductions in
    its kernels are ordered by their thread count, and the same count gives the same
    bits as a local run."""
    import torch
    from splinecam.driver.engine import MemoryLimitExceeded
    before = torch.get_num_threads()
    torch.set_num_threads(ctx["torch_threads"])
    try:
        return _payload(_runner(ctx)(polygon))
    except MemoryLimitExceeded as e:
        return e
    finally:
        torch.set_num_threads(before)


# -- on the client -------------------------------------------------------------------------
class DaskTiles:
    """The tile executor of :func:`splinecam.driver.tiles.run_tiles` on a Dask client."""

    def __init__(self, client, model, slice, options: dict, fingerprint: str, net, gpu: bool):
        require_distributed()
        self.client = client
        self.net = net
        self.slice = slice
        import torch
        ctx = dict(model=model, slice=slice, options=options, fingerprint=fingerprint,
                   torch_threads=torch.get_num_threads())
        # scattered once: every task refers to it instead of carrying the model
        self.ctx = client.scatter(ctx, broadcast=True, hash=False)
        self.resources = {"GPU": 1} if gpu else None
        self._ac = None
        self._tiles = {}

    def _submit(self, tiles: List[Tile]):
        futs = []
        for t in tiles:
            f = self.client.submit(run_tile_task, self.ctx, t.polygon, pure=False, resources=self.resources,
                                   key=f"splinecam-tile-{'-'.join(map(str, t.path))}-{id(self):x}")
            self._tiles[f.key] = t
            futs.append(f)
        return futs

    def results(self, queue: List[Tile]):
        """Yield ``(tile, partition or MemoryLimitExceeded)`` as tiles complete; ``queue``
        holds the tiles submitted and not yet finished (what a resumed run redoes)."""
        distributed = require_distributed()
        self._ac = distributed.as_completed(self._submit(queue))
        try:
            for fut in self._ac:
                tile = self._tiles.pop(fut.key)
                queue.remove(tile)
                out = fut.result()  # a task's error surfaces here as it would locally
                fut.release()
                if isinstance(out, dict):
                    yield tile, self._partition(out, tile)
                else:
                    yield tile, out
        finally:
            for f in list(self._ac.futures) if self._ac is not None else []:
                f.cancel()

    def submit(self, queue: List[Tile], tiles: List[Tile]):
        queue.extend(tiles)
        for f in self._submit(tiles):
            self._ac.add(f)

    def _partition(self, d: dict, tile: Tile):
        from splinecam.result.partition import Partition
        from splinecam.slice import Slice
        sl = Slice(self.slice.origin, self.slice.basis, tile.polygon)
        return Partition(xy=d["xy"], layers=d["layers"], outputs=d["outputs"], decision=d["decision"], net=self.net,
                         slice=sl, stats=d["run_info"])
