// Per-face bodies of a refinement, shared by the CPU and CUDA launchers: split one convex
// face of the previous partition by the zero sets of the breakpoint functions that cross
// it.
//
// The face's boundary cycle gets the crossings of every breakpoint function on its edges
// (made by the per-edge pass, edge_cross.h, and shared with the neighbouring face, so both
// sides agree). The face is then cut by one breakpoint function at a time; each cut
// splits every current sub-polygon that has vertices of both signs into two along the
// function's zero set. Topology comes only from the signs of (snapped) values at
// vertices: the sign sequence around a convex sub-polygon is one positive run and one
// negative run separated by zero vertices or by a sign change on an edge, where a new
// vertex is interpolated. A sub-polygon whose sign sequence is not of that form (possible
// only through rounding far below the snapping tolerance) is left uncut and counted.
//
// Memory: a body never allocates. It works in a FaceScratch of fixed capacities carved
// from a buffer the launcher provides (face_caps, carve_scratch). A face that outgrows
// its scratch stops with FaceResult::overflow and is run again with the next capacity
// level; capacities grow geometrically up to the exact bound of a face cut by k chords.
#pragma once

#include "common.h"
#include "crossing.h"

namespace splinecam {

SPLINECAM_HD double hd_min(double a, double b) { return a < b ? a : b; }
SPLINECAM_HD double hd_max(double a, double b) { return a > b ? a : b; }
SPLINECAM_HD double hd_abs(double a) { return a < 0 ? -a : a; }
SPLINECAM_HD bool hd_finite(double a) { return a - a == 0.0; }
SPLINECAM_HD int64_t align8(int64_t bytes) { return (bytes + 7) & ~static_cast<int64_t>(7); }

// Everything a face body reads: the previous partition, its edge table, the crossings
// made on its edges, the zero columns of its vertices and the vertex values.
struct FaceInput {
  const offset_t* face_offsets;  // [F + 1] previous faces
  const index_t* face_verts;     // [H]
  const int32_t* he_layer;       // [H]
  const int32_t* he_unit;        // [H]
  const index_t* edge_lo;        // [E] smaller endpoint of each edge
  const index_t* edge_of;        // [H] edge of each half-edge
  const offset_t* cross_off;     // [E + 1] new vertices of edge e: V + cross_off[e] ...
  const offset_t* hit_off;       // [E + 1] columns crossing edge e: hit_col[hit_off[e] ...]
  const int32_t* hit_col;
  const offset_t* zero_off;      // [V + 1] columns snapped to zero at old vertex v
  const int32_t* zero_col;
  const double* xy0;             // [V, 2] old vertices
  const double* rows0;           // [V, C]
  const double* xy1;             // [n1, 2] edge crossings (ids V ..)
  const double* rows1;           // [n1, C]
  const double* tol;             // [K] snapping tolerance per column
  index_t n0, n1;                // V and the number of edge crossings
  int n_cols, n_cut;             // C and K
  int32_t layer_id;              // label of the new edges
  // Sign bits of the old vertices over the columns cut now, [B, K) (sign_bits,
  // edge_cross.h): their signs are read from these few words, not from their rows.
  const uint64_t* bits0;         // [n0, 2 * W]
  int cut_begin, sign_words;     // B and W
};

// Size of a face's input to the body: boundary length with crossings, and the number of
// (column, boundary vertex) zero entries, i.e. candidate cuts counted with repeats.
struct FacePlan {
  int64_t boundary;
  int64_t candidates;
};

// Values of a vertex that exists before the face pass (old vertex or edge crossing).
SPLINECAM_HD const double* input_row(const FaceInput& in, index_t id) {
  return id < in.n0 ? in.rows0 + static_cast<int64_t>(id) * in.n_cols
                    : in.rows1 + static_cast<int64_t>(id - in.n0) * in.n_cols;
}

// Calls emit(j, crosses) for every possible chord end on the face's boundary: each
// column crossing an edge strictly (crosses = true: the edge's ends have values of both
// signs, so the column cuts the face), and each column zero at an old vertex and non-zero
// at one of its two neighbours along the boundary (with crossings; crosses = false). A
// column that cuts the face has at least two such entries (the ends of its chord); a
// column zero along a whole stretch of the boundary (dead units, ties of a max) emits only
// at the stretch's ends, so such columns never crowd the candidates.
template <class Emit>
SPLINECAM_HD void boundary_candidates(const FaceInput& in, int64_t f, Emit&& emit) {
  const offset_t hb = in.face_offsets[f], he = in.face_offsets[f + 1];
  for (offset_t h = hb; h < he; ++h) {
    const index_t a = in.face_verts[h], e = in.edge_of[h];
    for (offset_t z = in.hit_off[e]; z < in.hit_off[e + 1]; ++z) emit(in.hit_col[z], true);
    if (in.zero_off[a + 1] == in.zero_off[a]) continue;
    // Next vertex after a: the first crossing of its edge, or the next old vertex.
    index_t next;
    if (in.cross_off[e + 1] > in.cross_off[e])
      next = in.n0 + static_cast<index_t>(a == in.edge_lo[e] ? in.cross_off[e] : in.cross_off[e + 1] - 1);
    else
      next = in.face_verts[h + 1 < he ? h + 1 : hb];
    // Previous vertex: the last crossing of the edge before, or the previous old vertex.
    const offset_t hp = h > hb ? h - 1 : he - 1;
    const index_t ap = in.face_verts[hp], ep = in.edge_of[hp];
    index_t prev;
    if (in.cross_off[ep + 1] > in.cross_off[ep])
      prev = in.n0 + static_cast<index_t>(ap == in.edge_lo[ep] ? in.cross_off[ep + 1] - 1 : in.cross_off[ep]);
    else
      prev = ap;
    const double* rp = input_row(in, prev);
    const double* rn = input_row(in, next);
    for (offset_t z = in.zero_off[a]; z < in.zero_off[a + 1]; ++z) {
      const int32_t j = in.zero_col[z];
      if (rp[j] != 0.0 || rn[j] != 0.0) emit(j, false);
    }
  }
}

SPLINECAM_HD FacePlan plan_face(const FaceInput& in, int64_t f) {
  FacePlan p{0, 0};
  for (offset_t h = in.face_offsets[f]; h < in.face_offsets[f + 1]; ++h) {
    const index_t e = in.edge_of[h];
    p.boundary += 1 + (in.cross_off[e + 1] - in.cross_off[e]);
  }
  int64_t n = 0;
  boundary_candidates(in, f, [&](int32_t, bool) { ++n; });
  p.candidates = n;
  return p;
}

// Capacities of one face's scratch at a given level. A chord has two zero entries on the
// boundary, so at most k = candidates / 2 columns cut the face; k chords of a convex
// polygon cross in at most m = k(k-1)/2 interior points, giving at most 1 + k + m pieces
// whose cycles have at most boundary + 2k + 4m half-edges in all. Level 0 reserves room
// for m = 2k interior points, each further level doubles that, up to the bound (and past
// it, should rounding ever make more pieces than exact geometry allows).
struct FaceCaps {
  int64_t boundary, candidates;
  int64_t cycle;   // capacity of each of the two cycle buffers
  int64_t pieces;  // sub-polygons
  int64_t local;   // vertices created inside the face
  int64_t slots;   // hash slots (power of two)
};

SPLINECAM_HD FaceCaps face_caps(const FacePlan& p, int level) {
  const int64_t k = p.candidates / 2;
  const int64_t bound = k * (k - 1) / 2;
  const int lv = level < 30 ? level : 30;
  int64_t m = (2 * k + 1) << lv;
  // The first level that reaches the bound takes exactly the bound; later ones exceed it.
  if (m > bound && (lv == 0 || ((2 * k + 1) << (lv - 1)) < bound)) m = bound;
  FaceCaps c;
  c.boundary = p.boundary;
  c.candidates = p.candidates;
  c.pieces = 1 + k + m;
  // Live half-edges never exceed the final total; one cut appends at most 2n + 4 more.
  c.cycle = 2 * (p.boundary + 2 * k + 4 * m) + 8;
  c.local = m;
  c.slots = 16;
  while (c.slots < 4 * c.pieces) c.slots <<= 1;
  return c;
}

// Pointers into one face's scratch.
struct FaceScratch {
  FaceCaps caps;
  uint64_t* hkey;   // [slots] interior edge {lo, hi} -> vertex, for one column at a time
  double* bbox;     // [pieces, 4] xmin xmax ymin ymax
  double* lxy;      // [local, 2] vertices created inside the face
  double* lrows;    // [local, C]
  int32_t* hval;    // [slots]
  int32_t* hcol;    // [slots] column owning the slot (other columns: empty)
  index_t* bnd;     // [boundary] the boundary cycle, kept for the per-column tests
  int32_t* cand;    // [candidates] columns to cut by, sorted, unique
  index_t* cv[2];   // [cycle] two cycle buffers: vertex, edge layer, edge unit
  int32_t* cl[2];
  int32_t* cu[2];
  int32_t* start;   // [pieces] where each piece's cycle starts in the current buffer
  int32_t* len;     // [pieces]
  int8_t* sg;       // [cycle] signs around the piece being cut
};

// Lays a scratch with capacities c out from `base` (nullptr: only measures). Returns the
// number of bytes it takes; every array is 8-byte aligned when base is.
SPLINECAM_HD int64_t carve_scratch(char* base, const FaceCaps& c, int n_cols, FaceScratch* s) {
  int64_t at = 0;
  auto take = [&](int64_t bytes) -> char* {
    char* p = base ? base + at : nullptr;
    at += align8(bytes);
    return p;
  };
  FaceScratch t;
  t.caps = c;
  t.hkey = reinterpret_cast<uint64_t*>(take(8 * c.slots));
  t.bbox = reinterpret_cast<double*>(take(8 * 4 * c.pieces));
  t.lxy = reinterpret_cast<double*>(take(8 * 2 * c.local));
  t.lrows = reinterpret_cast<double*>(take(8 * n_cols * c.local));
  t.hval = reinterpret_cast<int32_t*>(take(4 * c.slots));
  t.hcol = reinterpret_cast<int32_t*>(take(4 * c.slots));
  t.bnd = reinterpret_cast<index_t*>(take(4 * c.boundary));
  t.cand = reinterpret_cast<int32_t*>(take(4 * c.candidates));
  for (int b = 0; b < 2; ++b) {
    t.cv[b] = reinterpret_cast<index_t*>(take(4 * c.cycle));
    t.cl[b] = reinterpret_cast<int32_t*>(take(4 * c.cycle));
    t.cu[b] = reinterpret_cast<int32_t*>(take(4 * c.cycle));
  }
  t.start = reinterpret_cast<int32_t*>(take(4 * c.pieces));
  t.len = reinterpret_cast<int32_t*>(take(4 * c.pieces));
  t.sg = reinterpret_cast<int8_t*>(take(c.cycle));
  if (s) *s = t;
  return at;
}

// What a face body leaves behind: its pieces are the cycles start[i], len[i] (i < pieces)
// of cycle buffer `buffer`, its new vertices the first `local` entries of lxy / lrows.
struct FaceResult {
  int32_t overflow;    // 1: the scratch was too small, run again at the next level
  int32_t buffer;
  int32_t pieces;
  int32_t local;
  int64_t half_edges;  // total length of the pieces' cycles
  int32_t degenerate;  // sub-polygons left uncut (inconsistent sign sequence)
};

// The per-face body. Vertex ids: old vertices [0, n0), edge crossings [n0, n0 + n1), and
// the face's own new vertices from base() on (the launcher renumbers them when it writes
// the face out, emit_face).
class FaceCutter {
 public:
  SPLINECAM_HD FaceCutter(const FaceInput& in, const FaceScratch& s) : in_(in), s_(s) {}

  SPLINECAM_HD FaceResult run(int64_t f) {
    FaceResult r{0, 0, 0, 0, 0, 0};
    build_boundary(f);
    const int nc = gather_candidates(f);
    for (int64_t i = 0; i < s_.caps.slots; ++i) s_.hcol[i] = -1;
    bool boxes = false;  // bounding boxes of the pieces, kept once the filter is in use
    for (int c = 0; c < nc && !overflow_; ++c) {
      const int j = s_.cand[c] >> 1;
      if (!(s_.cand[c] & 1) && !boundary_has_both_signs(j)) continue;
      // Affine model of column j over the face, used only to skip pieces whose bounding
      // box the zero set clearly misses (the exact test is on vertex signs).
      const bool use_filter = pieces_ > 8 && fit_affine(j);
      if (use_filter && !boxes) {
        for (int p = 0; p < pieces_; ++p) set_bbox(p);
        boxes = true;
      }
      const int count = pieces_;
      for (int p = 0; p < count && !overflow_; ++p) {
        if (use_filter && clearly_one_side(s_.bbox + 4 * static_cast<int64_t>(p))) continue;
        if (cut(p, j) && boxes) {
          set_bbox(p);
          set_bbox(pieces_ - 1);
        }
      }
    }
    r.overflow = overflow_;
    r.buffer = cur_;
    r.pieces = pieces_;
    r.local = local_;
    r.degenerate = degenerate_;
    for (int p = 0; p < pieces_; ++p) r.half_edges += s_.len[p];
    return r;
  }

  SPLINECAM_HD index_t base() const { return in_.n0 + in_.n1; }

 private:
  const FaceInput& in_;
  const FaceScratch& s_;
  int cur_ = 0;          // cycle buffer in use
  int64_t tail_ = 0;     // its used length
  int pieces_ = 0;
  int local_ = 0;
  int boundary_ = 0;
  int degenerate_ = 0;
  int overflow_ = 0;
  double fg0_ = 0, fg1_ = 0, fc_ = 0, fmargin_ = 0;  // fitted z ~ fg0 x + fg1 y + fc

  SPLINECAM_HD const double* row(index_t id) const {
    const int64_t C = in_.n_cols;
    if (id < in_.n0) return in_.rows0 + id * C;
    if (id < base()) return in_.rows1 + static_cast<int64_t>(id - in_.n0) * C;
    return s_.lrows + static_cast<int64_t>(id - base()) * C;
  }
  SPLINECAM_HD const double* xy(index_t id) const {
    if (id < in_.n0) return in_.xy0 + 2 * static_cast<int64_t>(id);
    if (id < base()) return in_.xy1 + 2 * static_cast<int64_t>(id - in_.n0);
    return s_.lxy + 2 * static_cast<int64_t>(id - base());
  }

  SPLINECAM_HD void put(int64_t at, index_t v, int32_t l, int32_t u) {
    s_.cv[cur_][at] = v;
    s_.cl[cur_][at] = l;
    s_.cu[cur_][at] = u;
  }

  // The face's cycle with the crossings of its edges, as piece 0.
  SPLINECAM_HD void build_boundary(int64_t f) {
    int64_t n = 0;
    for (offset_t h = in_.face_offsets[f]; h < in_.face_offsets[f + 1]; ++h) {
      const index_t a = in_.face_verts[h], e = in_.edge_of[h];
      const int32_t L = in_.he_layer[h], U = in_.he_unit[h];
      put(n, a, L, U);
      s_.bnd[n++] = a;
      const offset_t cb = in_.cross_off[e], ce = in_.cross_off[e + 1];
      const bool forward = a == in_.edge_lo[e];
      for (offset_t c = 0; c < ce - cb; ++c) {
        const index_t v = in_.n0 + static_cast<index_t>(forward ? cb + c : ce - 1 - c);
        put(n, v, L, U);
        s_.bnd[n++] = v;
      }
    }
    boundary_ = static_cast<int>(n);
    s_.start[0] = 0;
    s_.len[0] = boundary_;
    tail_ = n;
    pieces_ = 1;
  }

  // Columns that may cut the face (boundary_candidates), sorted, without repeats, as
  // 2 j + 1 when column j crosses an edge of the face (it cuts the face) and 2 j when it
  // is only zero at boundary vertices (its signs around the boundary decide).
  SPLINECAM_HD int gather_candidates(int64_t f) {
    int n = 0;
    int32_t* c = s_.cand;
    boundary_candidates(in_, f, [&](int32_t j, bool crosses) { c[n++] = 2 * j + (crosses ? 1 : 0); });
    // Shell sort (Ciura's gaps, then halving): no allocation, fast for the short lists
    // of most faces and fine for the long ones of a first layer.
    for (int gap = n / 2 > 701 ? n / 2 : 701; gap > 0; gap = gap > 701 ? (gap / 2 > 701 ? gap / 2 : 701) : gap == 1 ? 0
             : gap == 701 ? 301 : gap == 301 ? 132 : gap == 132 ? 57 : gap == 57 ? 23 : gap == 23 ? 10
             : gap == 10 ? 4 : 1) {
      for (int i = gap; i < n; ++i) {
        const int32_t v = c[i];
        int k = i;
        for (; k >= gap && c[k - gap] > v; k -= gap) c[k] = c[k - gap];
        c[k] = v;
      }
    }
    int u = 0;
    for (int i = 0; i < n; ++i) {
      if (u > 0 && (c[u - 1] >> 1) == (c[i] >> 1)) c[u - 1] |= c[i];
      else c[u++] = c[i];
    }
    return u;
  }

  // Sign of column j (cut now) at vertex id: sign_of its value, read from the sign bits
  // for old vertices (a few words each, mostly in cache, where rows are not).
  SPLINECAM_HD int sign_at(index_t id, int j) const {
    if (id >= in_.n0) return sign_of(row(id)[j]);
    const int W = in_.sign_words, k = j - in_.cut_begin;
    const uint64_t* b = in_.bits0 + static_cast<int64_t>(id) * 2 * W;
    const uint64_t m = static_cast<uint64_t>(1) << (k & 63);
    return static_cast<int>((b[k >> 6] & m) != 0) - static_cast<int>((b[W + (k >> 6)] & m) != 0);
  }

  SPLINECAM_HD bool boundary_has_both_signs(int j) const {
    bool pos = false, neg = false;
    for (int i = 0; i < boundary_; ++i) {
      const int sg = sign_at(s_.bnd[i], j);
      pos |= sg > 0;
      neg |= sg < 0;
    }
    return pos && neg;
  }

  SPLINECAM_HD void set_bbox(int p) {
    double* b = s_.bbox + 4 * static_cast<int64_t>(p);
    const index_t* v = s_.cv[cur_] + s_.start[p];
    const double* q = xy(v[0]);
    b[0] = b[1] = q[0];
    b[2] = b[3] = q[1];
    for (int i = 1; i < s_.len[p]; ++i) {
      q = xy(v[i]);
      b[0] = hd_min(b[0], q[0]);
      b[1] = hd_max(b[1], q[0]);
      b[2] = hd_min(b[2], q[1]);
      b[3] = hd_max(b[3], q[1]);
    }
  }

  // Fit column j as an affine function of the plane coordinates from the three boundary
  // vertices spanning the largest triangle. Returns false when that triangle is too thin.
  SPLINECAM_HD bool fit_affine(int j) {
    const int n = boundary_;
    int i1 = 0, i2 = 0;
    double best = 0;
    const double* p0 = xy(s_.bnd[0]);
    for (int i = 1; i < n; ++i) {
      const double* p = xy(s_.bnd[i]);
      const double d = (p[0] - p0[0]) * (p[0] - p0[0]) + (p[1] - p0[1]) * (p[1] - p0[1]);
      if (d > best) best = d, i1 = i;
    }
    const double* p1 = xy(s_.bnd[i1]);
    double area = 0;
    for (int i = 1; i < n; ++i) {
      const double* p = xy(s_.bnd[i]);
      const double a = hd_abs((p1[0] - p0[0]) * (p[1] - p0[1]) - (p1[1] - p0[1]) * (p[0] - p0[0]));
      if (a > area) area = a, i2 = i;
    }
    if (!(area > 1e-6 * best) || i2 == i1 || i2 == 0) return false;
    const double* p2 = xy(s_.bnd[i2]);
    const double z0 = row(s_.bnd[0])[j], z1 = row(s_.bnd[i1])[j], z2 = row(s_.bnd[i2])[j];
    const double ax = p1[0] - p0[0], ay = p1[1] - p0[1], bx = p2[0] - p0[0], by = p2[1] - p0[1];
    const double det = ax * by - ay * bx;
    const double d1 = z1 - z0, d2 = z2 - z0;
    fg0_ = (d1 * by - d2 * ay) / det;
    fg1_ = (ax * d2 - bx * d1) / det;
    fc_ = z0 - fg0_ * p0[0] - fg1_ * p0[1];
    double zmax = 0, xmax = 0, ymax = 0;
    for (int i = 0; i < n; ++i) {
      zmax = hd_max(zmax, hd_abs(row(s_.bnd[i])[j]));
      xmax = hd_max(xmax, hd_abs(xy(s_.bnd[i])[0]));
      ymax = hd_max(ymax, hd_abs(xy(s_.bnd[i])[1]));
    }
    const double scale = hd_abs(fg0_) * xmax + hd_abs(fg1_) * ymax + hd_abs(fc_) + zmax;
    fmargin_ = 1e-7 * scale + 8.0 * in_.tol[j];
    return hd_finite(fg0_) && hd_finite(fg1_) && hd_finite(fc_);
  }

  SPLINECAM_HD bool clearly_one_side(const double* b) const {
    // Range of the fitted affine function over the box.
    double lo = fc_, hi = fc_;
    lo += hd_min(fg0_ * b[0], fg0_ * b[1]);
    hi += hd_max(fg0_ * b[0], fg0_ * b[1]);
    lo += hd_min(fg1_ * b[2], fg1_ * b[3]);
    hi += hd_max(fg1_ * b[2], fg1_ * b[3]);
    return lo > fmargin_ || hi < -fmargin_;
  }

  // Room for `need` more half-edges in the current cycle buffer: when the tail is full,
  // the live pieces are copied to the other buffer in piece order (dropping the cycles
  // that cuts replaced).
  SPLINECAM_HD bool reserve(int64_t need) {
    const int64_t cap = s_.caps.cycle;
    if (tail_ + need <= cap) return true;
    const int o = 1 - cur_;
    int64_t t = 0;
    for (int p = 0; p < pieces_; ++p) {
      const int32_t a = s_.start[p], n = s_.len[p];
      for (int32_t i = 0; i < n; ++i) {
        s_.cv[o][t + i] = s_.cv[cur_][a + i];
        s_.cl[o][t + i] = s_.cl[cur_][a + i];
        s_.cu[o][t + i] = s_.cu[cur_][a + i];
      }
      s_.start[p] = static_cast<int32_t>(t);
      t += n;
    }
    cur_ = o;
    tail_ = t;
    if (tail_ + need <= cap) return true;
    overflow_ = 1;
    return false;
  }

  // Vertex where column j vanishes on the interior edge {a, b}; shared by the two pieces
  // on either side of that edge through the hash table.
  SPLINECAM_HD index_t vertex_on(index_t a, index_t b, int j) {
    const index_t lo = a < b ? a : b, hi = a < b ? b : a;
    const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(lo)) << 32) | static_cast<uint32_t>(hi);
    const uint64_t mask = static_cast<uint64_t>(s_.caps.slots) - 1;
    uint64_t h = (key * 0x9E3779B97F4A7C15ull) >> 17;
    for (int64_t probe = 0; probe < s_.caps.slots; ++probe, ++h) {
      const uint64_t slot = h & mask;
      if (s_.hcol[slot] != j) {
        // Empty for this column: create the vertex.
        if (local_ >= s_.caps.local) break;
        const int64_t C = in_.n_cols;
        const double* rl = row(lo);
        const double* rh = row(hi);
        const Crossing c = crossing_of(rl[j], rh[j]);
        double* r = s_.lrows + local_ * C;
        lerp_row_at(rl, rh, c, r, in_.n_cols);
        snap_row(r, in_.tol, in_.n_cut);
        r[j] = 0.0;
        double* q = s_.lxy + 2 * static_cast<int64_t>(local_);
        lerp_row_at(xy(lo), xy(hi), c, q, 2);
        // on an end in float64: one resolvable step off it (see merge_edge_hits)
        const double *p_lo = xy(lo), *p_hi = xy(hi);
        if (q[0] == p_lo[0] && q[1] == p_lo[1]) step_off(p_lo, p_hi, q);
        if (q[0] == p_hi[0] && q[1] == p_hi[1]) step_off(p_hi, p_lo, q);
        const index_t id = base() + local_++;
        s_.hcol[slot] = j;
        s_.hkey[slot] = key;
        s_.hval[slot] = id;
        return id;
      }
      if (s_.hkey[slot] == key) return s_.hval[slot];
    }
    overflow_ = 1;
    return -1;
  }

  // Split piece p by the zero set of column j: the positive side replaces it, the
  // negative side becomes a new last piece.
  SPLINECAM_HD bool cut(int p, int j) {
    const int n = s_.len[p];
    {
      const index_t* v = s_.cv[cur_] + s_.start[p];
      bool pos = false, neg = false;
      for (int i = 0; i < n; ++i) {
        s_.sg[i] = static_cast<int8_t>(sign_at(v[i], j));
        pos |= s_.sg[i] > 0;
        neg |= s_.sg[i] < 0;
      }
      if (!(pos && neg)) return false;
    }
    const int8_t* sg = s_.sg;
    int s0 = 0;  // start of the positive run
    while (!(sg[s0] > 0 && sg[s0 > 0 ? s0 - 1 : n - 1] <= 0)) ++s0;
    // Position k after s0 around the cycle (0 <= k < n; no division in the inner loops).
    auto at = [&](int k) { return s0 + k < n ? s0 + k : s0 + k - n; };
    int k = 0;
    while (k < n && sg[at(k)] > 0) ++k;
    const int q = k - 1;  // last positive
    while (k < n && sg[at(k)] == 0) ++k;
    const int r = k;  // first negative
    if (r >= n || sg[at(r)] >= 0) return ++degenerate_, false;
    while (k < n && sg[at(k)] < 0) ++k;
    const int w = k - 1;  // last negative
    while (k < n && sg[at(k)] == 0) ++k;
    if (k != n) return ++degenerate_, false;  // a third sign run: inconsistent values

    if (pieces_ >= s_.caps.pieces || !reserve(2 * static_cast<int64_t>(n) + 4)) {
      overflow_ = 1;
      return false;
    }
    const index_t* cv = s_.cv[cur_] + s_.start[p];  // after reserve: it may have moved
    const int32_t* cl = s_.cl[cur_] + s_.start[p];
    const int32_t* cu = s_.cu[cur_] + s_.start[p];
    const bool a_old = r - q > 1;  // zero vertex between the runs
    const bool b_old = n - 1 - w > 0;
    const index_t A = a_old ? cv[at(r - 1)] : vertex_on(cv[at(q)], cv[at(r)], j);
    const index_t B = b_old ? cv[at(n - 1)] : vertex_on(cv[at(w)], cv[at(0)], j);
    if (overflow_) return false;
    const int32_t L = in_.layer_id, U = j;

    const int64_t p0 = tail_;
    int64_t t = tail_;
    auto push = [&](index_t v, int32_t l, int32_t u) { put(t++, v, l, u); };
    if (b_old) push(B, cl[at(n - 1)], cu[at(n - 1)]);
    else push(B, cl[at(w)], cu[at(w)]);
    for (int i = 0; i <= q; ++i) push(cv[at(i)], cl[at(i)], cu[at(i)]);
    if (a_old)
      for (int i = q + 1; i < r - 1; ++i) push(cv[at(i)], cl[at(i)], cu[at(i)]);
    push(A, L, U);
    const int64_t m0 = t;
    if (a_old) push(A, cl[at(r - 1)], cu[at(r - 1)]);
    else push(A, cl[at(q)], cu[at(q)]);
    for (int i = r; i <= w; ++i) push(cv[at(i)], cl[at(i)], cu[at(i)]);
    if (b_old)
      for (int i = w + 1; i < n - 1; ++i) push(cv[at(i)], cl[at(i)], cu[at(i)]);
    push(B, L, U);

    s_.start[p] = static_cast<int32_t>(p0);
    s_.len[p] = static_cast<int32_t>(m0 - p0);
    s_.start[pieces_] = static_cast<int32_t>(m0);
    s_.len[pieces_] = static_cast<int32_t>(t - m0);
    ++pieces_;
    tail_ = t;
    return true;
  }
};

// Writes a finished face out: its pieces' sizes, cycles (labels too) and parent, and its
// new vertices; the face's vertex ids from base on become base + first_local + i.
SPLINECAM_HD void emit_face(const FaceScratch& s, const FaceResult& r, index_t base, index_t first_local,
                            index_t parent, int n_cols, offset_t* sizes, index_t* verts, int32_t* layer,
                            int32_t* unit, index_t* parents, double* xy, double* rows) {
  int64_t t = 0;
  const int b = r.buffer;
  for (int p = 0; p < r.pieces; ++p) {
    const int32_t a = s.start[p], n = s.len[p];
    sizes[p] = n;
    parents[p] = parent;
    for (int32_t i = 0; i < n; ++i, ++t) {
      const index_t v = s.cv[b][a + i];
      verts[t] = v >= base ? v + first_local : v;
      layer[t] = s.cl[b][a + i];
      unit[t] = s.cu[b][a + i];
    }
  }
  for (int64_t i = 0; i < 2 * static_cast<int64_t>(r.local); ++i) xy[i] = s.lxy[i];
  for (int64_t i = 0; i < static_cast<int64_t>(n_cols) * r.local; ++i) rows[i] = s.lrows[i];
}

}  // namespace splinecam
