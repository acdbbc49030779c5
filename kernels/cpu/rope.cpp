// CPU RoPE kernel (see kernels/rope.h for the formula and the pairing of channels).
#include "kernels/rope.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/registry.h"

namespace gradus::kernels {
namespace cpu {
namespace {

// x, out: (B, H, T, D) through their layouts (see kernels/rope.h).
template <class T>
void rope(const void* xv, RopeLayout xl, void* outv, RopeLayout ol, int64_t B, int64_t H,
          int64_t T_len, int64_t D, double theta, int64_t position_offset, bool inverse) {
  const int64_t half = D / 2;
  // cos / sin table (T, D/2): computed in double, then rounded once to T.
  std::vector<T> cos_t(static_cast<size_t>(T_len * half)), sin_t(cos_t.size());
  for (int64_t i = 0; i < half; ++i) {
    const double inv_freq = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(D));
    for (int64_t t = 0; t < T_len; ++t) {
      const double a = static_cast<double>(position_offset + t) * inv_freq;
      cos_t[t * half + i] = static_cast<T>(std::cos(a));
      sin_t[t * half + i] = static_cast<T>(inverse ? -std::sin(a) : std::sin(a));
    }
  }
  const T* x = static_cast<const T*>(xv);
  T* out = static_cast<T*>(outv);
  const int64_t rows = B * H * T_len;
#pragma omp parallel for if (rows * D > (1 << 15)) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = r % T_len, bh = r / T_len, b = bh / H, h = bh % H;
    const T* c = cos_t.data() + t * half;
    const T* s = sin_t.data() + t * half;
    const T* x1 = x + b * xl.stride_b + h * xl.stride_h + t * xl.stride_t;
    const T* x2 = x1 + half;
    T* y1 = out + b * ol.stride_b + h * ol.stride_h + t * ol.stride_t;
    T* y2 = y1 + half;
#pragma omp simd
    for (int64_t i = 0; i < half; ++i) {
      y1[i] = x1[i] * c[i] - x2[i] * s[i];
      y2[i] = x2[i] * c[i] + x1[i] * s[i];
    }
  }
}

}  // namespace

GRADUS_REGISTER_CPU_KERNEL(kRope, rope);

}  // namespace cpu
}  // namespace gradus::kernels
