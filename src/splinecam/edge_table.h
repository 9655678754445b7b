// Undirected edges of a planar graph given as face cycles.
//
// Faces are stored as cycles of vertex ids (CSR: offsets [F+1], verts [H]); half-edge h
// runs from verts[h] to the next vertex of its cycle. Each undirected edge {lo, hi}
// appears in one cycle (domain boundary) or two (interior). The table is built by a
// counting sort on the smaller endpoint: O(H + V), no hashing, deterministic.
#pragma once

#include <algorithm>
#include <vector>

#include "common.h"

namespace splinecam {

// Next half-edge of h in its face cycle, given the cycle bounds [begin, end).
inline offset_t cycle_next(offset_t h, offset_t begin, offset_t end) {
  return h + 1 < end ? h + 1 : begin;
}

struct EdgeTable {
  std::vector<index_t> lo, hi;   // [E] endpoints, lo < hi
  std::vector<index_t> edge_of;  // [H] undirected edge of each half-edge
};

inline EdgeTable build_edge_table(index_t num_vertices, offset_t num_faces,
                                  const offset_t* face_offsets, const index_t* face_verts) {
  const offset_t H = face_offsets[num_faces];
  EdgeTable t;
  t.edge_of.assign(H, -1);
  // Bucket half-edges by their smaller endpoint.
  std::vector<offset_t> bucket(static_cast<size_t>(num_vertices) + 1, 0);
  std::vector<index_t> other(H);
  for (offset_t f = 0; f < num_faces; ++f) {
    const offset_t b = face_offsets[f], e = face_offsets[f + 1];
    for (offset_t h = b; h < e; ++h) {
      index_t u = face_verts[h], v = face_verts[cycle_next(h, b, e)];
      index_t lo = std::min(u, v);
      other[h] = std::max(u, v);
      ++bucket[lo + 1];
    }
  }
  for (index_t v = 0; v < num_vertices; ++v) bucket[v + 1] += bucket[v];
  std::vector<offset_t> fill(bucket.begin(), bucket.end() - 1);
  std::vector<offset_t> order(H);
  for (offset_t f = 0; f < num_faces; ++f) {
    const offset_t b = face_offsets[f], e = face_offsets[f + 1];
    for (offset_t h = b; h < e; ++h) {
      index_t u = face_verts[h], v = face_verts[cycle_next(h, b, e)];
      order[fill[std::min(u, v)]++] = h;
    }
  }
  // Within a bucket, half-edges with the same larger endpoint are one edge.
  t.lo.reserve(H / 2 + 1);
  t.hi.reserve(H / 2 + 1);
  for (index_t v = 0; v < num_vertices; ++v) {
    offset_t b = bucket[v], e = bucket[v + 1];
    if (b == e) continue;
    std::sort(order.begin() + b, order.begin() + e,
              [&](offset_t x, offset_t y) { return other[x] < other[y] || (other[x] == other[y] && x < y); });
    for (offset_t i = b; i < e; ++i) {
      offset_t h = order[i];
      if (i == b || other[order[i - 1]] != other[h]) {
        t.lo.push_back(v);
        t.hi.push_back(other[h]);
      }
      t.edge_of[h] = static_cast<index_t>(t.lo.size() - 1);
    }
  }
  return t;
}

}  // namespace splinecam
