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

// ---- max/min with the position of the extreme (max/min ops record it for the backward) ----
// x: (outer, reduce, inner) -> out: (outer, inner) values, index: (outer, inner) in [0, reduce).
// The index is the first position achieving the extreme; a NaN wins (first NaN), as in PyTorch.
using ArgExtremeFn = void (*)(bool is_max, const void* x, void* out, int64_t* index, int64_t outer,
                              int64_t reduce, int64_t inner);
inline constexpr const char* kReduceArgExtreme = "reduce_arg_extreme";
// The reverse of the above: grad_x: (outer, reduce, inner) is zero except
// grad_x[o, index[o, i], i] = grad_out[o, i]; grad_out, index: (outer, inner).
using ArgExtremeBackwardFn = void (*)(const void* grad_out, const int64_t* index, void* grad_x,
                                      int64_t outer, int64_t reduce, int64_t inner);
inline constexpr const char* kReduceArgExtremeBackward = "reduce_arg_extreme_backward";

// ---- variance, two-pass (mean first, then squared deviations from it) ----
// x: (outer, reduce, inner) -> mean: (outer, inner), var: (outer, inner) = sum((x - mean)^2) /
// divisor. The op layer picks the divisor (reduce - correction, clamped at 0).
using VarFn = void (*)(const void* x, void* mean, void* var, int64_t outer, int64_t reduce,
                       int64_t inner, double divisor);
inline constexpr const char* kReduceVar = "reduce_var";

// ---- log(sum(exp(x))) with the maximum subtracted first ----
// x: (outer, reduce, inner) -> out: (outer, inner). A row whose maximum is +-inf uses 0 in place of
// it (so an all -inf row gives -inf and a row holding +inf gives +inf, as in PyTorch).
using LogSumExpFn = void (*)(const void* x, void* out, int64_t outer, int64_t reduce,
                             int64_t inner);
inline constexpr const char* kReduceLogSumExp = "reduce_logsumexp";

}  // namespace gradus::kernels
