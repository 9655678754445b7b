// What the bindings (bindings.cpp) need around the C++ calls: the checks and conversion
// of numpy inputs, and the typed results handed back to numpy (or, for device memory,
// to any CUDA library) without copies.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "host_backend.h"
#include "launcher.h"
#include "splinecam/halfedge.h"
#include "splinecam/merge.h"
#include "splinecam/refine.h"

namespace splinecam {
namespace py = pybind11;

template <class T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;

inline void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

// Move a vector into a numpy array that owns it.
template <class T, class A>
py::array_t<T> to_numpy(std::vector<T, A>&& v, std::vector<py::ssize_t> shape) {
  auto* holder = new std::vector<T, A>(std::move(v));
  py::capsule owner(holder, [](void* p) { delete static_cast<std::vector<T, A>*>(p); });
  return py::array_t<T>(shape, holder->data(), owner);
}

// A numpy view of a host buffer; the array keeps the buffer alive.
template <class T>
py::array_t<T> host_numpy(HostPtr b, std::vector<py::ssize_t> shape) {
  auto* holder = new HostPtr(std::move(b));
  py::capsule owner(holder, [](void* p) { delete static_cast<HostPtr*>(p); });
  return py::array_t<T>(shape, static_cast<T*>((*holder)->ptr), owner);
}

// Checks the host arrays of a refinement and points a RefineInput at them. `bounds_keep`
// holds the converted tolerance bounds while the input points at them.
inline RefineInput host_input(const carray<double>& xy, py::array rows_obj, const carray<int64_t>& face_offsets,
                              const carray<int32_t>& face_verts, const carray<int32_t>& he_layer,
                              const carray<int32_t>& he_unit, int n_cut, int layer_id, double rtol, int num_threads,
                              int64_t max_new_vertices, int cut_begin, const py::object& tol_bounds,
                              carray<double>& bounds_keep) {
  // rows is snapped in place, so it must already be a writable C-contiguous float64 array.
  auto rows = py::array_t<double>::ensure(rows_obj);
  require(rows && py::isinstance<py::array_t<double>>(rows_obj) && (rows.flags() & py::array::c_style) &&
              rows.writeable(),
          "rows must be a writable C-contiguous float64 array");
  require(xy.ndim() == 2 && xy.shape(1) == 2, "xy must have shape (V, 2)");
  require(rows.ndim() == 2 && rows.shape(0) == xy.shape(0), "rows must have shape (V, n_cols)");
  require(n_cut >= 0 && n_cut <= rows.shape(1), "n_cut must be in [0, n_cols]");
  require(cut_begin >= 0 && cut_begin <= n_cut, "cut_begin must be in [0, n_cut]");
  require(face_offsets.ndim() == 1 && face_offsets.shape(0) >= 2, "face_offsets must have shape (F + 1,)");
  const int64_t F = face_offsets.shape(0) - 1;
  const int64_t H = face_offsets.at(F);
  require(face_verts.shape(0) == H && he_layer.shape(0) == H && he_unit.shape(0) == H,
          "face_verts, he_layer and he_unit must have length face_offsets[-1]");
  RefineInput in;
  in.num_vertices = static_cast<index_t>(xy.shape(0));
  in.xy = xy.data();
  in.rows = rows.mutable_data();
  in.n_cols = static_cast<int>(rows.shape(1));
  in.n_cut = n_cut;
  in.cut_begin = cut_begin;
  in.num_faces = F;
  in.face_offsets = face_offsets.data();
  in.face_verts = face_verts.data();
  in.he_layer = he_layer.data();
  in.he_unit = he_unit.data();
  in.layer_id = layer_id;
  in.rtol = rtol;
  in.num_threads = num_threads;
  in.max_new_vertices = max_new_vertices;
  if (!tol_bounds.is_none()) {
    bounds_keep = carray<double>::ensure(tol_bounds);
    require(bounds_keep && bounds_keep.ndim() == 2 && bounds_keep.shape(0) == 2 && bounds_keep.shape(1) == n_cut,
            "tol_bounds must have shape (2, n_cut): per column a floor, then a cap");
    in.tol_bounds = bounds_keep.data();
    in.tol_fixed = std::equal(in.tol_bounds, in.tol_bounds + n_cut, in.tol_bounds + n_cut);
  }
  return in;
}

// A refinement's result as a dict of arrays; wrap(buffer, shape, kind) makes each array
// ('d' float64, 'l' int64, 'i' int32) in its memory space.
template <class Buffer, class Wrap>
py::dict result_dict(const RefineResult<Buffer>& o, int n_cols, Wrap wrap) {
  const py::ssize_t Me = o.edge_vertices, Mf = o.face_vertices, Fn = o.num_faces, Hn = o.num_half_edges;
  const py::ssize_t C = n_cols;
  py::dict d;
  d["xy"] = wrap(o.xy, {Me + Mf, 2}, 'd');
  d["rows_edge"] = wrap(o.rows_edge, {Me, C}, 'd');
  py::list face_blocks;  // blocks of rows in vertex-id order
  for (size_t b = 0; b < o.rows_face.size(); ++b)
    face_blocks.append(wrap(o.rows_face[b], {static_cast<py::ssize_t>(o.rows_face_n[b]), C}, 'd'));
  d["rows_face"] = face_blocks;
  d["face_offsets"] = wrap(o.face_offsets, {Fn + 1}, 'l');
  d["face_verts"] = wrap(o.face_verts, {Hn}, 'i');
  d["he_layer"] = wrap(o.he_layer, {Hn}, 'i');
  d["he_unit"] = wrap(o.he_unit, {Hn}, 'i');
  d["face_parent"] = wrap(o.face_parent, {Fn}, 'i');
  d["edge_vertices"] = o.edge_vertices;
  d["degenerate"] = o.degenerate;
  d["face_retries"] = o.face_retries;
  d["face_rounds"] = o.face_rounds;
  d["face_batches"] = o.face_batches;
  d["seconds"] = py::make_tuple(o.seconds[0], o.seconds[1], o.seconds[2], o.seconds[3], o.seconds[4]);
  return d;
}

inline py::dict host_result_dict(const HostResult& o, int n_cols) {
  return result_dict(o, n_cols, [](HostPtr b, std::vector<py::ssize_t> shape, char kind) -> py::object {
    if (kind == 'd') return host_numpy<double>(std::move(b), std::move(shape));
    if (kind == 'l') return host_numpy<int64_t>(std::move(b), std::move(shape));
    return host_numpy<int32_t>(std::move(b), std::move(shape));
  });
}

// Checks face arrays (F + 1 offsets, H vertices) and returns F.
inline int64_t checked_faces(const carray<int64_t>& face_offsets, const carray<int32_t>& face_verts) {
  require(face_offsets.ndim() == 1 && face_offsets.shape(0) >= 1, "face_offsets must have shape (F + 1,)");
  const int64_t F = face_offsets.shape(0) - 1;
  require(face_verts.shape(0) == face_offsets.at(F), "inconsistent face arrays");
  return F;
}

inline py::dict halfedges_dict(HalfEdges&& d) {
  const py::ssize_t H = static_cast<py::ssize_t>(d.origin.size());
  const py::ssize_t E = static_cast<py::ssize_t>(d.edges.lo.size());
  py::dict out;
  out["origin"] = to_numpy(std::move(d.origin), {H});
  out["twin"] = to_numpy(std::move(d.twin), {H});
  out["next"] = to_numpy(std::move(d.next), {H});
  out["face"] = to_numpy(std::move(d.face), {H});
  out["edge_of"] = to_numpy(std::move(d.edges.edge_of), {H});
  out["edge_lo"] = to_numpy(std::move(d.edges.lo), {E});
  out["edge_hi"] = to_numpy(std::move(d.edges.hi), {E});
  return out;
}

inline py::dict merge_dict(MergeOutput&& o) {
  const py::ssize_t Fn = static_cast<py::ssize_t>(o.face_offsets.size()) - 1;
  const py::ssize_t Hn = static_cast<py::ssize_t>(o.face_verts.size());
  const py::ssize_t F = static_cast<py::ssize_t>(o.group.size());
  py::dict d;
  d["face_offsets"] = to_numpy(std::move(o.face_offsets), {Fn + 1});
  d["face_verts"] = to_numpy(std::move(o.face_verts), {Hn});
  d["he_layer"] = to_numpy(std::move(o.he_layer), {Hn});
  d["he_unit"] = to_numpy(std::move(o.he_unit), {Hn});
  d["group"] = to_numpy(std::move(o.group), {F});
  return d;
}

// Checks rows (V, C) float64 C-contiguous and the windows idx (W, k) over columns from x0.
inline void check_windows(const py::array& rows, const carray<int64_t>& idx, int64_t x0) {
  require(rows.ndim() == 2 && (rows.flags() & py::array::c_style) && py::isinstance<py::array_t<double>>(rows),
          "rows must be a C-contiguous float64 array of shape (V, n_cols)");
  require(idx.ndim() == 2 && idx.shape(1) >= 1, "idx must have shape (W, k)");
  const int64_t C = rows.shape(1), n = idx.size();
  require(x0 >= 0 && x0 <= C, "x0 must be a column of rows");
  const int64_t* p = idx.data();
  for (int64_t i = 0; i < n; ++i) require(p[i] >= 0 && x0 + p[i] < C, "idx points outside the rows");
}

}  // namespace splinecam
