// CUDA launcher: grid-stride loops over the same per-element bodies the CPU launcher
// runs (src/splinecam/crossing.h). Pointers are raw device pointers taken from torch
// tensors by the Python driver; the extension never links against libtorch.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "cuda_launcher.h"
#include "splinecam/crossing.h"

namespace splinecam {
namespace {

__global__ void snap_rows_kernel(double* rows, const double* tol, int64_t n_rows, int n_cols, int n_cut,
                                 int32_t* zero_count) {
  for (int64_t v = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; v < n_rows;
       v += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    int z = snap_row(rows + v * n_cols, tol, n_cut);
    if (zero_count) zero_count[v] = z;
  }
}

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

}  // namespace

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

void cuda_snap_rows(uintptr_t rows, uintptr_t tol, int64_t n_rows, int n_cols, int n_cut, uintptr_t zero_count,
                    uintptr_t stream) {
  if (n_rows == 0) return;
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((n_rows + threads - 1) / threads, 65535));
  auto s = reinterpret_cast<cudaStream_t>(stream);
  snap_rows_kernel<<<blocks, threads, 0, s>>>(reinterpret_cast<double*>(rows), reinterpret_cast<const double*>(tol),
                                              n_rows, n_cols, n_cut, reinterpret_cast<int32_t*>(zero_count));
  check(cudaGetLastError(), "snap_rows_kernel launch");
  check(cudaStreamSynchronize(s), "snap_rows_kernel");
}

}  // namespace splinecam
