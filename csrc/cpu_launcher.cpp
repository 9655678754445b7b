// The CPU launcher: the launcher of launcher.h on the host backend, and the host's
// threaded face pass.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <utility>

#include "host_backend.h"

namespace splinecam {
namespace {

constexpr int64_t kFaceBlock = 128;

struct FaceBlockOut {
  std::vector<offset_t> size;  // per piece
  std::vector<index_t> verts;
  std::vector<int32_t> layer, unit;
  std::vector<index_t> parent;
  std::vector<double> xy;
  HostVector<double> rows;
  int64_t degenerate = 0;
  int64_t retries = 0;
};

}  // namespace

void threaded_face_pass(const RefineInput& in, const FaceInput& fin, const double* xy_edge, int num_threads,
                        HostResult& out) {
  const index_t V = fin.n0, n1 = fin.n1;
  const int C = fin.n_cols;
  const int64_t nfb = num_blocks(in.num_faces, kFaceBlock);
  std::vector<FaceBlockOut> fblocks(nfb);
  std::atomic<int64_t> created{n1};
  // A face's cut costs some 60 to 100 ns per half-edge (measured on MLP layers).
  const int64_t work = 64 * static_cast<int64_t>(fin.face_offsets[in.num_faces]);
  parallel_for(nfb, threads_for(work, num_threads), [&](int64_t b) {
    FaceBlockOut& o = fblocks[b];
    HostVector<char> scratch;
    const int64_t f0 = b * kFaceBlock, f1 = std::min<int64_t>(in.num_faces, f0 + kFaceBlock);
    // Room for the block's faces as they are and some growth: most blocks never reallocate.
    const size_t nh = static_cast<size_t>(fin.face_offsets[f1] - fin.face_offsets[f0]);
    const size_t nf = static_cast<size_t>(f1 - f0);
    o.size.reserve(2 * nf);
    o.parent.reserve(2 * nf);
    o.verts.reserve(nh + nh / 2);
    o.layer.reserve(nh + nh / 2);
    o.unit.reserve(nh + nh / 2);
    for (int64_t f = f0; f < f1; ++f) {
      const FacePlan plan = plan_face(fin, f);
      if (plan.candidates == 0) {
        // No column crosses an edge of the face or leaves one of its zero vertices: the
        // face body would return its boundary cycle as it is (most faces of a decision
        // boundary's refinement, many of a late layer's).
        const offset_t hb = fin.face_offsets[f], n = fin.face_offsets[f + 1] - hb;
        o.size.push_back(n);
        o.parent.push_back(static_cast<index_t>(f));
        o.verts.insert(o.verts.end(), fin.face_verts + hb, fin.face_verts + hb + n);
        o.layer.insert(o.layer.end(), fin.he_layer + hb, fin.he_layer + hb + n);
        o.unit.insert(o.unit.end(), fin.he_unit + hb, fin.he_unit + hb + n);
        continue;
      }
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

  // Join the blocks: face-local vertex ids are shifted past the blocks before.
  const auto join_start = std::chrono::steady_clock::now();
  const index_t base = V + n1;
  int64_t total_faces = 0, total_he = 0, total_local = 0;
  for (auto& o : fblocks) {
    total_faces += static_cast<int64_t>(o.size.size());
    total_he += static_cast<int64_t>(o.verts.size());
    total_local += static_cast<int64_t>(o.xy.size() / 2);
  }
  std::vector<double> xy;
  std::vector<offset_t> face_offsets;
  std::vector<index_t> face_verts, face_parent;
  std::vector<int32_t> he_layer, he_unit;
  xy.reserve(2 * (n1 + total_local));
  xy.insert(xy.end(), xy_edge, xy_edge + 2 * static_cast<int64_t>(n1));
  face_offsets.reserve(total_faces + 1);
  face_offsets.push_back(0);
  face_verts.reserve(total_he);
  he_layer.reserve(total_he);
  he_unit.reserve(total_he);
  face_parent.reserve(total_faces);
  index_t local_base = base;
  for (auto& o : fblocks) {
    for (offset_t s : o.size) face_offsets.push_back(face_offsets.back() + s);
    const index_t shift = local_base - base;
    for (index_t v : o.verts) face_verts.push_back(v >= base ? v + shift : v);
    he_layer.insert(he_layer.end(), o.layer.begin(), o.layer.end());
    he_unit.insert(he_unit.end(), o.unit.begin(), o.unit.end());
    face_parent.insert(face_parent.end(), o.parent.begin(), o.parent.end());
    xy.insert(xy.end(), o.xy.begin(), o.xy.end());
    const int64_t m = static_cast<int64_t>(o.xy.size() / 2);
    if (m > 0) {
      out.rows_face.push_back(adopt(std::move(o.rows)));
      out.rows_face_n.push_back(m);
    }
    local_base += static_cast<index_t>(m);
    out.degenerate += o.degenerate;
    out.face_retries += o.retries;
    FaceBlockOut().size.swap(o.size);
    HostVector<double>().swap(o.rows);
  }
  out.face_vertices = total_local;
  out.num_faces = total_faces;
  out.num_half_edges = total_he;
  out.xy = adopt(std::move(xy));
  out.face_offsets = adopt(std::move(face_offsets));
  out.face_verts = adopt(std::move(face_verts));
  out.he_layer = adopt(std::move(he_layer));
  out.he_unit = adopt(std::move(he_unit));
  out.face_parent = adopt(std::move(face_parent));
  out.seconds[4] = std::chrono::duration<double>(std::chrono::steady_clock::now() - join_start).count();
}

HostResult refine_cpu(const RefineInput& in) {
  HostBackend be(in.num_threads);
  return refine(in, in.face_offsets[in.num_faces], be);
}

HostResult refine_host_pooled(const RefineInput& in, int64_t scratch_bytes) {
  HostBackend be(in.num_threads, HostBackend::FacePass::pooled, scratch_bytes);
  return refine(in, in.face_offsets[in.num_faces], be);
}

}  // namespace splinecam
