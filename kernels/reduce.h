// Reduction kernels along one group of adjacent axes.
//
// The op layer permutes the reduced axes together and makes the input contiguous, so every kernel
// sees x: (outer, reduce, inner) and writes out: (outer, inner). Summation order is fixed by the
// shape alone (never by the thread count), so results are bit-for-bit reproducible.
#pragma once

#include <cstdint>

namespace gradus::kernels {

enum class ReduceOp : int { sum, mean, max, min };

// x: (outer, reduce, inner), out: (outer, inner); both contiguous.
using ReduceFn = void (*)(ReduceOp op, const void* x, void* out, int64_t outer, int64_t reduce,
                          int64_t inner);
inline constexpr const char* kReduce = "reduce";

}  // namespace gradus::kernels
