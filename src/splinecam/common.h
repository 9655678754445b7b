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

}  // namespace splinecam
