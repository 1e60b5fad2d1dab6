// CPU kernels: bilinear gather of feature maps at pixel pairs, and its adjoint.
// Contract in ../ops.h; reference in lidarcl/ops/gather.py.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

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

// Strides of an (I, C, H, W) tensor: any layout works; channels-last maps (C innermost)
// are the fast case (the four reads of a pair are contiguous runs of C values).
struct MapStrides {
  int64_t image, channel, row, col;
  explicit MapStrides(const at::Tensor& t)
      : image(t.stride(0)), channel(t.stride(1)), row(t.stride(2)), col(t.stride(3)) {}
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
  const MapStrides st(features);
  at::parallel_for(0, pairs, 256, [&](int64_t first, int64_t last) {
    for (int64_t m = first; m < last; ++m) {
      const Bilinear<T> b(xy[2 * m], xy[2 * m + 1], height, width);
      const T* map = f + img[m] * st.image;
      const T* p00 = map + b.y0 * st.row + b.x0 * st.col;
      const T* p01 = map + b.y0 * st.row + b.x1 * st.col;
      const T* p10 = map + b.y1 * st.row + b.x0 * st.col;
      const T* p11 = map + b.y1 * st.row + b.x1 * st.col;
      const T ux = T(1) - b.wx, uy = T(1) - b.wy;
      T* row = o + m * channels;
      for (int64_t c = 0; c < channels; ++c) {
        const int64_t k = c * st.channel;
        const T top = p00[k] * ux + p01[k] * b.wx;
        const T bottom = p10[k] * ux + p11[k] * b.wx;
        row[c] = top * uy + bottom * b.wy;
      }
    }
  });
  return out;
}

template <typename T>
at::Tensor backward_impl(const at::Tensor& grad_out, const at::Tensor& image_index,
                         const at::Tensor& coords, int64_t images, int64_t height,
                         int64_t width, bool channels_last) {
  const int64_t pairs = image_index.size(0);
  const int64_t channels = grad_out.size(1);
  at::Tensor grad = at::zeros({images, channels, height, width},
                              grad_out.options().memory_format(
                                  channels_last ? at::MemoryFormat::ChannelsLast
                                                : at::MemoryFormat::Contiguous));
  if (pairs == 0 || channels == 0) return grad;
  const T* g = grad_out.data_ptr<T>();
  const int64_t* img = image_index.data_ptr<int64_t>();
  const T* xy = coords.data_ptr<T>();
  T* gp = grad.data_ptr<T>();
  const MapStrides st(grad);
  // each task owns a contiguous range of channels: no two threads write the same cell, and
  // every cell accumulates its pairs in pair order (deterministic)
  at::parallel_for(0, channels, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t m = 0; m < pairs; ++m) {
      const Bilinear<T> b(xy[2 * m], xy[2 * m + 1], height, width);
      const T ux = T(1) - b.wx, uy = T(1) - b.wy;
      T* map = gp + img[m] * st.image;
      T* p00 = map + b.y0 * st.row + b.x0 * st.col;
      T* p01 = map + b.y0 * st.row + b.x1 * st.col;
      T* p10 = map + b.y1 * st.row + b.x0 * st.col;
      T* p11 = map + b.y1 * st.row + b.x1 * st.col;
      for (int64_t c = c0; c < c1; ++c) {
        const T top = g[m * channels + c] * uy;
        const T bottom = g[m * channels + c] * b.wy;
        const int64_t k = c * st.channel;
        p00[k] += top * ux;
        p01[k] += top * b.wx;
        p10[k] += bottom * ux;
        p11[k] += bottom * b.wx;
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
                               int64_t width, bool channels_last) {
  return AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "gather_backward_cpu", [&] {
    return backward_impl<scalar_t>(grad_out, image_index, coords, num_images, height, width,
                                   channels_last);
  });
}

}  // namespace lidarcl
