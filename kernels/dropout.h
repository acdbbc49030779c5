// Dropout from the Philox stream (core/philox.h). Element i (row-major) is kept when
//   philox_uniform_f32(seed, offset, i) >= p          (the uniform compared in double)
// and a kept element is scaled by 1 / (1 - p) (computed in double, cast to the element type). The
// f32 uniform stream is used for every dtype, so f32 and f64 drop the same elements, and the CUDA
// backend reproduces the CPU's mask for the same (seed, offset). Dropout is linear in x for a fixed
// mask, so the backward is this same kernel applied to the output gradient: the mask is recomputed
// from (seed, offset) instead of being stored.
#pragma once

#include <cstdint>

namespace gradus::kernels {

// x, out: (n,) contiguous; out may alias x. offset: the first Philox block (ceil(n/4) are used).
using DropoutFn = void (*)(const void* x, void* out, int64_t n, uint64_t seed, uint64_t offset,
                           double p);
inline constexpr const char* kDropout = "dropout";

}  // namespace gradus::kernels
