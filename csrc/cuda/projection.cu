// CUDA kernels: point -> pixel projection, depth-buffer visibility, fused project + pool.
// Semantics: csrc/ops.h; launchers: csrc/cuda/launchers.h.
#include <cuda_runtime.h>

#include <cstdint>

#include "common.cuh"
#include "launchers.h"

namespace lidarcl {
namespace cuda {
namespace {

using namespace detail;

struct Candidate {
  int64_t b;  // sample
  int64_t k;  // camera within the sample
  int64_t i;  // global point row
};

// Candidate j -> (b, k, i) (layout in launchers.h). False for a j outside every sample
// (only possible with inconsistent offsets, which the Python wrappers reject).
__device__ __forceinline__ bool decode_candidate(int64_t j, const int64_t* __restrict__ offsets,
                                                 int64_t batch, int64_t num_cams,
                                                 Candidate& out) {
  const int64_t q = j / num_cams;  // K * start_b <= j < K * end_b  <=>  start_b <= q < end_b
  int64_t lo = 0, hi = batch;      // first b with offsets[b] > q
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (offsets[mid] > q) hi = mid;
    else lo = mid + 1;
  }
  if (lo >= batch) return false;
  const int64_t start = lo > 0 ? offsets[lo - 1] : 0;
  const int64_t count = offsets[lo] - start;
  if (q < start || count <= 0) return false;
  const int64_t r = j - num_cams * start;
  out.b = lo;
  out.k = r / count;
  out.i = start + (r - out.k * count);
  return true;
}

// c = ((x*m0 + y*m1) + z*m2) + m3, every operation rounded separately.
template <typename T>
__device__ __forceinline__ T camera_row(T x, T y, T z, const T* __restrict__ m) {
  return add_rn(add_rn(add_rn(mul_rn(x, m[0]), mul_rn(y, m[1])), mul_rn(z, m[2])), m[3]);
}

// Projects point i into camera (b, k); true iff the pair passes the selection rule.
template <typename T>
__device__ __forceinline__ bool project(const ProjectionArgs<T>& a, const Candidate& c, T& u,
                                        T& v, T& depth) {
  const T* p = a.points + c.i * a.point_stride;
  const int64_t image = c.b * a.num_cams + c.k;
  const T* m = a.lidar2img + image * 16;
  const T x = p[0], y = p[1], z = p[2];
  const T c0 = camera_row(x, y, z, m);
  const T c1 = camera_row(x, y, z, m + 4);
  const T c2 = camera_row(x, y, z, m + 8);
  depth = c2;
  u = div_rn(c0, c2);
  v = div_rn(c1, c2);
  const T height = a.image_hw[image * 2];
  const T width = a.image_hw[image * 2 + 1];
  return depth > a.min_depth && u > a.margin && u < sub_rn(width, a.margin) && v > a.margin &&
         v < sub_rn(height, a.margin);
}

// Superpixel id under a kept pair ((b, k) map of sp_height x sp_width), read in the maps'
// own integer type and widened in a register; -1 for an empty map.
template <typename T, typename Id>
__device__ __forceinline__ int64_t superpixel_at(const Id* __restrict__ superpixels,
                                                 int64_t sp_height, int64_t sp_width,
                                                 int64_t image, T u, T v) {
  if (sp_height <= 0 || sp_width <= 0) return -1;
  const int64_t x = pixel_index(u, sp_width);
  const int64_t y = pixel_index(v, sp_height);
  return static_cast<int64_t>(superpixels[(image * sp_height + y) * sp_width + x]);
}

// keep[j] for every candidate of the plain projection.
template <typename T>
__global__ void flags_kernel(ProjectionArgs<T> a, int64_t num_candidates,
                             uint8_t* __restrict__ keep) {
  LIDARCL_CUDA_LOOP(j, num_candidates) {
    Candidate c;
    bool kept = false;
    if (decode_candidate(j, a.offsets, a.batch, a.num_cams, c)) {
      T u, v, depth;
      kept = project(a, c, u, v, depth);
    }
    keep[j] = kept ? 1 : 0;
  }
}

__global__ void init_bad_ids_kernel(int64_t* __restrict__ bad_ids) {
  LIDARCL_CUDA_LOOP(i, 2) { bad_ids[i] = i == 0 ? INT64_MIN : INT64_MAX; }
}

// keep[j] for the fused op: the pair must also read an id in [0, num_superpixels); an id
// outside [-1, num_superpixels) is recorded in bad_ids (launchers.h) and not kept.
template <typename T, typename Id>
__global__ void pool_flags_kernel(ProjectionArgs<T> a, const Id* __restrict__ superpixels,
                                  int64_t sp_height, int64_t sp_width, int64_t num_superpixels,
                                  int64_t num_candidates, uint8_t* __restrict__ keep,
                                  int64_t* __restrict__ bad_ids) {
  LIDARCL_CUDA_LOOP(j, num_candidates) {
    Candidate c;
    bool kept = false;
    if (decode_candidate(j, a.offsets, a.batch, a.num_cams, c)) {
      T u, v, depth;
      if (project(a, c, u, v, depth)) {
        const int64_t s =
            superpixel_at(superpixels, sp_height, sp_width, c.b * a.num_cams + c.k, u, v);
        kept = s >= 0 && s < num_superpixels;
        if (s >= num_superpixels) atomic_max_i64(bad_ids, s);
        if (s < -1) atomic_min_i64(bad_ids + 1, s);
      }
    }
    keep[j] = kept ? 1 : 0;
  }
}

template <typename T>
__global__ void compact_kernel(ProjectionArgs<T> a, int64_t num_candidates,
                               const uint8_t* __restrict__ keep,
                               const int64_t* __restrict__ position,
                               int64_t* __restrict__ point_index,
                               int64_t* __restrict__ camera_index, T* __restrict__ uv,
                               T* __restrict__ depth, int64_t* __restrict__ batch_index) {
  LIDARCL_CUDA_LOOP(j, num_candidates) {
    if (!keep[j]) continue;
    Candidate c;
    if (!decode_candidate(j, a.offsets, a.batch, a.num_cams, c)) continue;
    T u, v, d;
    project(a, c, u, v, d);  // same inputs, same arithmetic: the values of flags_kernel
    const int64_t p = position[j] - 1;
    point_index[p] = c.i;
    camera_index[p] = c.k;
    uv[2 * p] = u;
    uv[2 * p + 1] = v;
    depth[p] = d;
    batch_index[p] = c.b;
  }
}

template <typename T, typename Id>
__global__ void pool_compact_kernel(ProjectionArgs<T> a, const Id* __restrict__ superpixels,
                                    int64_t sp_height, int64_t sp_width,
                                    int64_t num_superpixels, int64_t num_candidates,
                                    const uint8_t* __restrict__ keep,
                                    const int64_t* __restrict__ position,
                                    int64_t* __restrict__ pair_point,
                                    int64_t* __restrict__ pair_region) {
  LIDARCL_CUDA_LOOP(j, num_candidates) {
    if (!keep[j]) continue;
    Candidate c;
    if (!decode_candidate(j, a.offsets, a.batch, a.num_cams, c)) continue;
    T u, v, d;
    project(a, c, u, v, d);
    const int64_t image = c.b * a.num_cams + c.k;
    const int64_t s = superpixel_at(superpixels, sp_height, sp_width, image, u, v);
    const int64_t p = position[j] - 1;
    pair_point[p] = c.i;
    pair_region[p] = image * num_superpixels + s;
  }
}

// ------------------------------------------------------------------ visibility
template <typename T>
__global__ void depth_buffer_kernel(const T* __restrict__ uv, const T* __restrict__ depth,
                                    const int64_t* __restrict__ image_index, int64_t num_pairs,
                                    const int64_t* __restrict__ image_hw,
                                    const int64_t* __restrict__ image_start, int64_t num_images,
                                    typename OrderedKey<T>::type* __restrict__ buffer) {
  LIDARCL_CUDA_LOOP(m, num_pairs) {
    const int64_t img = image_index[m];
    if (img < 0 || img >= num_images) continue;
    const int64_t height = image_hw[2 * img], width = image_hw[2 * img + 1];
    if (height <= 0 || width <= 0) continue;
    const int64_t x = pixel_index(uv[2 * m], width);
    const int64_t y = pixel_index(uv[2 * m + 1], height);
    atomicMin(buffer + image_start[img] + y * width + x, min_key(depth[m]));
  }
}

template <typename T>
__global__ void depth_test_kernel(const T* __restrict__ uv, const T* __restrict__ depth,
                                  const int64_t* __restrict__ image_index, int64_t num_pairs,
                                  const int64_t* __restrict__ image_hw,
                                  const int64_t* __restrict__ image_start, int64_t num_images,
                                  const typename OrderedKey<T>::type* __restrict__ buffer,
                                  int64_t window, T tolerance, T relative,
                                  bool* __restrict__ visible) {
  using Key = typename OrderedKey<T>::type;
  LIDARCL_CUDA_LOOP(m, num_pairs) {
    const int64_t img = image_index[m];
    bool keep = false;
    if (img >= 0 && img < num_images) {
      const int64_t height = image_hw[2 * img], width = image_hw[2 * img + 1];
      if (height > 0 && width > 0) {
        const int64_t x = pixel_index(uv[2 * m], width);
        const int64_t y = pixel_index(uv[2 * m + 1], height);
        // window clamped to the image (no overflow for huge windows)
        const int64_t y0 = window >= y ? 0 : y - window;
        const int64_t y1 = window >= height - 1 - y ? height - 1 : y + window;
        const int64_t x0 = window >= x ? 0 : x - window;
        const int64_t x1 = window >= width - 1 - x ? width - 1 : x + window;
        const Key* image_buffer = buffer + image_start[img];
        Key best = OrderedKey<T>::kMax;
        for (int64_t yy = y0; yy <= y1; ++yy) {
          const Key* line = image_buffer + yy * width;
          for (int64_t xx = x0; xx <= x1; ++xx) {
            const Key key = line[xx];
            best = key < best ? key : best;
          }
        }
        // the pair's own pixel holds a key <= its own, so best is a depth of the window;
        // a NaN depth in the window has the smallest key and decodes to NaN (it
        // propagates, as torch's amin/minimum in the reference)
        const T zmin = OrderedKey<T>::decode(best);
        const T bound = add_rn(add_rn(zmin, tolerance), mul_rn(relative, zmin));
        keep = depth[m] <= bound;
      }
    }
    visible[m] = keep;
  }
}

}  // namespace

// ------------------------------------------------------------------ launchers
template <typename scalar_t>
cudaError_t project_points_flags(const ProjectionArgs<scalar_t>& args, uint8_t* keep,
                                 cudaStream_t stream) {
  const int64_t candidates = args.num_points * args.num_cams;
  LIDARCL_CUDA_LAUNCH(flags_kernel<scalar_t>, candidates, stream, args, candidates, keep);
  return cudaSuccess;
}

template <typename scalar_t>
cudaError_t project_points_compact(const ProjectionArgs<scalar_t>& args, const uint8_t* keep,
                                   const int64_t* position, int64_t* point_index,
                                   int64_t* camera_index, scalar_t* uv, scalar_t* depth,
                                   int64_t* batch_index, cudaStream_t stream) {
  const int64_t candidates = args.num_points * args.num_cams;
  LIDARCL_CUDA_LAUNCH(compact_kernel<scalar_t>, candidates, stream, args, candidates, keep,
                      position, point_index, camera_index, uv, depth, batch_index);
  return cudaSuccess;
}

template <typename scalar_t>
cudaError_t visibility(const scalar_t* uv, const scalar_t* depth, const int64_t* image_index,
                       int64_t num_pairs, const int64_t* image_hw, const int64_t* image_start,
                       int64_t num_images, scalar_t* workspace, int64_t buffer_size,
                       int64_t window, scalar_t depth_tolerance, scalar_t relative_tolerance,
                       bool* visible, cudaStream_t stream) {
  using Key = typename OrderedKey<scalar_t>::type;
  static_assert(sizeof(Key) == sizeof(scalar_t), "key and value widths differ");
  Key* buffer = reinterpret_cast<Key*>(workspace);
  // empty pixels hold +inf
  LIDARCL_CUDA_LAUNCH(fill_kernel<Key>, buffer_size, stream, buffer, buffer_size,
                      OrderedKey<scalar_t>::kPlusInf);
  LIDARCL_CUDA_LAUNCH(depth_buffer_kernel<scalar_t>, num_pairs, stream, uv, depth, image_index,
                      num_pairs, image_hw, image_start, num_images, buffer);
  LIDARCL_CUDA_LAUNCH(depth_test_kernel<scalar_t>, num_pairs, stream, uv, depth, image_index,
                      num_pairs, image_hw, image_start, num_images, buffer, window,
                      depth_tolerance, relative_tolerance, visible);
  return cudaSuccess;
}

template <typename scalar_t, typename id_t>
cudaError_t project_pool_flags(const ProjectionArgs<scalar_t>& args, const id_t* superpixels,
                               int64_t sp_height, int64_t sp_width, int64_t num_superpixels,
                               uint8_t* keep, int64_t* bad_ids, cudaStream_t stream) {
  const int64_t candidates = args.num_points * args.num_cams;
  LIDARCL_CUDA_LAUNCH(init_bad_ids_kernel, 2, stream, bad_ids);
  LIDARCL_CUDA_LAUNCH((pool_flags_kernel<scalar_t, id_t>), candidates, stream, args,
                      superpixels, sp_height, sp_width, num_superpixels, candidates, keep,
                      bad_ids);
  return cudaSuccess;
}

template <typename scalar_t, typename id_t>
cudaError_t project_pool_compact(const ProjectionArgs<scalar_t>& args, const id_t* superpixels,
                                 int64_t sp_height, int64_t sp_width, int64_t num_superpixels,
                                 const uint8_t* keep, const int64_t* position,
                                 int64_t* pair_point, int64_t* pair_region,
                                 cudaStream_t stream) {
  const int64_t candidates = args.num_points * args.num_cams;
  LIDARCL_CUDA_LAUNCH((pool_compact_kernel<scalar_t, id_t>), candidates, stream, args,
                      superpixels, sp_height, sp_width, num_superpixels, candidates, keep,
                      position, pair_point, pair_region);
  return cudaSuccess;
}

#define LIDARCL_INSTANTIATE_POOL(T, Id)                                                       \
  template cudaError_t project_pool_flags<T, Id>(const ProjectionArgs<T>&, const Id*, int64_t, \
                                                 int64_t, int64_t, uint8_t*, int64_t*,         \
                                                 cudaStream_t);                                \
  template cudaError_t project_pool_compact<T, Id>(const ProjectionArgs<T>&, const Id*,        \
                                                   int64_t, int64_t, int64_t, const uint8_t*,  \
                                                   const int64_t*, int64_t*, int64_t*,         \
                                                   cudaStream_t);

#define LIDARCL_INSTANTIATE(T)                                                                \
  template cudaError_t project_points_flags<T>(const ProjectionArgs<T>&, uint8_t*,            \
                                               cudaStream_t);                                 \
  template cudaError_t project_points_compact<T>(const ProjectionArgs<T>&, const uint8_t*,    \
                                                 const int64_t*, int64_t*, int64_t*, T*, T*,  \
                                                 int64_t*, cudaStream_t);                     \
  template cudaError_t visibility<T>(const T*, const T*, const int64_t*, int64_t,             \
                                     const int64_t*, const int64_t*, int64_t, T*, int64_t,    \
                                     int64_t, T, T, bool*, cudaStream_t);                     \
  LIDARCL_INSTANTIATE_POOL(T, uint8_t)                                                        \
  LIDARCL_INSTANTIATE_POOL(T, int16_t)                                                        \
  LIDARCL_INSTANTIATE_POOL(T, int32_t)                                                        \
  LIDARCL_INSTANTIATE_POOL(T, int64_t)

LIDARCL_INSTANTIATE(float)
LIDARCL_INSTANTIATE(double)
#undef LIDARCL_INSTANTIATE
#undef LIDARCL_INSTANTIATE_POOL

}  // namespace cuda
}  // namespace lidarcl
