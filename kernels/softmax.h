// Fused softmax and log-softmax along one axis.
//
// The op layer makes the input contiguous and views it as x: (outer, n, inner), the softmax axis in
// the middle; inner == 1 (the last axis) is the fast path. Each row is three passes: its maximum,
// the sum of exp(x - max), and the write. Stable for large inputs; a row that is entirely -inf
// gives NaN (as in PyTorch), and -inf entries of other rows give 0 (log-softmax: -inf). Only the
// output y is needed by the backward.
#pragma once

#include <cstdint>

namespace gradus::kernels {

// x, y: (outer, n, inner), contiguous.
using SoftmaxFn = void (*)(const void* x, void* y, int64_t outer, int64_t n, int64_t inner);
// y, grad_y, grad_x: (outer, n, inner), contiguous.
//   softmax:     grad_x = y * (grad_y - sum_n(grad_y * y))
//   log_softmax: grad_x = grad_y - exp(y) * sum_n(grad_y)
using SoftmaxBackwardFn = void (*)(const void* y, const void* grad_y, void* grad_x, int64_t outer,
                                   int64_t n, int64_t inner);

inline constexpr const char* kSoftmaxForward = "softmax_forward";
inline constexpr const char* kSoftmaxBackward = "softmax_backward";
inline constexpr const char* kLogSoftmaxForward = "log_softmax_forward";
inline constexpr const char* kLogSoftmaxBackward = "log_softmax_backward";

}  // namespace gradus::kernels
