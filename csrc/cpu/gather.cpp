// CPU kernels: bilinear gather of feature maps at pixel pairs, and its adjoint.
// Contract in ../ops.h; reference in lidarcl/ops/gather.py.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../ops.h"

namespace lidarcl {
namespace {

template <typename T>
struct Bilinear {  // the four cells and weights of one read
  int64_t x0, x1, y0, y1;
  T wx, wy;

  Bilinear(T cx, T cy, int64_t height, int64_t width) {
    const T x = std::min(std::max(cx, T(0)), static_cast<T>(width - 1));
    const T y = std::min(std::max(cy, T(0)), static_cast<T>(height - 1));
    x0 = std::min(static_cast<int64_t>(std::floor(x)), std::max<int64_t>(width - 2, 0));
    y0 = std::min(static_cast<int64_t>(std::floor(y)), std::max<int64_t>(height - 2, 0));
    x1 = std::min(x0 + 1, width - 1);
    y1 = std::min(y0 + 1, height - 1);
    wx = x - static_cast<T>(x0);
    wy = y - static_cast<T>(y0);
  }
};

template <typename T>
at::Tensor forward_impl(const at::Tensor& features, const at::Tensor& image_index,
                        const at::Tensor& coords) {
  const int64_t pairs = image_index.size(0);
  const int64_t channels = features.size(1), height = features.size(2),
                width = features.size(3);
  at::Tensor out = at::empty({pairs, channels}, features.options());
  const T* f = features.data_ptr<T>();
  const int64_t* img = image_index.data_ptr<int64_t>();
  const T* xy = coords.data_ptr<T>();
  T* o = out.data_ptr<T>();
  const int64_t plane = height * width;
  // blocks of pairs, channel-outer inside a block: pairs come sorted by camera, so a block
  // reads one or two (image, channel) planes at a time and they stay in cache
  constexpr int64_t kBlock = 512;
  at::parallel_for(0, (pairs + kBlock - 1) / kBlock, 1, [&](int64_t b0, int64_t b1) {
    std::vector<int64_t> base(kBlock), i00(kBlock), i01(kBlock), i10(kBlock), i11(kBlock);
    std::vector<T> wx(kBlock), wy(kBlock);
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t first = blk * kBlock, count = std::min(kBlock, pairs - first);
      for (int64_t j = 0; j < count; ++j) {
        const int64_t m = first + j;
        const Bilinear<T> b(xy[2 * m], xy[2 * m + 1], height, width);
        base[j] = img[m] * channels * plane;
        i00[j] = b.y0 * width + b.x0;
        i01[j] = b.y0 * width + b.x1;
        i10[j] = b.y1 * width + b.x0;
        i11[j] = b.y1 * width + b.x1;
        wx[j] = b.wx;
        wy[j] = b.wy;
      }
      for (int64_t c = 0; c < channels; ++c) {
        const T* fc = f + c * plane;
        for (int64_t j = 0; j < count; ++j) {
          const T* p = fc + base[j];
          const T ux = T(1) - wx[j], uy = T(1) - wy[j];
          const T top = p[i00[j]] * ux + p[i01[j]] * wx[j];
          const T bottom = p[i10[j]] * ux + p[i11[j]] * wx[j];
          o[(first + j) * channels + c] = top * uy + bottom * wy[j];
        }
      }
    }
  });
  return out;
}

template <typename T>
at::Tensor backward_impl(const at::Tensor& grad_out, const at::Tensor& image_index,
                         const at::Tensor& coords, int64_t images, int64_t height,
                         int64_t width) {
  const int64_t pairs = image_index.size(0);
  const int64_t channels = grad_out.size(1);
  at::Tensor grad = at::zeros({images, channels, height, width}, grad_out.options());
  if (pairs == 0 || channels == 0) return grad;
  const T* g = grad_out.data_ptr<T>();
  const int64_t* img = image_index.data_ptr<int64_t>();
  const T* xy = coords.data_ptr<T>();
  T* gp = grad.data_ptr<T>();
  const int64_t plane = height * width;
  // each task owns whole channels: no two threads write the same cell, and every cell
  // accumulates its pairs in pair order (deterministic)
  at::parallel_for(0, channels, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t m = 0; m < pairs; ++m) {
      const Bilinear<T> b(xy[2 * m], xy[2 * m + 1], height, width);
      const T ux = T(1) - b.wx, uy = T(1) - b.wy;
      T* map = gp + img[m] * channels * plane;
      for (int64_t c = c0; c < c1; ++c) {
        const T top = g[m * channels + c] * uy;
        const T bottom = g[m * channels + c] * b.wy;
        T* p = map + c * plane;
        p[b.y0 * width + b.x0] += top * ux;
        p[b.y0 * width + b.x1] += top * b.wx;
        p[b.y1 * width + b.x0] += bottom * ux;
        p[b.y1 * width + b.x1] += bottom * b.wx;
      }
    }
  });
  return grad;
}

}  // namespace

at::Tensor gather_forward_cpu(const at::Tensor& features, const at::Tensor& image_index,
                              const at::Tensor& coords) {
  return AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "gather_forward_cpu", [&] {
    return forward_impl<scalar_t>(features, image_index, coords);
  });
}

at::Tensor gather_backward_cpu(const at::Tensor& grad_out, const at::Tensor& image_index,
                               const at::Tensor& coords, int64_t num_images, int64_t height,
                               int64_t width) {
  return AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "gather_backward_cpu", [&] {
    return backward_impl<scalar_t>(grad_out, image_index, coords, num_images, height, width);
  });
}

}  // namespace lidarcl
