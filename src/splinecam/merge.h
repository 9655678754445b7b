// Merge faces across edges that separate nothing.
//
// A max-type nonlinearity (max-pooling, maxout, max of two tensors) is split like a
// chain of ReLUs, max(a, b) = b + relu(a - b); a split line can end up with the same
// winner on both sides, and then the faces on its two sides are one linear region.
// Given the half-edges to remove (both halves of such edges), the faces on either side
// are united and each union is walked once: from a kept half-edge, the next kept one is
// found by turning around the vertex past removed edges. A union of convex faces with
// one winner per window is convex, so every union yields exactly one cycle.
#pragma once

#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.h"
#include "halfedge.h"

namespace splinecam {

struct MergeOutput {
  std::vector<offset_t> face_offsets;  // [F' + 1]
  std::vector<index_t> face_verts;     // [H']
  std::vector<int32_t> he_layer, he_unit;
  std::vector<index_t> group;          // [F] merged face of each input face
};

inline MergeOutput merge_faces(index_t num_vertices, offset_t num_faces, const offset_t* off, const index_t* verts,
                               const int32_t* layer, const int32_t* unit, const uint8_t* remove_he) {
  HalfEdges d = build_halfedges(num_vertices, num_faces, off, verts);
  const offset_t H = off[num_faces];
  std::vector<index_t> root(num_faces);
  std::iota(root.begin(), root.end(), 0);
  auto find = [&](index_t f) {
    while (root[f] != f) f = root[f] = root[root[f]];
    return f;
  };
  for (offset_t h = 0; h < H; ++h) {
    if (!remove_he[h]) continue;
    index_t t = d.twin[h];
    if (t < 0 || !remove_he[t]) throw std::invalid_argument("merge_faces: a removed half-edge needs a removed twin");
    index_t a = find(d.face[h]), b = find(d.face[t]);
    if (a != b) root[std::max(a, b)] = std::min(a, b);
  }
  MergeOutput o;
  o.group.assign(num_faces, -1);
  std::vector<index_t> start;  // one kept half-edge per group, groups numbered by first face
  std::vector<index_t> gid(num_faces, -1);
  for (offset_t f = 0; f < num_faces; ++f) {
    index_t r = find(static_cast<index_t>(f));
    if (gid[r] < 0) {
      gid[r] = static_cast<index_t>(start.size());
      start.push_back(-1);
    }
    o.group[f] = gid[r];
    index_t& s = start[gid[r]];
    if (s < 0)
      for (offset_t h = off[f]; h < off[f + 1]; ++h)
        if (!remove_he[h]) {
          s = static_cast<index_t>(h);
          break;
        }
  }
  std::vector<char> seen(H, 0);
  o.face_offsets.push_back(0);
  for (size_t g = 0; g < start.size(); ++g) {
    if (start[g] < 0) throw std::runtime_error("merge_faces: a merged face has no boundary");
    index_t h = start[g];
    offset_t guard = 0;
    do {
      seen[h] = 1;
      o.face_verts.push_back(d.origin[h]);
      o.he_layer.push_back(layer[h]);
      o.he_unit.push_back(unit[h]);
      index_t n = d.next[h];
      while (remove_he[n]) n = d.next[d.twin[n]];
      h = n;
      if (++guard > H) throw std::runtime_error("merge_faces: boundary walk does not close");
    } while (h != start[g]);
    o.face_offsets.push_back(static_cast<offset_t>(o.face_verts.size()));
  }
  for (offset_t h = 0; h < H; ++h)
    if (!remove_he[h] && !seen[h])
      throw std::runtime_error("merge_faces: a merged face has more than one boundary cycle (half-edge " +
                               std::to_string(h) + ")");
  return o;
}

}  // namespace splinecam
