// The floating dtypes by width, bf16 < f32 < f64: what mixed precision pairs (a bf16 product beside
// an f32 stream on the GPU, f32 beside f64 as the CPU's stand-in). Each returns the dtype itself
// where there is no wider / narrower one (f64 / bf16) and for i64.
#pragma once

#include "core/dtype.h"

namespace gradus {

constexpr DType next_wider_float(DType t) {
  return t == DType::bf16 ? DType::f32 : t == DType::f32 ? DType::f64 : t;
}

constexpr DType next_narrower_float(DType t) {
  return t == DType::f64 ? DType::f32 : t == DType::f32 ? DType::bf16 : t;
}

// `narrow` is the next narrower floating dtype of `wide` (not wide itself).
constexpr bool is_next_narrower(DType narrow, DType wide) {
  return narrow != wide && narrow == next_narrower_float(wide);
}

}  // namespace gradus
