// Differentiable softmax and log-softmax along one axis, each one fused kernel (see
// kernels/softmax.h). Stable for large inputs; a row that is entirely -inf gives NaN and -inf
// entries of other rows give 0 (log_softmax: -inf), as in PyTorch.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace gradus {

// x: (...) -> (...) same shape; exp(x) normalised to sum to 1 along `axis`.
Tensor softmax(const Tensor& x, int64_t axis = -1);
// x: (...) -> (...) same shape; x - logsumexp(x) along `axis`.
Tensor log_softmax(const Tensor& x, int64_t axis = -1);

}  // namespace gradus
