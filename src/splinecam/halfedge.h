// Half-edge (DCEL) view of a planar graph stored as face cycles, and its validator.
//
// Half-edge h of face f runs origin[h] -> origin[next[h]]; twin[h] is the opposite
// half-edge (-1 on the domain boundary). The validator checks what every partition must
// satisfy: closed cycles of at least three distinct vertices, each undirected edge used
// once per direction by two different faces (or once, on the domain boundary, labelled
// -1), matching labels on both sides, and Euler's formula V - E + F = 1 for a connected
// subdivision of one convex polygon.
#pragma once

#include <string>
#include <vector>

#include "common.h"
#include "edge_table.h"

namespace splinecam {

struct HalfEdges {
  std::vector<index_t> origin, twin, next, face;  // [H]
  EdgeTable edges;                                  // [E] lo, hi; [H] edge_of
};

inline HalfEdges build_halfedges(index_t num_vertices, offset_t num_faces, const offset_t* off,
                                 const index_t* verts) {
  HalfEdges d;
  const offset_t H = off[num_faces];
  d.origin.assign(verts, verts + H);
  d.next.resize(H);
  d.face.resize(H);
  d.twin.assign(H, -1);
  for (offset_t f = 0; f < num_faces; ++f)
    for (offset_t h = off[f]; h < off[f + 1]; ++h) {
      d.next[h] = static_cast<index_t>(cycle_next(h, off[f], off[f + 1]));
      d.face[h] = static_cast<index_t>(f);
    }
  d.edges = build_edge_table(num_vertices, num_faces, off, verts);
  std::vector<index_t> first(d.edges.lo.size(), -1);
  for (offset_t h = 0; h < H; ++h) {
    index_t e = d.edges.edge_of[h];
    if (first[e] < 0) {
      first[e] = static_cast<index_t>(h);
    } else {
      d.twin[h] = first[e];
      d.twin[first[e]] = static_cast<index_t>(h);
    }
  }
  return d;
}

// Empty string when the structure is a valid subdivision; otherwise the first problem.
inline std::string validate_cycles(index_t num_vertices, offset_t num_faces, const offset_t* off,
                                   const index_t* verts, const int32_t* layer, const int32_t* unit) {
  auto fail = [](const std::string& what) { return what; };
  if (num_faces <= 0) return fail("no faces");
  const offset_t H = off[num_faces];
  std::vector<char> used(num_vertices, 0);
  std::vector<offset_t> seen_at(num_vertices, -1);
  for (offset_t f = 0; f < num_faces; ++f) {
    if (off[f + 1] - off[f] < 3) return fail("face " + std::to_string(f) + " has fewer than 3 vertices");
    for (offset_t h = off[f]; h < off[f + 1]; ++h) {
      index_t v = verts[h];
      if (v < 0 || v >= num_vertices) return fail("face " + std::to_string(f) + " has an invalid vertex id");
      if (seen_at[v] == f) return fail("face " + std::to_string(f) + " visits vertex " + std::to_string(v) + " twice");
      seen_at[v] = f;
      used[v] = 1;
    }
  }
  HalfEdges d = build_halfedges(num_vertices, num_faces, off, verts);
  const int64_t E = static_cast<int64_t>(d.edges.lo.size());
  std::vector<int> uses(E, 0);
  for (offset_t h = 0; h < H; ++h) ++uses[d.edges.edge_of[h]];
  for (offset_t h = 0; h < H; ++h) {
    index_t e = d.edges.edge_of[h];
    std::string where = "edge (" + std::to_string(d.edges.lo[e]) + ", " + std::to_string(d.edges.hi[e]) + ")";
    if (uses[e] > 2) return fail(where + " is used by more than two half-edges");
    index_t t = d.twin[h];
    if (t < 0) {
      if (layer[h] != kBoundary)
        return fail(where + " has one side only but is labelled layer " + std::to_string(layer[h]) +
                    " (a T-junction or a hole)");
      continue;
    }
    if (d.origin[t] != d.origin[d.next[h]] || d.origin[h] != d.origin[d.next[t]])
      return fail(where + " is used twice in the same direction");
    if (d.face[t] == d.face[h]) return fail(where + " has the same face on both sides");
    if (layer[t] != layer[h] || unit[t] != unit[h]) return fail(where + " has different labels on its two sides");
  }
  int64_t nv = 0;
  for (char u : used) nv += u;
  if (nv - E + num_faces != 1)
    return fail("Euler's formula fails: V - E + F = " + std::to_string(nv) + " - " + std::to_string(E) + " + " +
                std::to_string(num_faces) + " != 1");
  return std::string();
}

}  // namespace splinecam
