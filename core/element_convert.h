// Element conversion between the storage types of the dtypes (float, double, int64_t, bfloat16):
// what every CPU copy between dtypes does per element. bf16 converts through f32 (exact both ways
// for the values a bf16 can hold; narrowing rounds to nearest, ties to even).
#pragma once

#include <type_traits>

#include "core/bfloat16.h"

namespace gradus {

template <class D, class S>
D convert_element(S s) {
  if constexpr (std::is_same_v<D, S>) {
    return s;
  } else if constexpr (std::is_same_v<S, bfloat16>) {
    return static_cast<D>(static_cast<float>(s));
  } else if constexpr (std::is_same_v<D, bfloat16>) {
    return bfloat16(static_cast<float>(s));
  } else {
    return static_cast<D>(s);
  }
}

}  // namespace gradus
