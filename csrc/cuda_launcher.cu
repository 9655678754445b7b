// CUDA backend of the launcher (launcher.h): the steps of refine_steps.h (the same
// bodies the CPU launcher runs) as grid-stride kernels, scans and sorts from Thrust,
// stream-ordered scratch memory, the pooled face pass. Pointers are raw device pointers
// taken from torch tensors by the Python driver; the extension never links against
// libtorch. The launcher itself is the one the host backend runs (host_backend.h), so a
// machine without a GPU runs it too.
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
#include "launcher.h"
#include "splinecam/windows.h"

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
    if (p_ && cudaFreeAsync(p_, s_) != cudaSuccess) cudaGetLastError();  // never blame the next launch
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

class CudaBackend {
 public:
  using Buffer = DevicePtr;
  template <class T>
  using Array = Scratch<T>;

  CudaBackend(cudaStream_t s, int device, int64_t scratch_bytes)
      : s_(s), device_(device), scratch_bytes_(scratch_bytes) {}

  template <class T>
  Scratch<T> array(int64_t n) {
    return Scratch<T>(n > 0 ? n : 1, s_);
  }
  Buffer buffer(int64_t bytes) { return std::make_shared<DeviceBuffer>(bytes, device_); }
  template <class Step>
  void launch(const Step& step, int64_t n, int threads) {
    splinecam::launch(step, n, s_, threads);
  }
  offset_t scan_counts(offset_t* off, int64_t n) { return splinecam::scan_counts(off, n, s_); }
  void inclusive_scan(offset_t* p, int64_t n) {
    if (n > 0) thrust::inclusive_scan(thrust::cuda::par.on(s_), p, p + n, p);
  }
  void sort_by_key(uint64_t* key, int64_t* value, int64_t n) {
    if (n > 0) thrust::stable_sort_by_key(thrust::cuda::par.on(s_), key, key + n, value);
  }
  void column_tolerance(const double* rows, int64_t V, int C, int K, double rtol, double* tol) {
    Scratch<unsigned long long> bits(K > 0 ? K : 1, s_);
    check(cudaMemsetAsync(bits.get(), 0, sizeof(unsigned long long) * (K > 0 ? K : 1), s_), "cudaMemsetAsync");
    const int64_t chunk = 256;
    if (K > 0 && V > 0) launch(ColumnAbsMaxStep{rows, V, C, K, chunk, bits.get()}, ((V + chunk - 1) / chunk) * K, 256);
    launch(ScaleTolStep{bits.get(), rtol, tol}, K, 256);
  }
  template <class T>
  T read(const T* p) {
    return read_back(p, s_);
  }
  template <class T>
  std::vector<T> read(const T* p, int64_t n) {
    return read_back(p, n, s_);
  }
  template <class T>
  void upload(T* dst, const std::vector<T>& src) {
    splinecam::upload(dst, src, s_);
  }
  void copy(void* dst, const void* src, int64_t bytes) {
    if (bytes > 0) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s_), "cudaMemcpyAsync");
  }
  void sync() { check(cudaStreamSynchronize(s_), "cudaStreamSynchronize"); }
  void cut_faces(const RefineInput& in, const FaceInput& fin, const double* xy_edge, RefineResult<Buffer>& out) {
    pooled_face_pass(*this, in, fin, xy_edge, scratch_bytes_, out);
  }

 private:
  cudaStream_t s_;
  int device_;
  int64_t scratch_bytes_;
};

// The winner of every window at vertex 0 (WinnerChangesStep compares against it).
struct WindowFirstStep {
  const double* rows;
  int64_t x0;
  const int64_t* idx;
  const double* floor;
  int64_t k;
  int64_t* first;
  __device__ void operator()(int64_t w) const { first[w] = window_winner(rows + x0, idx + w * k, k, floor[w]); }
};

class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() {
    if (cudaSetDevice(previous_) != cudaSuccess) cudaGetLastError();
  }

 private:
  int previous_ = 0;
};


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
    cudaGetLastError();  // a destructor reports nothing; never blame the next launch
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

std::string cuda_status() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err == cudaSuccess) return std::string();
  cudaGetLastError();
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  auto v = [](int x) { return std::to_string(x / 1000) + "." + std::to_string((x % 1000) / 10); };
  return std::string(cudaGetErrorString(err)) + " (CUDA runtime " + v(runtime) + ", driver supports " +
         (driver ? v(driver) : std::string("none: no NVIDIA driver")) + ")";
}

CudaRefineOutput refine_cuda(const RefineInput& in, int64_t num_half_edges, int device, uintptr_t stream,
                             int64_t scratch_bytes) {
  DeviceGuard guard(device);
  CudaBackend be(reinterpret_cast<cudaStream_t>(stream), device, scratch_bytes);
  return refine(in, num_half_edges, be);
}

void window_chain_cuda(double* rows, int64_t V, int64_t ld, int64_t x0, const int64_t* idx, int64_t W, int64_t k,
                       int64_t s, int device, uintptr_t stream) {
  DeviceGuard guard(device);
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  launch(ChainColumnStep{rows, ld, x0, idx, W, k, s}, V, st);
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
}

std::vector<uint8_t> winner_changes_cuda(const double* rows, int64_t V, int64_t ld, int64_t x0, const int64_t* idx,
                                         const double* floor, int64_t W, int64_t k, int device, uintptr_t stream) {
  DeviceGuard guard(device);
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  if (V == 0 || W == 0) return std::vector<uint8_t>(static_cast<size_t>(W), 0);
  Scratch<int64_t> first(W, st);
  Scratch<uint8_t> changed(W, st);
  check(cudaMemsetAsync(changed.get(), 0, W, st), "cudaMemsetAsync");
  launch(WindowFirstStep{rows, x0, idx, floor, k, first.get()}, W, st);
  // Every vertex that finds a change writes the same 1: the races are benign.
  launch(WinnerChangesStep{rows, ld, x0, idx, floor, first.get(), W, k, changed.get()}, V, st);
  return read_back(changed.get(), W, st);
}

}  // namespace splinecam
