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

// x, out: (batch, T, D), contiguous, D even; out may not alias x.
using RopeFn = void (*)(const void* x, void* out, int64_t batch, int64_t T, int64_t D, double theta,
                        int64_t position_offset, bool inverse);
inline constexpr const char* kRope = "rope";

}  // namespace gradus::kernels
