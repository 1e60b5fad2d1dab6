// Host launchers of the CUDA kernels of lidarcl._C (csrc/cuda/*.cu).
//
// Plain C++ on raw device pointers: no torch headers here or in the .cu files, so that
// every .cu compiles alone with nvcc; the ATen glue (csrc/cuda/ops_cuda.cpp) allocates the
// tensors, does the scans (at::cumsum) and calls these. Semantics: csrc/ops.h.
//
// Conventions:
// * every launcher enqueues its kernels on `stream` and returns the first launch error
//   (cudaSuccess when all launched; nothing is launched for empty sizes); it never
//   synchronises;
// * all pointers are to contiguous device memory; sizes are element counts (int64);
// * `scalar_t` is float or double (explicit instantiations in the .cu files);
// * a "workspace" of n scalar_t elements is scratch memory the launcher overwrites (it is
//   used as n ordered integer keys of sizeof(scalar_t) bytes).
//
// Projection candidates: the (point, camera) pairs of a batch are enumerated in the output
// order of project_points (sample b, camera k, point i), i.e. candidate
//   j = K * start_b + k * n_b + (i - start_b),   j in [0, N * K),
// with start_b = offsets[b - 1] (0 for b = 0) and n_b = offsets[b] - start_b. A "keep"
// array holds one byte per candidate; its inclusive prefix sum ("position", int64) gives
// candidate j the output slot position[j] - 1, so compaction is stable and deterministic.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace lidarcl {
namespace cuda {

template <typename scalar_t>
struct ProjectionArgs {
  const scalar_t* points = nullptr;     // (N, point_stride), columns x, y, z first
  int64_t num_points = 0;               // N (== offsets[B - 1])
  int64_t point_stride = 3;             // D >= 3
  const int64_t* offsets = nullptr;     // (B,) cumulative end indices
  int64_t batch = 0;                    // B
  const scalar_t* lidar2img = nullptr;  // (B, K, 4, 4)
  const scalar_t* image_hw = nullptr;   // (B, K, 2) (height, width)
  int64_t num_cams = 0;                 // K
  scalar_t min_depth = 0;               // already cast to scalar_t
  scalar_t margin = 0;                  // already cast to scalar_t
};

// ---------------------------------------------------------------- projection
// keep[j] = 1 iff candidate j passes the projection rule, for j in [0, N * K).
template <typename scalar_t>
cudaError_t project_points_flags(const ProjectionArgs<scalar_t>& args, uint8_t* keep,
                                 cudaStream_t stream);

// Writes the kept candidates to slot position[j] - 1 of the (M,) outputs (uv is (M, 2)).
template <typename scalar_t>
cudaError_t project_points_compact(const ProjectionArgs<scalar_t>& args, const uint8_t* keep,
                                   const int64_t* position, int64_t* point_index,
                                   int64_t* camera_index, scalar_t* uv, scalar_t* depth,
                                   int64_t* batch_index, cudaStream_t stream);

// ---------------------------------------------------------------- visibility
// uv (M, 2), depth (M,), image_index (M,), image_hw (I, 2) int64, image_start (I,) int64:
// exclusive prefix sum of height * width (start of image i's depth buffer);
// workspace: buffer_size = sum of height * width elements. visible (M,) bool.
template <typename scalar_t>
cudaError_t visibility(const scalar_t* uv, const scalar_t* depth, const int64_t* image_index,
                       int64_t num_pairs, const int64_t* image_hw, const int64_t* image_start,
                       int64_t num_images, scalar_t* workspace, int64_t buffer_size,
                       int64_t window, scalar_t depth_tolerance, scalar_t relative_tolerance,
                       bool* visible, cudaStream_t stream);

// ---------------------------------------------------------------- pixel gather
// features (I, C, H, W), image_index (M,), coords (M, 2) (x, y) -> out (M, C).
template <typename scalar_t>
cudaError_t gather_forward(const scalar_t* features, int64_t num_images, int64_t channels,
                           int64_t height, int64_t width, const int64_t* image_index,
                           const scalar_t* coords, int64_t num_pairs, scalar_t* out,
                           cudaStream_t stream);

// grad_out (M, C) -> grad_features (I, C, H, W), which must be zero-filled by the caller
// (accumulated with atomicAdd).
template <typename scalar_t>
cudaError_t gather_backward(const scalar_t* grad_out, const int64_t* image_index,
                            const scalar_t* coords, int64_t num_pairs, int64_t channels,
                            int64_t num_images, int64_t height, int64_t width,
                            scalar_t* grad_features, cudaStream_t stream);

// ---------------------------------------------------------------- region pooling
// features (N, C), region_ids (N,) in [-1, R). reduce: 0 mean, 1 max, 2 sum.
// counts (R,) must be zero-filled by the caller; pooled (R, C) too for mean/sum (for max
// every element is written). For max: argmax (R, C) and a workspace of R * C elements
// (both overwritten); for mean/sum argmax and workspace are unused (may be null).
template <typename scalar_t>
cudaError_t region_pool_forward(const scalar_t* features, const int64_t* region_ids,
                                int64_t num_points, int64_t channels, int64_t num_regions,
                                int reduce, scalar_t* pooled, int64_t* counts, int64_t* argmax,
                                scalar_t* workspace, cudaStream_t stream);

// grad_pooled (R, C) -> grad_features (N, C), zero-filled by the caller. counts (R,);
// argmax (R, C) used for max only (may be null otherwise).
template <typename scalar_t>
cudaError_t region_pool_backward(const scalar_t* grad_pooled, const int64_t* region_ids,
                                 const int64_t* counts, const int64_t* argmax,
                                 int64_t num_points, int64_t channels, int64_t num_regions,
                                 int reduce, scalar_t* grad_features, cudaStream_t stream);

// ---------------------------------------------------------------- fused project + pool
// superpixels (B, K, sp_height, sp_width) int64 ids in [-1, S).
// keep[j] = 1 iff candidate j passes the projection rule and reads a superpixel id s >= 0
// (ids >= num_superpixels, invalid input, are treated like -1 instead of writing out of
// bounds).
template <typename scalar_t>
cudaError_t project_pool_flags(const ProjectionArgs<scalar_t>& args,
                               const int64_t* superpixels, int64_t sp_height, int64_t sp_width,
                               int64_t num_superpixels, uint8_t* keep, cudaStream_t stream);

// Given keep and its inclusive prefix sum `position` (num_pairs = P = position[N*K - 1]):
// writes pair_point / pair_region (P,) in candidate order, counts (B*K*S,) and the mean
// pooled (B*K*S, C) of the feature rows (N, C) per region. pooled and counts must be
// zero-filled by the caller.
template <typename scalar_t>
cudaError_t project_pool_finish(const ProjectionArgs<scalar_t>& args,
                                const int64_t* superpixels, int64_t sp_height,
                                int64_t sp_width, int64_t num_superpixels, const uint8_t* keep,
                                const int64_t* position, int64_t num_pairs,
                                const scalar_t* features, int64_t channels,
                                int64_t* pair_point, int64_t* pair_region, scalar_t* pooled,
                                int64_t* counts, cudaStream_t stream);

// ---------------------------------------------------------------- serialization
// coords (N, 3) int64 in [0, 2^depth), batch_index (N,) -> keys (N,) int64.
// order: 0 z, 1 z-trans, 2 hilbert, 3 hilbert-trans; 1 <= depth <= 16.
cudaError_t serialize(const int64_t* coords, const int64_t* batch_index, int64_t num_points,
                      int order, int depth, int64_t* keys, cudaStream_t stream);

}  // namespace cuda
}  // namespace lidarcl
