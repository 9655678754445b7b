// CPU launcher primitive: run body(i) for i in [0, n) on a pool of threads with dynamic
// scheduling. Work is cut into fixed-size blocks by the callers so that the output order
// never depends on the number of threads.
//
// The threads persist between calls (ThreadPool): a refinement makes a handful of
// parallel loops per layer, and creating threads for each cost more than small layers
// take. One loop runs on the pool at a time; a loop started while the pool is busy (from
// another Python thread, or nested inside a loop body) runs on threads of its own, as
// before the pool existed. A process forked from one that used the pool (Dask, torch
// data loaders) starts a new pool: the old threads do not exist in the child.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace splinecam {

inline int resolve_threads(int requested) {
  if (requested > 0) return requested;
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

// Loops with less work than this (estimated in nanoseconds of one thread) run on the
// calling thread. Between two loops of a pass the driver's Python code runs for a while,
// long enough for the pool's idle threads to sleep; waking one again costs from tens of
// microseconds on a quiet machine to several hundred in a virtual machine whose idle
// cores halt (measured: 2-10^5-1 on [-2,2]^2 spent 2.1 ms per call in the engine with two
// threads, 0.9 ms with one). A loop is split only when it saves more than that.
constexpr int64_t kSerialWork = int64_t(1) << 18;

inline int threads_for(int64_t work, int num_threads) { return work < kSerialWork ? 1 : num_threads; }

class ThreadPool {
 public:
  // The process's pool (a new one after fork). Never destroyed: its threads wait until
  // the process exits.
  static ThreadPool& instance() {
    static std::mutex guard;
    static ThreadPool* pool = nullptr;
    std::lock_guard<std::mutex> lock(guard);
    if (pool == nullptr || pool->pid_ != getpid()) pool = new ThreadPool();  // a forked child leaks the old one
    return *pool;
  }

  // Runs job() on `helpers` pool threads while the caller runs it too; returns when all
  // have returned. False (nothing run) when the pool is busy with another loop.
  bool run(int helpers, const std::function<void()>& job) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    {
      std::unique_lock<std::mutex> lock(m_);
      while (static_cast<int>(threads_.size()) < helpers) {
        const int id = static_cast<int>(threads_.size());
        threads_.emplace_back([this, id] { work(id); });
        threads_.back().detach();
      }
      job_ = &job;
      helpers_ = helpers;
      pending_ = helpers;
      ++generation_;
    }
    wake_.notify_all();
    job();
    std::unique_lock<std::mutex> lock(m_);
    done_.wait(lock, [this] { return pending_ == 0; });
    job_ = nullptr;
    return true;
  }

 private:
  ThreadPool() : pid_(getpid()) {}

  void work(int id) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void()>* job;
      {
        std::unique_lock<std::mutex> lock(m_);
        wake_.wait(lock, [&] { return generation_ != seen && id < helpers_; });
        seen = generation_;
        job = job_;
      }
      (*job)();
      std::lock_guard<std::mutex> lock(m_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  const pid_t pid_;
  std::mutex busy_;  // held by the loop running on the pool
  std::mutex m_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> threads_;
  const std::function<void()>* job_ = nullptr;
  int helpers_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
};

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
  const std::function<void()> worker = [&]() {
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
  if (!ThreadPool::instance().run(nt - 1, worker)) {
    std::vector<std::thread> pool;
    for (int t = 1; t < nt; ++t) pool.emplace_back(worker);
    worker();
    for (auto& t : pool) t.join();
  }
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
