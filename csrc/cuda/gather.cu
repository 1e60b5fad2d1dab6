// CUDA kernels: bilinear gather of feature maps at point-pixel pairs, and its adjoint.
// Semantics: csrc/ops.h (gather_forward_cpu); launchers: csrc/cuda/launchers.h.
// The adjoint adds with float atomicAdd (a cell's contributions in schedule order): not
// deterministic, so its glue (gather_backward_cuda in ops_cuda.cpp) calls
// at::globalContext().alertNotDeterministic and raises under
// torch.use_deterministic_algorithms(True). The forward has no atomics.
#include <cuda_runtime.h>

#include <cstdint>

#include "common.cuh"
#include "launchers.h"

namespace lidarcl {
namespace cuda {
namespace {

using namespace detail;

// Corners and weights of a bilinear read: x = clamp(coord, 0, size - 1),
// x0 = min(floor(x), max(size - 2, 0)), x1 = min(x0 + 1, size - 1), w = x - x0.
template <typename T>
struct Axis {
  int64_t i0, i1;
  T w;
};

template <typename T>
__device__ __forceinline__ Axis<T> bilinear_axis(T coord, int64_t size) {
  const T hi = static_cast<T>(size - 1);
  // clamp; a NaN coordinate (invalid input) reads cell 0 instead of out of bounds
  T x = coord > T(0) ? coord : T(0);
  x = x < hi ? x : hi;
  int64_t i0 = static_cast<int64_t>(floor_(x));
  const int64_t last0 = size - 2 > 0 ? size - 2 : 0;
  i0 = i0 < last0 ? i0 : last0;
  Axis<T> a;
  a.i0 = i0;
  a.i1 = i0 + 1 < size - 1 ? i0 + 1 : size - 1;
  a.w = sub_rn(x, static_cast<T>(i0));
  return a;
}

template <typename T>
__global__ void gather_forward_kernel(const T* __restrict__ features, int64_t num_images,
                                      int64_t channels, int64_t height, int64_t width,
                                      const int64_t* __restrict__ image_index,
                                      const T* __restrict__ coords, int64_t num_pairs,
                                      T* __restrict__ out) {
  LIDARCL_CUDA_LOOP(t, num_pairs * channels) {
    const int64_t m = t / channels;
    const int64_t c = t - m * channels;
    const int64_t img = image_index[m];
    if (img < 0 || img >= num_images) {  // rejected upstream; never read out of bounds
      out[t] = T(0);
      continue;
    }
    const Axis<T> ax = bilinear_axis(coords[2 * m], width);
    const Axis<T> ay = bilinear_axis(coords[2 * m + 1], height);
    const T* map = features + (img * channels + c) * height * width;
    const T f00 = map[ay.i0 * width + ax.i0];
    const T f01 = map[ay.i0 * width + ax.i1];
    const T f10 = map[ay.i1 * width + ax.i0];
    const T f11 = map[ay.i1 * width + ax.i1];
    const T one_wx = sub_rn(T(1), ax.w);
    const T one_wy = sub_rn(T(1), ay.w);
    // (f00*(1-wx) + f01*wx)*(1-wy) + (f10*(1-wx) + f11*wx)*wy, no contraction
    const T top = add_rn(mul_rn(f00, one_wx), mul_rn(f01, ax.w));
    const T bottom = add_rn(mul_rn(f10, one_wx), mul_rn(f11, ax.w));
    out[t] = add_rn(mul_rn(top, one_wy), mul_rn(bottom, ay.w));
  }
}

template <typename T>
__global__ void gather_backward_kernel(const T* __restrict__ grad_out,
                                       const int64_t* __restrict__ image_index,
                                       const T* __restrict__ coords, int64_t num_pairs,
                                       int64_t channels, int64_t num_images, int64_t height,
                                       int64_t width, T* __restrict__ grad_features) {
  LIDARCL_CUDA_LOOP(t, num_pairs * channels) {
    const int64_t m = t / channels;
    const int64_t c = t - m * channels;
    const int64_t img = image_index[m];
    if (img < 0 || img >= num_images) continue;
    const Axis<T> ax = bilinear_axis(coords[2 * m], width);
    const Axis<T> ay = bilinear_axis(coords[2 * m + 1], height);
    const T g = grad_out[t];
    const T one_wx = sub_rn(T(1), ax.w);
    const T g_top = mul_rn(g, sub_rn(T(1), ay.w));  // d out / d top
    const T g_bottom = mul_rn(g, ay.w);             // d out / d bottom
    T* map = grad_features + (img * channels + c) * height * width;
    // coincident corners (a size-1 axis) receive both of their contributions
    atomic_add(map + ay.i0 * width + ax.i0, mul_rn(g_top, one_wx));
    atomic_add(map + ay.i0 * width + ax.i1, mul_rn(g_top, ax.w));
    atomic_add(map + ay.i1 * width + ax.i0, mul_rn(g_bottom, one_wx));
    atomic_add(map + ay.i1 * width + ax.i1, mul_rn(g_bottom, ax.w));
  }
}

}  // namespace

template <typename scalar_t>
cudaError_t gather_forward(const scalar_t* features, int64_t num_images, int64_t channels,
                           int64_t height, int64_t width, const int64_t* image_index,
                           const scalar_t* coords, int64_t num_pairs, scalar_t* out,
                           cudaStream_t stream) {
  if (height <= 0 || width <= 0) return num_pairs * channels > 0 ? cudaErrorInvalidValue
                                                                 : cudaSuccess;
  LIDARCL_CUDA_LAUNCH(gather_forward_kernel<scalar_t>, num_pairs * channels, stream, features,
                      num_images, channels, height, width, image_index, coords, num_pairs, out);
  return cudaSuccess;
}

template <typename scalar_t>
cudaError_t gather_backward(const scalar_t* grad_out, const int64_t* image_index,
                            const scalar_t* coords, int64_t num_pairs, int64_t channels,
                            int64_t num_images, int64_t height, int64_t width,
                            scalar_t* grad_features, cudaStream_t stream) {
  if (height <= 0 || width <= 0) return num_pairs * channels > 0 ? cudaErrorInvalidValue
                                                                 : cudaSuccess;
  LIDARCL_CUDA_LAUNCH(gather_backward_kernel<scalar_t>, num_pairs * channels, stream, grad_out,
                      image_index, coords, num_pairs, channels, num_images, height, width,
                      grad_features);
  return cudaSuccess;
}

template cudaError_t gather_forward<float>(const float*, int64_t, int64_t, int64_t, int64_t,
                                           const int64_t*, const float*, int64_t, float*,
                                           cudaStream_t);
template cudaError_t gather_forward<double>(const double*, int64_t, int64_t, int64_t, int64_t,
                                            const int64_t*, const double*, int64_t, double*,
                                            cudaStream_t);
template cudaError_t gather_backward<float>(const float*, const int64_t*, const float*, int64_t,
                                            int64_t, int64_t, int64_t, int64_t, float*,
                                            cudaStream_t);
template cudaError_t gather_backward<double>(const double*, const int64_t*, const double*,
                                             int64_t, int64_t, int64_t, int64_t, int64_t,
                                             double*, cudaStream_t);

}  // namespace cuda
}  // namespace lidarcl
