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

// A chunk of the points of sample b; every camera of the sample is tried on each point
// while it is in cache (point-major), so the points are read once, not K times.
struct Chunk {
  int64_t b, begin, end;
};

std::vector<Chunk> point_chunks(const int64_t* offsets, int64_t batch, int64_t chunk) {
  std::vector<Chunk> tasks;
  int64_t start = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t stop = offsets[b];
    for (int64_t s = start; s < stop; s += std::min(chunk, stop - s))
      tasks.push_back({b, s, s + std::min(chunk, stop - s)});
    start = stop;
  }
  return tasks;
}

template <typename T>
std::vector<Camera<T>> make_cameras(const at::Tensor& lidar2img, const at::Tensor& image_hw,
                                    double min_depth, double margin) {
  const int64_t total = lidar2img.size(0) * lidar2img.size(1);
  const T* mats = lidar2img.data_ptr<T>();
  const T* hws = image_hw.data_ptr<T>();
  std::vector<Camera<T>> cameras;
  cameras.reserve(total);
  for (int64_t c = 0; c < total; ++c)
    cameras.emplace_back(mats + c * 16, hws + c * 2, min_depth, margin);
  return cameras;
}

// Output position of each (chunk, camera) list so that pairs come ordered by sample,
// camera, point: for each sample, for each camera, the chunks of that sample in order.
template <typename Sizes>
std::vector<int64_t> output_starts(const std::vector<Chunk>& tasks, int64_t cams,
                                   const Sizes& size_of, int64_t* total) {
  std::vector<int64_t> start(tasks.size() * cams, 0);
  int64_t pos = 0;
  size_t first = 0;
  while (first < tasks.size()) {
    size_t last = first;
    while (last < tasks.size() && tasks[last].b == tasks[first].b) ++last;
    for (int64_t k = 0; k < cams; ++k)
      for (size_t t = first; t < last; ++t) {
        start[t * cams + k] = pos;
        pos += size_of(t, k);
      }
    first = last;
  }
  *total = pos;
  return start;
}

template <typename T>
struct PairBuffer {
  std::vector<int64_t> point;
  std::vector<T> uv, depth;  // uv interleaved (u, v)
};

template <typename T>
std::vector<at::Tensor> project_impl(const at::Tensor& points, const at::Tensor& offsets,
                                     const at::Tensor& lidar2img, const at::Tensor& image_hw,
                                     double min_depth, double margin) {
  const int64_t dim = points.size(1);
  const int64_t batch = offsets.size(0);
  const int64_t cams = lidar2img.size(1);
  const T* pts = points.data_ptr<T>();
  const auto cameras = make_cameras<T>(lidar2img, image_hw, min_depth, margin);
  const auto tasks = point_chunks(offsets.data_ptr<int64_t>(), batch, kChunk);
  const int64_t num_tasks = static_cast<int64_t>(tasks.size());
  std::vector<PairBuffer<T>> found(num_tasks * cams);

  at::parallel_for(0, num_tasks, 1, [&](int64_t first, int64_t last) {
    for (int64_t t = first; t < last; ++t) {
      const Chunk& c = tasks[t];
      const Camera<T>* cam = cameras.data() + c.b * cams;
      PairBuffer<T>* out = found.data() + t * cams;
      T u, v, depth;
      for (int64_t i = c.begin; i < c.end; ++i) {
        const T* p = pts + i * dim;
        for (int64_t k = 0; k < cams; ++k) {
          if (cam[k].project(p, u, v, depth)) {
            out[k].point.push_back(i);
            out[k].uv.push_back(u);
            out[k].uv.push_back(v);
            out[k].depth.push_back(depth);
          }
        }
      }
    }
  });

  int64_t total = 0;
  const auto start = output_starts(
      tasks, cams, [&](size_t t, int64_t k) {
        return static_cast<int64_t>(found[t * cams + k].point.size());
      }, &total);
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
  at::parallel_for(0, num_tasks * cams, 1, [&](int64_t first, int64_t last) {
    for (int64_t tk = first; tk < last; ++tk) {
      const PairBuffer<T>& f = found[tk];
      const int64_t n = static_cast<int64_t>(f.point.size());
      const int64_t o = start[tk];
      std::copy(f.point.begin(), f.point.end(), pi + o);
      std::fill(ci + o, ci + o + n, tk % cams);
      std::fill(bi + o, bi + o + n, tasks[tk / cams].b);
      std::copy(f.uv.begin(), f.uv.end(), uvp + 2 * o);
      std::copy(f.depth.begin(), f.depth.end(), dp + o);
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

template <typename T, typename Id>
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
  const T* feats = features.data_ptr<T>();
  const Id* sps = superpixels.data_ptr<Id>();
  const auto cameras = make_cameras<T>(lidar2img, image_hw, min_depth, margin);
  const auto tasks = point_chunks(offsets.data_ptr<int64_t>(), batch, kChunk);
  const int64_t num_tasks = static_cast<int64_t>(tasks.size());
  // pass 1: pairs (point, region) per (chunk, camera); ids are checked where they are read
  // (a pass over the whole maps would cost more than the pooling): an id outside [-1, S)
  // under a projected point is an error
  std::vector<std::vector<int64_t>> pair_point(num_tasks * cams), pair_region(num_tasks * cams);
  std::atomic<int64_t> bad_id{-1};
  at::parallel_for(0, num_tasks, 1, [&](int64_t first, int64_t last) {
    std::vector<int64_t> hit_point, hit_cam, hit_pixel;
    for (int64_t t = first; t < last; ++t) {
      const Chunk& c = tasks[t];
      hit_point.clear();
      hit_cam.clear();
      hit_pixel.clear();
      T u, v, depth;
      for (int64_t i = c.begin; i < c.end; ++i) {
        const T* p = pts + i * dim;
        for (int64_t k = 0; k < cams; ++k) {
          const int64_t cam = c.b * cams + k;
          if (!cameras[cam].project(p, u, v, depth)) continue;
          const int64_t x = std::min(
              std::max<int64_t>(static_cast<int64_t>(std::floor(u)), 0), sp_w - 1);
          const int64_t y = std::min(
              std::max<int64_t>(static_cast<int64_t>(std::floor(v)), 0), sp_h - 1);
          hit_point.push_back(i);
          hit_cam.push_back(k);
          hit_pixel.push_back((cam * sp_h + y) * sp_w + x);
        }
      }
      // the id reads miss the cache (maps of megabytes, scattered pixels): done in a tight
      // loop of independent loads so that many misses are in flight at once
      std::vector<int64_t> ids(hit_pixel.size());
      for (size_t h = 0; h < hit_pixel.size(); ++h)
        ids[h] = static_cast<int64_t>(sps[hit_pixel[h]]);
      for (size_t h = 0; h < ids.size(); ++h) {
        const int64_t sp = ids[h];
        if (sp < 0 || sp >= num_sp) {
          if (sp != -1) bad_id.store(sp);
          continue;
        }
        const int64_t k = hit_cam[h];
        pair_point[t * cams + k].push_back(hit_point[h]);
        pair_region[t * cams + k].push_back((c.b * cams + k) * num_sp + sp);
      }
    }
  });
  TORCH_CHECK(bad_id.load() == -1, "superpixels: id ", bad_id.load(),
              " read under a projected point lies outside [-1, num_superpixels=", num_sp, ")");
  int64_t total = 0;
  const auto start = output_starts(
      tasks, cams, [&](size_t t, int64_t k) {
        return static_cast<int64_t>(pair_point[t * cams + k].size());
      }, &total);
  auto long_opts = features.options().dtype(at::kLong);
  at::Tensor point_out = at::empty({total}, long_opts);
  at::Tensor region_out = at::empty({total}, long_opts);
  int64_t* po = point_out.data_ptr<int64_t>();
  int64_t* ro = region_out.data_ptr<int64_t>();
  at::parallel_for(0, num_tasks * cams, 1, [&](int64_t first, int64_t last) {
    for (int64_t tk = first; tk < last; ++tk) {
      std::copy(pair_point[tk].begin(), pair_point[tk].end(), po + start[tk]);
      std::copy(pair_region[tk].begin(), pair_region[tk].end(), ro + start[tk]);
    }
  });
  // pass 2: mean per region, summed in pair order (as the reference's index_add). The pairs
  // of one (sample, camera) are contiguous and own that camera's S regions, and within it
  // the point index grows (feature rows are read forwards): tasks are (sample, camera)
  // blocks, split further by channel ranges when there are fewer blocks than threads.
  const int64_t regions = batch * cams * num_sp;
  const int64_t blocks = batch * cams;
  at::Tensor pooled = at::zeros({regions, channels}, features.options());
  at::Tensor counts = at::zeros({regions}, long_opts);
  T* pp = pooled.data_ptr<T>();
  int64_t* cp = counts.data_ptr<int64_t>();
  for (int64_t j = 0; j < total; ++j) ++cp[ro[j]];
  std::vector<int64_t> block_start(blocks + 1, 0);
  for (int64_t j = 0; j < total; ++j) ++block_start[ro[j] / num_sp + 1];
  for (int64_t k = 0; k < blocks; ++k) block_start[k + 1] += block_start[k];
  const int64_t splits = std::max<int64_t>(
      1, std::min<int64_t>(channels, (2 * at::get_num_threads() + blocks - 1) /
                                         std::max<int64_t>(blocks, 1)));
  const int64_t per_split = (channels + splits - 1) / std::max<int64_t>(splits, 1);
  at::parallel_for(0, blocks * splits, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t block = task / splits;
      const int64_t c0 = (task % splits) * per_split;
      const int64_t c1 = std::min(channels, c0 + per_split);
      for (int64_t j = block_start[block]; j < block_start[block + 1]; ++j) {
        const T* row = feats + po[j] * channels;
        T* acc = pp + ro[j] * channels;
        for (int64_t c = c0; c < c1; ++c) acc[c] += row[c];
      }
      for (int64_t r = block * num_sp; r < (block + 1) * num_sp; ++r) {
        if (cp[r] == 0) continue;
        const T count = static_cast<T>(cp[r]);
        for (int64_t c = c0; c < c1; ++c) pp[r * channels + c] /= count;
      }
    }
  });
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
    using T = scalar_t;
    switch (superpixels.scalar_type()) {  // narrow id maps: fewer cache misses per read
      case at::kByte:
        return project_pool_impl<T, uint8_t>(points, offsets, lidar2img, image_hw,
                                             superpixels, num_superpixels, features,
                                             min_depth, margin);
      case at::kShort:
        return project_pool_impl<T, int16_t>(points, offsets, lidar2img, image_hw,
                                             superpixels, num_superpixels, features,
                                             min_depth, margin);
      case at::kInt:
        return project_pool_impl<T, int32_t>(points, offsets, lidar2img, image_hw,
                                             superpixels, num_superpixels, features,
                                             min_depth, margin);
      default:
        return project_pool_impl<T, int64_t>(points, offsets, lidar2img, image_hw,
                                             superpixels, num_superpixels, features,
                                             min_depth, margin);
    }
  });
}

}  // namespace lidarcl
