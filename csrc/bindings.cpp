// The one pybind11 module of splinecam: thin entry points and m.def lines. Input checks
// and the typed results live in convert.h. Pure C++ work runs with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "convert.h"
#include "host_windows.h"
#ifdef SPLINECAM_WITH_CUDA
#include "cuda_launcher.h"
#endif

namespace py = pybind11;
using namespace splinecam;

namespace {

py::dict refine_binding(carray<double> xy, py::array rows_obj, carray<int64_t> face_offsets, carray<int32_t> face_verts,
                carray<int32_t> he_layer, carray<int32_t> he_unit, int n_cut, int layer_id, double rtol,
                int num_threads, int64_t max_new_vertices, int cut_begin, py::object tol_bounds) {
  carray<double> bounds;
  const RefineInput in = host_input(xy, rows_obj, face_offsets, face_verts, he_layer, he_unit, n_cut, layer_id,
                                    rtol, num_threads, max_new_vertices, cut_begin, tol_bounds, bounds);
  HostResult o;
  try {
    py::gil_scoped_release release;
    o = refine_cpu(in);
  } catch (const std::bad_alloc&) {
    PyErr_SetString(PyExc_MemoryError, "out of memory while refining the partition");
    throw py::error_already_set();
  }
  return host_result_dict(o, in.n_cols);
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
  HostResult o;
  {
    py::gil_scoped_release release;
    o = refine_host_pooled(in, scratch_bytes);
  }
  return host_result_dict(o, in.n_cols);
}

py::dict halfedges(int num_vertices, carray<int64_t> face_offsets, carray<int32_t> face_verts) {
  const int64_t F = checked_faces(face_offsets, face_verts);
  HalfEdges d;
  {
    py::gil_scoped_release release;
    d = build_halfedges(num_vertices, F, face_offsets.data(), face_verts.data());
  }
  return halfedges_dict(std::move(d));
}

std::string validate(int num_vertices, carray<int64_t> face_offsets, carray<int32_t> face_verts,
                     carray<int32_t> he_layer, carray<int32_t> he_unit) {
  const int64_t F = checked_faces(face_offsets, face_verts);
  py::gil_scoped_release release;
  return validate_cycles(num_vertices, F, face_offsets.data(), face_verts.data(), he_layer.data(), he_unit.data());
}

py::dict merge(int num_vertices, carray<int64_t> face_offsets, carray<int32_t> face_verts, carray<int32_t> he_layer,
               carray<int32_t> he_unit, carray<uint8_t> remove_he) {
  const int64_t F = checked_faces(face_offsets, face_verts);
  const int64_t H = face_offsets.at(F);
  require(he_layer.shape(0) == H && he_unit.shape(0) == H && remove_he.shape(0) == H, "inconsistent face arrays");
  MergeOutput o;
  {
    py::gil_scoped_release release;
    o = merge_faces(num_vertices, F, face_offsets.data(), face_verts.data(), he_layer.data(), he_unit.data(),
                    remove_he.data());
  }
  return merge_dict(std::move(o));
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
  return result_dict(o, n_cols, [](DevicePtr b, std::vector<py::ssize_t> shape, char kind) -> py::object {
    return py::cast(DeviceArray{std::move(b), std::move(shape), kind == 'd' ? "<f8" : kind == 'l' ? "<i8" : "<i4"});
  });
#else
  not_built();
#endif
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

// The window bodies on a GPU: every pointer a device pointer (torch's data_ptr()) on `device`.
void window_chain_cuda_binding(uintptr_t rows, int64_t num_vertices, int64_t ld, int64_t x0, uintptr_t idx,
                               int64_t W, int64_t k, int64_t s, int device, uintptr_t stream) {
#ifdef SPLINECAM_WITH_CUDA
  require(W >= 0 && k >= 1 && s >= 1 && s < k && W <= x0 && x0 < ld, "inconsistent window arguments");
  py::gil_scoped_release release;
  window_chain_cuda(reinterpret_cast<double*>(rows), num_vertices, ld, x0, reinterpret_cast<const int64_t*>(idx), W,
                    k, s, device, stream);
#else
  not_built();
#endif
}

py::array_t<uint8_t> winner_changes_cuda_binding(uintptr_t rows, int64_t num_vertices, int64_t ld, int64_t x0,
                                                 uintptr_t idx, uintptr_t floor, int64_t W, int64_t k, int device,
                                                 uintptr_t stream) {
#ifdef SPLINECAM_WITH_CUDA
  require(W >= 0 && k >= 1 && x0 < ld, "inconsistent window arguments");
  std::vector<uint8_t> out;
  {
    py::gil_scoped_release release;
    out = winner_changes_cuda(reinterpret_cast<const double*>(rows), num_vertices, ld, x0,
                              reinterpret_cast<const int64_t*>(idx), reinterpret_cast<const double*>(floor), W, k,
                              device, stream);
  }
  return to_numpy(std::move(out), {static_cast<py::ssize_t>(W)});
#else
  not_built();
#endif
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "splinecam geometry engine (C++; CPU threads and optional CUDA launchers)";
  m.def("refine", &refine_binding, py::arg("xy"), py::arg("rows"), py::arg("face_offsets"), py::arg("face_verts"),
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
  m.def("window_chain_cuda", &window_chain_cuda_binding, py::arg("rows"), py::arg("num_vertices"), py::arg("ld"),
        py::arg("x0"), py::arg("idx"), py::arg("W"), py::arg("k"), py::arg("s"), py::arg("device") = 0,
        py::arg("stream") = 0);
  m.def("winner_changes_cuda", &winner_changes_cuda_binding, py::arg("rows"), py::arg("num_vertices"),
        py::arg("ld"), py::arg("x0"), py::arg("idx"), py::arg("floor"), py::arg("W"), py::arg("k"),
        py::arg("device") = 0, py::arg("stream") = 0);
#ifdef SPLINECAM_WITH_CUDA
  py::class_<DeviceArray>(m, "DeviceArray")
      .def_property_readonly("__cuda_array_interface__", &DeviceArray::interface)
      .def_property_readonly("shape", [](const DeviceArray& a) { return py::tuple(py::cast(a.shape)); })
      .def_property_readonly("typestr", [](const DeviceArray& a) { return a.typestr; });
#endif
}
