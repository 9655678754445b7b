// One refinement step of the partition: split every face along the zero sets of one
// layer's breakpoint functions, given their values at the current vertices.
//
// Phases (each a per-element body; csrc/launcher.h runs them on every backend):
//   0. tolerance: per column, |z| <= tol_j is snapped to exactly 0, where tol_j is
//      min(rtol * max_v |z_j|, cap_j) raised to floor_j when the caller gives bounds (the
//      driver's tolerance policy: a rounding floor, and a cap that keeps two
//      breakpoints of one unit apart; the driver gives floor = cap, the tolerance
//      itself, and max_v |z_j| is then not measured); the sign bits of every vertex
//      over the columns cut now;
//   1. edge table of the current faces' crossed half-edges (some column has opposite
//      signs at the two ends); the others share one empty edge;
//   2. per edge: crossings of every column, sorted along the edge, coincident ones
//      merged into one vertex (shared by both faces of the edge);
//   3. per face: the boundary cycle with its crossings, cut column by column
//      (face_cut.h).
#pragma once

#include <cstdint>
#include <stdexcept>

#include "common.h"

namespace splinecam {

struct RefineInput {
  index_t num_vertices = 0;
  const double* xy = nullptr;          // [V, 2] vertex coordinates in the plane
  double* rows = nullptr;              // [V, n_cols] values at vertices; snapped in place
  int n_cols = 0;                      // values carried per vertex (interpolated)
  int n_cut = 0;                       // first n_cut columns are breakpoint functions
  int cut_begin = 0;                   // cut by columns [cut_begin, n_cut) (all are snapped)
  offset_t num_faces = 0;
  const offset_t* face_offsets = nullptr;  // [F + 1]
  const index_t* face_verts = nullptr;     // [H] counter-clockwise cycles
  const int32_t* he_layer = nullptr;       // [H] label of edge verts[h] -> next
  const int32_t* he_unit = nullptr;        // [H]
  int32_t layer_id = 0;                    // label given to the new edges
  double rtol = 1e-10;                     // relative snapping tolerance per column
  const double* tol_bounds = nullptr;      // [2 * n_cut] or null: floor_j, then cap_j
  bool tol_fixed = false;                  // floor_j == cap_j for every j: the tolerance is
                                           // given, not measured from the rows
  int64_t max_new_vertices = 0;            // memory budget: stop past this many (0 = none)
  int num_threads = 0;                     // 0 = all hardware threads
};

// Thrown when a refinement would create more than max_new_vertices vertices.
struct BudgetExceeded : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace splinecam
