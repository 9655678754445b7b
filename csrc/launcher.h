// The refinement, written once (its phases: src/splinecam/refine.h). Every phase is a
// step of refine_steps.h launched over an index range by a backend; variable-size
// outputs go count -> scan -> write. A backend says where memory lives and how a step,
// a scan and a sort run. The one phase whose algorithm differs between backends is the
// face pass, where the scratch of the face bodies comes from:
//
//   threaded (HostBackend, the CPU launcher): each thread reuses one scratch buffer; a
//     face that outgrows it runs again at once at the next capacity level; pieces go
//     to per-block outputs joined in order. One run per face.
//   pooled (CudaBackend; HostBackend::pooled runs the GPU's path on the host so that a
//     machine without a GPU tests it): every face of a batch gets its own scratch from
//     one pool; counting runs until every face fits, a scan of the sizes, then a
//     writing run (pooled_face_pass below).
//
// Backend:
//   using Buffer                                        output memory handed to the caller
//   template <class T> Array<T> array(int64_t n)        scratch; .get() -> T*
//   Buffer buffer(int64_t bytes)                        ->ptr
//   void launch(const Step&, int64_t n, int threads)    step(i) for i < n (threads per
//                                                       block on a GPU)
//   offset_t scan_counts(offset_t* off, int64_t n)      off[0] = 0, inclusive scan of
//                                                       off[1..n]; returns off[n]
//   void inclusive_scan(offset_t* p, int64_t n)
//   void sort_by_key(uint64_t* key, int64_t* value, int64_t n)   stable
//   void column_tolerance(const double* rows, int64_t V, int C, int K, double rtol, double* tol)
//   template <class T> T read(const T* p); std::vector<T> read(const T* p, int64_t n)
//   template <class T> void upload(T* dst, const std::vector<T>& src)
//   void copy(void* dst, const void* src, int64_t bytes)
//   void sync()
//   void cut_faces(const RefineInput&, const FaceInput&, const double* xy_edge,
//                  RefineResult<Buffer>&)          phase 3; fills every face output
#pragma once

#include <algorithm>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <vector>

#include "refine_steps.h"
#include "splinecam/refine.h"

namespace splinecam {

// The refined partition, in the backend's memory. New vertices have ids V .. V + M - 1:
// first the crossings made on existing edges, then the vertices made inside faces.
template <class Buffer>
struct RefineResult {
  Buffer xy;                         // [M, 2]
  Buffer rows_edge;                  // [M_edge, n_cols] values of the edge crossings
  std::vector<Buffer> rows_face;     // values of the other new vertices, in id order,
  std::vector<int64_t> rows_face_n;  // as blocks of rows_face_n[b] rows (no copy)
  Buffer face_offsets;               // [F' + 1] int64
  Buffer face_verts;                 // [H'] int32
  Buffer he_layer;                   // [H'] int32
  Buffer he_unit;                    // [H'] int32
  Buffer face_parent;                // [F'] int32: face of the input it was cut from
  int64_t edge_vertices = 0, face_vertices = 0, num_faces = 0, num_half_edges = 0;
  int64_t degenerate = 0;    // sub-polygons left uncut (face_cut.h)
  int64_t face_retries = 0;  // face runs repeated with a larger scratch
  int64_t face_rounds = 0;   // pooled: runs of the counting face pass
  int64_t face_batches = 0;  // pooled: batches of scratch
  // snap, edge table, edge crossings, faces, and the share of the faces' time spent
  // joining per-block outputs (threaded face pass; 0 for the pooled one)
  double seconds[5] = {0, 0, 0, 0, 0};
};

[[noreturn]] inline void budget_exceeded() {
  throw BudgetExceeded("the refinement exceeds its budget of new vertices (memory limit)");
}

inline int64_t at_least_1(int64_t n) { return n > 0 ? n : 1; }

// num_half_edges: face_offsets[num_faces] (the caller knows it without reading memory
// that may live on a device).
template <class Backend>
RefineResult<typename Backend::Buffer> refine(const RefineInput& in, int64_t num_half_edges, Backend& be) {
  const index_t V = in.num_vertices;
  const int C = in.n_cols, K = in.n_cut, B = in.cut_begin;
  const int64_t F = in.num_faces, H = num_half_edges;
  RefineResult<typename Backend::Buffer> out;
  auto clock = std::chrono::steady_clock::now();
  auto lap = [&](int phase) {
    be.sync();
    auto now = std::chrono::steady_clock::now();
    out.seconds[phase] = std::chrono::duration<double>(now - clock).count();
    clock = now;
  };

  // ---- 0. per-column tolerance and snapping -------------------------------------------
  auto tol = be.template array<double>(at_least_1(K));
  if (in.tol_fixed) {  // floor == cap: the bounds are the tolerance, whatever the rows' scale
    if (K > 0) be.launch(FixedToleranceStep{tol.get(), in.tol_bounds}, K, 256);
  } else {
    be.column_tolerance(in.rows, V, C, K, in.rtol, tol.get());
    if (in.tol_bounds && K > 0) be.launch(BoundToleranceStep{tol.get(), in.tol_bounds, K}, K, 256);
  }
  // Zero columns of every vertex (counted here, listed after the end marks of phase 2)
  // and its sign bits over the columns cut now: the edge passes read a few words per
  // vertex instead of its row.
  auto zero_off = be.template array<offset_t>(static_cast<int64_t>(V) + 1);
  const int W = sign_words(K - B);
  auto bits = be.template array<uint64_t>(at_least_1(static_cast<int64_t>(V) * 2 * W));
  auto marks = be.template array<uint64_t>(at_least_1(static_cast<int64_t>(V) * W));
  be.launch(SnapStep{in.rows, tol.get(), C, B, K, zero_off.get(), bits.get(), marks.get()}, V, 256);
  lap(0);

  // ---- 1. edges: the crossed half-edges sorted by their key (lo, hi), numbered in key
  // order; the others share one empty edge (most of a late layer's, nearly all of a
  // decision boundary's), so the sort and the edge passes see only the crossed ones.
  auto crossed = be.template array<offset_t>(H + 1);
  be.launch(CrossedHalfEdgeStep{in.face_offsets, in.face_verts, bits.get(), W, crossed.get()}, F, 256);
  const int64_t Hc = be.scan_counts(crossed.get(), H);
  auto key = be.template array<uint64_t>(at_least_1(Hc));
  auto order = be.template array<int64_t>(at_least_1(Hc));
  auto edge_id = be.template array<offset_t>(at_least_1(Hc));
  auto edge_of = be.template array<index_t>(at_least_1(H));
  be.launch(CrossedKeyStep{in.face_offsets, in.face_verts, crossed.get(), key.get(), order.get()}, F, 256);
  be.sort_by_key(key.get(), order.get(), Hc);
  be.launch(EdgeHeadStep{key.get(), edge_id.get()}, Hc, 256);
  be.inclusive_scan(edge_id.get(), Hc);
  const int64_t Ec = Hc > 0 ? be.read(edge_id.get() + Hc - 1) : 0;
  const int64_t E = Ec + 1;  // the crossed edges, then the empty one
  auto edge_lo = be.template array<index_t>(E);
  auto edge_hi = be.template array<index_t>(E);
  be.launch(UncrossedEdgeStep{crossed.get(), static_cast<index_t>(Ec), edge_of.get(), edge_lo.get(), edge_hi.get()},
            H, 256);
  be.launch(EdgeWriteStep{key.get(), order.get(), edge_id.get(), edge_of.get(), edge_lo.get(), edge_hi.get()}, Hc,
            256);
  lap(1);

  // ---- 2. crossings on edges -----------------------------------------------------------
  // Crossings that land on an end of their edge make that end's value 0; then the zero
  // columns of every vertex (CSR: count, scan, write).
  be.launch(EndMarkStep{in.rows, in.xy, bits.get(), C, B, W, edge_lo.get(), edge_hi.get(), marks.get()}, E, 256);
  be.launch(EndSnapStep{in.rows, bits.get(), marks.get(), C, B, W, zero_off.get()}, V, 256);
  const offset_t Z = be.scan_counts(zero_off.get(), V);
  auto zero_col = be.template array<int32_t>(at_least_1(Z));
  be.launch(ZeroColumnsStep{in.rows, C, B, K, zero_off.get(), zero_col.get()}, V, 256);
  // Hits (column crossings) per edge: count, scan, write sorted along the edge; then the
  // merged crossing vertices: count, scan, write their rows straight into the output.
  auto hit_off = be.template array<offset_t>(E + 1);
  auto cross_off = be.template array<offset_t>(E + 1);
  be.launch(CountHitsStep{bits.get(), W, edge_lo.get(), edge_hi.get(), hit_off.get()}, E, 256);
  const offset_t n_hits = be.scan_counts(hit_off.get(), E);
  auto hit_t = be.template array<double>(at_least_1(n_hits));
  auto hit_col = be.template array<int32_t>(at_least_1(n_hits));
  auto used = be.template array<uint8_t>(at_least_1(n_hits));
  be.launch(WriteHitsStep{in.rows, bits.get(), C, B, W, edge_lo.get(), edge_hi.get(), hit_off.get(), hit_t.get(),
                          hit_col.get()},
            E, 256);
  MergeHitsStep merge{in.rows, in.xy, tol.get(), C, K, edge_lo.get(), edge_hi.get(), hit_off.get(),
                      hit_col.get(), used.get(), cross_off.get(), nullptr, nullptr};
  be.launch(merge, E, 256);
  const index_t n1 = static_cast<index_t>(be.scan_counts(cross_off.get(), E));
  if (in.max_new_vertices > 0 && n1 > in.max_new_vertices) budget_exceeded();
  out.edge_vertices = n1;
  auto xy_edge = be.template array<double>(2 * at_least_1(n1));
  out.rows_edge = be.buffer(8 * static_cast<int64_t>(n1) * C);
  merge.xy1 = xy_edge.get();
  merge.rows1 = static_cast<double*>(out.rows_edge->ptr);
  be.launch(merge, E, 256);
  lap(2);

  // ---- 3. faces ------------------------------------------------------------------------
  const FaceInput fin{in.face_offsets, in.face_verts, in.he_layer, in.he_unit, edge_lo.get(), edge_of.get(),
                      cross_off.get(), hit_off.get(), hit_col.get(), zero_off.get(), zero_col.get(), in.xy,
                      in.rows, xy_edge.get(), merge.rows1, tol.get(), V, n1, C, K, in.layer_id,
                      bits.get(), B, W};
  be.cut_faces(in, fin, xy_edge.get(), out);
  lap(3);
  out.seconds[3] -= out.seconds[4];
  return out;
}

// Faces cut into batches whose scratch fits in `limit` bytes (a face larger than the
// limit gets a batch of its own). Returns the batch boundaries into `ids`.
inline std::vector<size_t> face_batches(const std::vector<int32_t>& ids, const std::vector<int64_t>& bytes,
                                        int64_t limit) {
  std::vector<size_t> cut{0};
  int64_t acc = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t b = bytes[ids[i]];
    if (acc > 0 && acc + b > limit) {
      cut.push_back(i);
      acc = 0;
    }
    acc += b;
  }
  cut.push_back(ids.size());
  return cut;
}

// The pooled face pass (see the top of this file); scratch_bytes: the pool per batch.
template <class Backend>
void pooled_face_pass(Backend& be, const RefineInput& in, const FaceInput& fin, const double* xy_edge,
                      int64_t scratch_bytes, RefineResult<typename Backend::Buffer>& out) {
  const int64_t F = in.num_faces, n1 = fin.n1;
  const int C = in.n_cols;
  auto plan = be.template array<FacePlan>(at_least_1(F));
  be.launch(PlanFaceStep{fin, plan.get()}, F, 256);
  const std::vector<FacePlan> hplan = be.read(plan.get(), F);
  std::vector<int32_t> level(F, 0);
  std::vector<int64_t> bytes(F, 0);
  auto dlevel = be.template array<int32_t>(at_least_1(F));
  auto result = be.template array<FaceResult>(at_least_1(F));
  // Runs `run(step, n)` over the faces `ids` batch by batch, each batch with one pool.
  auto run_batches = [&](const std::vector<int32_t>& ids, auto&& run) {
    for (int32_t f : ids) bytes[f] = carve_scratch(nullptr, face_caps(hplan[f], level[f]), C, nullptr);
    be.upload(dlevel.get(), level);
    const std::vector<size_t> cut = face_batches(ids, bytes, scratch_bytes);
    for (size_t b = 0; b + 1 < cut.size(); ++b) {
      const int64_t n = static_cast<int64_t>(cut[b + 1] - cut[b]);
      std::vector<int32_t> bid(ids.begin() + cut[b], ids.begin() + cut[b + 1]);
      std::vector<int64_t> boff(n);
      int64_t total = 0;
      for (int64_t i = 0; i < n; ++i) {
        boff[i] = total;
        total += bytes[bid[i]];
      }
      auto dids = be.template array<int32_t>(n);
      auto doff = be.template array<int64_t>(n);
      auto pool = be.template array<char>(at_least_1(total));
      be.upload(dids.get(), bid);
      be.upload(doff.get(), boff);
      run(CutFaceStep{fin, plan.get(), dids.get(), dlevel.get(), pool.get(), doff.get(), result.get()}, n);
      be.sync();  // before the pool is released
      ++out.face_batches;
    }
  };
  // Counting runs: every face at the lowest capacity level that holds it.
  std::vector<int32_t> pending(F);
  for (int64_t f = 0; f < F; ++f) pending[f] = static_cast<int32_t>(f);
  std::vector<FaceResult> hres;
  while (!pending.empty()) {
    if (out.face_rounds > 40) throw std::runtime_error("face scratch keeps overflowing (internal error)");
    run_batches(pending, [&](const CutFaceStep& step, int64_t n) { be.launch(step, n, 128); });
    hres = be.read(result.get(), F);
    std::vector<int32_t> again;
    for (int32_t f : pending)
      if (hres[f].overflow) {
        ++level[f];
        again.push_back(f);
      }
    out.face_retries += static_cast<int64_t>(again.size());
    pending.swap(again);
    ++out.face_rounds;
  }
  // Scan the sizes, then run every face again and write it out at its offsets.
  std::vector<int64_t> piece_off(F + 1, 0), he_off(F + 1, 0), local_off(F + 1, 0);
  for (int64_t f = 0; f < F; ++f) {
    piece_off[f + 1] = piece_off[f] + hres[f].pieces;
    he_off[f + 1] = he_off[f] + hres[f].half_edges;
    local_off[f + 1] = local_off[f] + hres[f].local;
    out.degenerate += hres[f].degenerate;
  }
  const int64_t P = piece_off[F], HO = he_off[F], ML = local_off[F];
  if (in.max_new_vertices > 0 && n1 + ML > in.max_new_vertices) budget_exceeded();
  out.face_vertices = ML;
  out.num_faces = P;
  out.num_half_edges = HO;
  out.xy = be.buffer(16 * (n1 + ML));
  out.rows_face = {be.buffer(8 * ML * C)};
  out.rows_face_n = {ML};
  out.face_offsets = be.buffer(8 * (P + 1));
  out.face_verts = be.buffer(4 * HO);
  out.he_layer = be.buffer(4 * HO);
  out.he_unit = be.buffer(4 * HO);
  out.face_parent = be.buffer(4 * P);
  be.copy(out.xy->ptr, xy_edge, 16 * n1);
  auto dpiece = be.template array<int64_t>(F + 1);
  auto dhe = be.template array<int64_t>(F + 1);
  auto dlocal = be.template array<int64_t>(F + 1);
  be.upload(dpiece.get(), piece_off);
  be.upload(dhe.get(), he_off);
  be.upload(dlocal.get(), local_off);
  auto* offsets = static_cast<offset_t*>(out.face_offsets->ptr);
  std::vector<int32_t> all(F);
  for (int64_t f = 0; f < F; ++f) all[f] = static_cast<int32_t>(f);
  auto mismatch = be.template array<int32_t>(1);
  be.upload(mismatch.get(), std::vector<int32_t>{0});
  run_batches(all, [&](const CutFaceStep& step, int64_t n) {
    be.launch(CutEmitFaceStep{step, dpiece.get(), dhe.get(), dlocal.get(), offsets + 1,
                              static_cast<index_t*>(out.face_verts->ptr), static_cast<int32_t*>(out.he_layer->ptr),
                              static_cast<int32_t*>(out.he_unit->ptr), static_cast<index_t*>(out.face_parent->ptr),
                              static_cast<double*>(out.xy->ptr) + 2 * n1,
                              static_cast<double*>(out.rows_face[0]->ptr), mismatch.get()},
              n, 128);
  });
  if (be.read(mismatch.get()))
    throw std::runtime_error("a face cut differently in its writing run than in its counting run (internal error)");
  be.scan_counts(offsets, P);
}

}  // namespace splinecam
