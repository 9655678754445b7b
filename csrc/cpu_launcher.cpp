// CPU launcher of the refinement step: runs the per-vertex, per-edge and per-face bodies
// of src/splinecam/ over fixed-size blocks on a thread pool, then stitches the blocks'
// variable-size outputs with an exclusive scan over blocks (count -> scan -> write).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>
#include <utility>

#include "parallel.h"
#include "splinecam/crossing.h"
#include "splinecam/edge_table.h"
#include "splinecam/face_cut.h"
#include "splinecam/refine.h"

namespace splinecam {
namespace {

constexpr int64_t kVertexBlock = 4096;
constexpr int64_t kEdgeBlock = 2048;
constexpr int64_t kFaceBlock = 128;

// Ragged list of zero columns per vertex.
struct ZeroLists {
  std::vector<offset_t> off{0};
  std::vector<int32_t> col;
};

[[noreturn]] void budget_exceeded() {
  throw BudgetExceeded("the refinement exceeds its budget of new vertices (memory limit)");
}

struct FaceBlockOut {
  std::vector<offset_t> size;  // per face
  std::vector<index_t> verts;
  std::vector<int32_t> layer, unit;
  std::vector<index_t> parent;
  std::vector<double> xy, rows;
  int64_t degenerate = 0;
};

}  // namespace

RefineOutput refine_cpu(const RefineInput& in) {
  const int nt = resolve_threads(in.num_threads);
  const index_t V = in.num_vertices;
  const int C = in.n_cols, K = in.n_cut;
  RefineOutput out;
  auto clock = std::chrono::steady_clock::now();
  auto lap = [&](int phase) {
    auto now = std::chrono::steady_clock::now();
    out.seconds[phase] = std::chrono::duration<double>(now - clock).count();
    clock = now;
  };

  // ---- 0. per-column tolerance and snapping -------------------------------------------
  std::vector<double> tol(K, 0.0);
  {
    const int64_t nb = num_blocks(V, kVertexBlock);
    std::vector<double> part(static_cast<size_t>(nb) * K, 0.0);
    parallel_for(nb, nt, [&](int64_t b) {
      double* m = part.data() + b * K;
      for (int64_t v = b * kVertexBlock; v < std::min<int64_t>(V, (b + 1) * kVertexBlock); ++v) {
        const double* r = in.rows + v * C;
        for (int j = 0; j < K; ++j) m[j] = std::max(m[j], std::fabs(r[j]));
      }
    });
    for (int64_t b = 0; b < nb; ++b)
      for (int j = 0; j < K; ++j) tol[j] = std::max(tol[j], part[b * K + j]);
    for (int j = 0; j < K; ++j) tol[j] *= in.rtol;
  }
  ZeroLists zeros;
  {
    std::vector<int32_t> zc(V, 0);
    const int64_t nb = num_blocks(V, kVertexBlock);
    parallel_for(nb, nt, [&](int64_t b) {
      for (int64_t v = b * kVertexBlock; v < std::min<int64_t>(V, (b + 1) * kVertexBlock); ++v)
        zc[v] = snap_row(in.rows + v * C, tol.data(), K);
    });
    zeros.off.resize(static_cast<size_t>(V) + 1);
    for (index_t v = 0; v < V; ++v) zeros.off[v + 1] = zeros.off[v] + zc[v];
    zeros.col.resize(zeros.off[V]);
    for (index_t v = 0; v < V; ++v) {
      if (!zc[v]) continue;
      const double* r = in.rows + static_cast<int64_t>(v) * C;
      offset_t o = zeros.off[v];
      for (int j = 0; j < K; ++j)
        if (r[j] == 0.0) zeros.col[o++] = j;
    }
  }

  lap(0);
  // ---- 1. edges ----------------------------------------------------------------------
  const EdgeTable et = build_edge_table(V, in.num_faces, in.face_offsets, in.face_verts);
  const int64_t E = static_cast<int64_t>(et.lo.size());

  lap(1);
  // ---- 2. crossings on edges -----------------------------------------------------------
  // Count, scan, write: the first pass counts the (merged) crossings of every edge, the
  // second writes their rows straight into the output at the scanned offsets.
  auto edge_pass = [&](int64_t e, std::vector<std::pair<double, int>>& hits, std::vector<char>& used,
                       std::vector<double>& row, double* xy_out, double* rows_out, int32_t* zero_out,
                       offset_t* zero_off_out) -> int {
    const index_t lo = et.lo[e], hi = et.hi[e];
    const double* za = in.rows + static_cast<int64_t>(lo) * C;
    const double* zb = in.rows + static_cast<int64_t>(hi) * C;
    hits.clear();
    for (int j = 0; j < K; ++j)
      if (strictly_crosses(za[j], zb[j])) hits.emplace_back(crossing_t(za[j], zb[j]), j);
    if (hits.empty()) return 0;
    std::sort(hits.begin(), hits.end());
    used.assign(hits.size(), 0);
    int made = 0, zeros_written = 0;
    for (size_t i = 0; i < hits.size(); ++i) {
      if (used[i]) continue;
      const double t = hits[i].first;
      double* r = rows_out ? rows_out + static_cast<int64_t>(made) * C : row.data();
      if (rows_out) {
        lerp_row(za, zb, t, r, C);
        snap_row(r, tol.data(), K);
        lerp_row(in.xy + 2 * static_cast<int64_t>(lo), in.xy + 2 * static_cast<int64_t>(hi), t, xy_out + 2 * made, 2);
        zero_off_out[made] = zeros_written;
      } else {
        // Counting needs only the columns that cross this edge.
        for (size_t k = i; k < hits.size(); ++k) {
          const int j = hits[k].second;
          double z = za[j] + t * (zb[j] - za[j]);
          r[j] = (z <= tol[j] && z >= -tol[j]) ? 0.0 : z;
        }
      }
      r[hits[i].second] = 0.0;
      for (size_t k = i; k < hits.size(); ++k)
        if (!used[k] && r[hits[k].second] == 0.0) {
          used[k] = 1;
          if (zero_out) zero_out[zeros_written] = hits[k].second;
          ++zeros_written;
        }
      ++made;
    }
    return made;
  };
  const int64_t neb = num_blocks(E, kEdgeBlock);
  std::vector<offset_t> ecross_off(E + 1, 0), ezero_off(E + 1, 0);
  parallel_for(neb, nt, [&](int64_t b) {
    std::vector<std::pair<double, int>> hits;
    std::vector<char> used;
    std::vector<double> row(C);
    for (int64_t e = b * kEdgeBlock; e < std::min<int64_t>(E, (b + 1) * kEdgeBlock); ++e) {
      ecross_off[e + 1] = edge_pass(e, hits, used, row, nullptr, nullptr, nullptr, nullptr);
      ezero_off[e + 1] = static_cast<offset_t>(hits.size());
    }
  });
  for (int64_t e = 0; e < E; ++e) {
    ecross_off[e + 1] += ecross_off[e];
    ezero_off[e + 1] += ezero_off[e];
  }
  const index_t n1 = static_cast<index_t>(ecross_off[E]);
  if (in.max_new_vertices > 0 && n1 > in.max_new_vertices) budget_exceeded();
  out.edge_vertices = n1;
  out.xy.resize(2 * static_cast<size_t>(n1));
  out.rows_edge.resize(static_cast<size_t>(n1) * C);
  // Zero lists of the new vertices: which columns vanish there.
  zeros.off.resize(static_cast<size_t>(V) + n1 + 1);
  const offset_t zbase = zeros.off[V];
  zeros.col.resize(zbase + ezero_off[E]);
  parallel_for(neb, nt, [&](int64_t b) {
    std::vector<std::pair<double, int>> hits;
    std::vector<char> used;
    std::vector<double> row(C);
    std::vector<offset_t> local_off;
    for (int64_t e = b * kEdgeBlock; e < std::min<int64_t>(E, (b + 1) * kEdgeBlock); ++e) {
      const offset_t c0 = ecross_off[e], nc = ecross_off[e + 1] - c0;
      if (nc == 0) continue;
      local_off.resize(nc);
      edge_pass(e, hits, used, row, out.xy.data() + 2 * c0, out.rows_edge.data() + c0 * C,
                zeros.col.data() + zbase + ezero_off[e], local_off.data());
      for (offset_t i = 0; i < nc; ++i) zeros.off[V + c0 + i] = zbase + ezero_off[e] + local_off[i];
    }
  });
  zeros.off[static_cast<size_t>(V) + n1] = zbase + ezero_off[E];

  lap(2);
  // ---- 3. faces ------------------------------------------------------------------------
  VertexStore store{in.xy, in.rows, V, out.xy.data(), out.rows_edge.data(), n1, C, K};
  const int64_t nfb = num_blocks(in.num_faces, kFaceBlock);
  std::vector<FaceBlockOut> fblocks(nfb);
  std::atomic<int64_t> created{n1};
  parallel_for(nfb, nt, [&](int64_t b) {
    FaceBlockOut& o = fblocks[b];
    FaceCutter cutter(store, tol.data(), in.layer_id, &created, in.max_new_vertices, &budget_exceeded);
    Cycle boundary;
    std::vector<int> cand;
    std::vector<Cycle> pieces;
    const int64_t f0 = b * kFaceBlock, f1 = std::min<int64_t>(in.num_faces, f0 + kFaceBlock);
    for (int64_t f = f0; f < f1; ++f) {
      const offset_t hb = in.face_offsets[f], he = in.face_offsets[f + 1];
      boundary.clear();
      cand.clear();
      for (offset_t h = hb; h < he; ++h) {
        const index_t a = in.face_verts[h];
        const int32_t L = in.he_layer[h], U = in.he_unit[h];
        boundary.push(a, L, U);
        const index_t e = et.edge_of[h];
        const offset_t cb = ecross_off[e], ce = ecross_off[e + 1];
        if (a == et.lo[e]) {
          for (offset_t c = cb; c < ce; ++c) boundary.push(V + static_cast<index_t>(c), L, U);
        } else {
          for (offset_t c = ce; c > cb; --c) boundary.push(V + static_cast<index_t>(c - 1), L, U);
        }
      }
      for (index_t v : boundary.v)
        for (offset_t z = zeros.off[v]; z < zeros.off[v + 1]; ++z) cand.push_back(zeros.col[z]);
      std::sort(cand.begin(), cand.end());
      cand.erase(std::unique(cand.begin(), cand.end()), cand.end());
      pieces.clear();
      cutter.run(boundary, cand, pieces);
      for (const Cycle& c : pieces) {
        o.size.push_back(static_cast<offset_t>(c.size()));
        o.verts.insert(o.verts.end(), c.v.begin(), c.v.end());
        o.layer.insert(o.layer.end(), c.layer.begin(), c.layer.end());
        o.unit.insert(o.unit.end(), c.unit.begin(), c.unit.end());
        o.parent.push_back(static_cast<index_t>(f));
      }
    }
    o.degenerate = cutter.degenerate;
    o.xy.swap(cutter.xy_local);
    o.rows.swap(cutter.rows_local);
  });

  lap(3);
  // Stitch faces and face-local vertices.
  const index_t base = V + n1;
  int64_t total_faces = 0, total_he = 0, total_local = 0;
  for (auto& o : fblocks) {
    total_faces += static_cast<int64_t>(o.size.size());
    total_he += static_cast<int64_t>(o.verts.size());
    total_local += static_cast<int64_t>(o.xy.size() / 2);
  }
  out.xy.reserve(out.xy.size() + 2 * total_local);
  out.face_offsets.reserve(total_faces + 1);
  out.face_offsets.push_back(0);
  out.face_verts.reserve(total_he);
  out.he_layer.reserve(total_he);
  out.he_unit.reserve(total_he);
  out.face_parent.reserve(total_faces);
  index_t local_base = base;
  for (auto& o : fblocks) {
    for (offset_t s : o.size) out.face_offsets.push_back(out.face_offsets.back() + s);
    const index_t shift = local_base - base;
    for (index_t v : o.verts) out.face_verts.push_back(v >= base ? v + shift : v);
    out.he_layer.insert(out.he_layer.end(), o.layer.begin(), o.layer.end());
    out.he_unit.insert(out.he_unit.end(), o.unit.begin(), o.unit.end());
    out.face_parent.insert(out.face_parent.end(), o.parent.begin(), o.parent.end());
    out.xy.insert(out.xy.end(), o.xy.begin(), o.xy.end());
    if (!o.rows.empty()) out.rows_face.push_back(std::move(o.rows));
    local_base += static_cast<index_t>(o.xy.size() / 2);
    out.degenerate += o.degenerate;
    FaceBlockOut().size.swap(o.size);
    std::vector<double>().swap(o.rows);
  }
  lap(4);
  return out;
}

}  // namespace splinecam
