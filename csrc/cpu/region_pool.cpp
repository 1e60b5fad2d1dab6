// CPU kernels: mean / max / sum pooling of feature rows into regions, and the adjoint.
// Contract in ../ops.h; reference in lidarcl/ops/pooling.py.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../ops.h"

namespace lidarcl {
namespace {

enum Reduce : int64_t { kMean = 0, kMax = 1, kSum = 2 };

// Rows of each region in ascending order (stable counting sort), CSR layout.
struct RegionRows {
  std::vector<int64_t> start, rows;

  RegionRows(const int64_t* ids, int64_t n, int64_t regions) : start(regions + 1, 0) {
    for (int64_t i = 0; i < n; ++i)
      if (ids[i] >= 0) ++start[ids[i] + 1];
    for (int64_t r = 0; r < regions; ++r) start[r + 1] += start[r];
    rows.resize(start[regions]);
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < n; ++i)
      if (ids[i] >= 0) rows[fill[ids[i]]++] = i;
  }
};

template <typename T>
std::vector<at::Tensor> forward_impl(const at::Tensor& features, const at::Tensor& region_ids,
                                     int64_t regions, int64_t reduce) {
  const int64_t n = features.size(0), channels = features.size(1);
  const T* f = features.data_ptr<T>();
  const RegionRows csr(region_ids.data_ptr<int64_t>(), n, regions);
  at::Tensor pooled = at::zeros({regions, channels}, features.options());
  at::Tensor counts = at::empty({regions}, region_ids.options());
  at::Tensor argmax = reduce == kMax
                          ? at::full({regions, channels}, -1, region_ids.options())
                          : at::empty({0}, region_ids.options());
  T* out = pooled.data_ptr<T>();
  int64_t* cnt = counts.data_ptr<int64_t>();
  int64_t* am = reduce == kMax ? argmax.data_ptr<int64_t>() : nullptr;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, n / std::max<int64_t>(regions, 1) * channels));
  at::parallel_for(0, regions, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t begin = csr.start[r], end = csr.start[r + 1];
      cnt[r] = end - begin;
      if (begin == end) continue;
      T* acc = out + r * channels;
      if (reduce == kMax) {
        int64_t* arg = am + r * channels;
        const int64_t first = csr.rows[begin];
        std::copy(f + first * channels, f + (first + 1) * channels, acc);
        std::fill(arg, arg + channels, first);
        for (int64_t j = begin + 1; j < end; ++j) {
          const int64_t i = csr.rows[j];
          const T* row = f + i * channels;
          for (int64_t c = 0; c < channels; ++c)
            // strict: the smallest row index wins ties; NaN is the largest value (it
            // propagates, the first NaN row wins)
            if (row[c] > acc[c] || (std::isnan(row[c]) && !std::isnan(acc[c]))) {
              acc[c] = row[c];
              arg[c] = i;
            }
        }
      } else {
        for (int64_t j = begin; j < end; ++j) {
          const T* row = f + csr.rows[j] * channels;
          for (int64_t c = 0; c < channels; ++c) acc[c] += row[c];
        }
        if (reduce == kMean) {
          const T count = static_cast<T>(end - begin);
          for (int64_t c = 0; c < channels; ++c) acc[c] /= count;
        }
      }
    }
  });
  return {pooled, counts, argmax};
}

template <typename T>
at::Tensor backward_impl(const at::Tensor& grad_pooled, const at::Tensor& region_ids,
                         const at::Tensor& counts, const at::Tensor& argmax, int64_t n,
                         int64_t reduce) {
  const int64_t regions = grad_pooled.size(0), channels = grad_pooled.size(1);
  at::Tensor grad = at::zeros({n, channels}, grad_pooled.options());
  const T* g = grad_pooled.data_ptr<T>();
  T* out = grad.data_ptr<T>();
  if (reduce == kMax) {
    // a row belongs to one region, so each (row, channel) has at most one writer
    const int64_t* am = argmax.data_ptr<int64_t>();
    at::parallel_for(0, regions, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = 0; c < channels; ++c) {
          const int64_t i = am[r * channels + c];
          if (i >= 0) out[i * channels + c] += g[r * channels + c];
        }
    });
    return grad;
  }
  const int64_t* ids = region_ids.data_ptr<int64_t>();
  const int64_t* cnt = counts.data_ptr<int64_t>();
  at::parallel_for(0, n, 1024, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t r = ids[i];
      if (r < 0) continue;
      const T* src = g + r * channels;
      T* dst = out + i * channels;
      if (reduce == kMean) {
        const T count = static_cast<T>(cnt[r]);
        for (int64_t c = 0; c < channels; ++c) dst[c] = src[c] / count;
      } else {
        std::copy(src, src + channels, dst);
      }
    }
  });
  return grad;
}

}  // namespace

std::vector<at::Tensor> region_pool_forward_cpu(const at::Tensor& features,
                                                const at::Tensor& region_ids,
                                                int64_t num_regions, int64_t reduce) {
  return AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "region_pool_forward_cpu", [&] {
    return forward_impl<scalar_t>(features, region_ids, num_regions, reduce);
  });
}

at::Tensor region_pool_backward_cpu(const at::Tensor& grad_pooled, const at::Tensor& region_ids,
                                    const at::Tensor& counts, const at::Tensor& argmax,
                                    int64_t num_points, int64_t reduce) {
  return AT_DISPATCH_FLOATING_TYPES(grad_pooled.scalar_type(), "region_pool_backward_cpu", [&] {
    return backward_impl<scalar_t>(grad_pooled, region_ids, counts, argmax, num_points, reduce);
  });
}

}  // namespace lidarcl
