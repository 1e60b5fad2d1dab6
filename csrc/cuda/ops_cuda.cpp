// ATen glue of the CUDA kernels of lidarcl._C: allocates the outputs, runs the scans and
// calls the launchers of csrc/cuda/launchers.h (kernels in csrc/cuda/*.cu) on the current
// stream. Contracts: csrc/ops.h; arguments were validated by csrc/bindings.cpp and the
// Python wrappers (contiguous, one device, dtypes, value ranges).
//
// Projection order: every (sample b, camera k, point i) candidate has a fixed slot j in the
// output order (launchers.h); a kernel writes keep[j], at::cumsum gives the output slot of
// every kept candidate, a second kernel writes the pairs there. No atomics decide an
// integer output, so the integer outputs equal those of the CPU implementation.
//
// Determinism: region_pool and project_pool pool with a segmented reduction by default
// (rows sorted stably by region with at::sort, segments found with at::searchsorted, one
// thread per (region, channel) adding in ascending row order: the CPU kernels' bits). Their
// float-atomic variant runs only when the caller asks for it (`atomic`) AND
// torch.are_deterministic_algorithms_enabled() is false. Every remaining atomic path calls
// at::globalContext().alertNotDeterministic: the opt-in atomic pooling (a no-op there, since
// it is only reached with deterministic algorithms off) and the gather backward (float
// atomicAdd onto the feature maps), which therefore raises under
// torch.use_deterministic_algorithms(True). Integer atomics (visibility's depth buffer,
// counters) give schedule-independent results and raise nothing.
#ifdef WITH_CUDA

#include <ATen/ATen.h>
// c10 headers rather than ATen/cuda/CUDAContext.h: the latter pulls in cuBLAS/cuSPARSE
// headers this file does not need; at::cuda::getCurrentCUDAStream is c10's function.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <utility>
#include <vector>

#include "../ops.h"
#include "launchers.h"

namespace lidarcl {
namespace {

void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, "lidarcl._C.", op, " (CUDA): kernel launch failed: ",
              cudaGetErrorString(err));
}

// int64 inclusive prefix sum of the keep bytes and its total (one device -> host copy).
std::pair<at::Tensor, int64_t> scan_keep(const at::Tensor& keep) {
  at::Tensor position = at::cumsum(keep, 0, at::kLong);
  const int64_t total = position.numel() ? position[-1].item<int64_t>() : 0;
  return {position, total};
}

template <typename scalar_t>
cuda::ProjectionArgs<scalar_t> projection_args(const at::Tensor& points,
                                               const at::Tensor& offsets,
                                               const at::Tensor& lidar2img,
                                               const at::Tensor& image_hw, double min_depth,
                                               double margin) {
  cuda::ProjectionArgs<scalar_t> a;
  a.points = points.data_ptr<scalar_t>();
  a.num_points = points.size(0);
  a.point_stride = points.size(1);
  a.offsets = offsets.data_ptr<int64_t>();
  a.batch = offsets.size(0);
  a.lidar2img = lidar2img.data_ptr<scalar_t>();
  a.image_hw = image_hw.data_ptr<scalar_t>();
  a.num_cams = lidar2img.size(1);
  // the scalars are cast to the compute dtype first (csrc/ops.h)
  a.min_depth = static_cast<scalar_t>(min_depth);
  a.margin = static_cast<scalar_t>(margin);
  return a;
}

at::TensorOptions long_options(const at::Tensor& like) {
  return like.options().dtype(at::kLong);
}

// Members of each region for cuda::segment_pool: `members` lists the entries sorted stably
// by their region (so in ascending entry order within a region; entries with a region
// outside [0, R), e.g. -1, sort outside the segments), `start` (R + 1,) the first member of
// each region: start[r] = number of entries with a region < r.
struct Segments {
  at::Tensor members, start;
};

Segments segments_of(const at::Tensor& region_of, int64_t num_regions) {
  auto sorted = at::sort(region_of, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const at::Tensor bounds = at::arange(num_regions + 1, long_options(region_of));
  at::Tensor start = at::searchsorted(std::get<0>(sorted), bounds, /*out_int32=*/false,
                                      /*right=*/false);
  return {std::get<1>(sorted).contiguous(), start.contiguous()};
}

// The float-atomic pooling variant runs only when asked for and deterministic algorithms
// are off; it then flags itself (a no-op unless that state changes).
bool atomic_pooling(bool requested, const char* op) {
  if (!requested || at::globalContext().deterministicAlgorithms()) return false;
  at::globalContext().alertNotDeterministic(op);
  return true;
}

template <typename F>
void dispatch_superpixel_ids(const at::Tensor& superpixels, const F& f) {
  switch (superpixels.scalar_type()) {
    case at::kByte:
      f(superpixels.data_ptr<uint8_t>());
      break;
    case at::kShort:
      f(superpixels.data_ptr<int16_t>());
      break;
    case at::kInt:
      f(superpixels.data_ptr<int32_t>());
      break;
    case at::kLong:
      f(superpixels.data_ptr<int64_t>());
      break;
    default:
      TORCH_CHECK(false, "project_pool (CUDA): superpixels must be uint8, int16, int32 or "
                  "int64, got ", superpixels.scalar_type());
  }
}

}  // namespace

// ---------------------------------------------------------------- projection
std::vector<at::Tensor> project_points_cuda(const at::Tensor& points, const at::Tensor& offsets,
                                            const at::Tensor& lidar2img,
                                            const at::Tensor& image_hw, double min_depth,
                                            double margin) {
  const c10::cuda::CUDAGuard guard(points.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t num_cams = lidar2img.dim() == 4 ? lidar2img.size(1) : 0;
  const int64_t candidates = points.size(0) * num_cams;
  const at::Tensor keep = at::empty({candidates}, points.options().dtype(at::kByte));
  at::Tensor position;
  int64_t pairs = 0;
  if (candidates > 0) {
    AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "project_points_cuda", [&] {
      const auto args =
          projection_args<scalar_t>(points, offsets, lidar2img, image_hw, min_depth, margin);
      check_launch(cuda::project_points_flags<scalar_t>(args, keep.data_ptr<uint8_t>(), stream),
                   "project_points");
    });
    std::tie(position, pairs) = scan_keep(keep);
  }
  at::Tensor point_index = at::empty({pairs}, long_options(points));
  at::Tensor camera_index = at::empty({pairs}, long_options(points));
  at::Tensor uv = at::empty({pairs, 2}, points.options());
  at::Tensor depth = at::empty({pairs}, points.options());
  at::Tensor batch_index = at::empty({pairs}, long_options(points));
  if (pairs > 0) {
    AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "project_points_cuda", [&] {
      const auto args =
          projection_args<scalar_t>(points, offsets, lidar2img, image_hw, min_depth, margin);
      check_launch(cuda::project_points_compact<scalar_t>(
                       args, keep.data_ptr<uint8_t>(), position.data_ptr<int64_t>(),
                       point_index.data_ptr<int64_t>(), camera_index.data_ptr<int64_t>(),
                       uv.data_ptr<scalar_t>(), depth.data_ptr<scalar_t>(),
                       batch_index.data_ptr<int64_t>(), stream),
                   "project_points");
    });
  }
  return {point_index, camera_index, uv, depth, batch_index};
}

// ---------------------------------------------------------------- visibility
at::Tensor visibility_cuda(const at::Tensor& uv, const at::Tensor& depth,
                           const at::Tensor& image_index, const at::Tensor& image_hw,
                           int64_t window, double depth_tolerance, double relative_tolerance) {
  const c10::cuda::CUDAGuard guard(depth.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t pairs = depth.size(0);
  at::Tensor visible = at::empty({pairs}, depth.options().dtype(at::kBool));
  const int64_t images = image_hw.size(0);
  if (pairs == 0 || images == 0) {
    if (pairs > 0) visible.fill_(false);
    return visible;
  }
  // one depth buffer per image with its own (H, W), laid out one after another
  const at::Tensor sizes = image_hw.select(1, 0) * image_hw.select(1, 1);
  const at::Tensor end = at::cumsum(sizes, 0);
  const int64_t buffer_size = end[-1].item<int64_t>();
  const at::Tensor start = (end - sizes).contiguous();
  AT_DISPATCH_FLOATING_TYPES(depth.scalar_type(), "visibility_cuda", [&] {
    // workspace: buffer_size ordered keys of sizeof(scalar_t) bytes
    at::Tensor workspace = at::empty({std::max<int64_t>(buffer_size, 1)}, depth.options());
    check_launch(cuda::visibility<scalar_t>(
                     uv.data_ptr<scalar_t>(), depth.data_ptr<scalar_t>(),
                     image_index.data_ptr<int64_t>(), pairs, image_hw.data_ptr<int64_t>(),
                     start.data_ptr<int64_t>(), images, workspace.data_ptr<scalar_t>(),
                     buffer_size, window, static_cast<scalar_t>(depth_tolerance),
                     static_cast<scalar_t>(relative_tolerance), visible.data_ptr<bool>(),
                     stream),
                 "visibility");
  });
  return visible;
}

// ---------------------------------------------------------------- pixel gather
at::Tensor gather_forward_cuda(const at::Tensor& features, const at::Tensor& image_index,
                               const at::Tensor& coords) {
  const c10::cuda::CUDAGuard guard(features.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t pairs = image_index.size(0);
  const int64_t channels = features.size(1);
  at::Tensor out = at::empty({pairs, channels}, features.options());
  if (pairs * channels == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "gather_forward_cuda", [&] {
    check_launch(cuda::gather_forward<scalar_t>(
                     features.data_ptr<scalar_t>(), features.size(0), channels,
                     features.size(2), features.size(3), image_index.data_ptr<int64_t>(),
                     coords.data_ptr<scalar_t>(), pairs, out.data_ptr<scalar_t>(), stream),
                 "gather_forward");
  });
  return out;
}

at::Tensor gather_backward_cuda(const at::Tensor& grad_out, const at::Tensor& image_index,
                                const at::Tensor& coords, int64_t num_images, int64_t height,
                                int64_t width) {
  // float atomicAdd onto the maps: the order of a cell's additions depends on the schedule
  at::globalContext().alertNotDeterministic("lidarcl gather_pixel_features backward (CUDA)");
  const c10::cuda::CUDAGuard guard(grad_out.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t pairs = image_index.size(0);
  const int64_t channels = grad_out.size(1);
  at::Tensor grad = at::zeros({num_images, channels, height, width}, grad_out.options());
  if (pairs * channels == 0 || grad.numel() == 0) return grad;
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "gather_backward_cuda", [&] {
    check_launch(cuda::gather_backward<scalar_t>(
                     grad_out.data_ptr<scalar_t>(), image_index.data_ptr<int64_t>(),
                     coords.data_ptr<scalar_t>(), pairs, channels, num_images, height, width,
                     grad.data_ptr<scalar_t>(), stream),
                 "gather_backward");
  });
  return grad;
}

// ---------------------------------------------------------------- region pooling
std::vector<at::Tensor> region_pool_forward_cuda(const at::Tensor& features,
                                                 const at::Tensor& region_ids,
                                                 int64_t num_regions, int64_t reduce,
                                                 bool atomic) {
  TORCH_CHECK(reduce >= 0 && reduce <= 2, "region_pool_forward (CUDA): reduce must be 0..2");
  const c10::cuda::CUDAGuard guard(features.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t points = features.size(0);
  const int64_t channels = features.size(1);
  const bool is_max = reduce == 1;
  at::Tensor argmax = is_max ? at::empty({num_regions, channels}, long_options(features))
                             : at::empty({0}, long_options(features));
  if (num_regions == 0)
    return {at::empty({0, channels}, features.options()), at::empty({0}, long_options(features)),
            argmax};
  if (atomic_pooling(atomic, "lidarcl region_pool (CUDA, atomic=True)")) {
    at::Tensor counts = at::zeros({num_regions}, long_options(features));
    // max writes every element (features[argmax] or 0); mean/sum accumulate into zeros
    at::Tensor pooled = is_max ? at::empty({num_regions, channels}, features.options())
                               : at::zeros({num_regions, channels}, features.options());
    AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "region_pool_forward_cuda", [&] {
      if (is_max) {
        at::Tensor workspace = at::empty({num_regions * channels}, features.options());
        check_launch(cuda::region_pool_max_atomic<scalar_t>(
                         features.data_ptr<scalar_t>(), region_ids.data_ptr<int64_t>(), points,
                         channels, num_regions, pooled.data_ptr<scalar_t>(),
                         counts.data_ptr<int64_t>(), argmax.data_ptr<int64_t>(),
                         workspace.data_ptr<scalar_t>(), stream),
                     "region_pool_forward");
      } else {
        check_launch(cuda::scatter_pool<scalar_t>(
                         features.data_ptr<scalar_t>(), channels, nullptr,
                         region_ids.data_ptr<int64_t>(), points, num_regions, reduce == 0,
                         pooled.data_ptr<scalar_t>(), counts.data_ptr<int64_t>(), stream),
                     "region_pool_forward");
      }
    });
    return {pooled, counts, argmax};
  }
  // deterministic: segments of the rows sorted stably by region; every output written
  at::Tensor counts = at::empty({num_regions}, long_options(features));
  at::Tensor pooled = at::empty({num_regions, channels}, features.options());
  const Segments seg = segments_of(region_ids, num_regions);
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "region_pool_forward_cuda", [&] {
    check_launch(cuda::segment_pool<scalar_t>(
                     features.data_ptr<scalar_t>(), points, channels,
                     seg.members.data_ptr<int64_t>(), nullptr, seg.start.data_ptr<int64_t>(),
                     num_regions, static_cast<int>(reduce), pooled.data_ptr<scalar_t>(),
                     counts.data_ptr<int64_t>(), is_max ? argmax.data_ptr<int64_t>() : nullptr,
                     stream),
                 "region_pool_forward");
  });
  return {pooled, counts, argmax};
}

at::Tensor region_pool_backward_cuda(const at::Tensor& grad_pooled,
                                     const at::Tensor& region_ids, const at::Tensor& counts,
                                     const at::Tensor& argmax, int64_t num_points,
                                     int64_t reduce) {
  TORCH_CHECK(reduce >= 0 && reduce <= 2, "region_pool_backward (CUDA): reduce must be 0..2");
  const c10::cuda::CUDAGuard guard(grad_pooled.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t regions = grad_pooled.size(0);
  const int64_t channels = grad_pooled.size(1);
  at::Tensor grad = at::zeros({num_points, channels}, grad_pooled.options());
  if (grad.numel() == 0 || regions == 0) return grad;
  const bool is_max = reduce == 1;
  AT_DISPATCH_FLOATING_TYPES(grad_pooled.scalar_type(), "region_pool_backward_cuda", [&] {
    check_launch(cuda::region_pool_backward<scalar_t>(
                     grad_pooled.data_ptr<scalar_t>(), region_ids.data_ptr<int64_t>(),
                     counts.data_ptr<int64_t>(), is_max ? argmax.data_ptr<int64_t>() : nullptr,
                     num_points, channels, regions, static_cast<int>(reduce),
                     grad.data_ptr<scalar_t>(), stream),
                 "region_pool_backward");
  });
  return grad;
}

// ---------------------------------------------------------------- fused project + pool
std::vector<at::Tensor> project_pool_cuda(const at::Tensor& points, const at::Tensor& offsets,
                                          const at::Tensor& lidar2img,
                                          const at::Tensor& image_hw,
                                          const at::Tensor& superpixels,
                                          int64_t num_superpixels, const at::Tensor& features,
                                          double min_depth, double margin, bool atomic) {
  const c10::cuda::CUDAGuard guard(points.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t batch = offsets.size(0);
  const int64_t num_cams = lidar2img.size(1);
  const int64_t channels = features.size(1);
  const int64_t sp_height = superpixels.size(2), sp_width = superpixels.size(3);
  const int64_t regions = batch * num_cams * num_superpixels;
  const int64_t candidates = points.size(0) * num_cams;
  const at::Tensor keep = at::empty({candidates}, points.options().dtype(at::kByte));
  at::Tensor position;
  int64_t pairs = 0;
  if (candidates > 0) {
    at::Tensor bad = at::empty({2}, long_options(points));
    AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "project_pool_cuda", [&] {
      const auto args =
          projection_args<scalar_t>(points, offsets, lidar2img, image_hw, min_depth, margin);
      dispatch_superpixel_ids(superpixels, [&](const auto* ids) {
        check_launch(cuda::project_pool_flags(args, ids, sp_height, sp_width, num_superpixels,
                                              keep.data_ptr<uint8_t>(),
                                              bad.data_ptr<int64_t>(), stream),
                     "project_pool");
      });
    });
    std::tie(position, pairs) = scan_keep(keep);
    // ids are checked where they are read, as on the CPU (csrc/cpu/projection.cpp)
    const at::Tensor bad_host = bad.cpu();
    const int64_t above = bad_host[0].item<int64_t>(), below = bad_host[1].item<int64_t>();
    const int64_t bad_id = above >= num_superpixels ? above : below;
    TORCH_CHECK(above < num_superpixels && below >= -1, "superpixels: id ", bad_id,
                " read under a projected point lies outside [-1, num_superpixels=",
                num_superpixels, ")");
  }
  at::Tensor pair_point = at::empty({pairs}, long_options(points));
  at::Tensor pair_region = at::empty({pairs}, long_options(points));
  if (pairs > 0) {
    AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "project_pool_cuda", [&] {
      const auto args =
          projection_args<scalar_t>(points, offsets, lidar2img, image_hw, min_depth, margin);
      dispatch_superpixel_ids(superpixels, [&](const auto* ids) {
        check_launch(cuda::project_pool_compact(args, ids, sp_height, sp_width,
                                                num_superpixels, keep.data_ptr<uint8_t>(),
                                                position.data_ptr<int64_t>(),
                                                pair_point.data_ptr<int64_t>(),
                                                pair_region.data_ptr<int64_t>(), stream),
                     "project_pool");
      });
    });
  }
  if (atomic_pooling(atomic, "lidarcl project_pool (CUDA, atomic=True)")) {
    at::Tensor pooled = at::zeros({regions, channels}, features.options());
    at::Tensor counts = at::zeros({regions}, long_options(points));
    if (pairs > 0) {
      AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "project_pool_cuda", [&] {
        check_launch(cuda::scatter_pool<scalar_t>(
                         features.data_ptr<scalar_t>(), channels, pair_point.data_ptr<int64_t>(),
                         pair_region.data_ptr<int64_t>(), pairs, regions, true,
                         pooled.data_ptr<scalar_t>(), counts.data_ptr<int64_t>(), stream),
                     "project_pool");
      });
    }
    return {pooled, counts, pair_point, pair_region};
  }
  // deterministic: the pairs of each region in pair order (= ascending point order, the
  // CPU kernel's summation order), one thread per (region, channel)
  at::Tensor pooled = at::empty({regions, channels}, features.options());
  at::Tensor counts = at::empty({regions}, long_options(points));
  if (regions > 0) {
    const Segments seg = segments_of(pair_region, regions);
    AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "project_pool_cuda", [&] {
      check_launch(cuda::segment_pool<scalar_t>(
                       features.data_ptr<scalar_t>(), features.size(0), channels,
                       seg.members.data_ptr<int64_t>(), pair_point.data_ptr<int64_t>(),
                       seg.start.data_ptr<int64_t>(), regions, 0, pooled.data_ptr<scalar_t>(),
                       counts.data_ptr<int64_t>(), nullptr, stream),
                   "project_pool");
    });
  }
  return {pooled, counts, pair_point, pair_region};
}

// ---------------------------------------------------------------- serialization
at::Tensor serialize_cuda(const at::Tensor& coords, const at::Tensor& batch_index,
                          int64_t order, int64_t depth) {
  TORCH_CHECK(order >= 0 && order <= 3, "serialize (CUDA): order must be 0..3");
  TORCH_CHECK(depth >= 1 && depth <= 16, "serialize (CUDA): depth must lie in [1, 16]");
  const c10::cuda::CUDAGuard guard(coords.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t points = coords.size(0);
  at::Tensor keys = at::empty({points}, long_options(coords));
  if (points == 0) return keys;
  check_launch(cuda::serialize(coords.data_ptr<int64_t>(), batch_index.data_ptr<int64_t>(),
                               points, static_cast<int>(order), static_cast<int>(depth),
                               keys.data_ptr<int64_t>(), stream),
               "serialize");
  return keys;
}

// ---------------------------------------------------------------- rotated boxes
at::Tensor box_iou_cuda(const at::Tensor& boxes_a, const at::Tensor& boxes_b, int64_t mode) {
  const c10::cuda::CUDAGuard guard(boxes_a.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t n = boxes_a.size(0), m = boxes_b.size(0);
  at::Tensor out = at::empty({n, m}, boxes_a.options());
  if (n == 0 || m == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(boxes_a.scalar_type(), "box_iou_cuda", [&] {
    check_launch(cuda::box_iou(boxes_a.data_ptr<scalar_t>(), n, boxes_a.size(1),
                               boxes_b.data_ptr<scalar_t>(), m, boxes_b.size(1),
                               static_cast<int>(mode), out.data_ptr<scalar_t>(), stream),
                 "box_iou");
  });
  return out;
}

at::Tensor nms_bev_cuda(const at::Tensor& boxes, double iou_threshold) {
  const c10::cuda::CUDAGuard guard(boxes.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, long_options(boxes));
  const int64_t blocks = (n + cuda::kNmsBlock - 1) / cuda::kNmsBlock;
  at::Tensor mask = at::empty({n, blocks}, long_options(boxes));
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "nms_bev_cuda", [&] {
    check_launch(cuda::nms_bev_mask(boxes.data_ptr<scalar_t>(), n, boxes.size(1), iou_threshold,
                                    reinterpret_cast<unsigned long long*>(
                                        mask.data_ptr<int64_t>()),
                                    stream),
                 "nms_bev");
  });
  // greedy pass on the host over the bit masks (the CPU kernel's order of decisions)
  const at::Tensor host = mask.cpu();
  const auto* bits = reinterpret_cast<const unsigned long long*>(host.data_ptr<int64_t>());
  std::vector<unsigned long long> removed(static_cast<size_t>(blocks), 0ull);
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = i / cuda::kNmsBlock, k = i - c * cuda::kNmsBlock;
    if ((removed[c] >> k) & 1ull) continue;
    keep.push_back(i);
    const unsigned long long* row = bits + i * blocks;
    for (int64_t d = c; d < blocks; ++d) removed[d] |= row[d];
  }
  at::Tensor out = at::empty({static_cast<int64_t>(keep.size())}, at::kLong);
  std::copy(keep.begin(), keep.end(), out.data_ptr<int64_t>());
  return out.to(boxes.device());
}

at::Tensor points_in_boxes_cuda(const at::Tensor& points, const at::Tensor& boxes, bool all) {
  const c10::cuda::CUDAGuard guard(points.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t n = points.size(0), m = boxes.size(0);
  at::Tensor out = all ? at::zeros({n, m}, points.options().dtype(at::kBool))
                       : at::full({n}, -1, long_options(points));
  if (n == 0 || m == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "points_in_boxes_cuda", [&] {
    check_launch(cuda::points_in_boxes(points.data_ptr<scalar_t>(), n, points.size(1),
                                       boxes.data_ptr<scalar_t>(), m, boxes.size(1),
                                       all ? out.data_ptr<bool>() : nullptr,
                                       all ? nullptr : out.data_ptr<int64_t>(), stream),
                 "points_in_boxes");
  });
  return out;
}

}  // namespace lidarcl

#endif  // WITH_CUDA
