// CPU kernels: rotated-box IoU (BEV and 3D), rotated BEV NMS, points in boxes.
// Contracts in ../ops.h; geometry in ../box_geometry.h; references in lidarcl/ops/boxes.py.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../box_geometry.h"
#include "../ops.h"

namespace lidarcl {

at::Tensor box_iou_cpu(const at::Tensor& boxes_a, const at::Tensor& boxes_b, int64_t mode) {
  const int64_t n = boxes_a.size(0), m = boxes_b.size(0);
  at::Tensor out = at::empty({n, m}, boxes_a.options());
  if (n == 0 || m == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(boxes_a.scalar_type(), "box_iou_cpu", [&] {
    const scalar_t* a = boxes_a.data_ptr<scalar_t>();
    const scalar_t* b = boxes_b.data_ptr<scalar_t>();
    const int64_t sa = boxes_a.size(1), sb = boxes_b.size(1);
    scalar_t* o = out.data_ptr<scalar_t>();
    const int iou_mode = static_cast<int>(mode);
    at::parallel_for(0, n * m, 1024, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t i = t / m, j = t - (t / m) * m;
        o[t] = static_cast<scalar_t>(boxes::box_iou(a + i * sa, b + j * sb, iou_mode));
      }
    });
  });
  return out;
}

at::Tensor nms_bev_cpu(const at::Tensor& boxes, double iou_threshold) {
  const int64_t n = boxes.size(0);
  std::vector<int64_t> keep;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "nms_bev_cpu", [&] {
    const scalar_t* b = boxes.data_ptr<scalar_t>();
    const int64_t stride = boxes.size(1);
    // one byte per box (not vector<bool>): threads write distinct elements
    std::vector<uint8_t> suppressed(static_cast<size_t>(n), 0);
    for (int64_t i = 0; i < n; ++i) {
      if (suppressed[i]) continue;
      keep.push_back(i);
      const scalar_t* bi = b + i * stride;
      at::parallel_for(i + 1, n, 256, [&](int64_t begin, int64_t end) {
        for (int64_t j = begin; j < end; ++j) {
          if (!suppressed[j] && boxes::box_iou(bi, b + j * stride, 0) > iou_threshold)
            suppressed[j] = 1;
        }
      });
    }
  });
  at::Tensor out = at::empty({static_cast<int64_t>(keep.size())}, boxes.options().dtype(at::kLong));
  std::copy(keep.begin(), keep.end(), out.data_ptr<int64_t>());
  return out;
}

at::Tensor points_in_boxes_cpu(const at::Tensor& points, const at::Tensor& boxes, bool all) {
  const int64_t n = points.size(0), m = boxes.size(0);
  at::Tensor out = all ? at::zeros({n, m}, points.options().dtype(at::kBool))
                       : at::full({n}, -1, points.options().dtype(at::kLong));
  if (n == 0 || m == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "points_in_boxes_cpu", [&] {
    const scalar_t* p = points.data_ptr<scalar_t>();
    const scalar_t* b = boxes.data_ptr<scalar_t>();
    const int64_t sp = points.size(1), sb = boxes.size(1);
    if (all) {
      bool* o = out.data_ptr<bool>();
      at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i)
          for (int64_t j = 0; j < m; ++j) o[i * m + j] = boxes::point_in_box(p + i * sp, b + j * sb);
      });
    } else {
      int64_t* o = out.data_ptr<int64_t>();
      at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i)
          for (int64_t j = 0; j < m; ++j)
            if (boxes::point_in_box(p + i * sp, b + j * sb)) {
              o[i] = j;
              break;
            }
      });
    }
  });
  return out;
}

}  // namespace lidarcl
