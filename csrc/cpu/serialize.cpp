// CPU kernel: z-order and Hilbert keys of integer voxel coordinates with batch index.
// Contract in ../ops.h; reference in lidarcl/ops/serialize.py.
#include <ATen/Parallel.h>

#include "../ops.h"

namespace lidarcl {
namespace {

inline int64_t z_code(int64_t x, int64_t y, int64_t z, int64_t depth) {
  int64_t code = 0;
  for (int64_t i = 0; i < depth; ++i)
    code |= (((x >> i) & 1) << (3 * i + 2)) | (((y >> i) & 1) << (3 * i + 1)) |
            (((z >> i) & 1) << (3 * i));
  return code;
}

// J. Skilling, "Programming the Hilbert curve", AIP Conf. Proc. 707, 381 (2004):
// AxesToTranspose, then the transposed form read most significant bit first.
inline int64_t hilbert_code(int64_t x, int64_t y, int64_t z, int64_t depth) {
  int64_t X[3] = {x, y, z};
  const int64_t top = int64_t(1) << (depth - 1);
  for (int64_t q = top; q > 1; q >>= 1) {  // inverse undo
    const int64_t p = q - 1;
    for (int i = 0; i < 3; ++i) {
      if (X[i] & q) {
        X[0] ^= p;  // invert
      } else {      // exchange
        const int64_t t = (X[0] ^ X[i]) & p;
        X[0] ^= t;
        X[i] ^= t;
      }
    }
  }
  for (int i = 1; i < 3; ++i) X[i] ^= X[i - 1];  // Gray encode
  int64_t t = 0;
  for (int64_t q = top; q > 1; q >>= 1)
    if (X[2] & q) t ^= q - 1;
  for (int i = 0; i < 3; ++i) X[i] ^= t;
  int64_t code = 0;
  for (int64_t i = depth - 1; i >= 0; --i)
    for (int d = 0; d < 3; ++d) code = (code << 1) | ((X[d] >> i) & 1);
  return code;
}

}  // namespace

at::Tensor serialize_cpu(const at::Tensor& coords, const at::Tensor& batch_index, int64_t order,
                         int64_t depth) {
  const int64_t n = coords.size(0);
  at::Tensor keys = at::empty({n}, coords.options().dtype(at::kLong));
  const int64_t* c = coords.data_ptr<int64_t>();
  const int64_t* b = batch_index.data_ptr<int64_t>();
  int64_t* k = keys.data_ptr<int64_t>();
  const bool swap = order == 1 || order == 3;
  const bool hilbert = order >= 2;
  at::parallel_for(0, n, 4096, [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) {
      const int64_t x = swap ? c[3 * i + 1] : c[3 * i];
      const int64_t y = swap ? c[3 * i] : c[3 * i + 1];
      const int64_t z = c[3 * i + 2];
      const int64_t code = hilbert ? hilbert_code(x, y, z, depth) : z_code(x, y, z, depth);
      k[i] = (b[i] << (3 * depth)) | code;
    }
  });
  return keys;
}

}  // namespace lidarcl
