// CPU launcher primitive: run body(i) for i in [0, n) on a small pool of threads with
// dynamic scheduling. Work is cut into fixed-size blocks by the callers so that the
// output order never depends on the number of threads.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace splinecam {

inline int resolve_threads(int requested) {
  if (requested > 0) return requested;
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

template <class Body>
void parallel_for(int64_t n, int num_threads, Body&& body) {
  int nt = static_cast<int>(std::min<int64_t>(resolve_threads(num_threads), n));
  if (nt <= 1) {
    for (int64_t i = 0; i < n; ++i) body(i);
    return;
  }
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto worker = [&]() {
    try {
      for (;;) {
        int64_t i = next.fetch_add(1);
        if (i >= n) break;
        body(i);
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      next.store(n);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < nt; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

// Number of fixed-size blocks covering n items.
inline int64_t num_blocks(int64_t n, int64_t block) { return (n + block - 1) / block; }

// Runs step(i) for i < n over fixed-size blocks on the thread pool.
template <class Step>
void for_blocks(int64_t n, int64_t block, int num_threads, const Step& step) {
  parallel_for(num_blocks(n, block), num_threads, [&](int64_t b) {
    const int64_t e = std::min<int64_t>(n, (b + 1) * block);
    for (int64_t i = b * block; i < e; ++i) step(i);
  });
}

}  // namespace splinecam
