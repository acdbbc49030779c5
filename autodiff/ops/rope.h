// Rotary position embedding (Hugging Face Llama convention; see kernels/rope.h for the formula).
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace gradus {

// x: (..., T, D) -> (..., T, D), D even; T is the second-to-last axis (so both (B, H, T, D) and
// (B, T, D) work; for (B, T, H, D) transpose first). Row t is rotated for position
// position_offset + t with inv_freq[i] = theta^(-2i/D), i < D/2, and channel i paired with i + D/2.
// The backward is the inverse rotation.
Tensor rope(const Tensor& x, double theta = 10000.0, int64_t position_offset = 0);

}  // namespace gradus
