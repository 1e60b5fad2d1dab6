// CPU kernels: point -> pixel projection, depth-buffer visibility, fused project + pool.
// Contracts in ../ops.h; references in lidarcl/ops/projection.py and pooling.py.
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "../ops.h"

namespace lidarcl {
namespace {

constexpr int64_t kChunk = 4096;  // points per task of the projection

// One camera of one sample, its bounds already in the compute dtype.
template <typename T>
struct Camera {
  T m[12];  // first three rows of lidar2img, row-major
  T min_depth, margin, u_high, v_high;

  Camera(const T* lidar2img, const T* hw, double min_depth_, double margin_) {
    std::copy(lidar2img, lidar2img + 12, m);
    min_depth = static_cast<T>(min_depth_);
    margin = static_cast<T>(margin_);
    u_high = hw[1] - margin;  // W - margin in T, as the reference evaluates it
    v_high = hw[0] - margin;
  }

  // The devkit rule; every operation rounded on its own (built with -ffp-contract=off).
  inline bool project(const T* p, T& u, T& v, T& depth) const {
    const T x = p[0], y = p[1], z = p[2];
    depth = ((x * m[8] + y * m[9]) + z * m[10]) + m[11];
    if (!(depth > min_depth)) return false;
    u = (((x * m[0] + y * m[1]) + z * m[2]) + m[3]) / depth;
    if (!(u > margin && u < u_high)) return false;
    v = (((x * m[4] + y * m[5]) + z * m[6]) + m[7]) / depth;
    return v > margin && v < v_high;
  }
};

struct Segment {  // points [begin, end) of sample b seen by camera k
  int64_t b, k, begin, end;
};

std::vector<Segment> chunked_segments(const int64_t* offsets, int64_t batch, int64_t cams,
                                      int64_t chunk) {
  std::vector<Segment> tasks;
  int64_t start = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t stop = offsets[b];
    for (int64_t k = 0; k < cams; ++k)
      for (int64_t s = start; s < stop; s += std::min(chunk, stop - s))
        tasks.push_back({b, k, s, s + std::min(chunk, stop - s)});
    start = stop;
  }
  return tasks;
}

template <typename T>
struct PairBuffer {
  std::vector<int64_t> point;
  std::vector<T> u, v, depth;
};

template <typename T>
std::vector<at::Tensor> project_impl(const at::Tensor& points, const at::Tensor& offsets,
                                     const at::Tensor& lidar2img, const at::Tensor& image_hw,
                                     double min_depth, double margin) {
  const int64_t dim = points.size(1);
  const int64_t batch = offsets.size(0);
  const int64_t cams = lidar2img.size(1);
  const T* pts = points.data_ptr<T>();
  const T* mats = lidar2img.data_ptr<T>();
  const T* hws = image_hw.data_ptr<T>();
  const auto tasks = chunked_segments(offsets.data_ptr<int64_t>(), batch, cams, kChunk);
  const int64_t num_tasks = static_cast<int64_t>(tasks.size());
  std::vector<PairBuffer<T>> found(num_tasks);

  at::parallel_for(0, num_tasks, 1, [&](int64_t first, int64_t last) {
    for (int64_t t = first; t < last; ++t) {
      const Segment& s = tasks[t];
      const int64_t cam = s.b * cams + s.k;
      const Camera<T> camera(mats + cam * 16, hws + cam * 2, min_depth, margin);
      PairBuffer<T>& out = found[t];
      T u, v, depth;
      for (int64_t i = s.begin; i < s.end; ++i) {
        if (camera.project(pts + i * dim, u, v, depth)) {
          out.point.push_back(i);
          out.u.push_back(u);
          out.v.push_back(v);
          out.depth.push_back(depth);
        }
      }
    }
  });

  std::vector<int64_t> start(num_tasks + 1, 0);
  for (int64_t t = 0; t < num_tasks; ++t)
    start[t + 1] = start[t] + static_cast<int64_t>(found[t].point.size());
  const int64_t total = start[num_tasks];
  auto long_opts = points.options().dtype(at::kLong);
  at::Tensor point_index = at::empty({total}, long_opts);
  at::Tensor camera_index = at::empty({total}, long_opts);
  at::Tensor batch_index = at::empty({total}, long_opts);
  at::Tensor uv = at::empty({total, 2}, points.options());
  at::Tensor depth = at::empty({total}, points.options());
  int64_t* pi = point_index.data_ptr<int64_t>();
  int64_t* ci = camera_index.data_ptr<int64_t>();
  int64_t* bi = batch_index.data_ptr<int64_t>();
  T* uvp = uv.data_ptr<T>();
  T* dp = depth.data_ptr<T>();
  at::parallel_for(0, num_tasks, 1, [&](int64_t first, int64_t last) {
    for (int64_t t = first; t < last; ++t) {
      const PairBuffer<T>& f = found[t];
      const int64_t n = static_cast<int64_t>(f.point.size());
      const int64_t o = start[t];
      std::copy(f.point.begin(), f.point.end(), pi + o);
      std::fill(ci + o, ci + o + n, tasks[t].k);
      std::fill(bi + o, bi + o + n, tasks[t].b);
      std::copy(f.depth.begin(), f.depth.end(), dp + o);
      for (int64_t j = 0; j < n; ++j) {
        uvp[2 * (o + j)] = f.u[j];
        uvp[2 * (o + j) + 1] = f.v[j];
      }
    }
  });
  return {point_index, camera_index, uv, depth, batch_index};
}

template <typename T>
at::Tensor visibility_impl(const at::Tensor& uv, const at::Tensor& depth,
                           const at::Tensor& image_index, const at::Tensor& image_hw,
                           int64_t window, double depth_tolerance, double relative_tolerance) {
  const int64_t pairs = depth.size(0);
  const int64_t images = image_hw.size(0);
  at::Tensor keep = at::zeros({pairs}, depth.options().dtype(at::kBool));
  if (pairs == 0) return keep;
  const T* uvp = uv.data_ptr<T>();
  const T* dp = depth.data_ptr<T>();
  const int64_t* img = image_index.data_ptr<int64_t>();
  const int64_t* hw = image_hw.data_ptr<int64_t>();
  bool* kp = keep.data_ptr<bool>();
  const T tol = static_cast<T>(depth_tolerance);
  const T rel = static_cast<T>(relative_tolerance);

  // pairs grouped by image (stable counting sort), one depth buffer per image and task
  std::vector<int64_t> first(images + 1, 0), order(pairs);
  for (int64_t m = 0; m < pairs; ++m) ++first[img[m] + 1];
  for (int64_t i = 0; i < images; ++i) first[i + 1] += first[i];
  {
    std::vector<int64_t> fill(first.begin(), first.end() - 1);
    for (int64_t m = 0; m < pairs; ++m) order[fill[img[m]]++] = m;
  }
  std::vector<int64_t> pixel(pairs);
  at::parallel_for(0, images, 1, [&](int64_t i0, int64_t i1) {
    std::vector<T> buffer;
    for (int64_t i = i0; i < i1; ++i) {
      if (first[i] == first[i + 1]) continue;
      const int64_t height = hw[2 * i], width = hw[2 * i + 1];
      buffer.assign(static_cast<size_t>(height * width), std::numeric_limits<T>::infinity());
      for (int64_t j = first[i]; j < first[i + 1]; ++j) {
        const int64_t m = order[j];
        const int64_t x = std::min(std::max<int64_t>(static_cast<int64_t>(std::floor(uvp[2 * m])),
                                                     0), width - 1);
        const int64_t y = std::min(
            std::max<int64_t>(static_cast<int64_t>(std::floor(uvp[2 * m + 1])), 0), height - 1);
        pixel[m] = y * width + x;
        T& cell = buffer[pixel[m]];
        if (dp[m] < cell) cell = dp[m];
      }
      for (int64_t j = first[i]; j < first[i + 1]; ++j) {
        const int64_t m = order[j];
        const int64_t x = pixel[m] % width, y = pixel[m] / width;
        T zmin = std::numeric_limits<T>::infinity();
        for (int64_t yy = std::max<int64_t>(y - window, 0);
             yy <= std::min(y + window, height - 1); ++yy) {
          const T* line = buffer.data() + yy * width;
          for (int64_t xx = std::max<int64_t>(x - window, 0);
               xx <= std::min(x + window, width - 1); ++xx)
            zmin = std::min(zmin, line[xx]);
        }
        const T bound = (zmin + tol) + rel * zmin;
        kp[m] = dp[m] <= bound;
      }
    }
  });
  return keep;
}

template <typename T>
std::vector<at::Tensor> project_pool_impl(const at::Tensor& points, const at::Tensor& offsets,
                                          const at::Tensor& lidar2img,
                                          const at::Tensor& image_hw,
                                          const at::Tensor& superpixels, int64_t num_sp,
                                          const at::Tensor& features, double min_depth,
                                          double margin) {
  const int64_t dim = points.size(1);
  const int64_t batch = offsets.size(0);
  const int64_t cams = lidar2img.size(1);
  const int64_t channels = features.size(1);
  const int64_t sp_h = superpixels.size(2), sp_w = superpixels.size(3);
  const T* pts = points.data_ptr<T>();
  const T* mats = lidar2img.data_ptr<T>();
  const T* hws = image_hw.data_ptr<T>();
  const T* feats = features.data_ptr<T>();
  const int64_t* sps = superpixels.data_ptr<int64_t>();
  const int64_t regions = batch * cams * num_sp;
  at::Tensor pooled = at::zeros({regions, channels}, features.options());
  at::Tensor counts = at::zeros({regions}, features.options().dtype(at::kLong));
  T* pp = pooled.data_ptr<T>();
  int64_t* cp = counts.data_ptr<int64_t>();
  // one task per (sample, camera): it owns its S regions, so sums need no atomics and
  // accumulate in point order like the reference
  const auto tasks = chunked_segments(offsets.data_ptr<int64_t>(), batch, cams,
                                      std::numeric_limits<int64_t>::max());
  const int64_t num_tasks = static_cast<int64_t>(tasks.size());
  std::vector<std::vector<int64_t>> pair_point(num_tasks), pair_region(num_tasks);
  // ids are checked where they are read (a pass over the whole maps would cost more than
  // the pooling); any id outside [-1, S) under a projected point is an error
  std::atomic<int64_t> bad_id{-1};
  at::parallel_for(0, num_tasks, 1, [&](int64_t first, int64_t last) {
    for (int64_t t = first; t < last; ++t) {
      const Segment& s = tasks[t];
      const int64_t cam = s.b * cams + s.k;
      const Camera<T> camera(mats + cam * 16, hws + cam * 2, min_depth, margin);
      const int64_t* map = sps + cam * sp_h * sp_w;
      T u, v, depth;
      for (int64_t i = s.begin; i < s.end; ++i) {
        if (!camera.project(pts + i * dim, u, v, depth)) continue;
        const int64_t x = std::min(std::max<int64_t>(static_cast<int64_t>(std::floor(u)), 0),
                                   sp_w - 1);
        const int64_t y = std::min(std::max<int64_t>(static_cast<int64_t>(std::floor(v)), 0),
                                   sp_h - 1);
        const int64_t sp = map[y * sp_w + x];
        if (sp < 0) {
          if (sp < -1) bad_id.store(sp);
          continue;
        }
        if (sp >= num_sp) {
          bad_id.store(sp);
          continue;
        }
        const int64_t region = cam * num_sp + sp;
        pair_point[t].push_back(i);
        pair_region[t].push_back(region);
        ++cp[region];
        T* acc = pp + region * channels;
        const T* row = feats + i * channels;
        for (int64_t c = 0; c < channels; ++c) acc[c] += row[c];
      }
      for (int64_t r = cam * num_sp; r < (cam + 1) * num_sp; ++r) {
        if (cp[r] == 0) continue;
        const T count = static_cast<T>(cp[r]);
        for (int64_t c = 0; c < channels; ++c) pp[r * channels + c] /= count;
      }
    }
  });
  TORCH_CHECK(bad_id.load() == -1, "superpixels: id ", bad_id.load(),
              " read under a projected point lies outside [-1, num_superpixels=", num_sp, ")");
  int64_t total = 0;
  for (const auto& v : pair_point) total += static_cast<int64_t>(v.size());
  at::Tensor point_out = at::empty({total}, counts.options());
  at::Tensor region_out = at::empty({total}, counts.options());
  int64_t o = 0;
  for (int64_t t = 0; t < num_tasks; ++t) {
    std::copy(pair_point[t].begin(), pair_point[t].end(), point_out.data_ptr<int64_t>() + o);
    std::copy(pair_region[t].begin(), pair_region[t].end(),
              region_out.data_ptr<int64_t>() + o);
    o += static_cast<int64_t>(pair_point[t].size());
  }
  return {pooled, counts, point_out, region_out};
}

}  // namespace

std::vector<at::Tensor> project_points_cpu(const at::Tensor& points, const at::Tensor& offsets,
                                           const at::Tensor& lidar2img,
                                           const at::Tensor& image_hw, double min_depth,
                                           double margin) {
  return AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "project_points_cpu", [&] {
    return project_impl<scalar_t>(points, offsets, lidar2img, image_hw, min_depth, margin);
  });
}

at::Tensor visibility_cpu(const at::Tensor& uv, const at::Tensor& depth,
                          const at::Tensor& image_index, const at::Tensor& image_hw,
                          int64_t window, double depth_tolerance, double relative_tolerance) {
  return AT_DISPATCH_FLOATING_TYPES(depth.scalar_type(), "visibility_cpu", [&] {
    return visibility_impl<scalar_t>(uv, depth, image_index, image_hw, window, depth_tolerance,
                                     relative_tolerance);
  });
}

std::vector<at::Tensor> project_pool_cpu(const at::Tensor& points, const at::Tensor& offsets,
                                         const at::Tensor& lidar2img, const at::Tensor& image_hw,
                                         const at::Tensor& superpixels, int64_t num_superpixels,
                                         const at::Tensor& features, double min_depth,
                                         double margin) {
  return AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "project_pool_cpu", [&] {
    return project_pool_impl<scalar_t>(points, offsets, lidar2img, image_hw, superpixels,
                                       num_superpixels, features, min_depth, margin);
  });
}

}  // namespace lidarcl
