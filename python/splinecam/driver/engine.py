"""The network driver: forward passes of vertices in torch, refinement in the C++ engine.

For each hidden layer ``l`` the driver holds one row per vertex of the current partition
(:meth:`Network.rows_for`): the layer's breakpoint values (``z - b`` per breakpoint) and
every tensor still needed later (skip connections). The engine splits every face along
the zero sets and interpolates the rows of the vertices it creates - exact, because all
of these values are affine on each face of the previous partition. The next layer's rows
are the model's glue run on those rows, block by block: never a forward pass from the
input.

The pieces: one refinement within a memory budget (:mod:`.refine`), max-type layers and
the decision boundary (:mod:`.maxtype`), lean layers (:mod:`.lean`), tiles
(:mod:`.tiles`, :mod:`.stitch`, :mod:`.cluster`). This module holds the public
:func:`partition` and the layer loop of one pass (:func:`_partition_polygon`).
"""
from __future__ import annotations

import functools
import numbers
import time
from typing import List, Optional

import numpy as np
import torch

from splinecam import _core
from splinecam.driver.backends import CpuBackend, get_backend
from splinecam.driver import host_memory
from splinecam.driver.checks import check_partition_args
from splinecam.driver.maxtype import _decision
from splinecam.driver.refine import MemoryLimitExceeded
from splinecam.driver.steps import CarriedRows, InputRows, PassContext
from splinecam.driver.tolerance import Tolerances
from splinecam.network.model import Network
from splinecam.result.partition import Layer, Partition
from splinecam.slice import Slice

__all__ = ["partition", "MemoryLimitExceeded", "default_memory_limit", "resolve_device"]


def default_memory_limit() -> int:
    """Half of the host memory available now (bytes)."""
    return CpuBackend().default_memory_limit()


#: Seconds a pass runs before its progress bar appears: a call that finishes sooner (a
#: small model, a checkpoint of a training run) draws nothing and pays nothing for it.
PROGRESS_DELAY = 0.5


def _progress(total, enabled, desc):
    """A bar over the steps of one pass (``None`` when disabled), drawn once the pass has
    run for :data:`PROGRESS_DELAY` seconds. It is made with ``leave=False`` so that a
    pass that fails (e.g. too big, retried in tiles) leaves no stale bar; the caller sets
    ``leave = True`` before closing a finished pass, so the final regions and time stay on
    screen."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, desc=desc, unit="step", leave=False, delay=PROGRESS_DELAY)


def _say(bar, text: str) -> None:
    """Show ``text`` after the bar's counts; drawn now only once the bar is on screen
    (tqdm draws on a refresh even within its delay)."""
    bar.set_postfix_str(text, refresh=time.time() >= bar.start_t + bar.delay)


def partition(model: torch.nn.Module, slice: Slice, *, decision_boundary: bool = True, progress: bool = True,
              rtol: float = 1e-10, threads: Optional[int] = None, validate: bool = False,
              chunk: int = 32768, memory_limit: Optional[int] = None, lean: bool = False,
              device=None, backend=None, tiles="auto", max_depth: int = 8, store=None,
              client=None) -> "Partition":
    """Compute the exact partition of ``slice`` into the linear regions of ``model``.

    Parameters
    ----------
    model : torch.nn.Module
        Affine layers and piecewise-linear nonlinearities, traced with ``torch.fx``
        (``nn.Sequential`` or any module whose ``forward`` has no data-dependent control
        flow): Linear, Conv1d/2d, BatchNorm, AvgPool, AdaptiveAvgPool, Flatten, reshapes,
        indexing, residual ``+``, ``torch.cat``; ReLU, LeakyReLU, PReLU, Hardtanh, ReLU6,
        ``abs``, ``clamp``, MaxPool1d/2d, ``torch.maximum``, ``x.max(dim)``. A final
        softmax / log-softmax / sigmoid is dropped. The model must be in eval mode; it is copied and
        evaluated in float64 on ``device``, the caller's model is untouched.
    slice : Slice
        The convex polygon in a plane of the input space.
    decision_boundary : bool
        Also compute the decision boundary: the zero level set of a single output, or
        where the arg-max of several outputs changes.
    progress : bool
        Show a progress bar over layers (drawn once the call has run for half a second,
        so a quick call prints nothing).
    rtol : float
        Snapping tolerance: a breakpoint value whose magnitude at a vertex is at most
        ``rtol`` times its largest magnitude over the slice counts as exactly zero there
        (the vertex lies on that unit's line). This makes lines through vertices,
        coincident lines and concurrent lines exact, and never splits off slivers thinner
        than about ``rtol`` times the slice's diameter. Must be finite and in
        ``[0, 1e-4]`` (:data:`splinecam.driver.checks.MAX_RTOL`): larger values merge lines
        that are visibly apart.
    threads : int, optional
        CPU threads for the engine, a positive integer (default: all).
    validate : bool
        Check the planar-graph invariants after every layer (slower; for debugging).
    chunk : int
        Vertices per batch of the forward passes (a positive integer).
    memory_limit : int, optional
        Bytes the per-vertex values may take, a positive number (default: half of the
        available memory).
        A slice that needs more is computed in tiles (``tiles="auto"``); with ``tiles=1``
        it raises :class:`MemoryLimitExceeded` early, before the machine runs out.
    lean : bool
        When a layer's rows exceed ``memory_limit``, go on instead of stopping: cut by the
        layer's units (or pooling windows) a chunk at a time, with each chunk's values
        computed by forward passes from the input at the current vertices, so that no
        (vertices x units) matrix is ever whole. Exact (same partition), but much slower
        than the default path; tiles are usually the better choice.
    device : str or torch.device, optional
        Where the forward passes and the geometry run: ``"cpu"``, ``"cuda"`` or
        ``"cuda:i"``. Default: the device of the model's parameters. On a GPU the vertex
        values, forward passes and every refinement (max-type layers, the decision boundary
        and ``lean`` layers included) stay on the device; only the face arrays of a
        max-type layer's merge visit the host. The
        result is the same as on the CPU (float64 throughout). ``memory_limit`` then
        defaults to half of the GPU's free memory.
    backend : str or splinecam.driver.backends.Backend, optional
        Which launcher runs the refinements: ``"cpu"``, ``"host-batched"`` (the GPU's
        launcher on the host: how the device path is tested without a GPU) or ``"cuda"``.
        Default: the innermost :func:`splinecam.driver.backends.use` block, else the device's.

    tiles : "auto", int, (int, int) or list of polygons
        ``"auto"`` (default): one pass over the slice if it fits ``memory_limit``, else
        tiles, planned by themselves: the slice is cut into four, and each tile that does
        not fit is cut into four again (up to ``max_depth`` times). ``1``: one pass, or
        :class:`MemoryLimitExceeded`. ``n`` or ``(nx, ny)``: start from a grid of tiles.
        A list of convex ``(k, 2)`` polygons: these tiles; they must cover the slice and
        meet along lines parallel to the plane's axes (as :func:`splinecam.driver.tiles.tile_polygons` cuts).
        Whatever the tiles, the result is one partition of the slice, stitched exactly
        (:mod:`splinecam.driver.stitch`); ``run_info["tiles"]`` says how many there were.
    max_depth : int
        How many times a tile may be cut into four.
    store : path, optional
        A directory for the result (:mod:`splinecam.result.store`; open it again with
        :meth:`Partition.load`). Tiles are written there as they finish and dropped from
        memory; a run that is interrupted resumes from the finished tiles when called
        again with the same store, and a finished one is opened instead of recomputed
        (same model, slice and settings; anything else is refused).
    client : distributed.Client, optional
        Run the tiles as tasks of this Dask cluster (:mod:`splinecam.driver.cluster`):
        the model is scattered to the workers once, tiles are cut when they do not fit
        ``memory_limit`` (which then applies to each task, on each worker), and the
        stitched result is the one a local run gives, bit for bit. A GPU ``device``
        makes every task ask for ``resources={"GPU": 1}``.

    Returns
    -------
    Partition
        Every linear region of the model on the slice as a convex polygon, with the
        partition after each layer (:meth:`Partition.at_layer`), labelled edges, the
        model's outputs at every vertex and the decision boundary; ``run_info`` says how
        it was computed (seconds, tiles, device, memory limit).

    Raises
    ------
    UnsupportedModelError
        The model holds a layer or operation that is not piecewise linear (the message
        names it, its source line and the supported list).
    ValueError
        Bad arguments: a training-mode model, NaN or infinite weights, a slice whose
        shape does not match the model's input, ``rtol``, ``memory_limit``, ``chunk``,
        ``threads`` or ``tiles`` out of range; the message says what to pass instead.
    MemoryLimitExceeded
        With ``tiles=1`` (one pass), the slice needs more than ``memory_limit``; and with
        tiles, a tile that still does not fit after ``max_depth`` cuts.

    Examples
    --------
    >>> import torch, splinecam
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)).eval()
    >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    >>> P = splinecam.partition(model, sl, progress=False)
    >>> P.num_regions > 1, abs(P.areas().sum() - 4.0) < 1e-9
    (True, True)
    """
    checked = checked_options(slice, decision_boundary=decision_boundary, rtol=rtol, threads=threads,
                              validate=validate, chunk=chunk, memory_limit=memory_limit, lean=lean, device=device,
                              backend=backend, tiles=tiles)
    return partition_checked(model, slice, checked, max_depth, progress, store, client)


def checked_options(slice: Slice, *, tiles, rtol, memory_limit, chunk, threads, **rest) -> tuple:
    """The options of :func:`partition` that every pass takes, checked once: ``(options
    of tile_runner, tiles)``; ``rest`` is passed on as it is."""
    if not isinstance(slice, Slice):
        raise TypeError(f"slice must be a splinecam.Slice; got {type(slice).__name__}")
    rtol, memory_limit, chunk, threads = check_partition_args(rtol, memory_limit, chunk, threads)
    return dict(rest, rtol=rtol, memory_limit=memory_limit, chunk=chunk, threads=threads), check_tiles(tiles, slice)


def partition_checked(model, slice: Slice, checked: tuple, max_depth: int = 8, progress: bool = True, store=None,
                      client=None, network=None, tolerances=None) -> "Partition":
    """:func:`partition` with its options checked already (:func:`checked_options`);
    ``network`` and ``tolerances``: the model's float64 copy and its tolerances on the
    slice, when the caller made them (``None``: made here)."""
    options, grid = dict(checked[0]), checked[1]
    rtol, decision_boundary = options["rtol"], options["decision_boundary"]
    t0 = time.perf_counter()
    run = tile_runner(model, slice, network=network, tolerances=tolerances, **options)
    net = run.net
    from splinecam.driver.tiles import TileStore, run_tiles
    fingerprint = _fingerprint(model, slice, rtol, decision_boundary) if store is not None or client is not None \
        else None
    tile_store = None
    if store is not None:
        tile_store = TileStore(store, fingerprint, slice)
        done = tile_store.finished()
        if done is not None:
            done._net = net
            return done
    executor = None
    if client is not None:
        from splinecam.driver.cluster import DaskTiles
        # the workers resolve the device and the backend themselves (a contextvar does not travel)
        options.update(device=str(run.device), backend=run.backend.name)
        executor = DaskTiles(client, model, slice, options, fingerprint, net, gpu=run.device.type == "cuda")
    P = run_tiles(run, net, slice, grid, max_depth, progress, tile_store, executor)
    P.run_info["seconds"] = time.perf_counter() - t0
    P.run_info.update(memory_limit=run.limit, rtol=rtol)
    return P


def tile_runner(model, slice: Slice, *, decision_boundary=True, rtol=1e-10, threads=None, validate=False,
                chunk=32768, memory_limit=None, lean=False, device=None, backend=None, network=None,
                tolerances=None):
    """``run(polygon)``: the one-pass partition of a convex polygon of ``slice`` (``None``:
    all of it) with the whole slice's tolerances; raises :class:`MemoryLimitExceeded`
    when it does not fit. Carries ``net``, ``device``, ``backend`` and ``limit``.
    ``network``: the model's float64 copy, and ``tolerances`` its tolerances on the
    slice, when the caller made them."""
    host_memory.tune()
    dev = resolve_device(model, device)
    backend = get_backend(dev, backend)
    limit = int(memory_limit) if memory_limit is not None else backend.default_memory_limit()
    net = Network.from_model(model, slice.input_shape) if network is None else network
    tols = Tolerances.for_slice(net, slice, rtol) if tolerances is None else tolerances
    net.pattern_floors = tols.lazy_pattern_floors()  # made when patterns are first asked for
    run = functools.partial(_partition_polygon, net, tols, slice, decision_boundary=decision_boundary, rtol=rtol,
                            threads=threads, validate=validate, chunk=chunk, limit=limit, lean=lean, dev=dev,
                            backend=backend)
    run.net, run.device, run.backend, run.limit = net, dev, backend, limit
    return run


def _fingerprint(model, slice: Slice, rtol: float, decision_boundary: bool) -> str:
    """A digest of what a stored run depends on: the model's parameters and buffers,
    the slice, rtol and whether the decision boundary is computed."""
    import hashlib
    h = hashlib.blake2b(digest_size=16)
    for k, v in model.state_dict().items():
        h.update(k.encode())
        if isinstance(v, torch.Tensor):
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    for t in (slice.origin, slice.basis):
        h.update(t.numpy().tobytes())
    h.update(slice.polygon.tobytes())
    h.update(repr((float(rtol), bool(decision_boundary), type(model).__name__)).encode())
    return h.hexdigest()


def check_tiles(tiles, slice: Slice):
    """``tiles`` of :func:`partition`: ``None`` for "auto", ``(nx, ny)``, or a list of
    checked polygons."""
    if isinstance(tiles, str) and tiles == "auto":
        return None
    if isinstance(tiles, (list, tuple)) and tiles and all(isinstance(t, np.ndarray) and t.ndim == 2 for t in tiles):
        from splinecam.slice import convex_polygon
        polys = [convex_polygon(t, f"tiles[{i}]") for i, t in enumerate(tiles)]
        total = sum(Slice(slice.origin, slice.basis, p).area for p in polys)
        if abs(total - slice.area) > 1e-9 * slice.area:
            raise ValueError(f"the tiles must cover the slice: their areas sum to {total:.6g}, the slice's area is "
                             f"{slice.area:.6g}")
        return polys
    grid = (tiles, tiles) if isinstance(tiles, numbers.Integral) and not isinstance(tiles, bool) else tiles
    ok = (isinstance(grid, (tuple, list)) and len(grid) == 2
          and all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1 for n in grid))
    if not ok:
        raise ValueError(f"tiles must be 'auto', a positive integer n (an n x n grid), (nx, ny) or a list of polygons; "
                         f"got {tiles!r}")
    return int(grid[0]), int(grid[1])


def _partition_polygon(net, tols, whole: Slice, polygon, *, decision_boundary, rtol, threads, validate, chunk, limit,
                       lean, dev, backend, progress=False) -> Partition:
    """The partition of the convex ``polygon`` of the slice ``whole`` (one pass; its
    tolerances ``tols`` are the whole slice's): the layer loop. Each layer is one step of
    its kind, on rows from a source (:mod:`splinecam.driver.steps`); every array lives in
    the backend's memory until the result is made."""
    t0 = time.perf_counter()
    slice = whole if polygon is None else Slice(whole.origin, whole.basis, polygon)
    b = backend
    if b.keeps_tensors:
        net.to(dev)
    k = len(slice.polygon)
    xy = b.asarray(slice.polygon, np.float64)
    faces = (b.asarray(np.array([0, k], np.int64)), b.asarray(np.arange(k, dtype=np.int32)),
             b.asarray(np.full(k, -1, np.int32)), b.asarray(np.full(k, -1, np.int32)))
    clock = _Clock(dev)
    ctx = PassContext(net, tols, slice, b, rtol=rtol, threads=threads, chunk=chunk, limit=limit, clock=clock)
    source = CarriedRows(ctx, slice.to_input(b.to_host(xy)).to(net.device))
    layers: List[Layer] = []
    stats = {"degenerate": 0, "device": str(dev), "backend": b.name}
    bar = _progress(net.num_layers + (1 if decision_boundary else 0), progress, "splinecam")
    for l, nl in enumerate(net.layers, 1):
        if bar is not None:  # name the step before it runs: a slow layer shows which one it is
            what = f"{type(net.gm.get_submodule(nl.node.target)).__name__} ({nl.name})" \
                if nl.node.op == "call_module" else nl.name
            _say(bar, f"layer {l}/{net.num_layers} {what}, regions={layers[-1].num_faces if layers else 1}")
        try:
            xy, faces, parent, deg = source.refine(l, nl, xy, faces)
        except MemoryLimitExceeded:
            if not lean or isinstance(source, InputRows):
                raise
            source = InputRows(ctx)  # this layer and the rest: a chunk of units at a time
            xy, faces, parent, deg = source.refine(l, nl, xy, faces)
        stats["degenerate"] += deg
        layer = Layer(*(b.to_host(f) for f in faces), np.asarray(parent), len(xy))
        layers.append(layer)
        if validate:
            _check(layer, f"after layer {l} ({nl.name})")
        if bar is not None:
            bar.update(1)
    stats["lean"] = isinstance(source, InputRows)
    outputs = source.outputs(xy)  # (V, C) model outputs at every vertex of the final partition
    if not layers:
        # No nonlinearity: the model is affine on the whole slice.
        layers.append(Layer(*(b.to_host(f) for f in faces), np.zeros(1, np.int32), len(xy)))
    decision = None
    if decision_boundary:
        if bar is not None:
            _say(bar, f"decision boundary, regions={layers[-1].num_faces}")
        xy, outputs, decision = clock("geometry", _decision, b, xy, outputs, faces, net.num_layers + 1, rtol,
                                      threads, validate, tols)
        stats["degenerate"] += decision.pop("degenerate")
        if bar is not None:
            bar.update(1)
    else:
        xy, outputs = b.to_host(xy), np.ascontiguousarray(b.to_host(outputs))
    if bar is not None:  # the final state stays: regions and the time of the whole pass
        bar.set_postfix_str(f"regions={layers[-1].num_faces} in {time.perf_counter() - t0:.2f} s", refresh=False)
        bar.leave = True
        bar.close()
    stats["seconds"] = time.perf_counter() - t0
    stats.update({f"{k}_seconds": v for k, v in clock.seconds.items()})
    return Partition(xy=xy, layers=layers, outputs=outputs, decision=decision, net=net, slice=slice,
                     stats=stats)


class _Clock:
    """Wall time per kind of work (``forward``: vertex forward passes, ``geometry``: the
    engine's refinements, ``lean``: lean layers), synchronised on a GPU."""

    def __init__(self, device):
        self.seconds = {"forward": 0.0, "geometry": 0.0}
        self._sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    def __call__(self, kind, fn, *args):
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._sync()
            self.seconds[kind] = self.seconds.get(kind, 0.0) + time.perf_counter() - t


def resolve_device(model: torch.nn.Module, device=None) -> torch.device:
    """The device a partition runs on: ``device`` if given, else the model's. A CUDA
    device must be usable: the extension built with CUDA and a GPU present."""
    if device is None:
        t = next(iter(model.parameters()), None) if isinstance(model, torch.nn.Module) else None
        if t is None and isinstance(model, torch.nn.Module):
            t = next(iter(model.buffers()), None)
        dev = t.device if t is not None else torch.device("cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:i'; got {device!r}") from e
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise ValueError(f"splinecam runs on the CPU or on CUDA GPUs; got device {str(dev)!r}")
    if not _core.build_info()["cuda"]:
        raise RuntimeError(f"splinecam was not built with CUDA, so it cannot run on {dev}: pass device='cpu' (the "
                           "model is copied to the CPU), or rebuild with nvcc available (SPLINECAM_CUDA=ON)")
    n = _core.cuda_device_count()
    if not torch.cuda.is_available() or n == 0:
        why = _core.cuda_status() or f"{n} devices found"
        raise RuntimeError(f"no usable CUDA device for {dev}: {why}; pass device='cpu'")
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    if index >= n:
        raise ValueError(f"device {dev} does not exist: this machine has {n} CUDA device(s)")
    return torch.device("cuda", index)


def _check(layer: Layer, where: str) -> None:
    msg = _core.validate(layer.num_vertices, layer.face_offsets, layer.face_verts, layer.he_layer, layer.he_unit)
    if msg:
        raise RuntimeError(f"splinecam produced an invalid partition {where}: {msg}")

