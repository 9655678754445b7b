// splinecam — shared definitions for the geometry kernels.
//
// Every per-element body in src/ is written once. Under nvcc SPLINECAM_HD marks it
// __host__ __device__ so the CUDA backend (csrc/cuda_launcher.cu) runs the same body as
// the host backend (csrc/host_backend.h); without nvcc it is plain `inline`.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SPLINECAM_HD __host__ __device__ inline
#else
#define SPLINECAM_HD inline
#endif

namespace splinecam {

using index_t = int32_t;   // vertex / face / edge index
using offset_t = int64_t;  // offsets into ragged (CSR) arrays

// Label of an edge: the layer (1-based, -1 = domain boundary) and the unit / breakpoint
// column of that layer whose zero set the edge lies on.
constexpr int32_t kBoundary = -1;

// *word |= m, atomically (relaxed): a flag set by several elements of one step, in any
// order, with the same result.
SPLINECAM_HD void atomic_or64(uint64_t* word, uint64_t m) {
#if defined(__CUDA_ARCH__)
  atomicOr(reinterpret_cast<unsigned long long*>(word), static_cast<unsigned long long>(m));
#else
  __atomic_fetch_or(word, m, __ATOMIC_RELAXED);
#endif
}

}  // namespace splinecam
