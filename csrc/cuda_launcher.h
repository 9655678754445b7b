// Entry points of the CUDA launcher (csrc/cuda_launcher.cu). Compiled only when the
// build found nvcc (SPLINECAM_WITH_CUDA); otherwise the bindings report that the
// extension was built without CUDA.
#pragma once

#include <cstdint>

namespace splinecam {

int cuda_device_count();
// rows: device pointer [n_rows, n_cols] float64, snapped in place; tol: device [n_cut];
// zero_count: device [n_rows] int32 or 0; stream: cudaStream_t or 0.
void cuda_snap_rows(uintptr_t rows, uintptr_t tol, int64_t n_rows, int n_cols, int n_cut, uintptr_t zero_count,
                    uintptr_t stream);

}  // namespace splinecam
