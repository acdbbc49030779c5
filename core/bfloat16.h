// bfloat16: the upper 16 bits of an IEEE f32 (8 exponent bits, 7 mantissa bits). The CUDA backend
// computes in it; the CPU only stores and converts it (so a bf16 result can be copied back and
// compared with an f32 reference), never computes with it.
#pragma once

#include <bit>
#include <cstdint>

namespace gradus {

struct bfloat16 {
  uint16_t bits = 0;

  bfloat16() = default;
  // Round to nearest, ties to even (as __float2bfloat16 and torch do); NaN stays a quiet NaN.
  explicit bfloat16(float value) {
    const uint32_t u = std::bit_cast<uint32_t>(value);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
      bits = static_cast<uint16_t>((u >> 16) | 0x40u);
      return;
    }
    const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    bits = static_cast<uint16_t>((u + rounding) >> 16);
  }
  explicit bfloat16(double value) : bfloat16(static_cast<float>(value)) {}
  explicit operator float() const { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }
  explicit operator double() const { return static_cast<double>(static_cast<float>(*this)); }
  static bfloat16 from_bits(uint16_t b) {
    bfloat16 x;
    x.bits = b;
    return x;
  }
};

}  // namespace gradus
