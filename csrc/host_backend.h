// The host backend of the launcher (launcher.h): its memory is host memory, its launches
// are blocks of indices on the thread pool, its scans are loops and its sort is the
// sort of edge_table.h. Its face pass is threaded (the CPU launcher) or pooled:
// the GPU's face pass run step for step on the host, so that a machine without a GPU
// runs every line of the launcher the GPU runs, and the tests compare the two.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <utility>
#include <vector>

#include "launcher.h"
#include "parallel.h"
#include "splinecam/common.h"
#include "splinecam/host_memory.h"

namespace splinecam {

// Host memory handed to the caller: uninitialised bytes, or a vector adopted as it is.
struct HostBuffer {
  void* ptr = nullptr;
  int64_t bytes = 0;
  std::shared_ptr<void> owner;
  explicit HostBuffer(int64_t n)
      : ptr(host_allocate(n > 0 ? static_cast<size_t>(n) : 1)), bytes(n), owner(ptr, host_free) {}
  template <class T, class A>
  explicit HostBuffer(std::vector<T, A>&& v) {
    auto held = std::make_shared<std::vector<T, A>>(std::move(v));
    ptr = held->data();
    bytes = static_cast<int64_t>(sizeof(T) * held->size());
    owner = std::move(held);
  }
};
using HostPtr = std::shared_ptr<HostBuffer>;

template <class T, class A>
HostPtr adopt(std::vector<T, A>&& v) {
  return std::make_shared<HostBuffer>(std::move(v));
}

using HostResult = RefineResult<HostPtr>;

// Per column j < K: rtol * max_v |rows[v, j]| (the snapping tolerance).
inline void column_tolerance_host(const double* rows, int64_t V, int C, int K, double rtol, double* tol,
                                  int num_threads, int64_t block = 4096) {
  const int64_t nb = num_blocks(V, block);
  std::vector<double> part(static_cast<size_t>(nb) * K, 0.0);
  parallel_for(nb, threads_for(V * K, num_threads), [&](int64_t b) {
    double* m = part.data() + b * K;
    for (int64_t v = b * block; v < std::min<int64_t>(V, (b + 1) * block); ++v) {
      const double* r = rows + v * C;
      for (int j = 0; j < K; ++j) m[j] = std::max(m[j], std::fabs(r[j]));
    }
  });
  for (int j = 0; j < K; ++j) tol[j] = 0.0;
  for (int64_t b = 0; b < nb; ++b)
    for (int j = 0; j < K; ++j) tol[j] = std::max(tol[j], part[b * K + j]);
  for (int j = 0; j < K; ++j) tol[j] *= rtol;
}

// The threaded face pass: per-thread scratch, one run per face (a face that outgrows
// its scratch runs again at once, at the next level), per-block outputs joined in order.
void threaded_face_pass(const RefineInput& in, const FaceInput& fin, const double* xy_edge, int num_threads,
                        HostResult& out);

class HostBackend {
 public:
  using Buffer = HostPtr;
  template <class T>
  struct Array {
    std::unique_ptr<T[]> p;
    T* get() const { return p.get(); }
  };
  enum class FacePass { threaded, pooled };

  explicit HostBackend(int num_threads, FacePass faces = FacePass::threaded, int64_t scratch_bytes = 0)
      : threads_(resolve_threads(num_threads)), faces_(faces), scratch_bytes_(scratch_bytes) {}

  template <class T>
  Array<T> array(int64_t n) {
    return Array<T>{std::unique_ptr<T[]>(new T[n > 0 ? n : 1])};
  }
  Buffer buffer(int64_t bytes) { return std::make_shared<HostBuffer>(bytes); }

  // Blocks of 256 to 4096 indices: enough blocks to balance the threads, few enough
  // that scheduling costs nothing. Outputs are per index, so blocks never change them;
  // a small launch runs on the calling thread (threads_for: a step costs some ten
  // nanoseconds per index, more for steps over whole rows).
  template <class Step>
  void launch(const Step& step, int64_t n, int /*threads per block*/) {
    const int64_t block = std::clamp<int64_t>(n / (16 * int64_t(threads_)), 256, 4096);
    for_blocks(n, block, threads_for(16 * n, threads_), step);
  }
  offset_t scan_counts(offset_t* off, int64_t n) {
    off[0] = 0;
    for (int64_t i = 0; i < n; ++i) off[i + 1] += off[i];
    return off[n];
  }
  void inclusive_scan(offset_t* p, int64_t n) {
    for (int64_t i = 1; i < n; ++i) p[i] += p[i - 1];
  }
  void sort_by_key(uint64_t* key, int64_t* value, int64_t n) { splinecam::sort_by_key(key, value, n); }
  void column_tolerance(const double* rows, int64_t V, int C, int K, double rtol, double* tol) {
    column_tolerance_host(rows, V, C, K, rtol, tol, threads_);
  }
  template <class T>
  T read(const T* p) {
    return *p;
  }
  template <class T>
  std::vector<T> read(const T* p, int64_t n) {
    return std::vector<T>(p, p + n);
  }
  template <class T>
  void upload(T* dst, const std::vector<T>& src) {
    std::copy(src.begin(), src.end(), dst);
  }
  void copy(void* dst, const void* src, int64_t bytes) {
    if (bytes > 0) std::memcpy(dst, src, bytes);
  }
  void sync() {}
  void cut_faces(const RefineInput& in, const FaceInput& fin, const double* xy_edge, HostResult& out) {
    if (faces_ == FacePass::pooled)
      pooled_face_pass(*this, in, fin, xy_edge, scratch_bytes_, out);
    else
      threaded_face_pass(in, fin, xy_edge, threads_, out);
  }

 private:
  int threads_;
  FacePass faces_;
  int64_t scratch_bytes_;
};

// The CPU launcher (cpu_launcher.cpp): the launcher on the host with threaded faces.
HostResult refine_cpu(const RefineInput& in);
// The GPU's launcher on the host: pooled faces, scratch_bytes of scratch per batch.
HostResult refine_host_pooled(const RefineInput& in, int64_t scratch_bytes);

}  // namespace splinecam
