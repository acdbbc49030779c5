// log1p written so that GCC vectorises it inside the CPU kernels' loops (the companion of vexp in
// kernels/cpu/vec_math.h, with the same reasons: std::log1p is a scalar libm call per element).
//
// vlog1p<float>: u = 1 + y is split into 2^e m with m in [sqrt(1/2), sqrt(2)) through its exponent
// bits, log(m) is the Cephes logf polynomial in m - 1 and e ln2 is added in two parts; the rounding
// of 1 + y is then undone by Goldberg's correction log1p(y) = log(u) y / (u - 1) (exact where u
// rounds to 1: log1p(y) = y there). Max error 1.5 ulp over y > -1 (checked against the f64
// log1p in tests/ops/vec_log1p_test.cpp); -1 gives -inf, below -1 NaN, +inf +inf, NaN stays NaN.
// Every branch is a select, so the loop vectorises. vlog1p<double> is std::log1p (f64 is the
// reference dtype and keeps libm's result).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace gradus::kernels::cpu {

inline float vlog1p_f32(float y) {
  constexpr float kSqrtHalf = 0.707106781186547524f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  const float u = 1.0f + y;
  uint32_t bits;
  std::memcpy(&bits, &u, sizeof(bits));
  // u = 2^e m, m in [1, 2); then m in [sqrt(1/2), sqrt(2)) so that x = m - 1 stays small. u is
  // normal for every y > -1 (the spacing of y near -1 is 2^-24).
  float e = static_cast<float>(static_cast<int32_t>(bits >> 23) - 127);
  const uint32_t mbits = (bits & 0x007fffffu) | 0x3f800000u;
  float m;
  std::memcpy(&m, &mbits, sizeof(m));
  const bool high = m > 2.0f * kSqrtHalf;
  m = high ? 0.5f * m : m;
  e = high ? e + 1.0f : e;
  const float x = m - 1.0f;
  const float z = x * x;
  float p = 7.0376836292e-2f;
  p = p * x - 1.1514610310e-1f;
  p = p * x + 1.1676998740e-1f;
  p = p * x - 1.2420140846e-1f;
  p = p * x + 1.4249322787e-1f;
  p = p * x - 1.6668057665e-1f;
  p = p * x + 2.0000714765e-1f;
  p = p * x - 2.4999993993e-1f;
  p = p * x + 3.3333331174e-1f;
  float r = p * x * z + e * kLn2Lo - 0.5f * z;
  r = x + r + e * kLn2Hi;  // log(u)
  const float d = u - 1.0f;
  r = d == 0.0f ? y : r * (y / d);
  r = u == 0.0f ? -HUGE_VALF : r;
  r = u < 0.0f ? NAN : r;
  r = y == HUGE_VALF ? HUGE_VALF : r;
  return y != y ? y : r;
}

template <class T>
inline T vlog1p(T y) {
  return std::log1p(y);
}
template <>
inline float vlog1p<float>(float y) {
  return vlog1p_f32(y);
}

}  // namespace gradus::kernels::cpu
