// Per-face refinement: split one convex face of the previous partition by the zero sets
// of the breakpoint functions that cross it.
//
// Input is the face's boundary cycle with the crossings of every breakpoint function on
// its edges already inserted (those vertices are shared with the neighbouring face, so
// both sides agree). The face is then cut by one breakpoint function at a time; each cut
// splits every current sub-polygon that has vertices of both signs into two along the
// function's zero set. Topology comes only from the signs of (snapped) values at
// vertices: the sign sequence around a convex sub-polygon is one positive run and one
// negative run separated by zero vertices or by a sign change on an edge, where a new
// vertex is interpolated. A sub-polygon whose sign sequence is not of that form (possible
// only through rounding far below the snapping tolerance) is left uncut and counted.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "common.h"
#include "crossing.h"

namespace splinecam {

// Read-only view of the vertices that exist before the face pass: the previous vertices
// (ids [0, n0)) followed by the edge crossings of this layer (ids [n0, n0 + n1)).
struct VertexStore {
  const double* xy0;    // [n0, 2]
  const double* rows0;  // [n0, n_cols]
  index_t n0;
  const double* xy1;    // [n1, 2]
  const double* rows1;  // [n1, n_cols]
  index_t n1;
  int n_cols;           // values carried per vertex
  int n_cut;            // the first n_cut columns are breakpoint functions
};

// One cycle of a (sub-)polygon with the label of the edge leaving each vertex.
struct Cycle {
  std::vector<index_t> v;      // [k] vertex ids, counter-clockwise
  std::vector<int32_t> layer;  // [k] layer of edge v[i] -> v[i+1]
  std::vector<int32_t> unit;   // [k] unit of that edge
  void push(index_t id, int32_t l, int32_t u) {
    v.push_back(id);
    layer.push_back(l);
    unit.push_back(u);
  }
  size_t size() const { return v.size(); }
  void clear() {
    v.clear();
    layer.clear();
    unit.clear();
  }
};

class FaceCutter {
 public:
  // created / limit: a counter shared by all cutters of one refinement and the budget
  // of new vertices (0 = none); on_budget is called when it is exceeded (it throws).
  FaceCutter(const VertexStore& g, const double* tol, int32_t layer_id, std::atomic<int64_t>* created = nullptr,
             int64_t limit = 0, void (*on_budget)() = nullptr)
      : g_(g), tol_(tol), layer_id_(layer_id), tmp_(g.n_cols), created_(created), limit_(limit),
        on_budget_(on_budget) {}

  // Vertices created inside faces by this cutter, ids base() + i.
  std::vector<double> xy_local;    // [m, 2]
  std::vector<double> rows_local;  // [m, n_cols]
  long degenerate = 0;             // sub-polygons left uncut (inconsistent sign sequence)

  index_t base() const { return g_.n0 + g_.n1; }
  index_t num_local() const { return static_cast<index_t>(xy_local.size() / 2); }

  const double* row(index_t id) const {
    if (id < g_.n0) return g_.rows0 + static_cast<size_t>(id) * g_.n_cols;
    if (id < base()) return g_.rows1 + static_cast<size_t>(id - g_.n0) * g_.n_cols;
    return rows_local.data() + static_cast<size_t>(id - base()) * g_.n_cols;
  }
  const double* xy(index_t id) const {
    if (id < g_.n0) return g_.xy0 + 2 * static_cast<size_t>(id);
    if (id < base()) return g_.xy1 + 2 * static_cast<size_t>(id - g_.n0);
    return xy_local.data() + 2 * static_cast<size_t>(id - base());
  }

  // Split `boundary` by the candidate columns (ascending). Results are appended to `out`.
  void run(const Cycle& boundary, const std::vector<int>& candidates, std::vector<Cycle>& out) {
    const size_t first = out.size();
    out.push_back(boundary);
    bbox_.clear();
    push_bbox(out.back());
    for (int j : candidates) {
      if (!has_both_signs(boundary, j)) continue;
      split_.clear();
      // Affine model of column j over the face, used only to skip sub-polygons whose
      // bounding box the zero set clearly misses (the exact test is on vertex signs).
      bool use_filter = (out.size() - first) > 8 && fit_affine(boundary, j);
      const size_t count = out.size() - first;
      for (size_t s = 0; s < count; ++s) {
        if (use_filter && clearly_one_side(bbox_.data() + 4 * s)) continue;
        if (cut(out[first + s], j, plus_, minus_)) {
          std::swap(out[first + s], plus_);
          out.push_back(minus_);
          set_bbox(s, out[first + s]);
          push_bbox(out.back());
        }
      }
    }
  }

 private:
  const VertexStore& g_;
  const double* tol_;
  int32_t layer_id_;
  std::vector<double> tmp_;
  std::atomic<int64_t>* created_;
  int64_t limit_;
  void (*on_budget_)();
  std::unordered_map<uint64_t, index_t> split_;  // interior edge -> vertex, for one column
  std::vector<double> bbox_;                     // [sub-polygons, 4] xmin xmax ymin ymax
  Cycle plus_, minus_;
  std::vector<int8_t> sg_;
  double fg0_ = 0, fg1_ = 0, fc_ = 0, fmargin_ = 0;  // fitted z ~ fg0 x + fg1 y + fc

  bool has_both_signs(const Cycle& c, int j) const {
    bool pos = false, neg = false;
    for (index_t v : c.v) {
      double z = row(v)[j];
      pos |= z > 0.0;
      neg |= z < 0.0;
    }
    return pos && neg;
  }

  void compute_bbox(const Cycle& c, double* b) const {
    b[0] = b[2] = INFINITY;
    b[1] = b[3] = -INFINITY;
    for (index_t v : c.v) {
      const double* p = xy(v);
      b[0] = std::min(b[0], p[0]);
      b[1] = std::max(b[1], p[0]);
      b[2] = std::min(b[2], p[1]);
      b[3] = std::max(b[3], p[1]);
    }
  }
  void push_bbox(const Cycle& c) {
    bbox_.resize(bbox_.size() + 4);
    compute_bbox(c, bbox_.data() + bbox_.size() - 4);
  }
  void set_bbox(size_t s, const Cycle& c) { compute_bbox(c, bbox_.data() + 4 * s); }

  // Fit column j as an affine function of the plane coordinates from the three boundary
  // vertices spanning the largest triangle. Returns false when that triangle is too thin.
  bool fit_affine(const Cycle& c, int j) {
    const size_t n = c.size();
    size_t i0 = 0, i1 = 0, i2 = 0;
    double best = 0;
    const double* p0 = xy(c.v[0]);
    for (size_t i = 1; i < n; ++i) {
      const double* p = xy(c.v[i]);
      double d = (p[0] - p0[0]) * (p[0] - p0[0]) + (p[1] - p0[1]) * (p[1] - p0[1]);
      if (d > best) best = d, i1 = i;
    }
    const double* p1 = xy(c.v[i1]);
    double area = 0;
    for (size_t i = 1; i < n; ++i) {
      const double* p = xy(c.v[i]);
      double a = std::fabs((p1[0] - p0[0]) * (p[1] - p0[1]) - (p1[1] - p0[1]) * (p[0] - p0[0]));
      if (a > area) area = a, i2 = i;
    }
    if (!(area > 1e-6 * best) || i2 == i1 || i2 == i0) return false;
    const double* p2 = xy(c.v[i2]);
    double z0 = row(c.v[i0])[j], z1 = row(c.v[i1])[j], z2 = row(c.v[i2])[j];
    double ax = p1[0] - p0[0], ay = p1[1] - p0[1], bx = p2[0] - p0[0], by = p2[1] - p0[1];
    double det = ax * by - ay * bx;
    double d1 = z1 - z0, d2 = z2 - z0;
    fg0_ = (d1 * by - d2 * ay) / det;
    fg1_ = (ax * d2 - bx * d1) / det;
    fc_ = z0 - fg0_ * p0[0] - fg1_ * p0[1];
    double zmax = 0, xmax = 0, ymax = 0;
    for (index_t v : c.v) {
      zmax = std::max(zmax, std::fabs(row(v)[j]));
      xmax = std::max(xmax, std::fabs(xy(v)[0]));
      ymax = std::max(ymax, std::fabs(xy(v)[1]));
    }
    double scale = std::fabs(fg0_) * xmax + std::fabs(fg1_) * ymax + std::fabs(fc_) + zmax;
    fmargin_ = 1e-7 * scale + 8.0 * tol_[j];
    return std::isfinite(fg0_) && std::isfinite(fg1_) && std::isfinite(fc_);
  }

  bool clearly_one_side(const double* b) const {
    // Range of the fitted affine function over the box.
    double lo = fc_, hi = fc_;
    lo += std::min(fg0_ * b[0], fg0_ * b[1]);
    hi += std::max(fg0_ * b[0], fg0_ * b[1]);
    lo += std::min(fg1_ * b[2], fg1_ * b[3]);
    hi += std::max(fg1_ * b[2], fg1_ * b[3]);
    return lo > fmargin_ || hi < -fmargin_;
  }

  // Vertex where column j vanishes on the interior edge {a, b}; shared by the two
  // sub-polygons on either side of that edge through split_.
  index_t vertex_on(index_t a, index_t b, int j) {
    index_t lo = std::min(a, b), hi = std::max(a, b);
    uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(lo)) << 32) | static_cast<uint32_t>(hi);
    auto it = split_.find(key);
    if (it != split_.end()) return it->second;
    const double* rl = row(lo);
    const double* rh = row(hi);
    double t = crossing_t(rl[j], rh[j]);
    lerp_row(rl, rh, t, tmp_.data(), g_.n_cols);
    snap_row(tmp_.data(), tol_, g_.n_cut);
    tmp_[j] = 0.0;
    double p[2];
    lerp_row(xy(lo), xy(hi), t, p, 2);
    if (created_ && limit_ > 0 && created_->fetch_add(1) + 1 > limit_ && on_budget_) on_budget_();
    index_t id = base() + num_local();
    xy_local.push_back(p[0]);
    xy_local.push_back(p[1]);
    rows_local.insert(rows_local.end(), tmp_.begin(), tmp_.end());
    split_.emplace(key, id);
    return id;
  }

  // Split c by the zero set of column j into p (positive side) and m (negative side).
  bool cut(const Cycle& c, int j, Cycle& p, Cycle& m) {
    const int n = static_cast<int>(c.size());
    sg_.resize(n);
    bool pos = false, neg = false;
    for (int i = 0; i < n; ++i) {
      sg_[i] = static_cast<int8_t>(sign_of(row(c.v[i])[j]));
      pos |= sg_[i] > 0;
      neg |= sg_[i] < 0;
    }
    if (!(pos && neg)) return false;
    int s0 = 0;  // start of the positive run
    while (!(sg_[s0] > 0 && sg_[(s0 + n - 1) % n] <= 0)) ++s0;
    auto at = [&](int k) { return (s0 + k) % n; };
    int k = 0;
    while (k < n && sg_[at(k)] > 0) ++k;
    const int q = k - 1;  // last positive
    while (k < n && sg_[at(k)] == 0) ++k;
    const int r = k;  // first negative
    if (r >= n || sg_[at(r)] >= 0) return ++degenerate, false;
    while (k < n && sg_[at(k)] < 0) ++k;
    const int w = k - 1;  // last negative
    while (k < n && sg_[at(k)] == 0) ++k;
    if (k != n) return ++degenerate, false;  // a third sign run: inconsistent values

    const bool a_old = r - q > 1;  // zero vertex between the runs
    const bool b_old = n - 1 - w > 0;
    const index_t A = a_old ? c.v[at(r - 1)] : vertex_on(c.v[at(q)], c.v[at(r)], j);
    const index_t B = b_old ? c.v[at(n - 1)] : vertex_on(c.v[at(w)], c.v[at(0)], j);
    const int32_t L = layer_id_, U = j;

    p.clear();
    m.clear();
    if (b_old) p.push(B, c.layer[at(n - 1)], c.unit[at(n - 1)]);
    else p.push(B, c.layer[at(w)], c.unit[at(w)]);
    for (int i = 0; i <= q; ++i) p.push(c.v[at(i)], c.layer[at(i)], c.unit[at(i)]);
    if (a_old)
      for (int i = q + 1; i < r - 1; ++i) p.push(c.v[at(i)], c.layer[at(i)], c.unit[at(i)]);
    p.push(A, L, U);

    if (a_old) m.push(A, c.layer[at(r - 1)], c.unit[at(r - 1)]);
    else m.push(A, c.layer[at(q)], c.unit[at(q)]);
    for (int i = r; i <= w; ++i) m.push(c.v[at(i)], c.layer[at(i)], c.unit[at(i)]);
    if (b_old)
      for (int i = w + 1; i < n - 1; ++i) m.push(c.v[at(i)], c.layer[at(i)], c.unit[at(i)]);
    m.push(B, L, U);
    return true;
  }
};

}  // namespace splinecam
