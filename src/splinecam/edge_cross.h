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

#if defined(__SSE2__) && !defined(__CUDA_ARCH__)
#include <emmintrin.h>
#endif

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

// bits: [2 * sign_words(K - B)], pos words then neg words. Returns the number of exact
// zeros among z[B .. K). Each word is gathered in a register, branch-free (the signs of a
// layer's values are as good as random).
SPLINECAM_HD int sign_bits(const double* z, int B, int K, uint64_t* bits) {
  const int W = sign_words(K - B);
  int zeros = 0;
  for (int w = 0; w < W; ++w) {
    const int j0 = B + 64 * w, j1 = j0 + 64 < K ? j0 + 64 : K;
    uint64_t pos = 0, neg = 0;
    int j = j0;
#if defined(__SSE2__) && !defined(__CUDA_ARCH__)
    // Two values per compare on the host: the same predicates (NaN is neither sign nor
    // zero), their masks gathered by movemask instead of a variable shift per value.
    const __m128d zero = _mm_setzero_pd();
    for (; j + 2 <= j1; j += 2) {
      const __m128d v = _mm_loadu_pd(z + j);
      const int sh = j - j0;
      pos |= static_cast<uint64_t>(_mm_movemask_pd(_mm_cmpgt_pd(v, zero))) << sh;
      neg |= static_cast<uint64_t>(_mm_movemask_pd(_mm_cmplt_pd(v, zero))) << sh;
      const int e = _mm_movemask_pd(_mm_cmpeq_pd(v, zero));
      zeros += (e & 1) + (e >> 1);
    }
#endif
    for (; j < j1; ++j) {
      pos |= static_cast<uint64_t>(z[j] > 0.0) << (j - j0);
      neg |= static_cast<uint64_t>(z[j] < 0.0) << (j - j0);
      zeros += z[j] == 0.0;
    }
    bits[w] = pos;
    bits[W + w] = neg;
  }
  return zeros;
}

// Word w of the columns [B, K) with opposite signs at the ends of an edge, from the sign
// bits ba, bb of its ends: the columns whose zero set strictly crosses it.
SPLINECAM_HD uint64_t edge_hit_word(const uint64_t* ba, const uint64_t* bb, int W, int w) {
  return (ba[w] & bb[W + w]) | (ba[W + w] & bb[w]);
}

// Whether some column [B, K) strictly crosses the open edge a -> b.
SPLINECAM_HD bool edge_has_hits(const uint64_t* ba, const uint64_t* bb, int W) {
  uint64_t any = 0;
  for (int w = 0; w < W; ++w) any |= edge_hit_word(ba, bb, W, w);
  return any != 0;
}

// Number of the columns [B, K) whose zero set strictly crosses the open edge a -> b.
SPLINECAM_HD int count_edge_hits(const uint64_t* ba, const uint64_t* bb, int W) {
  int n = 0;
  for (int w = 0; w < W; ++w) n += popcount64(edge_hit_word(ba, bb, W, w));
  return n;
}

// The strict crossings of edge a -> b by columns [B, K) as (t, column), sorted by t then
// column (columns are visited in increasing order). t, col: [count_edge_hits(ba, bb, W)].
SPLINECAM_HD void write_edge_hits(const double* za, const double* zb, const uint64_t* ba, const uint64_t* bb,
                                       int W, int B, double* t, int32_t* col) {
  int n = 0;
  for (int w = 0; w < W; ++w) {
    uint64_t m = edge_hit_word(ba, bb, W, w);
    while (m) {
      const int j = B + 64 * w + lowest_bit64(m);
      m &= m - 1;
      insert_hit(t, col, n++, crossing_t(za[j], zb[j]), j);
    }
  }
}

// A strict crossing that lands on an end of an edge too short to hold it. The crossings
// of edge a -> b by columns [B, K) are placed from their nearer end (crossing_of); where
// that point is, in float64, the end's own coordinates and no point of the edge lies one
// resolvable step off it (step_off; an edge an ulp long, across a strip an ulp wide), the
// line passes through the end at the resolution of the coordinates: the end's value of
// that column is made 0 instead of a second vertex at the same point (a zero-length edge,
// a region of area 0). Sets bit (j - B) in ends_a / ends_b ([W] words each, atomically:
// other edges of the same end set bits too) for the columns that land on a / on b.
SPLINECAM_HD void mark_crossings_on_ends(const double* za, const double* zb, const double* xa, const double* xb,
                                         const uint64_t* ba, const uint64_t* bb, int W, int B, uint64_t* ends_a,
                                         uint64_t* ends_b) {
  // Only an edge that some column crosses, with no float64 point one step off an end,
  // can need it (almost none).
  if (!edge_has_hits(ba, bb, W)) return;
  double q[2];
  step_off(xa, xb, q);
  const bool room_a = q[0] != xa[0] || q[1] != xa[1];
  step_off(xb, xa, q);
  if (room_a && (q[0] != xb[0] || q[1] != xb[1])) return;
  for (int w = 0; w < W; ++w) {
    uint64_t m = edge_hit_word(ba, bb, W, w);
    while (m) {
      const uint64_t bit = m & (~m + 1);
      const int j = B + 64 * w + lowest_bit64(m);
      m &= m - 1;
      const Crossing c = crossing_of(za[j], zb[j]);
      const double* x_end = c.from_b ? xb : xa;
      if (lerp_at(xa[0], xb[0], c) != x_end[0] || lerp_at(xa[1], xb[1], c) != x_end[1]) continue;
      step_off(x_end, c.from_b ? xa : xb, q);
      if (q[0] == x_end[0] && q[1] == x_end[1]) atomic_or64((c.from_b ? ends_b : ends_a) + w, bit);
    }
  }
}

// The marks of mark_crossings_on_ends applied to one vertex: its values of the marked
// columns become 0 and its sign bits say so. row: [K] (at least); bits: [2 W]; marks: [W].
// Returns the number of columns zeroed (all were nonzero: only strict crossings are marked).
SPLINECAM_HD int zero_marked_columns(double* row, uint64_t* bits, const uint64_t* marks, int W, int B) {
  int n = 0;
  for (int w = 0; w < W; ++w) {
    uint64_t m = marks[w];
    if (!m) continue;
    bits[w] &= ~m;
    bits[W + w] &= ~m;
    n += popcount64(m);
    while (m) {
      row[B + 64 * w + lowest_bit64(m)] = 0.0;
      m &= m - 1;
    }
  }
  return n;
}

// Merges the hits of one edge, sorted along it (write_edge_hits: their columns col), into
// new vertices: the vertex made at the first unused hit also carries every later hit
// whose column is (snapped to) zero there.
// Returns the number of vertices. With rows_out == nullptr it only counts; otherwise it
// writes their coordinates xy_out [m, 2] and value rows rows_out [m, C] (the first K
// columns snapped with tol). used: [n] scratch flags.
//
// Each vertex is placed from the nearer end (crossing_of). Where that point is, in
// float64, an end of the edge or the vertex before it, it is stepped off along the edge
// (step_off): two lines closer than the coordinates' rounding stay two lines, one
// resolvable step apart, instead of two vertices at one point (a zero-length edge, a
// region of area 0) or one vertex on both (which, for two breakpoints of one unit,
// would give it two activations at once).
SPLINECAM_HD int merge_edge_hits(const double* za, const double* zb, const double* xa, const double* xb,
                                 const double* tol, const int32_t* col, int n, int C, int K, uint8_t* used,
                                 double* xy_out, double* rows_out) {
  for (int i = 0; i < n; ++i) used[i] = 0;
  int made = 0;
  double prev[2] = {xa[0], xa[1]};  // the point before the next vertex along a -> b
  for (int i = 0; i < n; ++i) {
    if (used[i]) continue;
    const Crossing c = crossing_of(za[col[i]], zb[col[i]]);
    used[i] = 1;
    // Where the vertex goes (computed when counting too: both runs decide alike).
    double q[2];
    lerp_row_at(xa, xb, c, q, 2);
    if (q[0] == prev[0] && q[1] == prev[1]) step_off(prev, xb, q);
    if (q[0] == xb[0] && q[1] == xb[1]) step_off(xb, prev, q);
    if (made > 0 && ((q[0] == prev[0] && q[1] == prev[1]) || (q[0] == xb[0] && q[1] == xb[1]))) {
      // No float64 point between the vertex before and the end: this line passes through
      // that vertex (its column becomes 0 there), as a line within the tolerance would.
      if (rows_out) rows_out[static_cast<int64_t>(made - 1) * C + col[i]] = 0.0;
      continue;
    }
    double* r = nullptr;
    if (rows_out) {
      r = rows_out + static_cast<int64_t>(made) * C;
      lerp_row_at(za, zb, c, r, C);
      snap_row(r, tol, K);
      r[col[i]] = 0.0;
      xy_out[2 * static_cast<int64_t>(made)] = q[0];
      xy_out[2 * static_cast<int64_t>(made) + 1] = q[1];
    }
    prev[0] = q[0];
    prev[1] = q[1];
    for (int k = i + 1; k < n; ++k) {
      if (used[k]) continue;
      const int j = col[k];
      // Same expression as lerp_row_at + snap_row, so counting and writing agree exactly.
      const double z = r ? r[j] : lerp_at(za[j], zb[j], c);
      if (z <= tol[j] && z >= -tol[j]) used[k] = 1;
    }
    ++made;
  }
  return made;
}

}  // namespace splinecam
