// Host launchers of the CUDA kernels of lidarcl._C (csrc/cuda/*.cu).
//
// Plain C++ on raw device pointers: no torch headers here or in the .cu files, so that
// every .cu compiles alone with nvcc; the ATen glue (csrc/cuda/ops_cuda.cpp) allocates the
// tensors, does the scans (at::cumsum), the stable sorts by region (at::sort) and the
// segment searches (at::searchsorted), and calls these. Semantics: csrc/ops.h.
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
// (accumulated with float atomicAdd: not deterministic; the glue calls
// alertNotDeterministic, so torch.use_deterministic_algorithms(True) makes it raise).
template <typename scalar_t>
cudaError_t gather_backward(const scalar_t* grad_out, const int64_t* image_index,
                            const scalar_t* coords, int64_t num_pairs, int64_t channels,
                            int64_t num_images, int64_t height, int64_t width,
                            scalar_t* grad_features, cudaStream_t stream);

// ---------------------------------------------------------------- region pooling
// Deterministic segmented reduction (the default of region_pool and project_pool): the
// members of region r are members[start[r]] .. members[start[r + 1] - 1], listed in the
// order in which they are added (the glue sorts them stably by region, so in ascending
// row order: the CPU kernels' order). Member j reads feature row
// i = member_row ? member_row[members[j]] : members[j] of features (num_rows, C).
// One thread per (region, channel) adds its rows one after another, starting from 0, and
// divides by the count for mean (ops.h): the result is bit-identical to the CPU kernel's
// and independent of the schedule. reduce: 0 mean, 1 max, 2 sum. Writes every element of
// pooled (R, C) and counts (R,); for max also argmax (R, C) (-1 and 0 for empty regions;
// NaN counts as the largest value, the first row at the maximum wins), else argmax may be
// null.
template <typename scalar_t>
cudaError_t segment_pool(const scalar_t* features, int64_t num_rows, int64_t channels,
                         const int64_t* members, const int64_t* member_row,
                         const int64_t* start, int64_t num_regions, int reduce,
                         scalar_t* pooled, int64_t* counts, int64_t* argmax,
                         cudaStream_t stream);

// Atomic mean / sum (opt-in, not deterministic): entry j in [0, n) adds feature row
// rows ? rows[j] : j to region region_of[j] (skipped unless in [0, R)) with float atomicAdd.
// pooled (R, C) and counts (R,) must be zero-filled by the caller.
template <typename scalar_t>
cudaError_t scatter_pool(const scalar_t* features, int64_t channels, const int64_t* rows,
                         const int64_t* region_of, int64_t n, int64_t num_regions, bool mean,
                         scalar_t* pooled, int64_t* counts, cudaStream_t stream);

// Max with integer atomics on ordered keys (opt-in path; schedule-independent result):
// features (N, C), region_ids (N,) in [-1, R). counts (R,) must be zero-filled; pooled and
// argmax (R, C) and a workspace of R * C elements are overwritten.
template <typename scalar_t>
cudaError_t region_pool_max_atomic(const scalar_t* features, const int64_t* region_ids,
                                   int64_t num_points, int64_t channels, int64_t num_regions,
                                   scalar_t* pooled, int64_t* counts, int64_t* argmax,
                                   scalar_t* workspace, cudaStream_t stream);

// grad_pooled (R, C) -> grad_features (N, C); every element is written, no atomics.
// mean / sum: row n of region r gets grad[r] (/ count[r]); max: row n gets grad[r, c] iff
// argmax[r, c] == n, r = region_ids[n] (the forward's argmax always names a row of its own
// region). argmax (R, C) used for max only (may be null otherwise).
template <typename scalar_t>
cudaError_t region_pool_backward(const scalar_t* grad_pooled, const int64_t* region_ids,
                                 const int64_t* counts, const int64_t* argmax,
                                 int64_t num_points, int64_t channels, int64_t num_regions,
                                 int reduce, scalar_t* grad_features, cudaStream_t stream);

// ---------------------------------------------------------------- fused project + pool
// superpixels (B, K, sp_height, sp_width) ids of type id_t (uint8_t, int16_t, int32_t or
// int64_t), read in that type (no widened copy of the maps).
// keep[j] = 1 iff candidate j passes the projection rule and reads a superpixel id in
// [0, S). An id outside [-1, S) under a projected point is invalid input: it is not kept
// and recorded in bad_ids (2,) int64, which the launcher initialises: bad_ids[0] = the
// largest id >= S read (INT64_MIN if none), bad_ids[1] = the smallest id < -1 read
// (INT64_MAX if none); the glue raises on them.
template <typename scalar_t, typename id_t>
cudaError_t project_pool_flags(const ProjectionArgs<scalar_t>& args, const id_t* superpixels,
                               int64_t sp_height, int64_t sp_width, int64_t num_superpixels,
                               uint8_t* keep, int64_t* bad_ids, cudaStream_t stream);

// Given keep and its inclusive prefix sum `position`: writes pair_point / pair_region (P,)
// of the kept candidates in candidate order (sample, camera, point), region
// (b * K + k) * S + s. The pooling is then segment_pool (default) or scatter_pool.
template <typename scalar_t, typename id_t>
cudaError_t project_pool_compact(const ProjectionArgs<scalar_t>& args, const id_t* superpixels,
                                 int64_t sp_height, int64_t sp_width, int64_t num_superpixels,
                                 const uint8_t* keep, const int64_t* position,
                                 int64_t* pair_point, int64_t* pair_region,
                                 cudaStream_t stream);

// ---------------------------------------------------------------- serialization
// coords (N, 3) int64 in [0, 2^depth), batch_index (N,) -> keys (N,) int64.
// order: 0 z, 1 z-trans, 2 hilbert, 3 hilbert-trans; 1 <= depth <= 16.
cudaError_t serialize(const int64_t* coords, const int64_t* batch_index, int64_t num_points,
                      int order, int depth, int64_t* keys, cudaStream_t stream);

// ---------------------------------------------------------------- rotated boxes
// Boxes are rows of `stride` >= 7 values [x, y, z, l, w, h, yaw, ...] (csrc/box_geometry.h).
// out (n, m) = IoU of a (n boxes) and b (m boxes); mode 0 = BEV, 1 = 3D.
template <typename scalar_t>
cudaError_t box_iou(const scalar_t* a, int64_t n, int64_t stride_a, const scalar_t* b,
                    int64_t m, int64_t stride_b, int mode, scalar_t* out, cudaStream_t stream);

// NMS suppression masks of n boxes sorted by decreasing score, in blocks of kNmsBlock:
// mask (n, ceil(n / kNmsBlock)); bit k of mask[i][c] is set iff box j = c * kNmsBlock + k
// has j > i and BEV IoU(i, j) > threshold.
constexpr int64_t kNmsBlock = 64;
template <typename scalar_t>
cudaError_t nms_bev_mask(const scalar_t* boxes, int64_t n, int64_t stride, double threshold,
                         unsigned long long* mask, cudaStream_t stream);

// points (n, stride_p) against boxes (m, stride_b): out_all (n, m) when not null, else
// out_first (n,) = first box containing the point or -1.
template <typename scalar_t>
cudaError_t points_in_boxes(const scalar_t* points, int64_t n, int64_t stride_p,
                            const scalar_t* boxes, int64_t m, int64_t stride_b, bool* out_all,
                            int64_t* out_first, cudaStream_t stream);

}  // namespace cuda
}  // namespace lidarcl
