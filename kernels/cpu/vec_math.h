// exp written so that GCC vectorises it inside the CPU kernels' loops.
//
// std::exp is a scalar libm call in every loop (glibc's vector versions need -ffast-math, which
// Gradus does not use), so exp-heavy kernels (SiLU, sigmoid, softmax, cross-entropy) ran at a fifth
// of memory bandwidth. vexp<float> is the Cephes range reduction x = n ln2 + r, |r| <= ln2/2, with a
// degree-6 polynomial for e^r and 2^n built in the exponent bits: max error about 1 ulp (checked
// against the f64 exp in tests/ops/vec_math_test.cpp), denormal results included. Inputs are not
// clamped first (a clamp stops GCC 12 from vectorising the loop): out-of-range inputs compute
// garbage in the lanes that the final selects then replace: below -104 gives 0, above 88.72 +inf,
// NaN stays NaN. vexp<double> is std::exp: f64 is the reference dtype and keeps libm's result.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace gradus::kernels::cpu {

inline float vexp_f32(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  constexpr float kLo = -103.9720840f, kHi = 88.7228317f;  // exp underflows to 0 / overflows
  const float t = x * kLog2e + 0.5f;
  float n = static_cast<float>(static_cast<int32_t>(t));
  n = n > t ? n - 1.0f : n;                     // floor(t)
  const float r = x - n * kLn2Hi - n * kLn2Lo;  // r in [-ln2/2, ln2/2]
  const float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r2 + r + 1.0f;
  // 2^n as 2^(n/2) * 2^(n - n/2): both factors stay normal for n in [-150, 128], so results near
  // the overflow bound and in the denormal range come out right.
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t half = ni >> 1;
  const uint32_t b1 = static_cast<uint32_t>(half + 127) << 23;
  const uint32_t b2 = static_cast<uint32_t>(ni - half + 127) << 23;
  float s1, s2;
  std::memcpy(&s1, &b1, sizeof(s1));
  std::memcpy(&s2, &b2, sizeof(s2));
  float y = p * s1 * s2;
  y = x < kLo ? 0.0f : y;
  y = x > kHi ? HUGE_VALF : y;
  return x != x ? x : y;
}

template <class T> inline T vexp(T x) { return std::exp(x); }
template <> inline float vexp<float>(float x) { return vexp_f32(x); }

}  // namespace gradus::kernels::cpu
