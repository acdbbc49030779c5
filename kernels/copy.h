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

}  // namespace gradus::kernels
