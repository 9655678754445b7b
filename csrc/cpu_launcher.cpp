// CPU launcher of the refinement step: runs the per-vertex, per-edge and per-face bodies
// of src/splinecam/ over fixed-size blocks on a thread pool, then stitches the blocks'
// variable-size outputs with an exclusive scan over blocks (count -> scan -> write).
#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>
#include <utility>

#include "host_backend.h"
#include "parallel.h"
#include "refine_steps.h"
#include "splinecam/edge_table.h"
#include "splinecam/refine.h"

namespace splinecam {
namespace {

constexpr int64_t kVertexBlock = 4096;
constexpr int64_t kEdgeBlock = 2048;
constexpr int64_t kFaceBlock = 128;

[[noreturn]] void budget_exceeded() {
  throw BudgetExceeded("the refinement exceeds its budget of new vertices (memory limit)");
}

struct FaceBlockOut {
  std::vector<offset_t> size;  // per face
  std::vector<index_t> verts;
  std::vector<int32_t> layer, unit;
  std::vector<index_t> parent;
  std::vector<double> xy;
  HostVector<double> rows;
  int64_t degenerate = 0;
  int64_t retries = 0;
};

}  // namespace

RefineOutput refine_cpu(const RefineInput& in) {
  const int nt = resolve_threads(in.num_threads);
  const index_t V = in.num_vertices;
  const int C = in.n_cols, K = in.n_cut, B = in.cut_begin;
  RefineOutput out;
  auto clock = std::chrono::steady_clock::now();
  auto lap = [&](int phase) {
    auto now = std::chrono::steady_clock::now();
    out.seconds[phase] = std::chrono::duration<double>(now - clock).count();
    clock = now;
  };

  // ---- 0. per-column tolerance and snapping -------------------------------------------
  std::vector<double> tol(std::max(K, 1), 0.0);
  column_tolerance_host(in.rows, V, C, K, in.rtol, tol.data(), nt, kVertexBlock);
  if (in.tol_bounds)
    for (int j = 0; j < K; ++j) BoundToleranceStep{tol.data(), in.tol_bounds, K}(j);
  // Zero columns of every vertex (CSR): count, scan, write.
  std::vector<offset_t> zero_off(static_cast<size_t>(V) + 1, 0);
  // The sign bits of every vertex over the columns cut now: the edge passes read these
  // instead of the rows (a few words per vertex against C values).
  const int W = sign_words(K - B);
  std::vector<uint64_t> bits(static_cast<size_t>(V) * 2 * W);
  for_blocks(V, kVertexBlock, nt, SnapStep{in.rows, tol.data(), C, B, K, zero_off.data(), bits.data()});
  for (index_t v = 0; v < V; ++v) zero_off[v + 1] += zero_off[v];
  std::vector<int32_t> zero_col(zero_off[V]);
  for_blocks(V, kVertexBlock, nt, ZeroColumnsStep{in.rows, C, B, K, zero_off.data(), zero_col.data()});

  lap(0);
  // ---- 1. edges ----------------------------------------------------------------------
  const EdgeTable et = build_edge_table(V, in.num_faces, in.face_offsets, in.face_verts);
  const int64_t E = static_cast<int64_t>(et.lo.size());

  lap(1);
  // ---- 2. crossings on edges -----------------------------------------------------------
  // Hits (column crossings) per edge: count, scan, write sorted; then the merged crossing
  // vertices: count, scan, write their rows straight into the output.
  std::vector<offset_t> hit_off(E + 1, 0), cross_off(E + 1, 0);
  for_blocks(E, kEdgeBlock, nt, CountHitsStep{bits.data(), W, et.lo.data(), et.hi.data(), hit_off.data()});
  for (int64_t e = 0; e < E; ++e) hit_off[e + 1] += hit_off[e];
  std::vector<double> hit_t(hit_off[E]);
  std::vector<int32_t> hit_col(hit_off[E]);
  std::vector<uint8_t> used(hit_off[E]);
  for_blocks(E, kEdgeBlock, nt, WriteHitsStep{in.rows, bits.data(), C, B, W, et.lo.data(), et.hi.data(),
                                                 hit_off.data(), hit_t.data(), hit_col.data()});
  MergeHitsStep merge{in.rows, in.xy, tol.data(), C, K, et.lo.data(), et.hi.data(), hit_off.data(), hit_t.data(),
                      hit_col.data(), used.data(), cross_off.data(), nullptr, nullptr};
  for_blocks(E, kEdgeBlock, nt, merge);
  for (int64_t e = 0; e < E; ++e) cross_off[e + 1] += cross_off[e];
  const index_t n1 = static_cast<index_t>(cross_off[E]);
  if (in.max_new_vertices > 0 && n1 > in.max_new_vertices) budget_exceeded();
  out.edge_vertices = n1;
  out.xy.resize(2 * static_cast<size_t>(n1));
  out.rows_edge.resize(static_cast<size_t>(n1) * C);
  merge.xy1 = out.xy.data();
  merge.rows1 = out.rows_edge.data();
  for_blocks(E, kEdgeBlock, nt, merge);

  lap(2);
  // ---- 3. faces ------------------------------------------------------------------------
  // Each thread reuses one scratch buffer; a face that outgrows it runs again at the next
  // capacity level (face_cut.h). Pieces go to per-block outputs, stitched below in order.
  const FaceInput fin{in.face_offsets, in.face_verts, in.he_layer, in.he_unit, et.lo.data(), et.edge_of.data(),
                      cross_off.data(), hit_off.data(), hit_col.data(), zero_off.data(), zero_col.data(), in.xy,
                      in.rows, out.xy.data(), out.rows_edge.data(), tol.data(), V, n1, C, K, in.layer_id};
  const int64_t nfb = num_blocks(in.num_faces, kFaceBlock);
  std::vector<FaceBlockOut> fblocks(nfb);
  std::atomic<int64_t> created{n1};
  parallel_for(nfb, nt, [&](int64_t b) {
    FaceBlockOut& o = fblocks[b];
    HostVector<char> scratch;
    const int64_t f0 = b * kFaceBlock, f1 = std::min<int64_t>(in.num_faces, f0 + kFaceBlock);
    for (int64_t f = f0; f < f1; ++f) {
      const FacePlan plan = plan_face(fin, f);
      FaceScratch s;
      FaceResult r;
      for (int level = 0;; ++level) {
        const FaceCaps caps = face_caps(plan, level);
        const int64_t bytes = carve_scratch(nullptr, caps, C, nullptr);
        if (static_cast<int64_t>(scratch.size()) < bytes) scratch.resize(bytes);
        carve_scratch(scratch.data(), caps, C, &s);
        FaceCutter cutter(fin, s);
        r = cutter.run(f);
        if (!r.overflow) break;
        ++o.retries;
        if (level > 40) throw std::runtime_error("face scratch keeps overflowing (internal error)");
      }
      if (in.max_new_vertices > 0 && r.local > 0 && created.fetch_add(r.local) + r.local > in.max_new_vertices)
        budget_exceeded();
      const size_t np = o.size.size(), nh = o.verts.size(), nl = o.xy.size() / 2;
      o.size.resize(np + r.pieces);
      o.parent.resize(np + r.pieces);
      o.verts.resize(nh + r.half_edges);
      o.layer.resize(nh + r.half_edges);
      o.unit.resize(nh + r.half_edges);
      o.xy.resize(2 * (nl + r.local));
      o.rows.resize(static_cast<size_t>(C) * (nl + r.local));
      emit_face(s, r, V + n1, static_cast<index_t>(nl), static_cast<index_t>(f), C, o.size.data() + np,
                o.verts.data() + nh, o.layer.data() + nh, o.unit.data() + nh, o.parent.data() + np,
                o.xy.data() + 2 * nl, o.rows.data() + static_cast<size_t>(C) * nl);
      o.degenerate += r.degenerate;
    }
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
    out.face_retries += o.retries;
    FaceBlockOut().size.swap(o.size);
    HostVector<double>().swap(o.rows);
  }
  lap(4);
  return out;
}

}  // namespace splinecam
