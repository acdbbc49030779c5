#include "core/random.h"

#include <cmath>

namespace gradus {

namespace {
template <class T> T uniform_at(uint64_t seed, uint64_t offset, uint64_t i) {
  if constexpr (std::is_same_v<T, float>) return philox_uniform_f32(seed, offset, i);
  else return philox_uniform_f64(seed, offset, i);
}
template <class T> constexpr uint64_t per_block() { return std::is_same_v<T, float> ? 4 : 2; }
}  // namespace

template <class T> T philox_normal(uint64_t seed, uint64_t offset, uint64_t i) {
  // Box-Muller on the pair (2k, 2k+1); u1 is shifted into (0, 1] so log never sees 0.
  uint64_t pair = i & ~uint64_t{1};
  T u1 = T(1) - uniform_at<T>(seed, offset, pair);
  T u2 = uniform_at<T>(seed, offset, pair + 1);
  T r = std::sqrt(T(-2) * std::log(u1));
  T theta = T(6.283185307179586476925) * u2;
  return (i & 1) ? r * std::sin(theta) : r * std::cos(theta);
}
template float philox_normal<float>(uint64_t, uint64_t, uint64_t);
template double philox_normal<double>(uint64_t, uint64_t, uint64_t);

Tensor rand_uniform(const Shape& shape, Generator& gen, DType dtype, double low, double high) {
  GRADUS_CHECK(dtype == DType::f32 || dtype == DType::f64, "rand_uniform",
               "dtype must be f32 or f64 on the CPU, found {}", dtype_name(dtype));
  Tensor t = Tensor::empty(shape, dtype);
  int64_t n = t.numel();
  auto fill = [&](auto zero) {
    using T = decltype(zero);
    uint64_t start = gen.reserve(static_cast<uint64_t>(n), per_block<T>());
    T* p = t.data<T>();
    T lo = static_cast<T>(low), hi = static_cast<T>(high), span = static_cast<T>(high - low);
    // lo + span * u can round up to hi (1 + (1 - 2^-24) is 2.0f): keep such draws below hi.
    const T below_hi = std::nextafter(hi, lo);
    const bool guard = lo < hi;
#pragma omp parallel for if (n > (1 << 15)) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      T v = lo + span * uniform_at<T>(gen.seed, start, i);
      p[i] = guard && !(v < hi) ? below_hi : v;
    }
  };
  if (dtype == DType::f32) fill(float{});
  else fill(double{});
  return t;
}

Tensor rand_normal(const Shape& shape, Generator& gen, DType dtype, double mean, double std) {
  GRADUS_CHECK(dtype == DType::f32 || dtype == DType::f64, "rand_normal",
               "dtype must be f32 or f64 on the CPU, found {}", dtype_name(dtype));
  Tensor t = Tensor::empty(shape, dtype);
  int64_t n = t.numel();
  auto fill = [&](auto zero) {
    using T = decltype(zero);
    // Normals use uniforms in pairs, so an odd count still reserves the pair's second half.
    uint64_t start = gen.reserve(static_cast<uint64_t>(n + (n & 1)), per_block<T>());
    T* p = t.data<T>();
    T m = static_cast<T>(mean), s = static_cast<T>(std);
#pragma omp parallel for if (n > (1 << 14)) schedule(static)
    for (int64_t i = 0; i < n; ++i) p[i] = m + s * philox_normal<T>(gen.seed, start, i);
  };
  if (dtype == DType::f32) fill(float{});
  else fill(double{});
  return t;
}

}  // namespace gradus
