// Point-pixel correspondence kernels of lidarcl._C: the one interface that the CPU
// (csrc/cpu/*.cpp) and CUDA (csrc/cuda/ops_cuda.cpp -> csrc/cuda/*.cu) implementations
// share. csrc/bindings.cpp validates arguments and dispatches on the device.
//
// Every function receives contiguous tensors, all on one device, already validated by
// bindings.cpp (shapes, dtypes, ranges). Semantics are those of the pure-PyTorch references
// in lidarcl/ops/*.py; integer outputs must match them exactly.
//
// Floating-point rule (so that selections match the reference bit for bit): the camera
// coordinate c_i of a point is evaluated as ((x*m_i0 + y*m_i1) + z*m_i2) + m_i3 with every
// product and sum rounded separately in the compute dtype (no fused multiply-add: CPU code
// is compiled with -ffp-contract=off, CUDA code uses __fmul_rn/__fadd_rn/__dmul_rn/...),
// then u = c_0 / c_2, v = c_1 / c_2, depth = c_2 (IEEE division).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace lidarcl {

// ---------------------------------------------------------------- projection
// points (N, D) float32|float64, D >= 3, columns x, y, z first.
// offsets (B,) int64 cumulative end indices (sample b = rows [offsets[b-1], offsets[b])).
// lidar2img (B, K, 4, 4) and image_hw (B, K, 2) (height, width) in the points' dtype.
// Keeps a (point, camera) pair iff depth > min_depth and margin < u < W - margin and
// margin < v < H - margin, the scalars cast to the compute dtype first and W - margin
// evaluated in that dtype.
// Returns {point_index (M,) int64 (row of points), camera_index (M,) int64 (camera within
// its sample), uv (M, 2), depth (M,), batch_index (M,) int64}, ordered by sample, camera,
// then point index.
std::vector<at::Tensor> project_points_cpu(const at::Tensor& points, const at::Tensor& offsets,
                                           const at::Tensor& lidar2img,
                                           const at::Tensor& image_hw, double min_depth,
                                           double margin);

// ---------------------------------------------------------------- visibility
// uv (M, 2), depth (M,) float32|float64, finite (the Python API rejects non-finite values;
// projection never yields them); image_index (M,) int64 in [0, I); image_hw (I, 2)
// int64 (height, width). A pair sits on pixel (y, x) = (clamp(floor(v), 0, H-1),
// clamp(floor(u), 0, W-1)) of its image; z_min = min depth over the pairs of the same image
// whose pixel lies in the (2*window+1)^2 neighbourhood of that pixel. Keeps the pair iff
// depth <= (z_min + tol) + rel * z_min (tol, rel cast to the compute dtype).
// Returns (M,) bool.
at::Tensor visibility_cpu(const at::Tensor& uv, const at::Tensor& depth,
                          const at::Tensor& image_index, const at::Tensor& image_hw,
                          int64_t window, double depth_tolerance, double relative_tolerance);

// ---------------------------------------------------------------- pixel gather
// features (I, C, H, W) float32|float64; image_index (M,) int64 in [0, I); coords (M, 2)
// feature-map cell coordinates (x, y), same dtype as features. Bilinear read with
// x = clamp(coords.x, 0, W-1), x0 = min(floor(x), max(W-2, 0)), x1 = min(x0+1, W-1),
// wx = x - x0 (same for y); out = (f00*(1-wx) + f01*wx)*(1-wy) + (f10*(1-wx) + f11*wx)*wy.
// Returns (M, C). CPU: features may be contiguous or channels-last (the fast layout: the
// four reads of a pair are runs of C values); CUDA: contiguous.
at::Tensor gather_forward_cpu(const at::Tensor& features, const at::Tensor& image_index,
                              const at::Tensor& coords);
// grad_out (M, C) -> grad_features (I, C, H, W), the adjoint of gather_forward, in the
// features' layout (channels_last selects it on the CPU).
at::Tensor gather_backward_cpu(const at::Tensor& grad_out, const at::Tensor& image_index,
                               const at::Tensor& coords, int64_t num_images, int64_t height,
                               int64_t width, bool channels_last);

// ---------------------------------------------------------------- region pooling
// features (N, C) float32|float64; region_ids (N,) int64 in [-1, R) (-1 = no region).
// reduce: 0 = mean, 1 = max, 2 = sum.
// Returns {pooled (R, C), counts (R,) int64, argmax (R, C) int64}. Empty regions give 0
// and count 0. For max, argmax is the smallest point index reaching the maximum (-1 for an
// empty region), NaN counting as the largest value (the first NaN row wins); for mean/sum
// argmax is an empty (0,) tensor.
// Summation order (the bits of mean / sum): each region's rows are added in ascending row
// order, starting from 0 (+0.0), every addition rounded on its own; mean then divides by
// the count. The CUDA kernels follow the same order by default (deterministic, the CPU's
// bits); see the WITH_CUDA section for their opt-in atomic variant.
std::vector<at::Tensor> region_pool_forward_cpu(const at::Tensor& features,
                                                const at::Tensor& region_ids,
                                                int64_t num_regions, int64_t reduce);
// grad_pooled (R, C) -> grad_features (N, C): mean: grad[r]/count[r] to every point of r;
// sum: grad[r]; max: grad[r, c] to argmax[r, c] (the CUDA kernel gathers instead: row n
// takes grad[r, c] iff argmax[r, c] == n for its own region r = region_ids[n], the same
// for any argmax the forward returns).
at::Tensor region_pool_backward_cpu(const at::Tensor& grad_pooled, const at::Tensor& region_ids,
                                    const at::Tensor& counts, const at::Tensor& argmax,
                                    int64_t num_points, int64_t reduce);

// ---------------------------------------------------------------- fused project + pool
// points, offsets, lidar2img, image_hw as in project_points_cpu; superpixels (B, K, Hs, Ws)
// ids in [-1, S) (-1 = no superpixel) at image resolution, int64, int32, int16 or uint8 (read
// in that type on both devices); both kernels raise on an id outside [-1, S) that they read
// (only ids under a projected point are read); features (N, C) in the
// points' dtype. Each kept pair (projection rule above) reads the id s at
// (clamp(floor(v), 0, Hs-1), clamp(floor(u), 0, Ws-1)); when s >= 0 its region is
// (b * K + k) * S + s and the point's feature row is added to that region.
// Returns {pooled (B*K*S, C) mean (0 for empty regions), counts (B*K*S,) int64,
// pair_point (P,) int64, pair_region (P,) int64} where the pairs are those with s >= 0, in
// projection order. Each region's feature rows are summed in pair order (ascending point
// index within a camera) from 0, then divided by the count (CUDA: same order by default).
std::vector<at::Tensor> project_pool_cpu(const at::Tensor& points, const at::Tensor& offsets,
                                         const at::Tensor& lidar2img, const at::Tensor& image_hw,
                                         const at::Tensor& superpixels, int64_t num_superpixels,
                                         const at::Tensor& features, double min_depth,
                                         double margin);

// ---------------------------------------------------------------- serialization
// coords (N, 3) int64 in [0, 2^depth); batch_index (N,) int64 >= 0; 1 <= depth <= 16 and
// batch_index < 2^(63 - 3*depth). order: 0 = "z", 1 = "z-trans", 2 = "hilbert",
// 3 = "hilbert-trans" ("-trans": x and y swapped before encoding).
// z: bit i of x, y, z goes to bit 3i+2, 3i+1, 3i of the code.
// hilbert: Skilling's AxesToTranspose on (x, y, z) with `depth` bits, then the transposed
// form is read most significant bit first, x-row first: for i = depth-1 .. 0, for d = 0..2:
// code = (code << 1) | ((X[d] >> i) & 1).
// Returns (N,) int64 keys (batch_index << 3*depth) | code.
at::Tensor serialize_cpu(const at::Tensor& coords, const at::Tensor& batch_index, int64_t order,
                         int64_t depth);

// ---------------------------------------------------------------- rotated boxes
// Boxes (N, D) float32|float64, D >= 7, columns [x, y, z, l, w, h, yaw] first (lidarcl's
// LiDAR-frame convention: gravity centre, l along the heading, yaw counter-clockwise from
// +x), l, w, h >= 0 and finite values (the Python API checks). Geometry in box_geometry.h,
// computed in double on both devices.
// box_iou: (N, M) IoU in the boxes' dtype; mode 0 = BEV (rotated rectangle areas), 1 = 3D
// (BEV intersection x vertical overlap over volumes). A zero union gives 0.
at::Tensor box_iou_cpu(const at::Tensor& boxes_a, const at::Tensor& boxes_b, int64_t mode);
// nms_bev: boxes already sorted by decreasing score. Greedy: box i is kept unless a kept
// box k < i has BEV IoU(k, i) > iou_threshold. Returns the kept rows (K,) int64, ascending.
at::Tensor nms_bev_cpu(const at::Tensor& boxes, double iou_threshold);
// points_in_boxes: points (N, P >= 3) in the boxes' dtype. Inside = faces included, tested
// in the box frame (box_geometry.h: point_in_box). all = true: (N, M) bool; all = false:
// (N,) int64, the first box containing the point or -1.
at::Tensor points_in_boxes_cpu(const at::Tensor& points, const at::Tensor& boxes, bool all);

#ifdef WITH_CUDA
// Same contracts on CUDA tensors (csrc/cuda/ops_cuda.cpp). Integer outputs and orderings
// are identical to the CPU versions, and so are the float outputs of projection and of
// region_pool / project_pool (segmented reductions in the CPU's order); every forward op is
// deterministic (the same bits run after run, on any stream).
// `atomic` = true asks region_pool / project_pool for their float-atomic variant (faster
// with few, large regions; sums in schedule order, so not deterministic); it is honoured
// only while torch.are_deterministic_algorithms_enabled() is false. gather_backward adds
// with float atomics and calls alertNotDeterministic (raises under
// torch.use_deterministic_algorithms(True)); its sums may differ in the last bits.
std::vector<at::Tensor> project_points_cuda(const at::Tensor& points, const at::Tensor& offsets,
                                            const at::Tensor& lidar2img,
                                            const at::Tensor& image_hw, double min_depth,
                                            double margin);
at::Tensor visibility_cuda(const at::Tensor& uv, const at::Tensor& depth,
                           const at::Tensor& image_index, const at::Tensor& image_hw,
                           int64_t window, double depth_tolerance, double relative_tolerance);
at::Tensor gather_forward_cuda(const at::Tensor& features, const at::Tensor& image_index,
                               const at::Tensor& coords);
at::Tensor gather_backward_cuda(const at::Tensor& grad_out, const at::Tensor& image_index,
                                const at::Tensor& coords, int64_t num_images, int64_t height,
                                int64_t width);
std::vector<at::Tensor> region_pool_forward_cuda(const at::Tensor& features,
                                                 const at::Tensor& region_ids,
                                                 int64_t num_regions, int64_t reduce,
                                                 bool atomic = false);
at::Tensor region_pool_backward_cuda(const at::Tensor& grad_pooled,
                                     const at::Tensor& region_ids, const at::Tensor& counts,
                                     const at::Tensor& argmax, int64_t num_points,
                                     int64_t reduce);
std::vector<at::Tensor> project_pool_cuda(const at::Tensor& points, const at::Tensor& offsets,
                                          const at::Tensor& lidar2img,
                                          const at::Tensor& image_hw,
                                          const at::Tensor& superpixels,
                                          int64_t num_superpixels, const at::Tensor& features,
                                          double min_depth, double margin, bool atomic = false);
at::Tensor serialize_cuda(const at::Tensor& coords, const at::Tensor& batch_index,
                          int64_t order, int64_t depth);
at::Tensor box_iou_cuda(const at::Tensor& boxes_a, const at::Tensor& boxes_b, int64_t mode);
// NMS on CUDA: a kernel writes, for every box i and every block of 64 boxes, the bits of
// the later boxes j > i of that block with IoU(i, j) > threshold; the greedy pass over those
// bits runs on the host (one device -> host copy of N * ceil(N / 64) words). The kept set
// equals the CPU's unless an IoU lies within rounding (sin / cos differ in the last bits
// between the devices) of the threshold.
at::Tensor nms_bev_cuda(const at::Tensor& boxes, double iou_threshold);
at::Tensor points_in_boxes_cuda(const at::Tensor& points, const at::Tensor& boxes, bool all);
#endif

}  // namespace lidarcl
