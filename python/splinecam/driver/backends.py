"""Where a partition's refinements run: one small interface, three implementations.

A refinement (:func:`splinecam._core.refine` and its siblings) takes the current
vertices, their rows of values and the faces, and returns the refined faces with the
new vertices' rows. A :class:`Backend` says where those arrays live and which launcher
cuts them:

================ ===================== ================================================
backend          vertex values         launcher (``csrc/launcher.h``)
================ ===================== ================================================
``cpu``          numpy, host           host backend, threaded face pass
``host-batched`` torch tensors, host   host backend, the GPU's pooled face pass: the
                                       device path, testable and timeable without a GPU
``cuda``         torch tensors, GPU    CUDA backend, pooled face pass
================ ===================== ================================================

Every step of a partition runs in the backend's memory: elementwise layers, max-type
layers (their chain columns and winner tests are the window bodies of
``src/splinecam/windows.h`` on the backend: :meth:`Backend.window_chain`,
:meth:`Backend.winner_changes`), the decision boundary (a max over the outputs: the same
chain) and lean layers. What a max-type layer merges afterwards is decided on the host
from a few values per split edge (:meth:`Backend.take`) and the face arrays (integers,
a few bytes per half-edge): the vertex rows never leave the backend's memory.

The backend is chosen once per partition: ``partition(..., backend=...)`` (a name or an
instance), else the innermost :func:`use` block, else from the device.
"""
from __future__ import annotations

import contextlib
import contextvars
import time
import weakref
from typing import Optional, Union

import numpy as np
import torch

from splinecam import _core

__all__ = ["Backend", "CpuBackend", "HostBatchedBackend", "CudaBackend", "use", "get_backend", "BACKENDS"]

FACE_KEYS = ("face_offsets", "face_verts", "he_layer", "he_unit")


#: Row buffers made by Backend.cat_rows (by id; entries vanish with the buffers).
_ROW_BUFFERS = weakref.WeakValueDictionary()

#: (time read, half of the available host memory): see Backend.default_memory_limit
_HOST_MEMORY = [-1e9, 0]


class Backend:
    """Runs refinements on arrays of one memory space.

    ``keeps_tensors``: vertex values are torch tensors on :attr:`device` (else numpy
    arrays on the host). Subclasses implement :meth:`_launch` (the backend's own
    refinement) and may override :meth:`_launch_host` (refinements of host arrays)."""

    name = "cpu"
    keeps_tensors = False
    device = torch.device("cpu")

    def refine(self, xy, rows, faces, **args) -> dict:
        """One refinement of arrays in this backend's memory: the engine's result dict,
        its arrays in the same memory. ``rows`` is snapped in place. ``args``: ``n_cut,
        layer_id, rtol, threads, max_new, cut_begin, bounds``."""
        return self._launch(xy, rows, faces, _engine_kwargs(**args))

    # Arrays in the backend's memory: numpy arrays on the host here; torch tensors on
    # :attr:`device` for the backends that keep tensors (_TensorArrays).
    def asarray(self, a, dtype=None):
        """``a`` (numpy or torch) in this backend's memory, C-contiguous."""
        if isinstance(a, torch.Tensor):
            a = a.cpu().numpy()
        return np.ascontiguousarray(a, dtype=dtype)

    def to_host(self, a) -> np.ndarray:
        """An array of this backend's memory as a numpy array (no copy on the host)."""
        return a

    def empty(self, shape):
        """An uninitialised float64 array of this backend's memory."""
        return np.empty(shape)

    def cat(self, parts):
        """Arrays of this backend's memory concatenated along the first axis."""
        return np.concatenate(parts)

    def cat_rows(self, blocks, spare: int = 0):
        """Row blocks of this backend's memory, in order, as one C-contiguous array,
        copying as little as it can.

        Refinements that follow each other (a layer's columns a few at a time, a max-type
        layer's chain steps) hand back ``[rows, new rows...]``. When ``rows`` is the
        leading part of a buffer this method made and the new rows fit in its spare rows,
        they are copied after it and a longer view of the same buffer is returned: the
        old rows are not copied again (only buffers made here are grown in place: any
        other array's rows beyond a view may belong to someone). Otherwise a new buffer
        is made, with room for ``spare`` more rows (at most three times the rows it
        holds). Room that is never written costs no memory, only address space (where
        the system refuses that much, less room is asked for); each buffer that a longer
        chain outgrows is a copy of every row into pages the process has to fault in."""
        first = blocks[0]
        n = sum(len(b) for b in blocks)
        base = first.base
        if (isinstance(base, np.ndarray) and _ROW_BUFFERS.get(id(base)) is base and base.shape[1] == first.shape[1]
                and len(base) >= n and first.__array_interface__["data"][0] == base.__array_interface__["data"][0]):
            buf, i = base, len(first)
            blocks = blocks[1:]
        else:
            room = min(max(0, int(spare)), 3 * n)
            while True:
                try:
                    buf, i = np.empty((n + room, first.shape[1]), dtype=first.dtype), 0
                    break
                except MemoryError:
                    if room == 0:
                        raise
                    room = room // 4 if room > n else 0
            _ROW_BUFFERS[id(buf)] = buf
        for b in blocks:
            buf[i:i + len(b)] = b
            i += len(b)
        return buf[:n]

    def window_chain(self, rows, x0: int, idx: np.ndarray, s: int, threads=None) -> None:
        """Chain step ``s`` of windows ``idx`` (W, k) over the candidates ``rows[:, x0:]``,
        in place: ``rows[:, w] = max(c_0..c_{s-1}) - c_s`` (:func:`splinecam._core.window_chain`)."""
        _core.window_chain(rows, x0, idx, s, threads or 0)

    def winner_changes(self, rows, x0: int, idx: np.ndarray, floor: np.ndarray, threads=None) -> np.ndarray:
        """Per window (numpy bool): its winner is not the same at every vertex
        (:func:`splinecam._core.winner_changes`)."""
        return _core.winner_changes(rows, x0, idx, floor, threads or 0).astype(bool)

    def take(self, rows, vertices: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``rows[vertices, cols]`` (numpy fancy indexing, broadcast) on the host."""
        return rows[vertices, cols]

    def _launch(self, xy, rows, faces, kw) -> dict:
        return self._launch_host(xy, rows, faces, kw)

    def _launch_host(self, xy, rows, faces, kw) -> dict:
        return _core.refine(xy, rows, *faces, **kw)

    def default_memory_limit(self) -> int:
        """Half of the memory available now (bytes; read at most once a second: a
        training run's thousand small calls need not read it a thousand times)."""
        now = time.monotonic()
        if now - _HOST_MEMORY[0] > 1.0:
            try:
                with open("/proc/meminfo") as f:
                    info = {l.split(":")[0]: int(l.split()[1]) * 1024 for l in f}
                avail = int(0.5 * info.get("MemAvailable", info["MemTotal"]))
            except (OSError, KeyError, ValueError):  # pragma: no cover - not Linux
                avail = 4 << 30
            _HOST_MEMORY[:] = [now, avail]
        return _HOST_MEMORY[1]

    def out_of_memory(self, layer_id, n_faces, n_vertices, width) -> MemoryError:
        """The error for an allocation that failed inside a refinement."""
        return MemoryError(
            f"out of memory at layer {layer_id}: {n_faces} regions and {n_vertices} vertices so far, each new vertex "
            f"carries {width} values ({8 * width / 1024:.1f} KiB); a convex region cut by k lines can hold up to "
            "k(k+1)/2 + 1 pieces. Use a smaller slice (zoom in) or a narrower model.")

    def __repr__(self):
        return f"{type(self).__name__}()"


def _engine_kwargs(*, n_cut, layer_id, rtol, threads, max_new, cut_begin, bounds) -> dict:
    """The keyword arguments of the extension's refine functions."""
    return dict(n_cut=n_cut, layer_id=layer_id, rtol=rtol, num_threads=threads or 0, max_new_vertices=max_new,
                cut_begin=cut_begin, tol_bounds=bounds)


class CpuBackend(Backend):
    """numpy arrays on the host, the CPU launcher."""


class _TensorArrays:
    """Arrays of a backend that keeps torch tensors on ``self.device``."""

    def asarray(self, a, dtype=None):
        t = torch.as_tensor(np.ascontiguousarray(a, dtype=dtype) if isinstance(a, np.ndarray) else a)
        if dtype is not None:
            t = t.to(_TORCH_DTYPES[np.dtype(dtype)])
        return t.to(self.device).contiguous()

    def to_host(self, a) -> np.ndarray:
        return a.cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)

    def empty(self, shape):
        return torch.empty(shape, dtype=torch.float64, device=self.device)

    def cat(self, parts):
        return torch.cat(parts)

    def cat_rows(self, blocks, spare: int = 0):
        return torch.cat(blocks)

    def take(self, rows, vertices, cols):
        dev = rows.device
        return rows[torch.as_tensor(vertices).to(dev), torch.as_tensor(cols).to(dev)].cpu().numpy()


_TORCH_DTYPES = {np.dtype(np.float64): torch.float64, np.dtype(np.int64): torch.int64,
                 np.dtype(np.int32): torch.int32, np.dtype(np.uint8): torch.uint8}


class HostBatchedBackend(_TensorArrays, Backend):
    """The device path on the host: vertex values as torch CPU tensors, every refinement
    by the GPU's batched launcher on the host backend with ``scratch_bytes`` of face
    scratch per batch. Records, per refinement, the runs of the counting face pass
    (:attr:`face_rounds`) and the batches of scratch (:attr:`face_batches`)."""

    name = "host-batched"
    keeps_tensors = True

    def __init__(self, scratch_bytes: int = 512 << 20):
        self.scratch_bytes = int(scratch_bytes)
        self.face_rounds, self.face_batches = [], []

    def _launch(self, xy, rows, faces, kw):
        host = lambda t, dt: np.ascontiguousarray(t.numpy() if isinstance(t, torch.Tensor) else t, dtype=dt)
        off, verts, lay, unit = faces
        out = self._launch_host(host(xy, np.float64), rows.numpy(),  # rows.numpy(): snapped in place
                                (host(off, np.int64), host(verts, np.int32), host(lay, np.int32),
                                 host(unit, np.int32)), kw)
        res = {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in out.items()}
        res["rows_face"] = [torch.from_numpy(b) for b in out["rows_face"]]
        return res

    def _launch_host(self, xy, rows, faces, kw):
        out = _core.refine_batched(xy, rows, *faces, scratch_bytes=self.scratch_bytes, **kw)
        self.face_rounds.append(out["face_rounds"])
        self.face_batches.append(out["face_batches"])
        return out

    def window_chain(self, rows, x0, idx, s, threads=None):
        _core.window_chain(rows.numpy(), x0, idx, s, threads or 0)  # the tensor's memory, in place

    def winner_changes(self, rows, x0, idx, floor, threads=None):
        return _core.winner_changes(rows.numpy(), x0, idx, floor, threads or 0).astype(bool)

    def __repr__(self):
        return f"HostBatchedBackend(scratch_bytes={self.scratch_bytes})"


class CudaBackend(_TensorArrays, Backend):
    """torch tensors on a CUDA device, the launcher with its CUDA backend and the window
    bodies as CUDA kernels.
    ``memory_limit`` defaults to half of the GPU's free memory."""

    name = "cuda"
    keeps_tensors = True

    def __init__(self, device="cuda"):
        self.device = torch.device(device)

    def _launch(self, xy, rows, faces, kw):
        dev = self.device
        off, verts, lay, unit = (faces[0].to(dev, torch.int64).contiguous(),
                                 *(f.to(dev, torch.int32).contiguous() for f in faces[1:]))
        xy = xy.to(dev, torch.float64).contiguous()
        # The extension trusts these shapes (raw pointers): check them here.
        if rows.dtype != torch.float64 or not rows.is_contiguous() or rows.dim() != 2 or len(rows) != len(xy):
            raise ValueError(f"rows must be a contiguous float64 (V, n_cols) tensor with V = {len(xy)}; got "
                             f"{rows.dtype} {tuple(rows.shape)}")
        if xy.dim() != 2 or xy.shape[1] != 2 or len(off) < 2 or int(off[-1]) != len(verts) or \
                len(lay) != len(verts) or len(unit) != len(verts):
            raise ValueError("inconsistent face arrays for the GPU refinement")
        bounds = kw.pop("tol_bounds")
        bounds_t = None if bounds is None else torch.from_numpy(bounds).to(dev)  # alive across the call
        kw.pop("num_threads")
        stream = torch.cuda.current_stream(dev).cuda_stream
        out = _core.refine_cuda(xy.data_ptr(), rows.data_ptr(), len(xy), rows.shape[1], kw.pop("n_cut"),
                                off.data_ptr(), verts.data_ptr(), lay.data_ptr(), unit.data_ptr(), len(off) - 1,
                                len(verts), kw.pop("layer_id"), device=dev.index or 0, stream=stream,
                                tol_bounds=0 if bounds_t is None else bounds_t.data_ptr(), **kw)
        res = {k: _device_array(out[k], dev) for k in ("xy", "rows_edge", *FACE_KEYS, "face_parent")}
        res["rows_face"] = [_device_array(b, dev) for b in out["rows_face"]]
        res["degenerate"] = out["degenerate"]
        res["seconds"] = out["seconds"]
        return res

    def _windows(self, rows, idx):
        if rows.dtype != torch.float64 or not rows.is_contiguous() or rows.dim() != 2:
            raise ValueError(f"rows must be a contiguous float64 (V, n_cols) tensor; got {rows.dtype} "
                             f"{tuple(rows.shape)}")
        idx_t = torch.as_tensor(np.ascontiguousarray(idx, dtype=np.int64)).to(self.device)
        if idx_t.numel() and (int(idx_t.min()) < 0 or int(idx_t.max()) >= rows.shape[1]):
            raise ValueError("window candidates point outside the rows")
        return idx_t, torch.cuda.current_stream(self.device).cuda_stream

    def window_chain(self, rows, x0, idx, s, threads=None):
        idx_t, stream = self._windows(rows, idx)
        _core.window_chain_cuda(rows.data_ptr(), len(rows), rows.shape[1], x0, idx_t.data_ptr(), idx_t.shape[0],
                                idx_t.shape[1], s, device=self.device.index or 0, stream=stream)

    def winner_changes(self, rows, x0, idx, floor, threads=None):
        idx_t, stream = self._windows(rows, idx)
        floor_t = torch.as_tensor(np.ascontiguousarray(floor, dtype=np.float64)).to(self.device)
        return _core.winner_changes_cuda(rows.data_ptr(), len(rows), rows.shape[1], x0, idx_t.data_ptr(),
                                         floor_t.data_ptr(), idx_t.shape[0], idx_t.shape[1],
                                         device=self.device.index or 0, stream=stream).astype(bool)

    def default_memory_limit(self) -> int:
        return int(0.5 * torch.cuda.mem_get_info(self.device)[0])

    def out_of_memory(self, layer_id, n_faces, n_vertices, width) -> MemoryError:
        free, total = torch.cuda.mem_get_info(self.device)
        return MemoryError(
            f"out of GPU memory at layer {layer_id} ({n_faces} regions, {n_vertices} vertices with {width} values "
            f"each; {free / 2**30:.2f} of {total / 2**30:.2f} GiB free on {self.device}): pass a smaller "
            "memory_limit, compute in tiles (splinecam.partition_tiled), or zoom in")

    def __repr__(self):
        return f"CudaBackend({str(self.device)!r})"


def _device_array(a, device):
    """A torch view of a device array the extension returned (no copy)."""
    if int(np.prod(a.shape)) == 0:
        dtype = {"<f8": torch.float64, "<i8": torch.int64, "<i4": torch.int32}[a.typestr]
        return torch.empty(tuple(a.shape), dtype=dtype, device=device)
    return torch.as_tensor(a, device=device)


BACKENDS = {"cpu": CpuBackend, "host-batched": HostBatchedBackend, "cuda": CudaBackend}

_current: contextvars.ContextVar = contextvars.ContextVar("splinecam_backend", default=None)


@contextlib.contextmanager
def use(backend: Union[str, Backend]):
    """A block inside which partitions run on ``backend`` unless they name one.

    Parameters
    ----------
    backend : str or Backend
        ``"cpu"``, ``"host-batched"``, ``"cuda"`` (a new instance) or an instance.

    Returns
    -------
    contextlib.AbstractContextManager
        A context manager; ``with use(...) as b`` binds the backend instance (for example
        to read a :class:`HostBatchedBackend`'s records).

    Raises
    ------
    ValueError
        An unknown backend name.

    Examples
    --------
    >>> import torch, splinecam
    >>> from splinecam.driver.backends import use
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)).eval()
    >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    >>> with use("host-batched") as b:
    ...     P = splinecam.partition(model, sl, progress=False)
    >>> P.run_info["backend"]
    'host-batched'
    """
    b = BACKENDS[_check_name(backend)]() if isinstance(backend, str) else backend
    token = _current.set(b)
    try:
        yield b
    finally:
        _current.reset(token)


def _check_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))} or a splinecam.driver.backends.Backend; "
                         f"got {name!r}")
    return name


def get_backend(device: torch.device, backend: Optional[Union[str, Backend]] = None) -> Backend:
    """The backend of a partition on ``device`` (see the module doc).

    Parameters
    ----------
    device : torch.device
        The partition's device (:func:`splinecam.driver.engine.resolve_device`).
    backend : str or Backend, optional
        A name or an instance; default: the innermost :func:`use` block, else
        ``"cuda"`` on a CUDA device and ``"cpu"`` elsewhere.

    Returns
    -------
    Backend
        The instance that runs the partition's refinements.

    Raises
    ------
    ValueError
        An unknown name, or a name that does not run on ``device``.
    TypeError
        ``backend`` is neither a name nor a :class:`Backend`.
    """
    if backend is None:
        backend = _current.get()
    if backend is None:
        return CudaBackend(device) if device.type == "cuda" else CpuBackend()
    if isinstance(backend, Backend):
        return backend
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a name or a splinecam.driver.backends.Backend; got {type(backend).__name__}")
    name = _check_name(backend)
    if name == "cuda":
        if device.type != "cuda":
            raise ValueError(f"backend 'cuda' needs a CUDA device; got device {str(device)!r} (pass device='cuda')")
        return CudaBackend(device)
    if device.type != "cpu":
        raise ValueError(f"backend {name!r} runs on the host; got device {str(device)!r} (pass device='cpu')")
    return BACKENDS[name]()
