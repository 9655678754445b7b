// Entry points of the CUDA launcher (csrc/cuda_launcher.cu). Compiled only when the
// build found nvcc (SPLINECAM_WITH_CUDA); otherwise the bindings report that the
// extension was built without CUDA. This header needs no CUDA headers, so the bindings
// compile with the host compiler alone.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "launcher.h"
#include "splinecam/refine.h"

namespace splinecam {

int cuda_device_count();
// Why no device is usable ("" when cudaGetDeviceCount succeeds): the CUDA error, with the
// runtime version the extension was built with and the version the driver supports.
std::string cuda_status();

// Device memory owned by the extension and handed to Python (torch tensors view it
// through __cuda_array_interface__, without a copy). Freed when the last view goes.
struct DeviceBuffer {
  void* ptr = nullptr;
  int64_t bytes = 0;
  int device = 0;
  DeviceBuffer(int64_t bytes, int device);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};
using DevicePtr = std::shared_ptr<DeviceBuffer>;

// The refinement on one GPU: the same result as refine_cpu, in device memory.
using CudaRefineOutput = RefineResult<DevicePtr>;

// Every pointer of `in` is a device pointer on `device`; work runs on `stream` (0: the
// legacy default stream) and is complete when this returns. num_half_edges is
// face_offsets[num_faces].
CudaRefineOutput refine_cuda(const RefineInput& in, int64_t num_half_edges, int device, uintptr_t stream,
                             int64_t scratch_bytes);

// The window bodies of max-type layers (src/splinecam/windows.h) on one GPU: rows and
// idx [W, k] (int64) and floor [W] are device pointers, rows with row stride ld.
// Chain step s's breakpoint columns [0, W) of every vertex, in place:
void window_chain_cuda(double* rows, int64_t V, int64_t ld, int64_t x0, const int64_t* idx, int64_t W, int64_t k,
                       int64_t s, int device, uintptr_t stream);
// Per window: 1 when its winner is not the same at every vertex (read back to the host).
std::vector<uint8_t> winner_changes_cuda(const double* rows, int64_t V, int64_t ld, int64_t x0, const int64_t* idx,
                                         const double* floor, int64_t W, int64_t k, int device, uintptr_t stream);

}  // namespace splinecam
