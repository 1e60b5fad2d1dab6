// Python bindings of lidarcl._C: argument checks, then dispatch on the tensors' device to
// the CPU kernels (csrc/cpu) or the CUDA kernels (csrc/cuda, when built WITH_CUDA).
// The Python wrappers in lidarcl/ops/ validate values (ranges, offsets) and normalise
// dtypes first; the checks here keep a direct call from reading out of bounds, on either
// device (for CUDA tensors the value checks cost a small device -> host copy each).
#include <torch/extension.h>

#include <string>

#include "ops.h"

namespace lidarcl {
namespace {

void check(const at::Tensor& t, const char* name, const at::Tensor& like) {
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.device() == like.device(), name, " is on ", t.device(), " but expected ",
              like.device());
}

void check_dtype(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
}

void check_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
              " must be float32 or float64, got ", t.scalar_type());
}

[[noreturn]] void no_cuda(const char* op) {
  TORCH_CHECK(false, "lidarcl._C.", op, ": CUDA tensors given but the extension was built "
              "without CUDA (rebuild with a CUDA build of torch and nvcc)");
  throw;  // unreachable
}

#ifdef WITH_CUDA
#define LIDARCL_DISPATCH(op, tensor, ...)                 \
  return (tensor).is_cuda() ? op##_cuda(__VA_ARGS__) : op##_cpu(__VA_ARGS__)
#else
#define LIDARCL_DISPATCH(op, tensor, ...)                 \
  if ((tensor).is_cuda()) no_cuda(#op);                   \
  return op##_cpu(__VA_ARGS__)
#endif

void check_projection(const at::Tensor& points, const at::Tensor& offsets,
                      const at::Tensor& lidar2img, const at::Tensor& image_hw) {
  check_float(points, "points");
  TORCH_CHECK(points.dim() == 2 && points.size(1) >= 3, "points must have shape (N, >=3)");
  check(points, "points", points);
  check(offsets, "offsets", points);
  check(lidar2img, "lidar2img", points);
  check(image_hw, "image_hw", points);
  check_dtype(offsets, "offsets", at::kLong);
  check_dtype(lidar2img, "lidar2img", points.scalar_type());
  check_dtype(image_hw, "image_hw", points.scalar_type());
  TORCH_CHECK(offsets.dim() == 1, "offsets must have shape (B,)");
  const int64_t batch = offsets.size(0);
  TORCH_CHECK(lidar2img.dim() == 4 && lidar2img.size(0) == batch && lidar2img.size(2) == 4 &&
                  lidar2img.size(3) == 4,
              "lidar2img must have shape (B, K, 4, 4) with B = len(offsets)");
  TORCH_CHECK(image_hw.dim() == 3 && image_hw.size(0) == batch &&
                  image_hw.size(1) == lidar2img.size(1) && image_hw.size(2) == 2,
              "image_hw must have shape (B, K, 2) like lidar2img");
  if (batch > 0) {
    // B values: read on the host (a device -> host copy for CUDA tensors)
    const at::Tensor host = offsets.is_cuda() ? offsets.cpu() : offsets;
    const int64_t* o = host.data_ptr<int64_t>();
    int64_t prev = 0;
    for (int64_t b = 0; b < batch; ++b) {
      TORCH_CHECK(o[b] >= prev, "offsets must be non-negative and non-decreasing");
      prev = o[b];
    }
    TORCH_CHECK(prev == points.size(0), "offsets[-1] must equal the number of points");
  }
}

std::vector<at::Tensor> project_points(const at::Tensor& points, const at::Tensor& offsets,
                                       const at::Tensor& lidar2img, const at::Tensor& image_hw,
                                       double min_depth, double margin) {
  check_projection(points, offsets, lidar2img, image_hw);
  LIDARCL_DISPATCH(project_points, points, points, offsets, lidar2img, image_hw, min_depth,
                   margin);
}

at::Tensor visibility(const at::Tensor& uv, const at::Tensor& depth,
                      const at::Tensor& image_index, const at::Tensor& image_hw, int64_t window,
                      double depth_tolerance, double relative_tolerance) {
  check_float(depth, "depth");
  check(uv, "uv", depth);
  check(depth, "depth", depth);
  check(image_index, "image_index", depth);
  check(image_hw, "image_hw", depth);
  check_dtype(uv, "uv", depth.scalar_type());
  check_dtype(image_index, "image_index", at::kLong);
  check_dtype(image_hw, "image_hw", at::kLong);
  const int64_t m = depth.numel();
  TORCH_CHECK(depth.dim() == 1 && uv.dim() == 2 && uv.size(0) == m && uv.size(1) == 2 &&
                  image_index.dim() == 1 && image_index.size(0) == m,
              "uv (M, 2), depth (M,) and image_index (M,) must agree");
  TORCH_CHECK(image_hw.dim() == 2 && image_hw.size(1) == 2, "image_hw must have shape (I, 2)");
  TORCH_CHECK(window >= 0, "window must be >= 0");
  if (m > 0) {
    const auto range = at::aminmax(image_index);
    TORCH_CHECK(std::get<0>(range).item<int64_t>() >= 0 &&
                    std::get<1>(range).item<int64_t>() < image_hw.size(0),
                "image_index out of range [0, ", image_hw.size(0), ")");
    // the CUDA kernel sizes one depth buffer per image from these
    const at::Tensor hw = image_hw.is_cuda() ? image_hw.cpu() : image_hw;
    TORCH_CHECK(hw.numel() == 0 || hw.min().item<int64_t>() > 0,
                "image_hw sizes must be positive");
    TORCH_CHECK(hw.numel() == 0 || hw.max().item<int64_t>() < (int64_t(1) << 31),
                "image_hw sizes must be below 2^31");
  }
  LIDARCL_DISPATCH(visibility, depth, uv, depth, image_index, image_hw, window,
                   depth_tolerance, relative_tolerance);
}

void check_gather(const at::Tensor& like, const at::Tensor& image_index,
                  const at::Tensor& coords) {
  check(image_index, "image_index", like);
  check(coords, "coords", like);
  check_dtype(image_index, "image_index", at::kLong);
  check_dtype(coords, "coords", like.scalar_type());
  TORCH_CHECK(image_index.dim() == 1 && coords.dim() == 2 && coords.size(1) == 2 &&
                  coords.size(0) == image_index.size(0),
              "image_index (M,) and coords (M, 2) must agree");
}

at::Tensor gather_forward(const at::Tensor& features, const at::Tensor& image_index,
                          const at::Tensor& coords) {
  check_float(features, "features");
  TORCH_CHECK(features.dim() == 4, "features must have shape (I, C, H, W)");
  TORCH_CHECK(features.is_contiguous() ||
                  (!features.is_cuda() &&
                   features.is_contiguous(at::MemoryFormat::ChannelsLast)),
              "features must be contiguous", features.is_cuda() ? "" : " or channels-last");
  check_gather(features, image_index, coords);
  if (image_index.numel() > 0) {
    TORCH_CHECK(features.size(2) > 0 && features.size(3) > 0, "features have an empty map");
    const auto range = at::aminmax(image_index);
    TORCH_CHECK(std::get<0>(range).item<int64_t>() >= 0 &&
                    std::get<1>(range).item<int64_t>() < features.size(0),
                "image_index out of range [0, ", features.size(0), ")");
  }
  LIDARCL_DISPATCH(gather_forward, features, features, image_index, coords);
}

at::Tensor gather_backward(const at::Tensor& grad_out, const at::Tensor& image_index,
                           const at::Tensor& coords, int64_t num_images, int64_t height,
                           int64_t width, bool channels_last) {
  check_float(grad_out, "grad_out");
  check(grad_out, "grad_out", grad_out);
  TORCH_CHECK(grad_out.dim() == 2 && grad_out.size(0) == image_index.size(0),
              "grad_out must have shape (M, C)");
  check_gather(grad_out, image_index, coords);
  TORCH_CHECK(num_images >= 0 && height > 0 && width > 0, "bad feature map shape");
  if (image_index.numel() > 0) {
    const auto range = at::aminmax(image_index);
    TORCH_CHECK(std::get<0>(range).item<int64_t>() >= 0 &&
                    std::get<1>(range).item<int64_t>() < num_images,
                "image_index out of range [0, ", num_images, ")");
  }
#ifdef WITH_CUDA
  if (grad_out.is_cuda())
    return gather_backward_cuda(grad_out, image_index, coords, num_images, height, width);
#else
  if (grad_out.is_cuda()) no_cuda("gather_backward");
#endif
  return gather_backward_cpu(grad_out, image_index, coords, num_images, height, width,
                             channels_last);
}

void check_regions(const at::Tensor& like, const at::Tensor& region_ids, int64_t rows,
                   int64_t num_regions) {
  check(region_ids, "region_ids", like);
  check_dtype(region_ids, "region_ids", at::kLong);
  TORCH_CHECK(region_ids.dim() == 1 && region_ids.size(0) == rows,
              "region_ids must have shape (N,) like the feature rows");
  TORCH_CHECK(num_regions >= 0, "num_regions must be >= 0");
  if (rows > 0) {
    const auto range = at::aminmax(region_ids);
    TORCH_CHECK(std::get<0>(range).item<int64_t>() >= -1 &&
                    std::get<1>(range).item<int64_t>() < num_regions,
                "region_ids out of range [-1, ", num_regions, ")");
  }
}

// atomic: ask the CUDA kernel for its float-atomic mean / sum (honoured only while
// deterministic algorithms are off); the CPU has one (deterministic) kernel and ignores it.
std::vector<at::Tensor> region_pool_forward(const at::Tensor& features,
                                            const at::Tensor& region_ids, int64_t num_regions,
                                            int64_t reduce, bool atomic) {
  check_float(features, "features");
  check(features, "features", features);
  TORCH_CHECK(features.dim() == 2, "features must have shape (N, C)");
  TORCH_CHECK(reduce >= 0 && reduce <= 2, "reduce must be 0 (mean), 1 (max) or 2 (sum)");
  check_regions(features, region_ids, features.size(0), num_regions);
#ifdef WITH_CUDA
  if (features.is_cuda())
    return region_pool_forward_cuda(features, region_ids, num_regions, reduce, atomic);
#else
  (void)atomic;
  if (features.is_cuda()) no_cuda("region_pool_forward");
#endif
  return region_pool_forward_cpu(features, region_ids, num_regions, reduce);
}

at::Tensor region_pool_backward(const at::Tensor& grad_pooled, const at::Tensor& region_ids,
                                const at::Tensor& counts, const at::Tensor& argmax,
                                int64_t num_points, int64_t reduce) {
  check_float(grad_pooled, "grad_pooled");
  check(grad_pooled, "grad_pooled", grad_pooled);
  TORCH_CHECK(grad_pooled.dim() == 2, "grad_pooled must have shape (R, C)");
  TORCH_CHECK(reduce >= 0 && reduce <= 2, "reduce must be 0 (mean), 1 (max) or 2 (sum)");
  check_regions(grad_pooled, region_ids, num_points, grad_pooled.size(0));
  check(counts, "counts", grad_pooled);
  check_dtype(counts, "counts", at::kLong);
  TORCH_CHECK(counts.dim() == 1 && counts.size(0) == grad_pooled.size(0),
              "counts must have shape (R,)");
  if (reduce == 1) {
    check(argmax, "argmax", grad_pooled);
    check_dtype(argmax, "argmax", at::kLong);
    TORCH_CHECK(argmax.sizes() == grad_pooled.sizes(), "argmax must have shape (R, C)");
    if (argmax.numel() > 0) {
      const auto range = at::aminmax(argmax);
      TORCH_CHECK(std::get<0>(range).item<int64_t>() >= -1 &&
                      std::get<1>(range).item<int64_t>() < num_points,
                  "argmax out of range [-1, ", num_points, ")");
    }
  }
  LIDARCL_DISPATCH(region_pool_backward, grad_pooled, grad_pooled, region_ids, counts, argmax,
                   num_points, reduce);
}

std::vector<at::Tensor> project_pool(const at::Tensor& points, const at::Tensor& offsets,
                                     const at::Tensor& lidar2img, const at::Tensor& image_hw,
                                     const at::Tensor& superpixels, int64_t num_superpixels,
                                     const at::Tensor& features, double min_depth,
                                     double margin, bool atomic) {
  check_projection(points, offsets, lidar2img, image_hw);
  check(superpixels, "superpixels", points);
  const auto id = superpixels.scalar_type();
  TORCH_CHECK(id == at::kLong || id == at::kInt || id == at::kShort || id == at::kByte,
              "superpixels must be int64, int32, int16 or uint8, got ", id);
  TORCH_CHECK(superpixels.dim() == 4 && superpixels.size(0) == offsets.size(0) &&
                  superpixels.size(1) == lidar2img.size(1),
              "superpixels must have shape (B, K, H, W)");
  TORCH_CHECK(num_superpixels >= 1, "num_superpixels must be >= 1");
  if (superpixels.size(0) * superpixels.size(1) > 0)  // ids are checked where they are read
    TORCH_CHECK(superpixels.size(2) > 0 && superpixels.size(3) > 0, "empty superpixel maps");
  check(features, "features", points);
  check_dtype(features, "features", points.scalar_type());
  TORCH_CHECK(features.dim() == 2 && features.size(0) == points.size(0),
              "features must have shape (N, C) like points");
#ifdef WITH_CUDA
  if (points.is_cuda())
    return project_pool_cuda(points, offsets, lidar2img, image_hw, superpixels,
                             num_superpixels, features, min_depth, margin, atomic);
#else
  (void)atomic;
  if (points.is_cuda()) no_cuda("project_pool");
#endif
  return project_pool_cpu(points, offsets, lidar2img, image_hw, superpixels, num_superpixels,
                          features, min_depth, margin);
}

at::Tensor serialize(const at::Tensor& coords, const at::Tensor& batch_index, int64_t order,
                     int64_t depth) {
  check(coords, "coords", coords);
  check(batch_index, "batch_index", coords);
  check_dtype(coords, "coords", at::kLong);
  check_dtype(batch_index, "batch_index", at::kLong);
  TORCH_CHECK(coords.dim() == 2 && coords.size(1) == 3, "coords must have shape (N, 3)");
  TORCH_CHECK(batch_index.dim() == 1 && batch_index.size(0) == coords.size(0),
              "batch_index must have shape (N,) like coords");
  TORCH_CHECK(order >= 0 && order <= 3, "order must be 0..3");
  TORCH_CHECK(depth >= 1 && depth <= 16, "depth must lie in [1, 16]");
  if (coords.size(0) > 0) {
    const auto range = at::aminmax(coords);
    TORCH_CHECK(std::get<0>(range).item<int64_t>() >= 0 &&
                    std::get<1>(range).item<int64_t>() < (int64_t(1) << depth),
                "coords out of range [0, 2^depth)");
    const auto brange = at::aminmax(batch_index);
    TORCH_CHECK(std::get<0>(brange).item<int64_t>() >= 0 &&
                    std::get<1>(brange).item<int64_t>() < (int64_t(1) << (63 - 3 * depth)),
                "batch_index out of range [0, 2^(63 - 3*depth))");
  }
  LIDARCL_DISPATCH(serialize, coords, coords, batch_index, order, depth);
}

void check_boxes(const at::Tensor& boxes, const char* name, const at::Tensor& like) {
  check_float(boxes, name);
  check(boxes, name, like);
  check_dtype(boxes, name, like.scalar_type());
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) >= 7, name, " must have shape (N, >=7)");
}

at::Tensor box_iou(const at::Tensor& boxes_a, const at::Tensor& boxes_b, int64_t mode) {
  check_boxes(boxes_a, "boxes_a", boxes_a);
  check_boxes(boxes_b, "boxes_b", boxes_a);
  TORCH_CHECK(mode == 0 || mode == 1, "mode must be 0 (BEV) or 1 (3D)");
  LIDARCL_DISPATCH(box_iou, boxes_a, boxes_a, boxes_b, mode);
}

at::Tensor nms_bev(const at::Tensor& boxes, double iou_threshold) {
  check_boxes(boxes, "boxes", boxes);
  LIDARCL_DISPATCH(nms_bev, boxes, boxes, iou_threshold);
}

at::Tensor points_in_boxes(const at::Tensor& points, const at::Tensor& boxes, bool all) {
  check_float(points, "points");
  check(points, "points", points);
  TORCH_CHECK(points.dim() == 2 && points.size(1) >= 3, "points must have shape (N, >=3)");
  check_boxes(boxes, "boxes", points);
  LIDARCL_DISPATCH(points_in_boxes, points, points, boxes, all);
}

bool with_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace
}  // namespace lidarcl

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "lidarcl point-pixel correspondence and rotated-box kernels (see csrc/ops.h)";
  m.def("with_cuda", &lidarcl::with_cuda, "whether the CUDA kernels were compiled in");
  m.def("get_num_threads", &at::get_num_threads, "ATen intra-op threads seen by the kernels");
  m.def("project_points", &lidarcl::project_points);
  m.def("visibility", &lidarcl::visibility);
  m.def("gather_forward", &lidarcl::gather_forward);
  m.def("gather_backward", &lidarcl::gather_backward);
  namespace py = pybind11;
  m.def("region_pool_forward", &lidarcl::region_pool_forward, py::arg("features"),
        py::arg("region_ids"), py::arg("num_regions"), py::arg("reduce"),
        py::arg("atomic") = false);
  m.def("region_pool_backward", &lidarcl::region_pool_backward);
  m.def("project_pool", &lidarcl::project_pool, py::arg("points"), py::arg("offsets"),
        py::arg("lidar2img"), py::arg("image_hw"), py::arg("superpixels"),
        py::arg("num_superpixels"), py::arg("features"), py::arg("min_depth"),
        py::arg("margin"), py::arg("atomic") = false);
  m.def("serialize", &lidarcl::serialize);
  m.def("box_iou", &lidarcl::box_iou);
  m.def("nms_bev", &lidarcl::nms_bev);
  m.def("points_in_boxes", &lidarcl::points_in_boxes);
}
