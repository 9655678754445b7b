// The host backend of the batched launcher (batched_launcher.h): its memory is host
// memory, its launches are blocks of indices on the thread pool, its scans and sorts are
// the standard library's. With it a machine without a GPU runs the launcher the GPU
// runs, step for step, and the tests compare its output with the CPU launcher's.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <utility>
#include <vector>

#include "parallel.h"
#include "splinecam/common.h"
#include "splinecam/host_memory.h"

namespace splinecam {

struct HostBuffer {
  void* ptr = nullptr;
  int64_t bytes = 0;
  explicit HostBuffer(int64_t n) : ptr(host_allocate(n > 0 ? static_cast<size_t>(n) : 1)), bytes(n) {}
  ~HostBuffer() { host_free(ptr); }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
};

// Per column j < K: rtol * max_v |rows[v, j]| (the snapping tolerance).
inline void column_tolerance_host(const double* rows, int64_t V, int C, int K, double rtol, double* tol,
                                  int num_threads, int64_t block = 4096) {
  const int64_t nb = num_blocks(V, block);
  std::vector<double> part(static_cast<size_t>(nb) * K, 0.0);
  parallel_for(nb, num_threads, [&](int64_t b) {
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

class HostBackend {
 public:
  using Buffer = std::shared_ptr<HostBuffer>;
  template <class T>
  struct Array {
    std::unique_ptr<T[]> p;
    T* get() const { return p.get(); }
  };

  explicit HostBackend(int num_threads, int64_t block = 256) : threads_(num_threads), block_(block) {}

  template <class T>
  Array<T> array(int64_t n) {
    return Array<T>{std::unique_ptr<T[]>(new T[n > 0 ? n : 1])};
  }
  Buffer buffer(int64_t bytes) { return std::make_shared<HostBuffer>(bytes); }

  template <class Step>
  void launch(const Step& step, int64_t n, int /*threads per block*/) {
    for_blocks(n, block_, threads_, step);
  }
  offset_t scan_counts(offset_t* off, int64_t n) {
    off[0] = 0;
    for (int64_t i = 0; i < n; ++i) off[i + 1] += off[i];
    return off[n];
  }
  void inclusive_scan(offset_t* p, int64_t n) {
    for (int64_t i = 1; i < n; ++i) p[i] += p[i - 1];
  }
  void sort_by_key(uint64_t* key, int64_t* value, int64_t n) {
    std::vector<std::pair<uint64_t, int64_t>> kv(n);
    for (int64_t i = 0; i < n; ++i) kv[i] = {key[i], value[i]};
    std::stable_sort(kv.begin(), kv.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (int64_t i = 0; i < n; ++i) key[i] = kv[i].first, value[i] = kv[i].second;
  }
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

 private:
  int threads_;
  int64_t block_;
};

}  // namespace splinecam
