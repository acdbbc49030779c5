// Mixed-precision kernels read or write one operand in a narrower dtype than the kernel's own T:
// a bf16 delta or gradient beside f32 (the CPU converts bf16, it does not compute in it), f32
// beside f64. dispatch_same_or_narrower calls fn(D{}) for the storage type D of `dtype`: T itself
// or that narrower one; anything else is refused, naming the kernel.
#pragma once

#include <type_traits>

#include "core/bfloat16.h"
#include "core/dtype.h"
#include "core/error.h"

namespace gradus::kernels::cpu {

template <class T, class Fn>
void dispatch_same_or_narrower(DType dtype, const char* kernel, Fn&& fn) {
  if (dtype == dtype_of<T>()) return fn(T{});
  if constexpr (std::is_same_v<T, float>)
    if (dtype == DType::bf16) return fn(bfloat16{});
  if constexpr (std::is_same_v<T, double>)
    if (dtype == DType::f32) return fn(float{});
  GRADUS_FAIL(kernel, "an operand of dtype {} cannot go with {}: expected {} or {}",
              dtype_name(dtype), dtype_name(dtype_of<T>()), dtype_name(dtype_of<T>()),
              std::is_same_v<T, double> ? "f32" : "bf16");
}

}  // namespace gradus::kernels::cpu
