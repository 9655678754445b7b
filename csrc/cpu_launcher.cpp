// CPU launcher of the refinement step: runs the per-vertex, per-edge and per-face bodies
// of src/splinecam/ over fixed-size blocks on a thread pool, then stitches the blocks'
// variable-size outputs with an exclusive scan over blocks (count -> scan -> write).
#include <algorithm>
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

// Crossings created on the edges of one block of edges.
struct EdgeBlockOut {
  std::vector<int32_t> count;  // [edges in block]
  std::vector<double> xy, rows;
  std::vector<int32_t> zero_count;  // per new vertex
  std::vector<int32_t> zero_col;
};

struct FaceBlockOut {
  std::vector<offset_t> size;  // per face
  std::vector<index_t> verts;
  std::vector<int32_t> layer, unit;
  std::vector<index_t> parent;
  std::vector<uint8_t> pattern;
  std::vector<double> xy, rows;
  int64_t degenerate = 0;
};

}  // namespace

RefineOutput refine_cpu(const RefineInput& in) {
  const int nt = resolve_threads(in.num_threads);
  const index_t V = in.num_vertices;
  const int C = in.n_cols, K = in.n_cut;
  const size_t pat_bytes = static_cast<size_t>((K + 7) / 8);
  RefineOutput out;

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

  // ---- 1. edges ----------------------------------------------------------------------
  const EdgeTable et = build_edge_table(V, in.num_faces, in.face_offsets, in.face_verts);
  const int64_t E = static_cast<int64_t>(et.lo.size());

  // ---- 2. crossings on edges -----------------------------------------------------------
  const int64_t neb = num_blocks(E, kEdgeBlock);
  std::vector<EdgeBlockOut> eblocks(neb);
  parallel_for(neb, nt, [&](int64_t b) {
    EdgeBlockOut& o = eblocks[b];
    std::vector<std::pair<double, int>> hits;
    std::vector<char> used;
    std::vector<double> row(C);
    const int64_t e0 = b * kEdgeBlock, e1 = std::min<int64_t>(E, e0 + kEdgeBlock);
    o.count.assign(e1 - e0, 0);
    for (int64_t e = e0; e < e1; ++e) {
      const index_t lo = et.lo[e], hi = et.hi[e];
      const double* za = in.rows + static_cast<int64_t>(lo) * C;
      const double* zb = in.rows + static_cast<int64_t>(hi) * C;
      hits.clear();
      for (int j = 0; j < K; ++j)
        if (strictly_crosses(za[j], zb[j])) hits.emplace_back(crossing_t(za[j], zb[j]), j);
      if (hits.empty()) continue;
      std::sort(hits.begin(), hits.end());
      used.assign(hits.size(), 0);
      for (size_t i = 0; i < hits.size(); ++i) {
        if (used[i]) continue;
        const double t = hits[i].first;
        lerp_row(za, zb, t, row.data(), C);
        snap_row(row.data(), tol.data(), K);
        row[hits[i].second] = 0.0;
        for (size_t k = i; k < hits.size(); ++k)
          if (row[hits[k].second] == 0.0) used[k] = 1;
        double p[2];
        lerp_row(in.xy + 2 * static_cast<int64_t>(lo), in.xy + 2 * static_cast<int64_t>(hi), t, p, 2);
        o.xy.push_back(p[0]);
        o.xy.push_back(p[1]);
        o.rows.insert(o.rows.end(), row.begin(), row.end());
        int32_t nz = 0;
        for (int j = 0; j < K; ++j)
          if (row[j] == 0.0) o.zero_col.push_back(j), ++nz;
        o.zero_count.push_back(nz);
        ++o.count[e - e0];
      }
    }
  });
  // Stitch: crossing vertices get ids V, V+1, ... in edge order.
  std::vector<offset_t> ecross_off(E + 1, 0);
  std::vector<double> xy1, rows1;
  {
    int64_t n1 = 0;
    for (auto& o : eblocks) n1 += static_cast<int64_t>(o.xy.size() / 2);
    xy1.reserve(2 * n1);
    rows1.reserve(n1 * C);
    for (int64_t b = 0; b < neb; ++b) {
      auto& o = eblocks[b];
      for (size_t i = 0; i < o.count.size(); ++i)
        ecross_off[b * kEdgeBlock + i + 1] = ecross_off[b * kEdgeBlock + i] + o.count[i];
      xy1.insert(xy1.end(), o.xy.begin(), o.xy.end());
      rows1.insert(rows1.end(), o.rows.begin(), o.rows.end());
      size_t zc = 0;
      for (int32_t nz : o.zero_count) {
        zeros.off.push_back(zeros.off.back() + nz);
        zeros.col.insert(zeros.col.end(), o.zero_col.begin() + zc, o.zero_col.begin() + zc + nz);
        zc += nz;
      }
      EdgeBlockOut().count.swap(o.count);
      std::vector<double>().swap(o.xy);
      std::vector<double>().swap(o.rows);
    }
    out.edge_vertices = n1;
  }
  const index_t n1 = static_cast<index_t>(out.edge_vertices);

  // ---- 3. faces ------------------------------------------------------------------------
  VertexStore store{in.xy, in.rows, V, xy1.data(), rows1.data(), n1, C, K};
  const int64_t nfb = num_blocks(in.num_faces, kFaceBlock);
  std::vector<FaceBlockOut> fblocks(nfb);
  parallel_for(nfb, nt, [&](int64_t b) {
    FaceBlockOut& o = fblocks[b];
    FaceCutter cutter(store, tol.data(), in.layer_id);
    Cycle boundary;
    std::vector<int> cand;
    std::vector<Cycle> pieces;
    std::vector<double> mean(K);
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
        std::fill(mean.begin(), mean.end(), 0.0);
        for (index_t v : c.v) {
          const double* r = cutter.row(v);
          for (int j = 0; j < K; ++j) mean[j] += r[j];
        }
        const size_t pb = o.pattern.size();
        o.pattern.resize(pb + pat_bytes, 0);
        for (int j = 0; j < K; ++j)
          if (mean[j] > 0.0) o.pattern[pb + j / 8] |= static_cast<uint8_t>(0x80u >> (j % 8));
      }
    }
    o.degenerate = cutter.degenerate;
    o.xy.swap(cutter.xy_local);
    o.rows.swap(cutter.rows_local);
  });

  // Stitch faces and face-local vertices.
  const index_t base = V + n1;
  int64_t total_faces = 0, total_he = 0, total_local = 0;
  for (auto& o : fblocks) {
    total_faces += static_cast<int64_t>(o.size.size());
    total_he += static_cast<int64_t>(o.verts.size());
    total_local += static_cast<int64_t>(o.xy.size() / 2);
  }
  out.xy = std::move(xy1);
  out.rows = std::move(rows1);
  out.xy.reserve(out.xy.size() + 2 * total_local);
  out.rows.reserve(out.rows.size() + total_local * C);
  out.face_offsets.reserve(total_faces + 1);
  out.face_offsets.push_back(0);
  out.face_verts.reserve(total_he);
  out.he_layer.reserve(total_he);
  out.he_unit.reserve(total_he);
  out.face_parent.reserve(total_faces);
  out.pattern.reserve(total_faces * pat_bytes);
  index_t local_base = base;
  for (auto& o : fblocks) {
    for (offset_t s : o.size) out.face_offsets.push_back(out.face_offsets.back() + s);
    const index_t shift = local_base - base;
    for (index_t v : o.verts) out.face_verts.push_back(v >= base ? v + shift : v);
    out.he_layer.insert(out.he_layer.end(), o.layer.begin(), o.layer.end());
    out.he_unit.insert(out.he_unit.end(), o.unit.begin(), o.unit.end());
    out.face_parent.insert(out.face_parent.end(), o.parent.begin(), o.parent.end());
    out.pattern.insert(out.pattern.end(), o.pattern.begin(), o.pattern.end());
    out.xy.insert(out.xy.end(), o.xy.begin(), o.xy.end());
    out.rows.insert(out.rows.end(), o.rows.begin(), o.rows.end());
    local_base += static_cast<index_t>(o.xy.size() / 2);
    out.degenerate += o.degenerate;
    FaceBlockOut().size.swap(o.size);
    std::vector<double>().swap(o.rows);
  }
  return out;
}

}  // namespace splinecam
