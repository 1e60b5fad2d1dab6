// CUDA kernels: mean / max / sum pooling of feature rows per region, and the backward.
// Semantics: csrc/ops.h (region_pool_forward_cpu); launchers: csrc/cuda/launchers.h.
//
// Default (deterministic) forward, segment_pool: the glue sorts the rows stably by region
// (at::sort) and finds each region's segment (at::searchsorted); one thread per
// (region, channel) then walks its segment in ascending row order, exactly as the CPU
// kernel (csrc/cpu/region_pool.cpp) does: sum and mean add from 0 one row after another
// with IEEE adds (add_rn, never contracted), mean divides by the count, max keeps the first
// row at the maximum (NaN largest). Same operations in the same order: the same bits as the
// CPU, whatever the schedule, stream or GPU.
//
// Opt-in atomic forward (reached only when deterministic algorithms are off and the caller
// asks for it): mean / sum add with float atomicAdd (scatter_pool, not deterministic); max
// reduces with integer atomics on ordered keys: pass 1 the maximum of every
// (region, channel) (atomicMax, NaN propagates), pass 2 the smallest row equal to it
// (atomicMin, -0 == +0 as in the reference), pass 3 pooled = features[argmax].
//
// Backward: no atomics (each (row, channel) of the gradient has exactly one source).
#include <cuda_runtime.h>

#include <cstdint>

#include "common.cuh"
#include "launchers.h"

namespace lidarcl {
namespace cuda {
namespace {

using namespace detail;

enum Reduce : int { kMean = 0, kMax = 1, kSum = 2 };

// ------------------------------------------------------------------ deterministic
__global__ void segment_counts_kernel(const int64_t* __restrict__ start, int64_t num_regions,
                                      int64_t* __restrict__ counts) {
  LIDARCL_CUDA_LOOP(r, num_regions) { counts[r] = start[r + 1] - start[r]; }
}

template <typename T>
__global__ void segment_pool_kernel(const T* __restrict__ features, int64_t num_rows,
                                    int64_t channels, const int64_t* __restrict__ members,
                                    const int64_t* __restrict__ member_row,
                                    const int64_t* __restrict__ start, int64_t num_regions,
                                    int reduce, T* __restrict__ pooled,
                                    int64_t* __restrict__ argmax) {
  // consecutive threads take consecutive channels of a region: a warp reads a row's
  // channels together (coalesced) and the member index once (broadcast)
  LIDARCL_CUDA_LOOP(t, num_regions * channels) {
    const int64_t r = t / channels;
    const int64_t c = t - r * channels;
    const int64_t begin = start[r], end = start[r + 1];
    if (reduce == kMax) {
      T best = T(0);
      int64_t arg = -1;
      for (int64_t j = begin; j < end; ++j) {
        int64_t i = members[j];
        if (member_row != nullptr) i = member_row[i];
        if (i < 0 || i >= num_rows) continue;  // never for the glue's inputs
        const T value = features[i * channels + c];
        // strict: the smallest row wins ties; NaN is the largest value (the first NaN row)
        if (arg < 0 || value > best || (isnan_(value) && !isnan_(best))) {
          best = value;
          arg = i;
        }
      }
      pooled[t] = best;
      argmax[t] = arg;
    } else {
      T acc = T(0);
      for (int64_t j = begin; j < end; ++j) {
        int64_t i = members[j];
        if (member_row != nullptr) i = member_row[i];
        if (i < 0 || i >= num_rows) continue;
        acc = add_rn(acc, features[i * channels + c]);
      }
      if (reduce == kMean && end > begin) acc = div_rn(acc, static_cast<T>(end - begin));
      pooled[t] = acc;
    }
  }
}

// ------------------------------------------------------------------ atomic (opt-in)
__global__ void count_kernel(const int64_t* __restrict__ region_of, int64_t n,
                             int64_t num_regions, int64_t* __restrict__ counts) {
  LIDARCL_CUDA_LOOP(j, n) {
    const int64_t r = region_of[j];
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

// ------------------------------------------------------------------ backward
// mean / sum: every (row, channel) has exactly one source.
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

// max: row n takes grad[r, c] iff it is the argmax of its own region r in channel c
// (a gather per (row, channel): no atomics, one writer per element).
template <typename T>
__global__ void route_max_kernel(const T* __restrict__ grad_pooled,
                                 const int64_t* __restrict__ region_ids,
                                 const int64_t* __restrict__ argmax, int64_t num_points,
                                 int64_t channels, int64_t num_regions,
                                 T* __restrict__ grad_features) {
  LIDARCL_CUDA_LOOP(t, num_points * channels) {
    const int64_t n = t / channels;
    const int64_t r = region_ids[n];
    T g = T(0);
    if (r >= 0 && r < num_regions) {
      const int64_t slot = r * channels + (t - n * channels);
      if (argmax[slot] == n) g = grad_pooled[slot];
    }
    grad_features[t] = g;
  }
}

}  // namespace

template <typename scalar_t>
cudaError_t segment_pool(const scalar_t* features, int64_t num_rows, int64_t channels,
                         const int64_t* members, const int64_t* member_row,
                         const int64_t* start, int64_t num_regions, int reduce,
                         scalar_t* pooled, int64_t* counts, int64_t* argmax,
                         cudaStream_t stream) {
  if (reduce < kMean || reduce > kSum) return cudaErrorInvalidValue;
  if (reduce == kMax && argmax == nullptr && num_regions * channels > 0)
    return cudaErrorInvalidValue;
  LIDARCL_CUDA_LAUNCH(segment_counts_kernel, num_regions, stream, start, num_regions, counts);
  LIDARCL_CUDA_LAUNCH(segment_pool_kernel<scalar_t>, num_regions * channels, stream, features,
                      num_rows, channels, members, member_row, start, num_regions, reduce,
                      pooled, argmax);
  return cudaSuccess;
}

template <typename scalar_t>
cudaError_t scatter_pool(const scalar_t* features, int64_t channels, const int64_t* rows,
                         const int64_t* region_of, int64_t n, int64_t num_regions, bool mean,
                         scalar_t* pooled, int64_t* counts, cudaStream_t stream) {
  LIDARCL_CUDA_LAUNCH(count_kernel, n, stream, region_of, n, num_regions, counts);
  LIDARCL_CUDA_LAUNCH(scatter_add_rows_kernel<scalar_t>, n * channels, stream, features, rows,
                      region_of, n, channels, num_regions, pooled);
  if (mean)
    LIDARCL_CUDA_LAUNCH(mean_divide_kernel<scalar_t>, num_regions * channels, stream, pooled,
                        static_cast<const int64_t*>(counts), num_regions, channels);
  return cudaSuccess;
}

template <typename scalar_t>
cudaError_t region_pool_max_atomic(const scalar_t* features, const int64_t* region_ids,
                                   int64_t num_points, int64_t channels, int64_t num_regions,
                                   scalar_t* pooled, int64_t* counts, int64_t* argmax,
                                   scalar_t* workspace, cudaStream_t stream) {
  using Key = typename OrderedKey<scalar_t>::type;
  static_assert(sizeof(Key) == sizeof(scalar_t), "key and value widths differ");
  const int64_t cells = num_regions * channels;
  const int64_t values = num_points * channels;
  Key* peak = reinterpret_cast<Key*>(workspace);
  LIDARCL_CUDA_LAUNCH(count_kernel, num_points, stream, region_ids, num_points, num_regions,
                      counts);
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

template <typename scalar_t>
cudaError_t region_pool_backward(const scalar_t* grad_pooled, const int64_t* region_ids,
                                 const int64_t* counts, const int64_t* argmax,
                                 int64_t num_points, int64_t channels, int64_t num_regions,
                                 int reduce, scalar_t* grad_features, cudaStream_t stream) {
  if (reduce < kMean || reduce > kSum) return cudaErrorInvalidValue;
  if (reduce == kMax) {
    LIDARCL_CUDA_LAUNCH(route_max_kernel<scalar_t>, num_points * channels, stream, grad_pooled,
                        region_ids, argmax, num_points, channels, num_regions, grad_features);
    return cudaSuccess;
  }
  LIDARCL_CUDA_LAUNCH(spread_kernel<scalar_t>, num_points * channels, stream, grad_pooled,
                      region_ids, counts, num_points, channels, num_regions, reduce == kMean,
                      grad_features);
  return cudaSuccess;
}

#define LIDARCL_INSTANTIATE(T)                                                                \
  template cudaError_t segment_pool<T>(const T*, int64_t, int64_t, const int64_t*,            \
                                       const int64_t*, const int64_t*, int64_t, int, T*,      \
                                       int64_t*, int64_t*, cudaStream_t);                     \
  template cudaError_t scatter_pool<T>(const T*, int64_t, const int64_t*, const int64_t*,     \
                                       int64_t, int64_t, bool, T*, int64_t*, cudaStream_t);   \
  template cudaError_t region_pool_max_atomic<T>(const T*, const int64_t*, int64_t, int64_t,  \
                                                 int64_t, T*, int64_t*, int64_t*, T*,         \
                                                 cudaStream_t);                               \
  template cudaError_t region_pool_backward<T>(const T*, const int64_t*, const int64_t*,      \
                                               const int64_t*, int64_t, int64_t, int64_t, int, \
                                               T*, cudaStream_t);

LIDARCL_INSTANTIATE(float)
LIDARCL_INSTANTIATE(double)
#undef LIDARCL_INSTANTIATE

}  // namespace cuda
}  // namespace lidarcl
