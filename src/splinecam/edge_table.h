// Undirected edges of a planar graph given as face cycles.
//
// Faces are stored as cycles of vertex ids (CSR: offsets [F+1], verts [H]); half-edge h
// runs from verts[h] to the next vertex of its cycle. Each undirected edge {lo, hi}
// appears in one cycle (domain boundary) or two (interior).
//
// One algorithm builds the table everywhere: every half-edge gets its edge's key
// (lo << 32 | hi), the keys are sorted stably, and edges are numbered in key order (the
// heads of runs of equal keys, scanned). The steps below are per-element bodies:
// build_edge_table runs them in sequence with the host's sort; the refinement's launchers
// (csrc/launcher.h) run the same numbering on threads or on a GPU, with the backend's
// sort, over the half-edges that the refinement's columns cross (the others share one
// empty edge there). The numbering is therefore one and the same in every launcher.
#pragma once

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "common.h"

namespace splinecam {

// Next half-edge of h in its face cycle, given the cycle bounds [begin, end).
SPLINECAM_HD offset_t cycle_next(offset_t h, offset_t begin, offset_t end) { return h + 1 < end ? h + 1 : begin; }

struct EdgeTable {
  std::vector<index_t> lo, hi;   // [E] endpoints, lo < hi
  std::vector<index_t> edge_of;  // [H] undirected edge of each half-edge
};

// The key (lo << 32 | hi) of the edge between vertices u and v.
SPLINECAM_HD uint64_t edge_key(index_t u, index_t v) {
  const uint32_t lo = static_cast<uint32_t>(u < v ? u : v), hi = static_cast<uint32_t>(u < v ? v : u);
  return (static_cast<uint64_t>(lo) << 32) | hi;
}

// Per face f: the key of each of its half-edges.
struct HalfEdgeKeyStep {
  const offset_t* face_offsets;
  const index_t* face_verts;
  uint64_t* key;  // [H]
  SPLINECAM_HD void operator()(int64_t f) const {
    const offset_t b = face_offsets[f], e = face_offsets[f + 1];
    for (offset_t h = b; h < e; ++h) {
      key[h] = edge_key(face_verts[h], face_verts[cycle_next(h, b, e)]);
    }
  }
};

struct IotaStep {
  int64_t* a;
  SPLINECAM_HD void operator()(int64_t i) const { a[i] = i; }
};

// Per sorted position: 1 where a new edge starts (after an inclusive scan: edge + 1).
struct EdgeHeadStep {
  const uint64_t* sorted_key;  // [H]
  offset_t* edge_id;           // [H]
  SPLINECAM_HD void operator()(int64_t i) const { edge_id[i] = i == 0 || sorted_key[i] != sorted_key[i - 1]; }
};

struct EdgeWriteStep {
  const uint64_t* sorted_key;
  const int64_t* order;     // [H] half-edge at sorted position i
  const offset_t* edge_id;  // [H] inclusive scan of the heads
  index_t* edge_of;         // [H]
  index_t *lo, *hi;         // [E]
  SPLINECAM_HD void operator()(int64_t i) const {
    const index_t e = static_cast<index_t>(edge_id[i] - 1);
    edge_of[order[i]] = e;
    if (i == 0 || sorted_key[i] != sorted_key[i - 1]) {
      lo[e] = static_cast<index_t>(sorted_key[i] >> 32);
      hi[e] = static_cast<index_t>(sorted_key[i] & 0xffffffffu);
    }
  }
};

// Stable sort of n (key, value) pairs by key by comparison.
inline void comparison_sort_by_key(uint64_t* key, int64_t* value, int64_t n) {
  std::vector<std::pair<uint64_t, int64_t>> kv(n);
  for (int64_t i = 0; i < n; ++i) kv[i] = {key[i], value[i]};
  std::stable_sort(kv.begin(), kv.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  for (int64_t i = 0; i < n; ++i) key[i] = kv[i].first, value[i] = kv[i].second;
}

// Keys up to which the radix sort sorts by comparison instead: each radix digit costs a
// pass over 2048 buckets, more than sorting a few thousand keys.
constexpr int64_t kComparisonSortMax = 2048;

// Stable sort of (key, value) pairs by key on the host: least-significant-digit radix
// sort over 11-bit digits, only over the bits in which the keys differ (edge keys of V
// vertices differ in about 2 log2 V bits: four passes up to two million vertices). One
// read of the keys makes every digit's histogram.
inline void radix_sort_by_key(uint64_t* key, int64_t* value, int64_t n) {
  if (n < 2) return;
  if (n <= kComparisonSortMax) return comparison_sort_by_key(key, value, n);
  uint64_t varying = 0;
  for (int64_t i = 1; i < n; ++i) varying |= key[i] ^ key[0];
  if (varying == 0) return;
  constexpr int kBits = 11, kBuckets = 1 << kBits;
  std::vector<int> shifts;
  for (int b = 0; b < 64;) {
    if (!((varying >> b) & 1)) {
      ++b;
      continue;
    }
    shifts.push_back(b);
    b += kBits;
  }
  const size_t D = shifts.size();
  std::vector<int64_t> count(D * kBuckets, 0);
  for (int64_t i = 0; i < n; ++i)
    for (size_t d = 0; d < D; ++d) ++count[d * kBuckets + ((key[i] >> shifts[d]) & (kBuckets - 1))];
  std::vector<uint64_t> key2(n);
  std::vector<int64_t> value2(n);
  uint64_t *k0 = key, *k1 = key2.data();
  int64_t *v0 = value, *v1 = value2.data();
  for (size_t d = 0; d < D; ++d) {
    int64_t* c = count.data() + d * kBuckets;
    int64_t sum = 0;
    for (int j = 0; j < kBuckets; ++j) {
      const int64_t t = c[j];
      c[j] = sum;
      sum += t;
    }
    const int s = shifts[d];
    for (int64_t i = 0; i < n; ++i) {
      const int64_t at = c[(k0[i] >> s) & (kBuckets - 1)]++;
      k1[at] = k0[i];
      v1[at] = v0[i];
    }
    std::swap(k0, k1);
    std::swap(v0, v1);
  }
  if (k0 != key) {
    std::memcpy(key, k0, sizeof(uint64_t) * n);
    std::memcpy(value, v0, sizeof(int64_t) * n);
  }
}

// Stable sort of (key, value) pairs by key on the host, for keys whose high words are
// few: edge keys (lo << 32 | hi) of V vertices have at most V high words, and a partition
// has three to six half-edges per vertex. One counting pass over the high words, one
// stable scatter, then each run of one high word (the half-edges of one vertex's edges to
// higher vertices: a few) sorted by insertion, which is stable. Two passes over the keys
// instead of the radix sort's three to five, and no 2048-bucket histograms, which cost
// more than the whole sort of a small partition. Keys of any other kind (a subset of a
// large partition's faces, say) go to the radix sort.
inline void sort_by_key(uint64_t* key, int64_t* value, int64_t n) {
  if (n < 2) return;
  uint64_t top = 0;
  for (int64_t i = 0; i < n; ++i) top = std::max<uint64_t>(top, key[i] >> 32);
  if (top >= static_cast<uint64_t>(2 * n + 64)) return radix_sort_by_key(key, value, n);
  const int64_t M = static_cast<int64_t>(top) + 1;
  std::vector<int64_t> start(M + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++start[(key[i] >> 32) + 1];
  for (int64_t b = 0; b < M; ++b) start[b + 1] += start[b];
  std::vector<uint64_t> k(key, key + n);
  std::vector<int64_t> v(value, value + n);
  {
    std::vector<int64_t> at(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t p = at[k[i] >> 32]++;
      key[p] = k[i];
      value[p] = v[i];
    }
  }
  for (int64_t b = 0; b < M; ++b) {
    const int64_t s = start[b], e = start[b + 1];
    if (e - s <= 1) continue;
    if (e - s > 64) {  // a vertex of high degree (many lines through one point)
      comparison_sort_by_key(key + s, value + s, e - s);
      continue;
    }
    for (int64_t i = s + 1; i < e; ++i) {
      const uint64_t kk = key[i];
      const int64_t vv = value[i];
      int64_t j = i;
      for (; j > s && key[j - 1] > kk; --j) key[j] = key[j - 1], value[j] = value[j - 1];
      key[j] = kk;
      value[j] = vv;
    }
  }
}

// The edge table of a partition on the host: the steps above, in sequence.
inline EdgeTable build_edge_table(index_t /*num_vertices*/, offset_t num_faces, const offset_t* face_offsets,
                                  const index_t* face_verts) {
  const offset_t H = face_offsets[num_faces];
  std::vector<uint64_t> key(H);
  std::vector<int64_t> order(H);
  std::vector<offset_t> edge_id(H);
  const HalfEdgeKeyStep keys{face_offsets, face_verts, key.data()};
  for (offset_t f = 0; f < num_faces; ++f) keys(f);
  for (offset_t h = 0; h < H; ++h) IotaStep{order.data()}(h);
  sort_by_key(key.data(), order.data(), H);
  for (offset_t i = 0; i < H; ++i) EdgeHeadStep{key.data(), edge_id.data()}(i);
  for (offset_t i = 1; i < H; ++i) edge_id[i] += edge_id[i - 1];
  EdgeTable t;
  const offset_t E = H > 0 ? edge_id[H - 1] : 0;
  t.lo.resize(E);
  t.hi.resize(E);
  t.edge_of.resize(H);
  const EdgeWriteStep write{key.data(), order.data(), edge_id.data(), t.edge_of.data(), t.lo.data(), t.hi.data()};
  for (offset_t i = 0; i < H; ++i) write(i);
  return t;
}

}  // namespace splinecam
