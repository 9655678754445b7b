// CUDA launcher of the refinement step: the steps of csrc/refine_steps.h (the same
// bodies the CPU launcher runs) as grid-stride kernels, variable-size outputs by count ->
// exclusive scan (Thrust) -> write. Pointers are raw device pointers taken from torch
// tensors by the Python driver; the extension never links against libtorch.
//
// The face pass differs from the CPU's only in where scratch lives: every face of a
// batch gets its own slice of one pool. It runs twice: once to learn each face's output
// sizes (and the capacity level its scratch needs: faces that overflow run again at the
// next level), then, after the scans, again to write at the scanned offsets. Arithmetic
// is cheap on the GPU; memory is not.
#include <cuda_runtime.h>
#include <thrust/execution_policy.h>
#include <thrust/scan.h>
#include <thrust/sequence.h>
#include <thrust/sort.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_launcher.h"
#include "refine_steps.h"

namespace splinecam {
namespace {

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    cudaGetLastError();
    if (err == cudaErrorMemoryAllocation) throw std::bad_alloc();
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(err));
  }
}

template <class Step>
__global__ void grid_stride(Step step, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)
    step(i);
}

template <class Step>
void launch(const Step& step, int64_t n, cudaStream_t s, int threads = 256) {
  if (n <= 0) return;
  const int blocks = static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 1 << 20));
  grid_stride<<<blocks, threads, 0, s>>>(step, n);
  check(cudaGetLastError(), "kernel launch");
}

// Stream-ordered scratch memory, freed when it goes out of scope.
template <class T>
class Scratch {
 public:
  Scratch(int64_t n, cudaStream_t s) : n_(n), s_(s) {
    if (n > 0) check(cudaMallocAsync(reinterpret_cast<void**>(&p_), sizeof(T) * n, s), "cudaMallocAsync");
  }
  ~Scratch() {
    if (p_) cudaFreeAsync(p_, s_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  T* get() const { return p_; }
  int64_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  int64_t n_;
  cudaStream_t s_;
};

template <class T>
T read_back(const T* p, cudaStream_t s) {
  T v{};
  check(cudaMemcpyAsync(&v, p, sizeof(T), cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  return v;
}

template <class T>
std::vector<T> read_back(const T* p, int64_t n, cudaStream_t s) {
  std::vector<T> v(n);
  if (n) check(cudaMemcpyAsync(v.data(), p, sizeof(T) * n, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  return v;
}

template <class T>
void upload(T* dst, const std::vector<T>& src, cudaStream_t s) {
  if (!src.empty())
    check(cudaMemcpyAsync(dst, src.data(), sizeof(T) * src.size(), cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
}

// off[0] = 0 and the counts stored at off[1 .. n] become their inclusive scan; returns
// the total.
offset_t scan_counts(offset_t* off, int64_t n, cudaStream_t s) {
  check(cudaMemsetAsync(off, 0, sizeof(offset_t), s), "cudaMemsetAsync");
  if (n > 0) thrust::inclusive_scan(thrust::cuda::par.on(s), off + 1, off + n + 1, off + 1);
  return read_back(off + n, s);
}

// Per-column max |z| over the vertices: thread (chunk, column) reduces a chunk of rows,
// then one atomic per thread. Non-negative doubles order like their bit patterns.
struct ColumnAbsMaxStep {
  const double* rows;
  int64_t V;
  int C, K;
  int64_t chunk;
  unsigned long long* out;  // [K] bit patterns
  __device__ void operator()(int64_t i) const {
    const int j = static_cast<int>(i % K);
    const int64_t v0 = (i / K) * chunk, v1 = v0 + chunk < V ? v0 + chunk : V;
    double m = 0.0;
    for (int64_t v = v0; v < v1; ++v) m = fmax(m, fabs(rows[v * C + j]));
    atomicMax(out + j, static_cast<unsigned long long>(__double_as_longlong(m)));
  }
};

struct ScaleTolStep {
  const unsigned long long* bits;
  double rtol;
  double* tol;
  __device__ void operator()(int64_t j) const { tol[j] = rtol * __longlong_as_double(static_cast<long long>(bits[j])); }
};

struct IdentityStep {
  int64_t* a;
  __device__ void operator()(int64_t i) const { a[i] = i; }
};

struct SnapCountStep {
  double* rows;
  const double* tol;
  int C, K;
  int32_t* zero_count;
  __device__ void operator()(int64_t v) const {
    const int z = snap_row(rows + v * C, tol, K);
    if (zero_count) zero_count[v] = z;
  }
};

class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }

 private:
  int previous_ = 0;
};

[[noreturn]] void budget_exceeded() {
  throw BudgetExceeded("the refinement exceeds its budget of new vertices (memory limit)");
}

// Faces cut into batches whose scratch fits in `limit` bytes (a face larger than the
// limit gets a batch of its own). Returns the batch boundaries into `ids`.
std::vector<size_t> batches(const std::vector<int32_t>& ids, const std::vector<int64_t>& bytes, int64_t limit) {
  std::vector<size_t> cut{0};
  int64_t acc = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t b = bytes[ids[i]];
    if (acc > 0 && acc + b > limit) {
      cut.push_back(i);
      acc = 0;
    }
    acc += b;
  }
  cut.push_back(ids.size());
  return cut;
}

}  // namespace

DeviceBuffer::DeviceBuffer(int64_t n, int dev) : bytes(n), device(dev) {
  if (n > 0) check(cudaMalloc(&ptr, n), "cudaMalloc");
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr) {
    int previous = 0;
    cudaGetDevice(&previous);
    cudaSetDevice(device);
    cudaFree(ptr);
    cudaSetDevice(previous);
  }
}

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

void cuda_snap_rows(uintptr_t rows, uintptr_t tol, int64_t n_rows, int n_cols, int n_cut, uintptr_t zero_count,
                    uintptr_t stream) {
  auto s = reinterpret_cast<cudaStream_t>(stream);
  launch(SnapCountStep{reinterpret_cast<double*>(rows), reinterpret_cast<const double*>(tol), n_cols, n_cut,
              reinterpret_cast<int32_t*>(zero_count)},
         n_rows, s);
  check(cudaStreamSynchronize(s), "snap_rows");
}

CudaRefineOutput refine_cuda(const RefineInput& in, int64_t H, int device, uintptr_t stream_handle,
                             int64_t scratch_bytes) {
  DeviceGuard guard(device);
  const cudaStream_t s = reinterpret_cast<cudaStream_t>(stream_handle);
  const index_t V = in.num_vertices;
  const int C = in.n_cols, K = in.n_cut;
  const int64_t F = in.num_faces;
  CudaRefineOutput out;
  auto clock = std::chrono::steady_clock::now();
  auto lap = [&](int phase) {
    check(cudaStreamSynchronize(s), "refine_cuda");
    auto now = std::chrono::steady_clock::now();
    out.seconds[phase] = std::chrono::duration<double>(now - clock).count();
    clock = now;
  };
  auto alloc = [&](int64_t bytes) { return std::make_shared<DeviceBuffer>(bytes, device); };

  // ---- 0. per-column tolerance and snapping -------------------------------------------
  Scratch<double> tol(std::max(K, 1), s);
  {
    Scratch<unsigned long long> bits(std::max(K, 1), s);
    check(cudaMemsetAsync(bits.get(), 0, sizeof(unsigned long long) * std::max(K, 1), s), "cudaMemsetAsync");
    const int64_t chunk = 256;
    if (K > 0 && V > 0) launch(ColumnAbsMaxStep{in.rows, V, C, K, chunk, bits.get()}, ((V + chunk - 1) / chunk) * K, s);
    launch(ScaleTolStep{bits.get(), in.rtol, tol.get()}, K, s);
  }
  Scratch<offset_t> zero_off(static_cast<int64_t>(V) + 1, s);
  launch(SnapStep{in.rows, tol.get(), C, K, zero_off.get()}, V, s);
  const offset_t Z = scan_counts(zero_off.get(), V, s);
  Scratch<int32_t> zero_col(std::max<int64_t>(Z, 1), s);
  launch(ZeroColumnsStep{in.rows, C, K, zero_off.get(), zero_col.get()}, V, s);
  lap(0);

  // ---- 1. edges ----------------------------------------------------------------------
  Scratch<uint64_t> key(std::max<int64_t>(H, 1), s);
  Scratch<int64_t> order(std::max<int64_t>(H, 1), s);
  Scratch<offset_t> edge_id(std::max<int64_t>(H, 1), s);
  Scratch<index_t> edge_of(std::max<int64_t>(H, 1), s);
  launch(HalfEdgeKeyStep{in.face_offsets, in.face_verts, key.get()}, F, s);
  launch(IdentityStep{order.get()}, H, s);
  if (H > 0) thrust::stable_sort_by_key(thrust::cuda::par.on(s), key.get(), key.get() + H, order.get());
  launch(EdgeHeadStep{key.get(), edge_id.get()}, H, s);
  if (H > 0) thrust::inclusive_scan(thrust::cuda::par.on(s), edge_id.get(), edge_id.get() + H, edge_id.get());
  const int64_t E = H > 0 ? read_back(edge_id.get() + H - 1, s) : 0;
  Scratch<index_t> edge_lo(std::max<int64_t>(E, 1), s), edge_hi(std::max<int64_t>(E, 1), s);
  launch(EdgeWriteStep{key.get(), order.get(), edge_id.get(), edge_of.get(), edge_lo.get(), edge_hi.get()}, H, s);
  lap(1);

  // ---- 2. crossings on edges -----------------------------------------------------------
  Scratch<offset_t> hit_off(E + 1, s), cross_off(E + 1, s);
  launch(CountHitsStep{in.rows, C, K, edge_lo.get(), edge_hi.get(), hit_off.get()}, E, s);
  const offset_t n_hits = scan_counts(hit_off.get(), E, s);
  Scratch<double> hit_t(std::max<int64_t>(n_hits, 1), s);
  Scratch<int32_t> hit_col(std::max<int64_t>(n_hits, 1), s);
  Scratch<uint8_t> used(std::max<int64_t>(n_hits, 1), s);
  launch(WriteHitsStep{in.rows, C, K, edge_lo.get(), edge_hi.get(), hit_off.get(), hit_t.get(), hit_col.get()}, E, s);
  MergeHitsStep merge{in.rows, in.xy, tol.get(), C, K, edge_lo.get(), edge_hi.get(), hit_off.get(), hit_t.get(),
                      hit_col.get(), used.get(), cross_off.get(), nullptr, nullptr};
  launch(merge, E, s);
  const index_t n1 = static_cast<index_t>(scan_counts(cross_off.get(), E, s));
  if (in.max_new_vertices > 0 && n1 > in.max_new_vertices) budget_exceeded();
  out.edge_vertices = n1;
  Scratch<double> xy_edge(2 * static_cast<int64_t>(std::max<index_t>(n1, 1)), s);
  out.rows_edge = alloc(8 * static_cast<int64_t>(n1) * C);
  merge.xy1 = xy_edge.get();
  merge.rows1 = static_cast<double*>(out.rows_edge->ptr);
  launch(merge, E, s);
  lap(2);

  // ---- 3. faces ------------------------------------------------------------------------
  const FaceInput fin{in.face_offsets, in.face_verts, in.he_layer, in.he_unit, edge_lo.get(), edge_of.get(),
                      cross_off.get(), hit_off.get(), hit_col.get(), zero_off.get(), zero_col.get(), in.xy,
                      in.rows, xy_edge.get(), merge.rows1, tol.get(), V, n1, C, K, in.layer_id};
  Scratch<FacePlan> plan(std::max<int64_t>(F, 1), s);
  launch(PlanFaceStep{fin, plan.get()}, F, s);
  const std::vector<FacePlan> hplan = read_back(plan.get(), F, s);
  std::vector<int32_t> level(F, 0);
  std::vector<int64_t> bytes(F);
  auto size_faces = [&](const std::vector<int32_t>& ids) {
    for (int32_t f : ids) bytes[f] = carve_scratch(nullptr, face_caps(hplan[f], level[f]), C, nullptr);
  };
  Scratch<int32_t> dlevel(std::max<int64_t>(F, 1), s);
  Scratch<FaceResult> result(std::max<int64_t>(F, 1), s);
  // Runs `step_for(batch)` over the faces `ids`, batch by batch, each with its scratch.
  auto run_batches = [&](const std::vector<int32_t>& ids, auto&& run) {
    upload(dlevel.get(), level, s);
    const std::vector<size_t> cut = batches(ids, bytes, scratch_bytes);
    for (size_t b = 0; b + 1 < cut.size(); ++b) {
      const int64_t n = static_cast<int64_t>(cut[b + 1] - cut[b]);
      std::vector<int32_t> bid(ids.begin() + cut[b], ids.begin() + cut[b + 1]);
      std::vector<int64_t> boff(n);
      int64_t total = 0;
      for (int64_t i = 0; i < n; ++i) {
        boff[i] = total;
        total += bytes[bid[i]];
      }
      Scratch<int32_t> dids(n, s);
      Scratch<int64_t> doff(n, s);
      Scratch<char> pool(std::max<int64_t>(total, 8), s);
      upload(dids.get(), bid, s);
      upload(doff.get(), boff, s);
      CutFaceStep step{fin, plan.get(), dids.get(), dlevel.get(), pool.get(), doff.get(), result.get()};
      run(step, n);
      check(cudaStreamSynchronize(s), "face pass");  // before the pool is freed
    }
  };
  // Counting runs: every face at the lowest level that holds it.
  std::vector<int32_t> pending(F);
  for (int64_t f = 0; f < F; ++f) pending[f] = static_cast<int32_t>(f);
  std::vector<FaceResult> hres(F);
  for (int round = 0; !pending.empty(); ++round) {
    if (round > 40) throw std::runtime_error("face scratch keeps overflowing (internal error)");
    size_faces(pending);
    run_batches(pending, [&](const CutFaceStep& step, int64_t n) { launch(step, n, s, 128); });
    hres = read_back(result.get(), F, s);
    std::vector<int32_t> again;
    for (int32_t f : pending)
      if (hres[f].overflow) {
        ++level[f];
        again.push_back(f);
      }
    pending.swap(again);
    ++out.face_rounds;
  }
  // Scan the sizes, then run every face again and write it out.
  std::vector<int64_t> piece_off(F + 1, 0), he_off(F + 1, 0), local_off(F + 1, 0);
  for (int64_t f = 0; f < F; ++f) {
    piece_off[f + 1] = piece_off[f] + hres[f].pieces;
    he_off[f + 1] = he_off[f] + hres[f].half_edges;
    local_off[f + 1] = local_off[f] + hres[f].local;
    out.degenerate += hres[f].degenerate;
  }
  const int64_t P = piece_off[F], HO = he_off[F], ML = local_off[F];
  if (in.max_new_vertices > 0 && n1 + ML > in.max_new_vertices) budget_exceeded();
  out.face_vertices = ML;
  out.num_faces = P;
  out.num_half_edges = HO;
  out.xy = alloc(16 * (n1 + ML));
  out.rows_face = alloc(8 * ML * C);
  out.face_offsets = alloc(8 * (P + 1));
  out.face_verts = alloc(4 * HO);
  out.he_layer = alloc(4 * HO);
  out.he_unit = alloc(4 * HO);
  out.face_parent = alloc(4 * P);
  if (n1)
    check(cudaMemcpyAsync(out.xy->ptr, xy_edge.get(), 16 * static_cast<int64_t>(n1), cudaMemcpyDeviceToDevice, s),
          "cudaMemcpyAsync");
  Scratch<int64_t> dpiece(F + 1, s), dhe(F + 1, s), dlocal(F + 1, s);
  upload(dpiece.get(), piece_off, s);
  upload(dhe.get(), he_off, s);
  upload(dlocal.get(), local_off, s);
  auto* offsets = static_cast<offset_t*>(out.face_offsets->ptr);
  std::vector<int32_t> all(F);
  for (int64_t f = 0; f < F; ++f) all[f] = static_cast<int32_t>(f);
  size_faces(all);
  run_batches(all, [&](const CutFaceStep& step, int64_t n) {
    CutEmitFaceStep emit{step,
                         dpiece.get(),
                         dhe.get(),
                         dlocal.get(),
                         offsets + 1,
                         static_cast<index_t*>(out.face_verts->ptr),
                         static_cast<int32_t*>(out.he_layer->ptr),
                         static_cast<int32_t*>(out.he_unit->ptr),
                         static_cast<index_t*>(out.face_parent->ptr),
                         static_cast<double*>(out.xy->ptr) + 2 * static_cast<int64_t>(n1),
                         static_cast<double*>(out.rows_face->ptr)};
    launch(emit, n, s, 128);
  });
  scan_counts(offsets, P, s);
  lap(3);
  lap(4);
  return out;
}

}  // namespace splinecam
