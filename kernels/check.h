// Numerical checks used by the NaN/Inf debug mode.
#pragma once

#include <cstdint>

namespace gradus::kernels {

// x: (n,) contiguous. Returns how many elements are NaN or +-Inf.
using CountNonfiniteFn = int64_t (*)(const void* x, int64_t n);

}  // namespace gradus::kernels
