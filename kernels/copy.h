// Strided copies between tensors of one shape (any strides, same device). Every op that moves data
// without arithmetic (contiguous, concat, split and stack backwards, slice backward, dtype
// conversion) runs through core's raw_copy_, which dispatches to the device's copy; this registry
// entry states, per device and dtype, that such a copy exists, so `gradus ops` reports those ops
// truthfully for each backend.
#pragma once

#include "core/tensor.h"

namespace gradus::kernels {

// dst, src: (...) same shape, any strides, same device.
using StridedCopyFn = void (*)(const Tensor& dst, const Tensor& src);
inline constexpr const char* kStridedCopy = "strided_copy";

// ---- multi-tensor dtype conversion ----
// One array of a list: src (n) in the call's source dtype, dst (n) in its destination dtype. The
// arrays must not overlap; n == 0 is allowed (then the pointers may be null).
struct CastArray {
  const void* src = nullptr;
  void* dst = nullptr;
  int64_t n = 0;
};
// arrays: (count); dst[i] = src[i] converted to `to` element by element, bit for bit as a copy
// between the dtypes converts (raw_to_dtype). Keyed by the source dtype; `to` is f32, f64 or bf16.
// One call casts a model's weights at once (autodiff/autocast.h, AutocastWeights): on CUDA
// ceil(count / 24) launches, the table passed by value (no copy, no host wait).
using CastMultiFn = void (*)(const CastArray* arrays, int64_t count, DType to);
inline constexpr const char* kCastMulti = "cast_multi";

}  // namespace gradus::kernels
