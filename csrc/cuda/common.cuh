// Device helpers shared by the CUDA kernels of lidarcl._C (csrc/cuda/*.cu).
// CUDA headers only (no torch): every .cu file compiles alone with nvcc.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace lidarcl {
namespace cuda {
namespace detail {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 20;  // grid-stride loops cover the rest

inline int blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

// int64 grid-stride loop: sizes such as M * C or I * H * W may exceed 2^31.
#define LIDARCL_CUDA_LOOP(i, n)                                                        \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// Launches kernel<<<blocks_for(n), kThreads, 0, stream>>>(args...) unless n == 0 and
// returns the launch error.
#define LIDARCL_CUDA_LAUNCH(kernel, n, stream, ...)                                      \
  do {                                                                                 \
    const int64_t lidarcl_n_ = (n);                                                    \
    if (lidarcl_n_ > 0) {                                                              \
      kernel<<<::lidarcl::cuda::detail::blocks_for(lidarcl_n_),                        \
               ::lidarcl::cuda::detail::kThreads, 0, (stream)>>>(__VA_ARGS__);         \
      const cudaError_t lidarcl_err_ = cudaGetLastError();                             \
      if (lidarcl_err_ != cudaSuccess) return lidarcl_err_;                            \
    }                                                                                  \
  } while (0)

// ------------------------------------------------------------ exact arithmetic
// Every product, sum and quotient rounded separately (round to nearest): the intrinsics are
// never contracted into fused multiply-adds, whatever -fmad says.
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double div_rn(double a, double b) { return __ddiv_rn(a, b); }
__device__ __forceinline__ float floor_(float a) { return floorf(a); }
__device__ __forceinline__ double floor_(double a) { return ::floor(a); }
__device__ __forceinline__ bool isnan_(float a) { return a != a; }
__device__ __forceinline__ bool isnan_(double a) { return a != a; }

// Pixel index clamp(floor(value), 0, size - 1) as the CPU code computes it
// (static_cast<int64_t>(std::floor(value)) then clamp): a floor outside the int64 range, or
// NaN, converts to INT64_MIN on x86 and therefore clamps to 0. `size` must be >= 1.
template <typename T>
__device__ __forceinline__ int64_t pixel_index(T value, int64_t size) {
  const T f = floor_(value);
  const T limit = static_cast<T>(9223372036854775808.0);  // 2^63, exact in float and double
  if (!(f >= -limit && f < limit)) return 0;
  const int64_t i = static_cast<int64_t>(f);
  return i < 0 ? 0 : (i > size - 1 ? size - 1 : i);
}

// ------------------------------------------------------------ ordered integer keys
// A float maps to an unsigned integer of the same width whose unsigned order is the float
// order (-inf < ... < -0 < +0 < ... < +inf), so that atomicMin/atomicMax on the keys give
// the float min/max. NaN gets a canonical key chosen by the caller: the smallest key for a
// min that propagates NaN, the largest for a max that propagates NaN (torch's amin/amax).
template <typename T>
struct OrderedKey;

template <>
struct OrderedKey<float> {
  using type = unsigned int;
  static constexpr type kMin = 0u;
  static constexpr type kMax = 0xFFFFFFFFu;
  static constexpr type kPlusInf = 0xFF800000u;   // encode(+inf)
  static constexpr type kMinusInf = 0x007FFFFFu;  // encode(-inf)
  __device__ __forceinline__ static type encode(float f) {
    const type u = static_cast<type>(__float_as_uint(f));
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  }
  __device__ __forceinline__ static float decode(type k) {
    const type u = (k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k;
    return __uint_as_float(u);
  }
};

template <>
struct OrderedKey<double> {
  using type = unsigned long long;
  static constexpr type kMin = 0ull;
  static constexpr type kMax = 0xFFFFFFFFFFFFFFFFull;
  static constexpr type kPlusInf = 0xFFF0000000000000ull;   // encode(+inf)
  static constexpr type kMinusInf = 0x000FFFFFFFFFFFFFull;  // encode(-inf)
  __device__ __forceinline__ static type encode(double f) {
    const type u = static_cast<type>(__double_as_longlong(f));
    return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
  }
  __device__ __forceinline__ static double decode(type k) {
    const type u = (k & 0x8000000000000000ull) ? (k & 0x7FFFFFFFFFFFFFFFull) : ~k;
    return __longlong_as_double(static_cast<long long>(u));
  }
};

// Key for a min reduction in which NaN wins (propagates), as torch's amin / minimum.
template <typename T>
__device__ __forceinline__ typename OrderedKey<T>::type min_key(T f) {
  return isnan_(f) ? OrderedKey<T>::kMin : OrderedKey<T>::encode(f);
}
// Key for a max reduction in which NaN wins (propagates), as torch's amax / maximum.
template <typename T>
__device__ __forceinline__ typename OrderedKey<T>::type max_key(T f) {
  return isnan_(f) ? OrderedKey<T>::kMax : OrderedKey<T>::encode(f);
}

// ------------------------------------------------------------ atomics
__device__ __forceinline__ float atomic_add(float* address, float value) {
  return atomicAdd(address, value);
}
__device__ __forceinline__ double atomic_add(double* address, double value) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 600
  unsigned long long* word = reinterpret_cast<unsigned long long*>(address);
  unsigned long long old = *word, assumed;
  do {
    assumed = old;
    old = atomicCAS(word, assumed,
                    static_cast<unsigned long long>(__double_as_longlong(
                        __longlong_as_double(static_cast<long long>(assumed)) + value)));
  } while (assumed != old);
  return __longlong_as_double(static_cast<long long>(old));
#else
  return atomicAdd(address, value);
#endif
}
// int64 counters (two's complement: an unsigned add is the signed add).
__device__ __forceinline__ void atomic_increment(int64_t* address) {
  atomicAdd(reinterpret_cast<unsigned long long*>(address), 1ull);
}
// Minimum of non-negative int64 values.
__device__ __forceinline__ void atomic_min_nonneg(int64_t* address, int64_t value) {
  atomicMin(reinterpret_cast<unsigned long long*>(address),
            static_cast<unsigned long long>(value));
}
// Signed int64 maximum / minimum (order-independent: integer atomics are deterministic).
__device__ __forceinline__ void atomic_max_i64(int64_t* address, int64_t value) {
  atomicMax(reinterpret_cast<long long*>(address), static_cast<long long>(value));
}
__device__ __forceinline__ void atomic_min_i64(int64_t* address, int64_t value) {
  atomicMin(reinterpret_cast<long long*>(address), static_cast<long long>(value));
}

// ------------------------------------------------------------ shared kernels
template <typename K>
__global__ void fill_kernel(K* __restrict__ out, int64_t n, K value) {
  LIDARCL_CUDA_LOOP(i, n) { out[i] = value; }
}

// dst[dst_rows[j], c] += src[src_rows ? src_rows[j] : j, c] for the rows j with
// dst_rows[j] >= 0 (dst (R, C), src (*, C), rows j in [0, n)). Float atomics: the order of
// the additions, and so the last bits of the sums, depend on the schedule. Only the opt-in
// atomic pooling path uses it (launchers.h: scatter_pool).
template <typename T>
__global__ void scatter_add_rows_kernel(const T* __restrict__ src,
                                        const int64_t* __restrict__ src_rows,
                                        const int64_t* __restrict__ dst_rows, int64_t n,
                                        int64_t channels, int64_t num_dst_rows,
                                        T* __restrict__ dst) {
  LIDARCL_CUDA_LOOP(t, n * channels) {
    const int64_t j = t / channels;
    const int64_t c = t - j * channels;
    const int64_t r = dst_rows[j];
    if (r < 0 || r >= num_dst_rows) continue;
    const int64_t s = src_rows != nullptr ? src_rows[j] : j;
    atomic_add(dst + r * channels + c, src[s * channels + c]);
  }
}

// pooled[r, c] /= max(counts[r], 1) (a region-mean; empty regions stay 0).
template <typename T>
__global__ void mean_divide_kernel(T* __restrict__ pooled, const int64_t* __restrict__ counts,
                                   int64_t regions, int64_t channels) {
  LIDARCL_CUDA_LOOP(t, regions * channels) {
    const int64_t r = t / channels;
    const int64_t count = counts[r];
    pooled[t] = div_rn(pooled[t], static_cast<T>(count > 1 ? count : int64_t(1)));
  }
}

}  // namespace detail
}  // namespace cuda
}  // namespace lidarcl
