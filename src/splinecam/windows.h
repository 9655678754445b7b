// Per-vertex bodies of max-type layers (max-pooling, maxout, torch.maximum): windows of
// k candidates among a vertex's carried values.
//
// A max over k candidates is refined as k - 1 ReLU steps, max(c_0..c_{s-1}) - c_s
// (see python/splinecam/driver/maxtype.py): ChainColumnStep writes step s's breakpoint
// column of every window. After the steps, only windows whose winner is not the same at
// every vertex can separate faces: WinnerChangesStep finds them. The winner of a window
// is its first candidate within floor_w of the maximum, so that candidates equal up to
// rounding noise do not flip it. Both bodies read a row once, with no temporaries, and
// give exactly what the numpy expressions they replace give (max and compare are exact).
#pragma once

#include <cstdint>

#include "common.h"

namespace splinecam {

// rows[v, w] = max(X[v, idx[w, 0..s-1]]) - X[v, idx[w, s]], X[v, :] = rows[v, x0:].
struct ChainColumnStep {
  double* rows;
  int64_t ld;  // row stride (values)
  int64_t x0;  // first column of the candidates
  const int64_t* idx;  // [W, k]
  int64_t W, k, s;
  SPLINECAM_HD void operator()(int64_t v) const {
    double* r = rows + v * ld;
    const double* X = r + x0;
    for (int64_t w = 0; w < W; ++w) {
      const int64_t* c = idx + w * k;
      double m = X[c[0]];
      for (int64_t j = 1; j < s; ++j) m = X[c[j]] > m ? X[c[j]] : m;
      r[w] = m - X[c[s]];
    }
  }
};

// The winner of window w at a row of candidates X.
SPLINECAM_HD int64_t window_winner(const double* X, const int64_t* c, int64_t k, double floor) {
  double m = X[c[0]];
  for (int64_t j = 1; j < k; ++j) m = X[c[j]] > m ? X[c[j]] : m;
  const double bar = m - floor;
  for (int64_t j = 0; j < k; ++j)
    if (X[c[j]] >= bar) return j;
  return k - 1;  // unreachable for finite values
}

// changed[w] = 1 when window w's winner at vertex v differs from its winner at vertex 0
// (first[w]); each block of vertices writes its own flags (no races), OR-ed by the caller.
struct WinnerChangesStep {
  const double* rows;
  int64_t ld, x0;
  const int64_t* idx;
  const double* floor;  // [W]
  const int64_t* first;  // [W] winners at vertex 0
  int64_t W, k;
  uint8_t* changed;  // [W] of the caller's block
  SPLINECAM_HD void operator()(int64_t v) const {
    const double* X = rows + v * ld + x0;
    for (int64_t w = 0; w < W; ++w)
      if (!changed[w] && window_winner(X, idx + w * k, k, floor[w]) != first[w]) changed[w] = 1;
  }
};

}  // namespace splinecam
