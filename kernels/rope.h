// Rotary position embedding (RoPE), Hugging Face Llama convention ("rotate_half"): channel i is
// paired with channel i + D/2 (not with i + 1 as in the original interleaved formulation).
//
// For row t (position p = position_offset + t) and i < D/2, with a = p * theta^(-2i/D):
//   out[i]       = x[i]       cos(a) - x[i + D/2] sin(a)
//   out[i + D/2] = x[i + D/2] cos(a) + x[i]       sin(a)
// i.e. y = x * cos + rotate_half(x) * sin. The angles, cos and sin are computed in double and cast
// to the element type. With `inverse` the rotation is by -a: the transpose, which is the backward.
#pragma once

#include <cstdint>

namespace gradus::kernels {

// Where row (b, h, t) of a (B, H, T, D) operand starts: b * stride_b + h * stride_h + t * stride_t
// elements from its first, with the D channels contiguous. The heads of a (B, T, C) projection
// split into (B, H, T, D) are {T C, D, C}; a contiguous (batch, T, D) tensor is {T D, 0, D} with
// B = batch, H = 1.
struct RopeLayout {
  int64_t stride_b = 0, stride_h = 0, stride_t = 0;
};
// x, out: (B, H, T, D) through their layouts, D even; out may not alias x.
using RopeFn = void (*)(const void* x, RopeLayout x_layout, void* out, RopeLayout out_layout,
                        int64_t B, int64_t H, int64_t T, int64_t D, double theta,
                        int64_t position_offset, bool inverse);
inline constexpr const char* kRope = "rope";

}  // namespace gradus::kernels
