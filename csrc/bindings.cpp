// The one pybind11 module of splinecam: buffer conversion and m.def lines only.
// Pure C++ work runs with the GIL released; results are handed to numpy without copies.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "batched_launcher.h"
#include "host_backend.h"
#include "host_windows.h"
#include "splinecam/halfedge.h"
#include "splinecam/merge.h"
#include "splinecam/refine.h"
#ifdef SPLINECAM_WITH_CUDA
#include "cuda_launcher.h"
#endif

namespace py = pybind11;
using namespace splinecam;

namespace {

template <class T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;

// Move a vector into a numpy array that owns it.
template <class T, class A>
py::array_t<T> to_numpy(std::vector<T, A>&& v, std::vector<py::ssize_t> shape) {
  auto* holder = new std::vector<T, A>(std::move(v));
  py::capsule owner(holder, [](void* p) { delete static_cast<std::vector<T, A>*>(p); });
  return py::array_t<T>(shape, holder->data(), owner);
}

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

// Checks the host arrays of a refinement and points a RefineInput at them.
RefineInput host_input(const carray<double>& xy, py::array rows_obj, const carray<int64_t>& face_offsets,
                       const carray<int32_t>& face_verts, const carray<int32_t>& he_layer,
                       const carray<int32_t>& he_unit, int n_cut, int layer_id, double rtol, int num_threads,
                       int64_t max_new_vertices, int cut_begin, const py::object& tol_bounds,
                       carray<double>& bounds_keep) {
  // rows is snapped in place, so it must already be a writable C-contiguous float64 array.
  auto rows = py::array_t<double>::ensure(rows_obj);
  require(rows && py::isinstance<py::array_t<double>>(rows_obj) &&
              (rows.flags() & py::array::c_style) && rows.writeable(),
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
  }
  return in;
}

py::dict refine(carray<double> xy, py::array rows_obj, carray<int64_t> face_offsets, carray<int32_t> face_verts,
                carray<int32_t> he_layer, carray<int32_t> he_unit, int n_cut, int layer_id, double rtol,
                int num_threads, int64_t max_new_vertices, int cut_begin, py::object tol_bounds) {
  carray<double> bounds;
  const RefineInput in = host_input(xy, rows_obj, face_offsets, face_verts, he_layer, he_unit, n_cut, layer_id,
                                    rtol, num_threads, max_new_vertices, cut_begin, tol_bounds, bounds);
  RefineOutput o;
  try {
    py::gil_scoped_release release;
    o = refine_cpu(in);
  } catch (const std::bad_alloc&) {
    PyErr_SetString(PyExc_MemoryError, "out of memory while refining the partition");
    throw py::error_already_set();
  }
  const py::ssize_t M = static_cast<py::ssize_t>(o.xy.size() / 2);
  const py::ssize_t Fn = static_cast<py::ssize_t>(o.face_parent.size());
  const py::ssize_t Hn = static_cast<py::ssize_t>(o.face_verts.size());
  py::dict d;
  d["xy"] = to_numpy(std::move(o.xy), {M, 2});
  const py::ssize_t Me = static_cast<py::ssize_t>(o.edge_vertices);
  d["rows_edge"] = to_numpy(std::move(o.rows_edge), {Me, static_cast<py::ssize_t>(in.n_cols)});
  py::list face_blocks;
  for (auto& b : o.rows_face) {
    const py::ssize_t n = static_cast<py::ssize_t>(b.size() / std::max(in.n_cols, 1));
    face_blocks.append(to_numpy(std::move(b), {n, static_cast<py::ssize_t>(in.n_cols)}));
  }
  d["rows_face"] = face_blocks;  // list of [m_b, n_cols] blocks, in vertex-id order
  d["face_offsets"] = to_numpy(std::move(o.face_offsets), {Fn + 1});
  d["face_verts"] = to_numpy(std::move(o.face_verts), {Hn});
  d["he_layer"] = to_numpy(std::move(o.he_layer), {Hn});
  d["he_unit"] = to_numpy(std::move(o.he_unit), {Hn});
  d["face_parent"] = to_numpy(std::move(o.face_parent), {Fn});
  d["edge_vertices"] = o.edge_vertices;
  d["degenerate"] = o.degenerate;
  d["face_retries"] = o.face_retries;
  d["seconds"] = py::make_tuple(o.seconds[0], o.seconds[1], o.seconds[2], o.seconds[3], o.seconds[4]);
  return d;
}

// A numpy view of a host buffer of the batched launcher; the array keeps it alive.
template <class T>
py::array_t<T> buffer_numpy(std::shared_ptr<HostBuffer> b, std::vector<py::ssize_t> shape) {
  auto* holder = new std::shared_ptr<HostBuffer>(std::move(b));
  py::capsule owner(holder, [](void* p) { delete static_cast<std::shared_ptr<HostBuffer>*>(p); });
  return py::array_t<T>(shape, static_cast<T*>((*holder)->ptr), owner);
}

// The result of the batched launcher as a dict like refine's; wrap(buffer, shape, kind)
// makes each array ('d' float64, 'l' int64, 'i' int32) in its memory space.
template <class Buffer, class Wrap>
py::dict batched_dict(const BatchedOutput<Buffer>& o, int n_cols, Wrap wrap) {
  const py::ssize_t Me = o.edge_vertices, Mf = o.face_vertices, Fn = o.num_faces, Hn = o.num_half_edges;
  const py::ssize_t C = n_cols;
  py::dict d;
  d["xy"] = wrap(o.xy, {Me + Mf, 2}, 'd');
  d["rows_edge"] = wrap(o.rows_edge, {Me, C}, 'd');
  py::list face_blocks;
  face_blocks.append(wrap(o.rows_face, {Mf, C}, 'd'));
  d["rows_face"] = face_blocks;  // one block, in vertex-id order
  d["face_offsets"] = wrap(o.face_offsets, {Fn + 1}, 'l');
  d["face_verts"] = wrap(o.face_verts, {Hn}, 'i');
  d["he_layer"] = wrap(o.he_layer, {Hn}, 'i');
  d["he_unit"] = wrap(o.he_unit, {Hn}, 'i');
  d["face_parent"] = wrap(o.face_parent, {Fn}, 'i');
  d["edge_vertices"] = o.edge_vertices;
  d["degenerate"] = o.degenerate;
  d["face_rounds"] = o.face_rounds;
  d["face_batches"] = o.face_batches;
  d["seconds"] = py::make_tuple(o.seconds[0], o.seconds[1], o.seconds[2], o.seconds[3], o.seconds[4]);
  return d;
}

// The GPU's launcher run on the host (host_backend.h): same arguments and result as
// refine, plus how the face pass went (rounds of retries, batches of scratch).
py::dict refine_batched_host(carray<double> xy, py::array rows_obj, carray<int64_t> face_offsets,
                             carray<int32_t> face_verts, carray<int32_t> he_layer, carray<int32_t> he_unit, int n_cut,
                             int layer_id, double rtol, int num_threads, int64_t max_new_vertices,
                             int64_t scratch_bytes, int cut_begin, py::object tol_bounds) {
  carray<double> bounds;
  const RefineInput in = host_input(xy, rows_obj, face_offsets, face_verts, he_layer, he_unit, n_cut, layer_id,
                                    rtol, num_threads, max_new_vertices, cut_begin, tol_bounds, bounds);
  BatchedOutput<std::shared_ptr<HostBuffer>> o;
  {
    py::gil_scoped_release release;
    HostBackend be(resolve_threads(num_threads));
    o = refine_batched(in, face_verts.shape(0), be, scratch_bytes);
  }
  return batched_dict(o, in.n_cols, [](std::shared_ptr<HostBuffer> b, std::vector<py::ssize_t> shape,
                                         char kind) -> py::object {
    if (kind == 'd') return buffer_numpy<double>(std::move(b), std::move(shape));
    if (kind == 'l') return buffer_numpy<int64_t>(std::move(b), std::move(shape));
    return buffer_numpy<int32_t>(std::move(b), std::move(shape));
  });
}

py::dict halfedges(int num_vertices, carray<int64_t> face_offsets, carray<int32_t> face_verts) {
  const int64_t F = face_offsets.shape(0) - 1;
  require(F >= 0 && face_verts.shape(0) == face_offsets.at(F), "inconsistent face arrays");
  HalfEdges d;
  {
    py::gil_scoped_release release;
    d = build_halfedges(num_vertices, F, face_offsets.data(), face_verts.data());
  }
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

std::string validate(int num_vertices, carray<int64_t> face_offsets, carray<int32_t> face_verts,
                     carray<int32_t> he_layer, carray<int32_t> he_unit) {
  const int64_t F = face_offsets.shape(0) - 1;
  require(F >= 0 && face_verts.shape(0) == face_offsets.at(F), "inconsistent face arrays");
  py::gil_scoped_release release;
  return validate_cycles(num_vertices, F, face_offsets.data(), face_verts.data(), he_layer.data(), he_unit.data());
}

py::dict merge(int num_vertices, carray<int64_t> face_offsets, carray<int32_t> face_verts, carray<int32_t> he_layer,
               carray<int32_t> he_unit, carray<uint8_t> remove_he) {
  const int64_t F = face_offsets.shape(0) - 1;
  const int64_t H = face_offsets.at(F);
  require(F >= 0 && face_verts.shape(0) == H && he_layer.shape(0) == H && he_unit.shape(0) == H &&
              remove_he.shape(0) == H,
          "inconsistent face arrays");
  MergeOutput o;
  {
    py::gil_scoped_release release;
    o = merge_faces(num_vertices, F, face_offsets.data(), face_verts.data(), he_layer.data(), he_unit.data(),
                    remove_he.data());
  }
  const py::ssize_t Fn = static_cast<py::ssize_t>(o.face_offsets.size()) - 1;
  const py::ssize_t Hn = static_cast<py::ssize_t>(o.face_verts.size());
  py::dict d;
  d["face_offsets"] = to_numpy(std::move(o.face_offsets), {Fn + 1});
  d["face_verts"] = to_numpy(std::move(o.face_verts), {Hn});
  d["he_layer"] = to_numpy(std::move(o.he_layer), {Hn});
  d["he_unit"] = to_numpy(std::move(o.he_unit), {Hn});
  d["group"] = to_numpy(std::move(o.group), {static_cast<py::ssize_t>(F)});
  return d;
}

py::dict build_info() {
  py::dict d;
  d["version"] = SPLINECAM_VERSION;
#ifdef SPLINECAM_WITH_CUDA
  d["cuda"] = true;
  d["cuda_architectures"] = std::string(SPLINECAM_CUDA_ARCHS);
  d["cuda_version"] = std::string(SPLINECAM_CUDA_VERSION);
#else
  d["cuda"] = false;
  d["cuda_architectures"] = std::string();
  d["cuda_version"] = std::string();
#endif
  d["compiler"] =
#if defined(__clang__)
      std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
      std::string("gcc ") + __VERSION__;
#else
      std::string("unknown");
#endif
  return d;
}

int cuda_device_count_binding() {
#ifdef SPLINECAM_WITH_CUDA
  return cuda_device_count();
#else
  return 0;
#endif
}

std::string cuda_status_binding() {
#ifdef SPLINECAM_WITH_CUDA
  return cuda_status();
#else
  return "splinecam was not built with CUDA";
#endif
}

[[maybe_unused]] [[noreturn]] void not_built() {
  throw std::runtime_error("splinecam was not built with CUDA (rebuild with nvcc available, SPLINECAM_CUDA=ON)");
}

#ifdef SPLINECAM_WITH_CUDA
// A device array owned by the extension, seen by torch (torch.as_tensor(a, device=...))
// and other CUDA libraries through __cuda_array_interface__ (version 3), without a copy.
struct DeviceArray {
  DevicePtr buf;
  std::vector<py::ssize_t> shape;
  std::string typestr;
  py::dict interface() const {
    py::dict d;
    py::tuple sh(shape.size());
    for (size_t i = 0; i < shape.size(); ++i) sh[i] = shape[i];
    d["shape"] = sh;
    d["typestr"] = typestr;
    d["data"] = py::make_tuple(reinterpret_cast<uintptr_t>(buf ? buf->ptr : nullptr), false);
    d["version"] = 3;
    d["strides"] = py::none();
    return d;
  }
};
#endif

// refine on a GPU: every pointer is a device pointer (torch's data_ptr()) on `device`.
py::dict refine_cuda_binding(uintptr_t xy, uintptr_t rows, int64_t num_vertices, int n_cols, int n_cut,
                             uintptr_t face_offsets, uintptr_t face_verts, uintptr_t he_layer, uintptr_t he_unit,
                             int64_t num_faces, int64_t num_half_edges, int layer_id, double rtol,
                             int64_t max_new_vertices, int device, uintptr_t stream, int64_t scratch_bytes,
                             int cut_begin, uintptr_t tol_bounds) {
#ifdef SPLINECAM_WITH_CUDA
  require(n_cut >= 0 && n_cut <= n_cols, "n_cut must be in [0, n_cols]");
  require(cut_begin >= 0 && cut_begin <= n_cut, "cut_begin must be in [0, n_cut]");
  require(num_vertices >= 0 && num_faces >= 1 && num_half_edges >= 3, "empty partition");
  require(num_vertices < (int64_t(1) << 31) && num_half_edges < (int64_t(1) << 31),
          "more than 2^31 vertices or half-edges: use tiles (splinecam.partition_tiled)");
  RefineInput in;
  in.num_vertices = static_cast<index_t>(num_vertices);
  in.xy = reinterpret_cast<const double*>(xy);
  in.rows = reinterpret_cast<double*>(rows);
  in.n_cols = n_cols;
  in.n_cut = n_cut;
  in.cut_begin = cut_begin;
  in.num_faces = num_faces;
  in.face_offsets = reinterpret_cast<const offset_t*>(face_offsets);
  in.face_verts = reinterpret_cast<const index_t*>(face_verts);
  in.he_layer = reinterpret_cast<const int32_t*>(he_layer);
  in.he_unit = reinterpret_cast<const int32_t*>(he_unit);
  in.layer_id = layer_id;
  in.rtol = rtol;
  in.max_new_vertices = max_new_vertices;
  in.tol_bounds = reinterpret_cast<const double*>(tol_bounds);  // [2, n_cut] on the device, or 0
  CudaRefineOutput o;
  try {
    py::gil_scoped_release release;
    o = refine_cuda(in, num_half_edges, device, stream, scratch_bytes);
  } catch (const std::bad_alloc&) {
    PyErr_SetString(PyExc_MemoryError, "out of GPU memory while refining the partition");
    throw py::error_already_set();
  }
  return batched_dict(o, n_cols, [](DevicePtr b, std::vector<py::ssize_t> shape, char kind) -> py::object {
    return py::cast(DeviceArray{std::move(b), std::move(shape), kind == 'd' ? "<f8" : kind == 'l' ? "<i8" : "<i4"});
  });
#else
  not_built();
#endif
}

// Checks rows (V, C) float64 C-contiguous and the windows idx (W, k) over columns from x0.
void check_windows(const py::array& rows, const carray<int64_t>& idx, int64_t x0) {
  require(rows.ndim() == 2 && (rows.flags() & py::array::c_style) && py::isinstance<py::array_t<double>>(rows),
          "rows must be a C-contiguous float64 array of shape (V, n_cols)");
  require(idx.ndim() == 2 && idx.shape(1) >= 1, "idx must have shape (W, k)");
  const int64_t C = rows.shape(1), n = idx.size();
  require(x0 >= 0 && x0 <= C, "x0 must be a column of rows");
  const int64_t* p = idx.data();
  for (int64_t i = 0; i < n; ++i) require(p[i] >= 0 && x0 + p[i] < C, "idx points outside the rows");
}

void window_chain(py::array rows_obj, int64_t x0, carray<int64_t> idx, int64_t s, int num_threads) {
  check_windows(rows_obj, idx, x0);
  auto rows = py::array_t<double>::ensure(rows_obj);
  require(rows.writeable(), "rows must be writable");
  const int64_t W = idx.shape(0), k = idx.shape(1);
  require(s >= 1 && s < k, "s must be in [1, k)");
  require(W <= x0, "the chain columns [0, W) must lie before the candidates (W <= x0)");
  double* r = rows.mutable_data();
  const int64_t V = rows.shape(0), C = rows.shape(1);
  py::gil_scoped_release release;
  window_chain_host(r, V, C, x0, idx.data(), W, k, s, num_threads);
}

py::array_t<uint8_t> winner_changes(py::array rows_obj, int64_t x0, carray<int64_t> idx, carray<double> floor,
                                    int num_threads) {
  check_windows(rows_obj, idx, x0);
  auto rows = py::array_t<double>::ensure(rows_obj);
  const int64_t W = idx.shape(0), k = idx.shape(1);
  require(floor.ndim() == 1 && floor.shape(0) == W, "floor must have shape (W,)");
  std::vector<uint8_t> out;
  {
    py::gil_scoped_release release;
    out = winner_changes_host(rows.data(), rows.shape(0), rows.shape(1), x0, idx.data(), floor.data(), W, k,
                              num_threads);
  }
  return to_numpy(std::move(out), {static_cast<py::ssize_t>(W)});
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "splinecam geometry engine (C++; CPU threads and optional CUDA launchers)";
  m.def("refine", &refine, py::arg("xy"), py::arg("rows"), py::arg("face_offsets"), py::arg("face_verts"),
        py::arg("he_layer"), py::arg("he_unit"), py::arg("n_cut"), py::arg("layer_id"), py::arg("rtol") = 1e-10,
        py::arg("num_threads") = 0, py::arg("max_new_vertices") = 0, py::arg("cut_begin") = 0,
        py::arg("tol_bounds") = py::none());
  m.def("refine_batched", &refine_batched_host, py::arg("xy"), py::arg("rows"), py::arg("face_offsets"),
        py::arg("face_verts"), py::arg("he_layer"), py::arg("he_unit"), py::arg("n_cut"), py::arg("layer_id"),
        py::arg("rtol") = 1e-10, py::arg("num_threads") = 0, py::arg("max_new_vertices") = 0,
        py::arg("scratch_bytes") = int64_t(512) << 20, py::arg("cut_begin") = 0, py::arg("tol_bounds") = py::none());
  py::register_exception<BudgetExceeded>(m, "BudgetExceeded", PyExc_MemoryError);
  m.def("halfedges", &halfedges, py::arg("num_vertices"), py::arg("face_offsets"), py::arg("face_verts"));
  m.def("validate", &validate, py::arg("num_vertices"), py::arg("face_offsets"), py::arg("face_verts"),
        py::arg("he_layer"), py::arg("he_unit"));
  m.def("merge", &merge, py::arg("num_vertices"), py::arg("face_offsets"), py::arg("face_verts"),
        py::arg("he_layer"), py::arg("he_unit"), py::arg("remove_he"));
  m.def("window_chain", &window_chain, py::arg("rows"), py::arg("x0"), py::arg("idx"), py::arg("s"),
        py::arg("num_threads") = 0);
  m.def("winner_changes", &winner_changes, py::arg("rows"), py::arg("x0"), py::arg("idx"), py::arg("floor"),
        py::arg("num_threads") = 0);
  m.def("build_info", &build_info);
  m.def("cuda_device_count", &cuda_device_count_binding);
  m.def("cuda_status", &cuda_status_binding);
  m.def("refine_cuda", &refine_cuda_binding, py::arg("xy"), py::arg("rows"), py::arg("num_vertices"),
        py::arg("n_cols"), py::arg("n_cut"), py::arg("face_offsets"), py::arg("face_verts"), py::arg("he_layer"),
        py::arg("he_unit"), py::arg("num_faces"), py::arg("num_half_edges"), py::arg("layer_id"),
        py::arg("rtol") = 1e-10, py::arg("max_new_vertices") = 0, py::arg("device") = 0, py::arg("stream") = 0,
        py::arg("scratch_bytes") = int64_t(512) << 20, py::arg("cut_begin") = 0, py::arg("tol_bounds") = 0);
#ifdef SPLINECAM_WITH_CUDA
  py::class_<DeviceArray>(m, "DeviceArray")
      .def_property_readonly("__cuda_array_interface__", &DeviceArray::interface)
      .def_property_readonly("shape", [](const DeviceArray& a) { return py::tuple(py::cast(a.shape)); })
      .def_property_readonly("typestr", [](const DeviceArray& a) { return a.typestr; });
#endif
}
