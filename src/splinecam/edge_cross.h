// Per-edge bodies of a refinement, shared by the CPU and CUDA launchers: the crossings of
// every breakpoint function with one edge of the current partition, sorted along the
// edge, and merged where several functions vanish at the same point.
//
// Each body works on one edge {a, b} (a < b, so that both faces of the edge compute
// bit-identical crossings) and writes only into the slices of the outputs that the
// launcher reserved for that edge by count -> exclusive scan -> write:
//
//   count_edge_hits   -> hits per edge      -> scan -> write_edge_hits (sorted hits)
//   merge_edge_hits (counting: no outputs)  -> scan -> merge_edge_hits (writing rows)
#pragma once

#include "common.h"
#include "crossing.h"

namespace splinecam {

// Inserts the hit (tj, j) into the n sorted hits t, col (insertion sort: columns arrive in
// increasing order, so ties in t keep column order).
SPLINECAM_HD void insert_hit(double* t, int32_t* col, int n, double tj, int32_t j) {
  int i = n;
  while (i > 0 && t[i - 1] > tj) {
    t[i] = t[i - 1];
    col[i] = col[i - 1];
    --i;
  }
  t[i] = tj;
  col[i] = j;
}

// -- sign bits ---------------------------------------------------------------------------
// A vertex's signs over the columns [B, K) as two bit sets of sign_words(K - B) words each,
// bit (j - B): pos (z > 0) and neg (z < 0), of the snapped values. An edge is crossed
// strictly by column j exactly when one end is in pos and the other in neg, so the
// crossings of an edge come from a few words per end instead of two full rows: the rows
// are read only at the columns that cross.

SPLINECAM_HD int sign_words(int n_cols) { return (n_cols + 63) >> 6; }

SPLINECAM_HD int popcount64(uint64_t x) {
#if defined(__CUDA_ARCH__)
  return __popcll(x);
#else
  return __builtin_popcountll(x);
#endif
}

SPLINECAM_HD int lowest_bit64(uint64_t x) {  // x != 0
#if defined(__CUDA_ARCH__)
  return __ffsll(static_cast<long long>(x)) - 1;
#else
  return __builtin_ctzll(x);
#endif
}

// bits: [2 * sign_words(K - B)], pos words then neg words.
SPLINECAM_HD void sign_bits(const double* z, int B, int K, uint64_t* bits) {
  const int W = sign_words(K - B);
  uint64_t* pos = bits;
  uint64_t* neg = bits + W;
  for (int w = 0; w < W; ++w) pos[w] = neg[w] = 0;
  for (int j = B; j < K; ++j) {
    const int b = j - B;
    const uint64_t m = static_cast<uint64_t>(1) << (b & 63);
    if (z[j] > 0.0) pos[b >> 6] |= m;
    if (z[j] < 0.0) neg[b >> 6] |= m;
  }
}

// Number of the columns [B, K) whose zero set strictly crosses the open edge a -> b, from
// the sign bits ba, bb of its ends.
SPLINECAM_HD int count_edge_hits(const uint64_t* ba, const uint64_t* bb, int W) {
  int n = 0;
  for (int w = 0; w < W; ++w) n += popcount64((ba[w] & bb[W + w]) | (ba[W + w] & bb[w]));
  return n;
}

// The strict crossings of edge a -> b by columns [B, K) as (t, column), sorted by t then
// column (columns are visited in increasing order). t, col: [count_edge_hits(ba, bb, W)].
SPLINECAM_HD void write_edge_hits(const double* za, const double* zb, const uint64_t* ba, const uint64_t* bb,
                                       int W, int B, double* t, int32_t* col) {
  int n = 0;
  for (int w = 0; w < W; ++w) {
    uint64_t m = (ba[w] & bb[W + w]) | (ba[W + w] & bb[w]);
    while (m) {
      const int j = B + 64 * w + lowest_bit64(m);
      m &= m - 1;
      insert_hit(t, col, n++, crossing_t(za[j], zb[j]), j);
    }
  }
}

// Merges the sorted hits of one edge into new vertices: the vertex made at the first
// unused hit t_i also carries every later hit whose column is (snapped to) zero there.
// Returns the number of vertices. With rows_out == nullptr it only counts; otherwise it
// writes their coordinates xy_out [m, 2] and value rows rows_out [m, C] (the first K
// columns snapped with tol). used: [n] scratch flags.
SPLINECAM_HD int merge_edge_hits(const double* za, const double* zb, const double* xa, const double* xb,
                                 const double* tol, const double* t, const int32_t* col, int n, int C, int K,
                                 uint8_t* used, double* xy_out, double* rows_out) {
  for (int i = 0; i < n; ++i) used[i] = 0;
  int made = 0;
  for (int i = 0; i < n; ++i) {
    if (used[i]) continue;
    const double ti = t[i];
    used[i] = 1;
    double* r = nullptr;
    if (rows_out) {
      r = rows_out + static_cast<int64_t>(made) * C;
      lerp_row(za, zb, ti, r, C);
      snap_row(r, tol, K);
      r[col[i]] = 0.0;
      lerp_row(xa, xb, ti, xy_out + 2 * static_cast<int64_t>(made), 2);
    }
    for (int k = i + 1; k < n; ++k) {
      if (used[k]) continue;
      const int j = col[k];
      // Same expression as lerp_row + snap_row, so counting and writing agree exactly.
      const double z = r ? r[j] : za[j] + ti * (zb[j] - za[j]);
      if (z <= tol[j] && z >= -tol[j]) used[k] = 1;
    }
    ++made;
  }
  return made;
}

}  // namespace splinecam
