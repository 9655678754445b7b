"""The network driver: forward passes of vertices in torch, refinement in the C++ engine.

For each hidden layer ``l`` the driver holds one row per vertex of the current partition
(:meth:`Network.rows_for`): the layer's breakpoint values (``z - b`` per breakpoint) and
every tensor still needed later (skip connections). The engine splits every face along
the zero sets and interpolates the rows of the vertices it creates - exact, because all
of these values are affine on each face of the previous partition. The next layer's rows
are the model's glue run on those rows, block by block: never a forward pass from the
input.

Max-type layers (max-pooling, maxout, ``torch.maximum``) and the decision boundary use
the same refinement: ``max(a, b) = b + relu(a - b)``, so a maximum over k candidates is
k - 1 refinements by ``max(c_0..c_{s-1}) - c_s``; faces then have one winner each. Split
lines with the same winner on both sides separate nothing: for a max-type layer the
faces across them are merged again (``_core.merge``); for the decision boundary they are
left out of the boundary. A single output is split by its zero level set.
"""
from __future__ import annotations

import functools
import numbers
import time
from typing import List, Optional

import numpy as np
import torch

from splinecam import _core
from splinecam.driver.checks import check_finite_rows, check_partition_args, format_bytes, values_at
from splinecam.network.model import Network
from splinecam.result.partition import Layer, Partition, face_means
from splinecam.slice import Slice
from splinecam.driver.backends import CpuBackend, get_backend
from splinecam.driver.tolerance import Tolerances

__all__ = ["partition", "MemoryLimitExceeded", "default_memory_limit", "resolve_device"]


class MemoryLimitExceeded(MemoryError):
    """The partition of the slice needs more memory than ``memory_limit`` allows."""


def default_memory_limit() -> int:
    """Half of the host memory available now (bytes)."""
    return CpuBackend().default_memory_limit()


#: Faces below which a refinement cuts by a few columns at a time (see _refine).
FEW_FACES = 256


def _refine(backend, xy, rows, faces, n_cut, layer_id, rtol, threads, budget=None, bounds=None, host=False):
    """Refine the faces by the zero sets of the breakpoint columns ``[0, n_cut)`` of
    ``rows``. ``budget`` = (memory_limit bytes, width of the next rows): the engine stops
    (MemoryLimitExceeded) before the vertices it creates, with their rows and the next
    layer's rows, would exceed the limit. ``bounds`` (2, n_cut): per column the floor
    and the cap of the snapping tolerance (:mod:`splinecam.driver.tolerance`). ``host``: the
    arrays are numpy arrays on the host (``backend.refine_host``), whatever the backend.

    While there are few faces (the first layer has one), one face takes all the work of
    many columns and the launchers have nothing to spread over threads; so the columns
    are cut a few at a time (8, then 4 times more each step) until the faces are many,
    then the rest at once. Cutting by some columns, then by others, gives the same
    partition as cutting by all at once (each face is cut column by column anyway).

    Returns the engine's dict for the whole refinement: ``xy`` the new vertices, faces,
    ``face_parent`` (into the given faces), ``degenerate``, and ``rows_blocks``: the rows
    of all vertices, old then new, as blocks in order (the given ``rows`` first, snapped
    in place, when a single step did it all)."""
    b, size, parent, deg = 0, 8, None, 0
    new_xy = []
    while True:
        e = n_cut if len(faces[0]) - 1 >= FEW_FACES or b + 2 * size >= n_cut else b + size
        out = _refine_range(backend, xy, rows, faces, e, layer_id, rtol, threads, budget, b,
                            None if bounds is None else bounds[:, :e], host)
        deg += int(out["degenerate"])
        parent = out["face_parent"] if parent is None else parent[out["face_parent"]]
        faces = (out["face_offsets"], out["face_verts"], out["he_layer"], out["he_unit"])
        new_xy.append(out["xy"])
        blocks = [rows, out["rows_edge"], *out["rows_face"]]
        if e >= n_cut:
            break
        b, size = e, 4 * size
        xy, rows = _cat([xy, out["xy"]]), _cat(blocks)
    res = dict(zip(("face_offsets", "face_verts", "he_layer", "he_unit"), faces))
    res.update(xy=_cat(new_xy) if len(new_xy) > 1 else new_xy[0], face_parent=parent, degenerate=deg,
               rows_blocks=blocks)
    return res


def _refine_range(backend, xy, rows, faces, n_cut, layer_id, rtol, threads, budget, cut_begin=0, bounds=None,
                  host=False):
    """One engine call: cut by the columns ``[cut_begin, n_cut)``; those before are
    snapped (they were cut already), those after are carried like any other value."""
    if bounds is not None:
        bounds = np.ascontiguousarray(bounds, dtype=np.float64)
    max_new = _budget_vertices(budget, len(xy), rows.shape[1], layer_id)
    run = backend.refine_host if host else backend.refine
    try:
        return run(xy, rows, faces, n_cut=n_cut, layer_id=layer_id, rtol=rtol, threads=threads, max_new=max_new,
                   cut_begin=cut_begin, bounds=bounds)
    except _core.BudgetExceeded:
        _over_limit(layer_id, len(xy), budget[0], rows.shape[1])
    except MemoryError:
        raise backend.out_of_memory(layer_id, len(faces[0]) - 1, len(xy), rows.shape[1]) from None


def _budget_vertices(budget, n_vertices, width, layer_id):
    """New vertices a refinement may create within ``budget`` (see :func:`_refine`)."""
    if budget is None:
        return 0
    limit, next_width = budget
    # At the peak, every vertex (old and new) holds its rows twice (the rows of a
    # refinement by some columns, concatenated before the next columns are cut) and the
    # next layer's rows; 5% of the limit is left for coordinates, faces and temporaries.
    per_vertex = 8 * (2 * width + next_width) + 64
    max_new = int(0.95 * limit // per_vertex) - n_vertices
    if max_new <= 0:
        _over_limit(layer_id, n_vertices, limit, width)
    return max_new


def _over_limit(layer_id, n_vertices, limit, width):
    raise MemoryLimitExceeded(
        f"the partition of this slice needs more than memory_limit = {format_bytes(limit)} at layer {layer_id} "
        f"({n_vertices} vertices so far, {width} values each): compute it in tiles (tiles='auto', the default), "
        "pass lean=True (slower), zoom in, or raise memory_limit") from None


def _progress(total, enabled, desc):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, desc=desc, unit="layer", leave=False)


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
        softmax / log-softmax is dropped. The model must be in eval mode; it is copied and
        evaluated in float64 on ``device``, the caller's model is untouched.
    slice : Slice
        The convex polygon in a plane of the input space.
    decision_boundary : bool
        Also compute the decision boundary: the zero level set of a single output, or
        where the arg-max of several outputs changes.
    progress : bool
        Show a progress bar over layers.
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
        values, forward passes and refinements of elementwise layers stay on the device;
        max-type layers, the decision boundary and ``lean`` layers run on the host. The
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
        meet along lines parallel to the plane's axes (as :func:`tile_polygons` cuts).
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
    """
    if not isinstance(slice, Slice):
        raise TypeError(f"slice must be a splinecam.Slice; got {type(slice).__name__}")
    rtol, memory_limit, chunk, threads = check_partition_args(rtol, memory_limit, chunk, threads)
    grid = check_tiles(tiles, slice)
    t0 = time.perf_counter()
    options = dict(decision_boundary=decision_boundary, rtol=rtol, threads=threads, validate=validate, chunk=chunk,
                   memory_limit=memory_limit, lean=lean, device=device, backend=backend)
    run = tile_runner(model, slice, **options)
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
                chunk=32768, memory_limit=None, lean=False, device=None, backend=None):
    """``run(polygon)``: the one-pass partition of a convex polygon of ``slice`` (``None``:
    all of it) with the whole slice's tolerances; raises :class:`MemoryLimitExceeded`
    when it does not fit. Carries ``net``, ``device``, ``backend`` and ``limit``."""
    dev = resolve_device(model, device)
    backend = get_backend(dev, backend)
    limit = int(memory_limit) if memory_limit is not None else backend.default_memory_limit()
    net = Network.from_model(model, slice.input_shape)
    tols = Tolerances.for_slice(net, slice, rtol)
    net.pattern_floors = tols.pattern_floors()
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
    tolerances ``tols`` are the whole slice's)."""
    t0 = time.perf_counter()
    slice = whole if polygon is None else Slice(whole.origin, whole.basis, polygon)
    gpu = backend.keeps_tensors  # vertex values stay torch tensors on the backend's device
    poly = slice.polygon
    k = len(poly)
    xy = np.ascontiguousarray(poly)
    faces = (np.array([0, k], dtype=np.int64), np.arange(k, dtype=np.int32), np.full(k, -1, np.int32),
             np.full(k, -1, np.int32))
    x_in = slice.to_input(xy)
    if gpu:
        net.to(dev)
        xy, faces, x_in = _to_device(xy, dev), tuple(_to_device(f, dev) for f in faces), x_in.to(dev)
    clock = _Clock(dev)
    rows, lay = clock("forward", net.rows_for, 1, x_in, chunk, gpu)
    check_finite_rows(rows, values_at(net, 1))
    layers: List[Layer] = []
    stats = {"degenerate": 0, "device": str(dev), "backend": backend.name}
    bar = _progress(net.num_layers + (1 if decision_boundary else 0), progress, "splinecam")
    use_lean, lean = lean, False  # lean: once a layer's rows exceed the limit, units in chunks
    for l in range(1, net.num_layers + 1):
        nl = net.layers[l - 1]
        budget = (limit, net.layout(l + 1).n_cols)
        if not lean:
            try:
                if nl.kind == "elementwise":
                    out = clock("geometry", _refine, backend, xy, rows, faces, lay.n_cut, l, rtol, threads, budget,
                                tols.bounds(l))
                    deg = int(out["degenerate"])
                    new_xy = _cat([xy, out["xy"]])
                    unit = out["he_unit"]
                    if len(nl.breakpoints) > 1:  # columns are (breakpoint, unit): label by unit
                        unit[out["he_layer"] == l] %= nl.width
                    new_faces = (out["face_offsets"], out["face_verts"], out["he_layer"], unit)
                    parent = out["face_parent"]
                    blocks = out["rows_blocks"]
                else:
                    # On the host: the merge step needs the half-edge view (see module doc).
                    new_xy, rows, new_faces, parent, deg = clock("geometry", _max_layer, backend, _host(xy),
                                                                 _host(rows), tuple(_host(f) for f in faces), lay, nl,
                                                                 l, rtol, threads, budget, tols.bounds(l),
                                                                 tols.tie_tolerance(l))
                    if gpu:
                        new_xy, rows = _to_device(new_xy, dev), _to_device(rows, dev)
                        new_faces = tuple(_to_device(f, dev) for f in new_faces)
                    blocks = [rows]
                xy, faces = new_xy, new_faces
            except MemoryLimitExceeded:
                if not use_lean:
                    raise
                lean = True
                rows = blocks = None
        if lean:
            if gpu:  # the lean path works from the input on the host
                gpu = False
                net.to("cpu")
                xy, faces = _host(xy), tuple(_host(f) for f in faces)
            xy, faces, parent, deg = clock("lean", _lean_layer, backend, net, slice, xy, faces, l, nl, rtol, threads,
                                           limit, chunk, tols)
        stats["degenerate"] += deg
        layer = Layer(*(_host(f) for f in faces), _host(parent), len(xy))
        layers.append(layer)
        if validate:
            _check(layer, f"after layer {l} ({nl.name})")
        if not lean:
            # The next layer's rows at every vertex: the blocks feed the glue in order,
            # never concatenated.
            rows, lay = clock("forward", net.rows_for, l + 1, (blocks, lay, l), chunk, gpu)
            check_finite_rows(rows, values_at(net, l + 1))
        if bar is not None:
            bar.set_postfix(regions=layer.num_faces, refresh=False)
            bar.update(1)
    if lean:
        C = net.num_outputs
        rows = _columns_from_input(net, slice, xy, net.num_layers + 1, np.arange(C), chunk, limit)
    stats["lean"] = lean
    xy, faces = _host(xy), tuple(_host(f) for f in faces)
    outputs = _host(rows)  # (V, C) model outputs at every vertex of the final partition
    if not layers:
        # No nonlinearity: the model is affine on the whole slice.
        layers.append(Layer(*faces, np.zeros(1, np.int32), len(xy)))
    decision = None
    if decision_boundary:
        xy, outputs, decision = clock("geometry", _decision, backend, xy, outputs, faces, net.num_layers + 1, rtol,
                                      threads, validate, tols)
        stats["degenerate"] += decision.pop("degenerate")
        if bar is not None:
            bar.update(1)
    if bar is not None:
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


def _host(a):
    """A numpy array of ``a`` (a torch tensor on any device, or already numpy)."""
    return a.cpu().numpy() if isinstance(a, torch.Tensor) else a


def _to_device(a, dev):
    return torch.as_tensor(a).to(dev)


def _cat(parts):
    return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts)


def _max_layer(backend, xy, rows, faces, lay, nl, layer_id, rtol, threads, budget, bounds, ties, chunk=8192):
    """A max-type layer: for windows of k candidates, k - 1 refinements by
    ``max(c_0..c_{s-1}) - c_s`` (each a ReLU, max(a, b) = b + relu(a - b)), then the
    faces on both sides of a split line with the same winner are merged again.
    ``bounds`` (2, W): the chain columns' tolerances; ``ties`` (W,): how close two
    candidates are tied (:class:`splinecam.driver.tolerance.Tolerances`)."""
    idx = nl.idx
    W, k = idx.shape
    x0 = lay.n_cut
    xcols = (x0, x0 + nl.in_numel)  # the candidates X, carried after the chain column(s)
    parent = None
    degenerate = 0
    for s in range(1, k):
        X = rows[:, xcols[0]:xcols[1]]
        for a in range(0, len(rows), chunk):
            Xc = X[a:a + chunk]
            rows[a:a + chunk, :W] = Xc[:, idx[:, :s]].max(axis=2) - Xc[:, idx[:, s]]
        out = _refine(backend, xy, rows, faces, W, layer_id, rtol, threads, budget, bounds, host=True)
        degenerate += int(out["degenerate"])
        xy = np.concatenate([xy, out["xy"]])
        rows = np.concatenate(out["rows_blocks"])
        faces = (out["face_offsets"], out["face_verts"], out["he_layer"], out["he_unit"])
        parent = out["face_parent"] if parent is None else parent[out["face_parent"]]
    if parent is None:
        parent = np.arange(len(faces[0]) - 1, dtype=np.int32)
    off, verts, lay_, unit = faces
    he = _core.halfedges(len(xy), off, verts)
    twin, face = he["twin"], he["face"]
    h = np.flatnonzero((lay_ == layer_id) & (twin > np.arange(len(twin))))  # one half of each split edge
    if len(h):
        # A split edge separates nothing when no window changes its winner across it. A
        # window can only change winner across an edge that lies on one of its tie lines,
        # wherever that line came from (coincident tie lines of different windows make
        # one edge): so the windows to compare are those tied at both ends of the edge.
        X = rows[:, xcols[0]:xcols[1]]
        floor = np.asarray(bounds[0], dtype=np.float64)
        edge, w = _tied_windows(X, idx, verts[h], he["origin"][he["next"][h]], floor, np.asarray(ties, np.float64))
        fa, fb = face[h][edge], face[twin[h]][edge]
        win = _face_window_argmax(X, idx, off, verts, np.concatenate([fa, fb]), np.concatenate([w, w]), floor)
        differs = np.bincount(edge, weights=win[: len(w)] != win[len(w):], minlength=len(h)) > 0
        remove = np.zeros(len(verts), np.uint8)
        remove[h[~differs]] = 1
        remove[twin[h[~differs]]] = 1
        if remove.any():
            m = _core.merge(len(xy), off, verts, lay_, unit, remove)
            first = np.full(int(m["group"].max()) + 1, -1, np.int64)
            first[m["group"][::-1]] = np.arange(len(m["group"]))[::-1]
            parent = parent[first]
            faces = (m["face_offsets"], m["face_verts"], m["he_layer"], m["he_unit"])
    return xy, rows, faces, parent.astype(np.int32), degenerate


def _columns_from_input(net, slice, xy, l, cols, chunk, limit=None):
    """Columns ``cols`` of layer ``l``'s rows at the points ``xy``, by forward passes from
    the input in batches: no (V, width) matrix is ever whole."""
    out = np.empty((len(xy), len(cols)))
    # Every layer up to l is built per batch, with the glue's temporaries: a batch's
    # values stay within a tenth of the memory limit.
    widths = [net.layout(k).n_cols for k in range(1, l + 1)]
    step = max(16, min(chunk, (1 << 21) // max(max(widths), 1)))
    if limit is not None:
        step = max(16, min(step, int(0.1 * limit) // (16 * sum(widths))))
    for a in range(0, len(xy), step):
        r, _ = net.rows_from_input(l, slice.to_input(xy[a:a + step]), chunk)
        out[a:a + step] = r[:, cols]
    check_finite_rows(out, values_at(net, l))
    return out


def _lean_layer(backend, net, slice, xy, faces, layer_id, nl, rtol, threads, limit, chunk, tols):
    """Refine by one layer whose rows do not fit in memory: its units (or pooling
    windows) a chunk at a time, each chunk's values computed from the input at the
    current vertices. Cutting by some units of a layer, then by others, gives the same
    partition as cutting by all at once; every vertex still has one value per unit."""
    bounds = tols.bounds(layer_id, from_input=True)
    ties = tols.tie_tolerance(layer_id, from_input=True) if nl.kind != "elementwise" else None
    tmp = layer_id + (1 << 20)  # marks the edges of the chunk being cut
    n_units = nl.width if nl.kind == "elementwise" else nl.idx.shape[0]
    per_unit = len(nl.breakpoints) if nl.kind == "elementwise" else 1 + nl.idx.shape[1]
    u = max(1, min(n_units, int(0.05 * limit) // (8 * per_unit * max(len(xy), 64))))
    parent = np.arange(len(faces[0]) - 1, dtype=np.int32)
    degenerate, j = 0, 0
    while j < n_units:
        uc = min(u, n_units - j)
        if 0.5 * limit // (16 * per_unit + 64) <= len(xy):  # not even one unit fits (see _budget_vertices)
            _lean_over_limit(layer_id, len(xy), limit)
        try:
            if nl.kind == "elementwise":
                N = nl.width
                cols = np.concatenate([b * N + np.arange(j, j + uc) for b in range(len(nl.breakpoints))])
                rows = _columns_from_input(net, slice, xy, layer_id, cols, chunk, limit)
                out = _refine(backend, xy, rows, faces, len(cols), tmp, rtol, threads, (limit, 0), bounds[:, cols],
                              host=True)
                degenerate += int(out["degenerate"])
                new_xy = np.concatenate([xy, out["xy"]])
                new_faces = (out["face_offsets"], out["face_verts"], out["he_layer"], out["he_unit"])
                step_parent = out["face_parent"]
            else:
                sub_idx = nl.idx[j:j + uc]
                cand, inv = np.unique(sub_idx, return_inverse=True)
                x0 = net.layout(layer_id).n_cut
                rows = np.zeros((len(xy), uc + len(cand)))
                rows[:, uc:] = _columns_from_input(net, slice, xy, layer_id, x0 + cand, chunk, limit)
                sub = _Sub(idx=inv.reshape(sub_idx.shape), in_numel=len(cand), n_cut=uc)
                new_xy, _, new_faces, step_parent, deg = _max_layer(backend, xy, rows, faces, sub, sub, tmp, rtol, threads,
                                                                    (limit, 0), bounds[:, j:j + uc], ties[j:j + uc])
                degenerate += deg
        except MemoryLimitExceeded:
            if uc == 1:  # the refinement was labelled tmp: name the real layer
                _lean_over_limit(layer_id, len(xy), limit)
            u = max(1, uc // 2)
            continue
        lay_, unit = new_faces[2], new_faces[3]
        sel = lay_ == tmp
        lay_[sel] = layer_id
        unit[sel] = j + unit[sel] % uc
        xy, faces = new_xy, new_faces
        parent = parent[step_parent]
        j += uc
    return xy, faces, parent.astype(np.int32), degenerate


def _lean_over_limit(layer_id, n_vertices, limit):
    raise MemoryLimitExceeded(
        f"the partition of this slice needs more than memory_limit = {format_bytes(limit)} at layer {layer_id} even "
        f"with lean=True ({n_vertices} vertices so far; cutting by one unit at a time does not fit): compute it in "
        "tiles (tiles='auto', the default), zoom in, or raise memory_limit") from None


class _Sub:
    """A chunk of a max-type layer, shaped like its Nonlinearity and RowLayout."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def _ragged_positions(off, rows):
    """Positions in the flat array of a ragged array ``(off, flat)`` of the entries of
    ``rows``, concatenated, and each row's length."""
    lens = np.diff(off)[rows]
    seg_start = np.cumsum(lens) - lens
    pos = np.arange(int(lens.sum())) - np.repeat(seg_start, lens) + np.repeat(off[:-1][rows], lens)
    return pos, lens


def _winners(cand, floor):
    """Winner (candidate position, last axis) of windows whose candidates are ``cand``:
    the first candidate within ``floor`` (broadcast over the candidates) of the maximum,
    so that candidates equal up to rounding noise do not flip the winner."""
    return np.argmax(cand >= cand.max(axis=-1, keepdims=True) - floor[..., None], axis=-1)


def _tied_windows(X, idx, a, b, floor, tie_tol, budget=1 << 24):
    """The pairs ``(edge, window)`` of the edges ``a[e] -> b[e]`` with the windows whose
    two largest candidates are tied (within ``tie_tol``) at both ends of the edge, among
    the windows whose winner is not the same at every vertex (candidates within ``floor``
    of the maximum are tied for the winner). Temporaries are bounded by ``budget``
    values."""
    W, k = idx.shape
    empty = np.zeros(0, np.int64)
    if k < 2 or len(a) == 0:
        return empty, empty
    step = max(1, budget // (W * k))
    first, active = None, np.zeros(W, bool)
    for s in range(0, len(X), step):
        win = _winners(X[s:s + step][:, idx], floor)                 # candidates (n, W, k)
        first = win[0] if first is None else first
        active |= (win != first).any(axis=0)
    act = np.flatnonzero(active)
    if len(act) == 0:
        return empty, empty
    tie_tol = tie_tol[act]
    ends, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    tied = np.empty((len(ends), len(act)), bool)
    step = max(1, budget // (len(act) * k))
    for s in range(0, len(ends), step):
        top = np.partition(X[ends[s:s + step]][:, idx[act]], k - 2, axis=2)[:, :, k - 2:]
        tied[s:s + step] = top[:, :, 1] - top[:, :, 0] <= tie_tol
    ia, ib = inv[:len(a)], inv[len(a):]
    edges, wins = [], []
    step = max(1, budget // len(act))
    for s in range(0, len(a), step):
        e, j = np.nonzero(tied[ia[s:s + step]] & tied[ib[s:s + step]])
        edges.append(e + s)
        wins.append(act[j])
    return np.concatenate(edges), np.concatenate(wins)


def _face_window_argmax(X, idx, off, verts, face, window, floor):
    """Winner (candidate position) of ``window[p]`` inside ``face[p]``, from the mean of
    the candidates over the face's vertices (an interior point: they are affine there)."""
    flat, lens = _ragged_positions(off, face)
    seg_start = np.cumsum(lens) - lens
    v = verts[flat]
    cand = X[v[:, None], idx[np.repeat(window, lens)]]          # (total, k)
    means = np.add.reduceat(cand, seg_start, axis=0) / lens[:, None]
    return _winners(means, floor[window])


def _check(layer: Layer, where: str) -> None:
    msg = _core.validate(layer.num_vertices, layer.face_offsets, layer.face_verts, layer.he_layer, layer.he_unit)
    if msg:
        raise RuntimeError(f"splinecam produced an invalid partition {where}: {msg}")


def _decision(backend, xy, outputs, faces, layer_id, rtol, threads, validate, tols=None):
    """Refine the final hidden partition by the arg-max of the outputs (see module doc)."""
    V, C = outputs.shape
    # Column 0 is the breakpoint function being cut (snapped by the engine); columns
    # 1..C carry the outputs, interpolated exactly at every new vertex.
    rows = np.empty((V, C + 1))
    rows[:, 1:] = outputs
    degenerate = 0
    parent = None
    for c in range(1, max(C, 2)):
        if C == 1:
            rows[:, 0] = rows[:, 1]  # zero level set of the single output
        else:
            rows[:, 0] = rows[:, 1:c + 1].max(axis=1) - rows[:, c + 1]
        out = _refine(backend, xy, rows, faces, 1, layer_id, rtol, threads, None,
                      None if tols is None else tols.decision_bounds(0 if C == 1 else c), host=True)
        degenerate += int(out["degenerate"])
        parent = out["face_parent"] if parent is None else parent[out["face_parent"]]
        xy = np.concatenate([xy, out["xy"]])
        rows = np.concatenate(out["rows_blocks"])
        unit = out["he_unit"]
        if C > 1:
            unit[(out["he_layer"] == layer_id) & (unit == 0)] = c
        faces = (out["face_offsets"], out["face_verts"], out["he_layer"], unit)
    values = np.ascontiguousarray(rows[:, 1:])
    means = face_means(values, faces[0], faces[1])
    winner = (means[:, 0] > 0).astype(np.int32) if C == 1 else np.argmax(means, axis=1).astype(np.int32)
    if validate:
        msg = _core.validate(len(xy), *faces)
        if msg:
            raise RuntimeError(f"splinecam produced an invalid decision-boundary refinement: {msg}")
    return xy, values, {"faces": faces, "winner": winner, "layer": layer_id, "degenerate": degenerate,
                        "parent": parent.astype(np.int64)}
