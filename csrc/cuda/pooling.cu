// CUDA kernels: mean / max / sum pooling of feature rows per region, and the backward.
// Semantics: csrc/ops.h (region_pool_forward_cpu); launchers: csrc/cuda/launchers.h.
//
// max: pass 1 reduces the maximum of every (region, channel) with an atomicMax on ordered
// integer keys (NaN propagates, as torch's amax); pass 2 reduces, with atomicMin, the
// smallest row whose value equals that maximum (== on the values, so -0 and +0 tie as in the
// reference; a NaN maximum matches the NaN rows); pass 3 writes pooled = features[argmax]
// (0 and argmax = -1 for empty regions). The result is independent of the thread schedule.
#include <cuda_runtime.h>

#include <cstdint>

#include "common.cuh"
#include "launchers.h"

namespace lidarcl {
namespace cuda {
namespace {

using namespace detail;

enum Reduce : int { kMean = 0, kMax = 1, kSum = 2 };

__global__ void count_kernel(const int64_t* __restrict__ region_ids, int64_t num_points,
                             int64_t num_regions, int64_t* __restrict__ counts) {
  LIDARCL_CUDA_LOOP(n, num_points) {
    const int64_t r = region_ids[n];
    if (r >= 0 && r < num_regions) atomic_increment(counts + r);
  }
}

template <typename T>
__global__ void max_value_kernel(const T* __restrict__ features,
                                 const int64_t* __restrict__ region_ids, int64_t num_points,
                                 int64_t channels, int64_t num_regions,
                                 typename OrderedKey<T>::type* __restrict__ peak) {
  LIDARCL_CUDA_LOOP(t, num_points * channels) {
    const int64_t n = t / channels;
    const int64_t r = region_ids[n];
    if (r < 0 || r >= num_regions) continue;
    atomicMax(peak + r * channels + (t - n * channels), max_key(features[t]));
  }
}

template <typename T>
__global__ void max_index_kernel(const T* __restrict__ features,
                                 const int64_t* __restrict__ region_ids, int64_t num_points,
                                 int64_t channels, int64_t num_regions,
                                 const typename OrderedKey<T>::type* __restrict__ peak,
                                 int64_t* __restrict__ argmax) {
  LIDARCL_CUDA_LOOP(t, num_points * channels) {
    const int64_t n = t / channels;
    const int64_t r = region_ids[n];
    if (r < 0 || r >= num_regions) continue;
    const int64_t slot = r * channels + (t - n * channels);
    const T best = OrderedKey<T>::decode(peak[slot]);
    const T value = features[t];
    const bool hit = isnan_(best) ? isnan_(value) : value == best;
    if (hit) atomic_min_nonneg(argmax + slot, n);
  }
}

template <typename T>
__global__ void max_finish_kernel(const T* __restrict__ features,
                                  const int64_t* __restrict__ counts, int64_t num_regions,
                                  int64_t channels, int64_t num_points, T* __restrict__ pooled,
                                  int64_t* __restrict__ argmax) {
  LIDARCL_CUDA_LOOP(t, num_regions * channels) {
    const int64_t r = t / channels;
    const int64_t n = argmax[t];
    if (counts[r] == 0 || n < 0 || n >= num_points) {
      argmax[t] = -1;
      pooled[t] = T(0);
    } else {
      pooled[t] = features[n * channels + (t - r * channels)];
    }
  }
}

// mean / sum backward: every (row, channel) has exactly one source, no atomics.
template <typename T>
__global__ void spread_kernel(const T* __restrict__ grad_pooled,
                              const int64_t* __restrict__ region_ids,
                              const int64_t* __restrict__ counts, int64_t num_points,
                              int64_t channels, int64_t num_regions, bool mean,
                              T* __restrict__ grad_features) {
  LIDARCL_CUDA_LOOP(t, num_points * channels) {
    const int64_t n = t / channels;
    const int64_t r = region_ids[n];
    if (r < 0 || r >= num_regions) {
      grad_features[t] = T(0);
      continue;
    }
    const T g = grad_pooled[r * channels + (t - n * channels)];
    if (mean) {
      const int64_t count = counts[r];
      grad_features[t] = div_rn(g, static_cast<T>(count > 1 ? count : int64_t(1)));
    } else {
      grad_features[t] = g;
    }
  }
}

// max backward: grad[r, c] to row argmax[r, c] (atomic, so that even an argmax shared by
// two regions - impossible for a forward output - accumulates correctly).
template <typename T>
__global__ void route_max_kernel(const T* __restrict__ grad_pooled,
                                 const int64_t* __restrict__ argmax, int64_t num_regions,
                                 int64_t channels, int64_t num_points,
                                 T* __restrict__ grad_features) {
  LIDARCL_CUDA_LOOP(t, num_regions * channels) {
    const int64_t n = argmax[t];
    if (n < 0 || n >= num_points) continue;
    const int64_t c = t - (t / channels) * channels;
    atomic_add(grad_features + n * channels + c, grad_pooled[t]);
  }
}

}  // namespace

template <typename scalar_t>
cudaError_t region_pool_forward(const scalar_t* features, const int64_t* region_ids,
                                int64_t num_points, int64_t channels, int64_t num_regions,
                                int reduce, scalar_t* pooled, int64_t* counts, int64_t* argmax,
                                scalar_t* workspace, cudaStream_t stream) {
  if (reduce < kMean || reduce > kSum) return cudaErrorInvalidValue;
  const int64_t cells = num_regions * channels;
  const int64_t values = num_points * channels;
  LIDARCL_CUDA_LAUNCH(count_kernel, num_points, stream, region_ids, num_points, num_regions,
                      counts);
  if (reduce == kMax) {
    using Key = typename OrderedKey<scalar_t>::type;
    static_assert(sizeof(Key) == sizeof(scalar_t), "key and value widths differ");
    Key* peak = reinterpret_cast<Key*>(workspace);
    LIDARCL_CUDA_LAUNCH(fill_kernel<Key>, cells, stream, peak, cells,
                        OrderedKey<scalar_t>::kMinusInf);
    LIDARCL_CUDA_LAUNCH(fill_kernel<int64_t>, cells, stream, argmax, cells, num_points);
    LIDARCL_CUDA_LAUNCH(max_value_kernel<scalar_t>, values, stream, features, region_ids,
                        num_points, channels, num_regions, peak);
    LIDARCL_CUDA_LAUNCH(max_index_kernel<scalar_t>, values, stream, features, region_ids,
                        num_points, channels, num_regions, static_cast<const Key*>(peak),
                        argmax);
    LIDARCL_CUDA_LAUNCH(max_finish_kernel<scalar_t>, cells, stream, features,
                        static_cast<const int64_t*>(counts), num_regions, channels, num_points,
                        pooled, argmax);
    return cudaSuccess;
  }
  LIDARCL_CUDA_LAUNCH(scatter_add_rows_kernel<scalar_t>, values, stream, features,
                      static_cast<const int64_t*>(nullptr), region_ids, num_points, channels,
                      num_regions, pooled);
  if (reduce == kMean)
    LIDARCL_CUDA_LAUNCH(mean_divide_kernel<scalar_t>, cells, stream, pooled,
                        static_cast<const int64_t*>(counts), num_regions, channels);
  return cudaSuccess;
}

template <typename scalar_t>
cudaError_t region_pool_backward(const scalar_t* grad_pooled, const int64_t* region_ids,
                                 const int64_t* counts, const int64_t* argmax,
                                 int64_t num_points, int64_t channels, int64_t num_regions,
                                 int reduce, scalar_t* grad_features, cudaStream_t stream) {
  if (reduce < kMean || reduce > kSum) return cudaErrorInvalidValue;
  if (reduce == kMax) {
    LIDARCL_CUDA_LAUNCH(route_max_kernel<scalar_t>, num_regions * channels, stream, grad_pooled,
                        argmax, num_regions, channels, num_points, grad_features);
    return cudaSuccess;
  }
  LIDARCL_CUDA_LAUNCH(spread_kernel<scalar_t>, num_points * channels, stream, grad_pooled,
                      region_ids, counts, num_points, channels, num_regions, reduce == kMean,
                      grad_features);
  return cudaSuccess;
}

template cudaError_t region_pool_forward<float>(const float*, const int64_t*, int64_t, int64_t,
                                                int64_t, int, float*, int64_t*, int64_t*,
                                                float*, cudaStream_t);
template cudaError_t region_pool_forward<double>(const double*, const int64_t*, int64_t,
                                                 int64_t, int64_t, int, double*, int64_t*,
                                                 int64_t*, double*, cudaStream_t);
template cudaError_t region_pool_backward<float>(const float*, const int64_t*, const int64_t*,
                                                 const int64_t*, int64_t, int64_t, int64_t, int,
                                                 float*, cudaStream_t);
template cudaError_t region_pool_backward<double>(const double*, const int64_t*,
                                                  const int64_t*, const int64_t*, int64_t,
                                                  int64_t, int64_t, int, double*,
                                                  cudaStream_t);

}  // namespace cuda
}  // namespace lidarcl
