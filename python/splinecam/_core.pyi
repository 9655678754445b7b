# Type stub of the compiled geometry engine (csrc/bindings.cpp). The driver
# (splinecam.driver) is its only caller; these are its calling conventions.
#
# A planar subdivision is given as faces in CSR form: face f's vertex cycle is
# face_verts[face_offsets[f]:face_offsets[f + 1]] (counter-clockwise), and half-edge h (from
# face_verts[h] to the next vertex of its face) carries he_layer[h] (the hidden layer that
# made it; -1 for the domain's boundary) and he_unit[h] (the unit of that layer).
from typing import Optional

import numpy as np

class BudgetExceeded(MemoryError):
    """A refinement would create more than max_new_vertices vertices."""

class DeviceArray:
    """A view of device memory passed to refine_cuda's outputs (``__cuda_array_interface__``)."""
    shape: tuple
    typestr: str

def refine(xy: np.ndarray, rows: np.ndarray, face_offsets: np.ndarray, face_verts: np.ndarray,
           he_layer: np.ndarray, he_unit: np.ndarray, n_cut: int, layer_id: int, rtol: float = 1e-10,
           num_threads: int = 0, max_new_vertices: int = 0, cut_begin: int = 0,
           tol_bounds: Optional[np.ndarray] = None) -> dict:
    """Cut every face along the zero sets of the columns ``[cut_begin, n_cut)`` of ``rows``
    (V, C) float64, affine on each face; the CPU launcher on ``num_threads`` threads (0:
    all). ``rows`` is snapped in place (values within a column's tolerance become 0).
    ``tol_bounds`` (2, n_cut): per column the floor and the cap of the tolerance.

    Returns a dict: ``xy`` (new vertices, 2 per vertex), ``rows_edge`` and ``rows_face`` (their
    rows: one block of vertices made on edges, then blocks of vertices made inside faces),
    ``face_offsets``, ``face_verts``, ``he_layer``, ``he_unit``, ``face_parent`` (the given face
    each new face lies in), ``degenerate``, ``edge_vertices``, ``face_retries`` (face runs
    repeated with a larger scratch), ``face_rounds`` and ``face_batches`` (0 here: see
    :func:`refine_batched`) and ``seconds`` (the phases: snap, edges, crossings, faces, and
    the joining of the face pass's per-block outputs). Raises BudgetExceeded past ``max_new_vertices`` (0: no limit)."""

def refine_batched(xy: np.ndarray, rows: np.ndarray, face_offsets: np.ndarray, face_verts: np.ndarray,
                   he_layer: np.ndarray, he_unit: np.ndarray, n_cut: int, layer_id: int, rtol: float = 1e-10,
                   num_threads: int = 0, max_new_vertices: int = 0, scratch_bytes: int = 536870912,
                   cut_begin: int = 0, tol_bounds: Optional[np.ndarray] = None) -> dict:
    """:func:`refine` with the GPU's face pass run on the host (pooled scratch,
    ``scratch_bytes`` per batch): the same launcher as :func:`refine_cuda`, the same result
    bit for bit as :func:`refine`, with ``face_rounds`` (runs of the counting face pass)
    and ``face_batches`` (batches of scratch) counted."""

def refine_cuda(xy: int, rows: int, num_vertices: int, n_cols: int, n_cut: int, face_offsets: int,
                face_verts: int, he_layer: int, he_unit: int, num_faces: int, num_half_edges: int, layer_id: int,
                rtol: float = 1e-10, max_new_vertices: int = 0, device: int = 0, stream: int = 0,
                scratch_bytes: int = 536870912, cut_begin: int = 0, tol_bounds: int = 0) -> dict:
    """:func:`refine_batched` on a CUDA device: every array argument is a device pointer
    (``tensor.data_ptr()``), ``stream`` a CUDA stream handle (0: the default stream); the
    outputs are DeviceArray views of device memory. Raises RuntimeError when the extension
    was built without CUDA."""

def merge(num_vertices: int, face_offsets: np.ndarray, face_verts: np.ndarray, he_layer: np.ndarray,
          he_unit: np.ndarray, remove_he: np.ndarray) -> dict:
    """Remove the half-edges flagged in ``remove_he`` (uint8, one per half-edge, both halves
    of an edge flagged), merging the faces on their two sides. Returns the new faces
    (``face_offsets``, ``face_verts``, ``he_layer``, ``he_unit``) and ``group`` (per old face,
    the new face it became part of)."""

def halfedges(num_vertices: int, face_offsets: np.ndarray, face_verts: np.ndarray) -> dict:
    """The half-edge view of the faces: per half-edge its ``origin``, ``next``, ``twin`` (-1
    on the boundary), ``face`` and ``edge_of`` (its undirected edge, whose ends are
    ``edge_lo``, ``edge_hi``)."""

def validate(num_vertices: int, face_offsets: np.ndarray, face_verts: np.ndarray, he_layer: np.ndarray,
             he_unit: np.ndarray) -> str:
    """The first violated planar-graph invariant, or ``""`` when there is none."""

def window_chain(rows: np.ndarray, x0: int, idx: np.ndarray, s: int, num_threads: int = 0) -> None:
    """Chain step ``s`` of a max-type layer, in place: ``rows[:, w] = max(X[:, idx[w, :s]])
    - X[:, idx[w, s]]`` for every window ``w``, with ``X = rows[:, x0:]``."""

def winner_changes(rows: np.ndarray, x0: int, idx: np.ndarray, floor: np.ndarray, num_threads: int = 0
                   ) -> np.ndarray:
    """Per window, 1 when its winner (first candidate within ``floor[w]`` of the maximum of
    ``X[v, idx[w]]``, ``X = rows[:, x0:]``) is not the same at every vertex (uint8)."""

def window_chain_cuda(rows: int, num_vertices: int, ld: int, x0: int, idx: int, W: int, k: int, s: int,
                      device: int = 0, stream: int = 0) -> None:
    """:func:`window_chain` on a CUDA device: ``rows`` (V, ld) float64 and ``idx`` (W, k)
    int64 are device pointers (``tensor.data_ptr()``). Raises RuntimeError when the
    extension was built without CUDA."""

def winner_changes_cuda(rows: int, num_vertices: int, ld: int, x0: int, idx: int, floor: int, W: int, k: int,
                        device: int = 0, stream: int = 0) -> np.ndarray:
    """:func:`winner_changes` on a CUDA device (``floor`` (W,) float64 a device pointer
    too); the flags come back as a host array."""

def build_info() -> dict:
    """``version``, ``cuda`` (CUDA code compiled), ``cuda_architectures``, ``cuda_version``,
    ``compiler``."""

def cuda_device_count() -> int:
    """CUDA devices usable now (0 without CUDA or a GPU)."""

def cuda_status() -> str:
    """Why no CUDA device is usable (``""`` when one is)."""
