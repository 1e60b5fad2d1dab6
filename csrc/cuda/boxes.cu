// CUDA kernels: rotated-box IoU (BEV and 3D), the suppression bit masks of rotated BEV NMS,
// points in boxes. Semantics: csrc/ops.h; geometry: csrc/box_geometry.h (shared with the
// CPU kernels, in double); launchers: csrc/cuda/launchers.h. No atomics: every output is
// written by one thread.
#include <cuda_runtime.h>

#include <cstdint>

#include "../box_geometry.h"
#include "common.cuh"
#include "launchers.h"

namespace lidarcl {
namespace cuda {
namespace {

using namespace detail;

template <typename scalar_t>
__global__ void box_iou_kernel(const scalar_t* __restrict__ a, int64_t n, int64_t stride_a,
                               const scalar_t* __restrict__ b, int64_t m, int64_t stride_b,
                               int mode, scalar_t* __restrict__ out) {
  LIDARCL_CUDA_LOOP(t, n * m) {
    const int64_t i = t / m, j = t - (t / m) * m;
    out[t] = static_cast<scalar_t>(boxes::box_iou(a + i * stride_a, b + j * stride_b, mode));
  }
}

// Thread (i, block c): bit (j - 64 c) of mask[i * blocks + c] is set iff j > i and
// BEV IoU(i, j) > threshold, for the boxes j of block c.
template <typename scalar_t>
__global__ void nms_mask_kernel(const scalar_t* __restrict__ boxes, int64_t n, int64_t stride,
                                double threshold, int64_t blocks,
                                unsigned long long* __restrict__ mask) {
  LIDARCL_CUDA_LOOP(t, n * blocks) {
    const int64_t i = t / blocks, c = t - (t / blocks) * blocks;
    const int64_t first = c * kNmsBlock;
    const int64_t last = first + kNmsBlock < n ? first + kNmsBlock : n;
    unsigned long long bits = 0;
    const scalar_t* bi = boxes + i * stride;
    for (int64_t j = (first > i + 1 ? first : i + 1); j < last; ++j)
      if (boxes::box_iou(bi, boxes + j * stride, 0) > threshold) bits |= 1ull << (j - first);
    mask[t] = bits;
  }
}

template <typename scalar_t>
__global__ void points_in_boxes_kernel(const scalar_t* __restrict__ points, int64_t n,
                                       int64_t stride_p, const scalar_t* __restrict__ boxes,
                                       int64_t m, int64_t stride_b, bool* __restrict__ out_all,
                                       int64_t* __restrict__ out_first) {
  LIDARCL_CUDA_LOOP(i, n) {
    const scalar_t* p = points + i * stride_p;
    if (out_all != nullptr) {
      for (int64_t j = 0; j < m; ++j) out_all[i * m + j] = boxes::point_in_box(p, boxes + j * stride_b);
    } else {
      int64_t found = -1;
      for (int64_t j = 0; j < m; ++j)
        if (boxes::point_in_box(p, boxes + j * stride_b)) {
          found = j;
          break;
        }
      out_first[i] = found;
    }
  }
}

}  // namespace

template <typename scalar_t>
cudaError_t box_iou(const scalar_t* a, int64_t n, int64_t stride_a, const scalar_t* b,
                    int64_t m, int64_t stride_b, int mode, scalar_t* out, cudaStream_t stream) {
  LIDARCL_CUDA_LAUNCH(box_iou_kernel<scalar_t>, n * m, stream, a, n, stride_a, b, m, stride_b,
                      mode, out);
  return cudaSuccess;
}

template <typename scalar_t>
cudaError_t nms_bev_mask(const scalar_t* boxes, int64_t n, int64_t stride, double threshold,
                         unsigned long long* mask, cudaStream_t stream) {
  const int64_t blocks = (n + kNmsBlock - 1) / kNmsBlock;
  LIDARCL_CUDA_LAUNCH(nms_mask_kernel<scalar_t>, n * blocks, stream, boxes, n, stride,
                      threshold, blocks, mask);
  return cudaSuccess;
}

template <typename scalar_t>
cudaError_t points_in_boxes(const scalar_t* points, int64_t n, int64_t stride_p,
                            const scalar_t* boxes, int64_t m, int64_t stride_b, bool* out_all,
                            int64_t* out_first, cudaStream_t stream) {
  if (m == 0) return cudaSuccess;
  LIDARCL_CUDA_LAUNCH(points_in_boxes_kernel<scalar_t>, n, stream, points, n, stride_p, boxes,
                      m, stride_b, out_all, out_first);
  return cudaSuccess;
}

#define LIDARCL_INSTANTIATE_BOXES(T)                                                        \
  template cudaError_t box_iou<T>(const T*, int64_t, int64_t, const T*, int64_t, int64_t, int, \
                                  T*, cudaStream_t);                                         \
  template cudaError_t nms_bev_mask<T>(const T*, int64_t, int64_t, double,                   \
                                       unsigned long long*, cudaStream_t);                   \
  template cudaError_t points_in_boxes<T>(const T*, int64_t, int64_t, const T*, int64_t,      \
                                          int64_t, bool*, int64_t*, cudaStream_t);
LIDARCL_INSTANTIATE_BOXES(float)
LIDARCL_INSTANTIATE_BOXES(double)
#undef LIDARCL_INSTANTIATE_BOXES

}  // namespace cuda
}  // namespace lidarcl
