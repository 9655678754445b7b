// Host launches of the max-type window bodies (src/splinecam/windows.h) on the thread
// pool: fixed blocks of vertices, so that results never depend on the thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "parallel.h"
#include "splinecam/windows.h"

namespace splinecam {

constexpr int64_t kWindowBlock = 256;

// Breakpoint columns [0, W) of chain step s for every vertex, in place.
inline void window_chain_host(double* rows, int64_t V, int64_t ld, int64_t x0, const int64_t* idx, int64_t W,
                              int64_t k, int64_t s, int num_threads) {
  for_blocks(V, kWindowBlock, resolve_threads(num_threads), ChainColumnStep{rows, ld, x0, idx, W, k, s});
}

// Per window: 1 when its winner is not the same at every vertex.
inline std::vector<uint8_t> winner_changes_host(const double* rows, int64_t V, int64_t ld, int64_t x0,
                                                const int64_t* idx, const double* floor, int64_t W, int64_t k,
                                                int num_threads) {
  std::vector<uint8_t> changed(static_cast<size_t>(W), 0);
  if (V == 0 || W == 0) return changed;
  std::vector<int64_t> first(static_cast<size_t>(W));
  for (int64_t w = 0; w < W; ++w) first[w] = window_winner(rows + x0, idx + w * k, k, floor[w]);
  const int64_t nb = num_blocks(V, 4 * kWindowBlock);
  std::vector<uint8_t> part(static_cast<size_t>(nb) * W, 0);
  parallel_for(nb, resolve_threads(num_threads), [&](int64_t b) {
    const WinnerChangesStep step{rows, ld, x0, idx, floor, first.data(), W, k, part.data() + b * W};
    const int64_t e = std::min<int64_t>(V, (b + 1) * 4 * kWindowBlock);
    for (int64_t v = b * 4 * kWindowBlock; v < e; ++v) step(v);
  });
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t w = 0; w < W; ++w) changed[w] |= part[b * W + w];
  return changed;
}

}  // namespace splinecam
