// CUDA kernel: serialization keys of voxel coordinates along z-order / Hilbert curves.
// Semantics: csrc/ops.h (serialize_cpu) and lidarcl/ops/serialize.py; launcher:
// csrc/cuda/launchers.h. One thread per point, pure integer arithmetic: deterministic.
#include <cuda_runtime.h>

#include <cstdint>

#include "common.cuh"
#include "launchers.h"

namespace lidarcl {
namespace cuda {
namespace {

using namespace detail;

// Bit i of X[0], X[1], X[2] to bits 3i + 2, 3i + 1, 3i of the code (reading the rows most
// significant bit first, X[0] first within each triple).
__device__ __forceinline__ uint64_t interleave3(const uint32_t X[3], int depth) {
  uint64_t code = 0;
  for (int i = depth - 1; i >= 0; --i)
    for (int d = 0; d < 3; ++d) code = (code << 1) | ((X[d] >> i) & 1u);
  return code;
}

// J. Skilling, "Programming the Hilbert curve", AIP Conf. Proc. 707 (2004): AxesToTranspose
// for n = 3 dimensions of `depth` bits, in place.
__device__ __forceinline__ void axes_to_transpose(uint32_t X[3], int depth) {
  const int n = 3;
  const uint32_t M = 1u << (depth - 1);
  // inverse undo; X[0] changes along the loop over i
  for (uint32_t Q = M; Q > 1; Q >>= 1) {
    const uint32_t P = Q - 1;
    for (int i = 0; i < n; ++i) {
      if (X[i] & Q) {
        X[0] ^= P;  // invert
      } else {      // exchange the low bits of X[0] and X[i]
        const uint32_t t = (X[0] ^ X[i]) & P;
        X[0] ^= t;
        X[i] ^= t;
      }
    }
  }
  // Gray encode
  for (int i = 1; i < n; ++i) X[i] ^= X[i - 1];
  uint32_t t = 0;
  for (uint32_t Q = M; Q > 1; Q >>= 1)
    if (X[n - 1] & Q) t ^= Q - 1;
  for (int i = 0; i < n; ++i) X[i] ^= t;
}

__global__ void serialize_kernel(const int64_t* __restrict__ coords,
                                 const int64_t* __restrict__ batch_index, int64_t num_points,
                                 int order, int depth, int64_t* __restrict__ keys) {
  const bool swap_xy = order == 1 || order == 3;
  const bool hilbert = order >= 2;
  const uint32_t mask = (1u << depth) - 1u;  // coordinates are validated < 2^depth
  LIDARCL_CUDA_LOOP(n, num_points) {
    const int64_t* p = coords + 3 * n;
    uint32_t X[3];
    X[0] = static_cast<uint32_t>(p[swap_xy ? 1 : 0]) & mask;
    X[1] = static_cast<uint32_t>(p[swap_xy ? 0 : 1]) & mask;
    X[2] = static_cast<uint32_t>(p[2]) & mask;
    if (hilbert) axes_to_transpose(X, depth);
    const uint64_t code = interleave3(X, depth);
    const uint64_t batch = static_cast<uint64_t>(batch_index[n]);
    keys[n] = static_cast<int64_t>((batch << (3 * depth)) | code);
  }
}

}  // namespace

cudaError_t serialize(const int64_t* coords, const int64_t* batch_index, int64_t num_points,
                      int order, int depth, int64_t* keys, cudaStream_t stream) {
  if (order < 0 || order > 3 || depth < 1 || depth > 16) return cudaErrorInvalidValue;
  LIDARCL_CUDA_LAUNCH(serialize_kernel, num_points, stream, coords, batch_index, num_points,
                      order, depth, keys);
  return cudaSuccess;
}

}  // namespace cuda
}  // namespace lidarcl
