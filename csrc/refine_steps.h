// The steps of one refinement as index -> work functors over the bodies of src/splinecam/.
// The launcher (launcher.h) runs exactly these on every backend: over blocks on the
// host's thread pool, or as grid-stride kernels on a GPU (phase 1's steps are those of
// src/splinecam/edge_table.h). Each step reads its inputs and writes only
// the output slots of its own index; variable-size outputs go count -> exclusive scan ->
// write, with the counts written at [i + 1] so that the scan runs in place.
#pragma once

#include "splinecam/common.h"
#include "splinecam/crossing.h"
#include "splinecam/edge_cross.h"
#include "splinecam/edge_table.h"
#include "splinecam/face_cut.h"

namespace splinecam {

// Phase 0: the tolerance of column j within the caller's bounds ([2 * K]: floors, caps).
struct BoundToleranceStep {
  double* tol;
  const double* bounds;
  int K;
  SPLINECAM_HD void operator()(int64_t j) const { tol[j] = bounded_tolerance(tol[j], bounds[j], bounds[K + j]); }
};

// Phase 0: the tolerance of column j when its floor and cap are one value (what
// bounded_tolerance gives then, for any measured scale).
struct FixedToleranceStep {
  double* tol;
  const double* bounds;
  SPLINECAM_HD void operator()(int64_t j) const { tol[j] = bounds[j]; }
};

// Phase 0: snap |z| <= tol[j] to exactly 0 (every breakpoint column j < K), count the
// zeros of every old vertex among the columns cut now, [B, K), and write its sign bits
// over those columns (see sign_bits) while its row is at hand; clear its end marks
// (EndMarkStep).
struct SnapStep {
  double* rows;
  const double* tol;
  int C, B, K;
  offset_t* zero_off;  // [V + 1]: count at v + 1
  uint64_t* bits;      // [V, 2 * sign_words(K - B)]
  uint64_t* marks;     // [V, sign_words(K - B)]
  SPLINECAM_HD void operator()(int64_t v) const {
    double* r = rows + v * C;
    snap_row(r, tol, K);
    const int W = sign_words(K - B);
    zero_off[v + 1] = sign_bits(r, B, K, bits + v * 2 * W);
    for (int w = 0; w < W; ++w) marks[v * W + w] = 0;
  }
};

// Phase 1: the half-edges that some column cut now crosses strictly (the sign bits of
// their ends, SnapStep): 1 at crossed[h + 1]. Only these need an edge of their own; a
// crossing needs opposite signs at the two ends, and both half-edges of an edge agree.
struct CrossedHalfEdgeStep {
  const offset_t* face_offsets;
  const index_t* face_verts;
  const uint64_t* bits;
  int W;
  offset_t* crossed;  // [H + 1]
  SPLINECAM_HD void operator()(int64_t f) const {
    const offset_t b = face_offsets[f], e = face_offsets[f + 1];
    for (offset_t h = b; h < e; ++h) {
      const uint64_t* ba = bits + static_cast<int64_t>(face_verts[h]) * 2 * W;
      const uint64_t* bb = bits + static_cast<int64_t>(face_verts[cycle_next(h, b, e)]) * 2 * W;
      crossed[h + 1] = edge_has_hits(ba, bb, W);
    }
  }
};

// Phase 1, after the scan of crossed: the key (lo << 32 | hi) and the index of every
// crossed half-edge, at its place among them (in half-edge order, so the stable sort
// numbers edges as a sort of all half-edges would, less the uncrossed ones).
struct CrossedKeyStep {
  const offset_t* face_offsets;
  const index_t* face_verts;
  const offset_t* crossed;  // [H + 1], scanned
  uint64_t* key;            // [Hc]
  int64_t* order;           // [Hc]
  SPLINECAM_HD void operator()(int64_t f) const {
    const offset_t b = face_offsets[f], e = face_offsets[f + 1];
    for (offset_t h = b; h < e; ++h) {
      if (crossed[h + 1] == crossed[h]) continue;
      key[crossed[h]] = edge_key(face_verts[h], face_verts[cycle_next(h, b, e)]);
      order[crossed[h]] = h;
    }
  }
};

// Phase 1: every uncrossed half-edge gets the empty edge E, a loop at vertex 0 (no
// column has opposite signs at its ends: no hits, no crossings, no end marks).
struct UncrossedEdgeStep {
  const offset_t* crossed;  // [H + 1], scanned
  index_t E;
  index_t* edge_of;  // [H]
  index_t *lo, *hi;  // [E + 1]
  SPLINECAM_HD void operator()(int64_t h) const {
    if (h == 0) lo[E] = hi[E] = 0;
    if (crossed[h + 1] == crossed[h]) edge_of[h] = E;
  }
};

// Phase 2, before the crossings: the crossings of edge e that land on one of its ends
// with no float64 point left between (mark_crossings_on_ends), decided from the snapped
// rows alone, so the marks do not depend on the order in which edges run.
struct EndMarkStep {
  const double* rows;
  const double* xy;
  const uint64_t* bits;
  int C, B, W;
  const index_t *lo, *hi;
  uint64_t* marks;  // [V, W]
  SPLINECAM_HD void operator()(int64_t e) const {
    const int64_t a = lo[e], b = hi[e];
    mark_crossings_on_ends(rows + a * C, rows + b * C, xy + 2 * a, xy + 2 * b, bits + a * 2 * W, bits + b * 2 * W, W,
                           B, marks + a * W, marks + b * W);
  }
};

// Then per vertex: the marked columns become 0 (and count as zeros).
struct EndSnapStep {
  double* rows;
  uint64_t* bits;
  const uint64_t* marks;
  int C, B, W;
  offset_t* zero_off;  // [V + 1]: count at v + 1
  SPLINECAM_HD void operator()(int64_t v) const {
    zero_off[v + 1] += zero_marked_columns(rows + v * C, bits + v * 2 * W, marks + v * W, W, B);
  }
};

struct ZeroColumnsStep {
  const double* rows;
  int C, B, K;
  const offset_t* zero_off;
  int32_t* zero_col;
  SPLINECAM_HD void operator()(int64_t v) const {
    const double* r = rows + v * C;
    offset_t o = zero_off[v];
    for (int j = B; j < K && o < zero_off[v + 1]; ++j)
      if (r[j] == 0.0) zero_col[o++] = j;
  }
};

// Phase 2: crossings on edges, from the sign bits of their ends (SnapStep).
struct CountHitsStep {
  const uint64_t* bits;
  int W;
  const index_t *lo, *hi;
  offset_t* hit_off;  // [E + 1]: count at e + 1
  SPLINECAM_HD void operator()(int64_t e) const {
    hit_off[e + 1] = count_edge_hits(bits + static_cast<int64_t>(lo[e]) * 2 * W,
                                          bits + static_cast<int64_t>(hi[e]) * 2 * W, W);
  }
};

struct WriteHitsStep {
  const double* rows;
  const uint64_t* bits;
  int C, B, W;
  const index_t *lo, *hi;
  const offset_t* hit_off;
  double* hit_t;
  int32_t* hit_col;
  SPLINECAM_HD void operator()(int64_t e) const {
    if (hit_off[e + 1] == hit_off[e]) return;
    const int64_t a = lo[e], b = hi[e];
    write_edge_hits(rows + a * C, rows + b * C, bits + a * 2 * W, bits + b * 2 * W, W, B, hit_t + hit_off[e],
                         hit_col + hit_off[e]);
  }
};

// Counting (xy1 == nullptr: the count goes to cross_off[e + 1]) or writing the merged
// crossings of edge e at cross_off[e].
struct MergeHitsStep {
  const double* rows;
  const double* xy;
  const double* tol;
  int C, K;
  const index_t *lo, *hi;
  const offset_t* hit_off;
  const int32_t* hit_col;  // sorted along the edge (WriteHitsStep)
  uint8_t* used;        // [hits] scratch
  offset_t* cross_off;  // [E + 1]
  double* xy1;          // [n1, 2] or nullptr
  double* rows1;        // [n1, C]
  SPLINECAM_HD void operator()(int64_t e) const {
    const offset_t h0 = hit_off[e];
    const int n = static_cast<int>(hit_off[e + 1] - h0);
    if (n == 0) {
      if (!xy1) cross_off[e + 1] = 0;
      return;
    }
    const index_t a = lo[e], b = hi[e];
    const double* za = rows + static_cast<int64_t>(a) * C;
    const double* zb = rows + static_cast<int64_t>(b) * C;
    const double* xa = xy + 2 * static_cast<int64_t>(a);
    const double* xb = xy + 2 * static_cast<int64_t>(b);
    if (!xy1) {
      cross_off[e + 1] = merge_edge_hits(za, zb, xa, xb, tol, hit_col + h0, n, C, K, used + h0,
                                         nullptr, nullptr);
    } else {
      const offset_t c0 = cross_off[e];
      merge_edge_hits(za, zb, xa, xb, tol, hit_col + h0, n, C, K, used + h0, xy1 + 2 * c0,
                      rows1 + c0 * C);
    }
  }
};

// Phase 3: sizes of every face's work.
struct PlanFaceStep {
  FaceInput in;
  FacePlan* plan;
  SPLINECAM_HD void operator()(int64_t f) const { plan[f] = plan_face(in, f); }
};

// Phase 3 where every face of a batch has its own scratch (the pooled face pass): faces
// face_ids[i] at capacity level levels[face], scratch at pool + scratch_off[i].
struct CutFaceStep {
  FaceInput in;
  const FacePlan* plan;
  const int32_t* face_ids;
  const int32_t* levels;
  char* pool;
  const int64_t* scratch_off;
  FaceResult* result;  // [F]
  // Cuts face face_ids[i] in its scratch s.
  SPLINECAM_HD FaceResult cut(int64_t i, FaceScratch& s) const {
    const int32_t f = face_ids[i];
    carve_scratch(pool + scratch_off[i], face_caps(plan[f], levels[f]), in.n_cols, &s);
    return FaceCutter(in, s).run(f);
  }
  SPLINECAM_HD void operator()(int64_t i) const {
    FaceScratch s;
    result[face_ids[i]] = cut(i, s);
  }
};

// Runs a face again (it is deterministic) and writes it out at scanned offsets.
struct CutEmitFaceStep {
  CutFaceStep cut;
  const int64_t* piece_off;  // [F + 1]
  const int64_t* he_off;     // [F + 1]
  const int64_t* local_off;  // [F + 1]
  offset_t* sizes;           // [F'] piece sizes (scanned into face offsets afterwards)
  index_t* verts;
  int32_t *layer, *unit;
  index_t* parents;
  double* xy;    // [local, 2]
  double* rows;  // [local, C]
  int32_t* mismatch;  // set to 1 when a face does not match its counting run (nothing written)
  SPLINECAM_HD void operator()(int64_t i) const {
    const int32_t f = cut.face_ids[i];
    FaceScratch s;
    const FaceResult r = cut.cut(i, s);
    if (r.overflow || r.pieces != piece_off[f + 1] - piece_off[f] || r.half_edges != he_off[f + 1] - he_off[f] ||
        r.local != local_off[f + 1] - local_off[f]) {
      *mismatch = 1;
      return;
    }
    const int64_t C = cut.in.n_cols;
    emit_face(s, r, cut.in.n0 + cut.in.n1, static_cast<index_t>(local_off[f]), f, cut.in.n_cols, sizes + piece_off[f],
              verts + he_off[f], layer + he_off[f], unit + he_off[f], parents + piece_off[f], xy + 2 * local_off[f],
              rows + local_off[f] * C);
  }
};

}  // namespace splinecam
