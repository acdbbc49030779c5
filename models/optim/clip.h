// Gradient-norm clipping over a set of parameters, as torch.nn.utils.clip_grad_norm_.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace gradus {

// The norm of all gradients taken together, as if concatenated into one vector:
// (sum over params and elements of |g|^norm_type)^(1 / norm_type), or max |g| for norm_type = +inf.
// Accumulated in double in an order fixed by the shapes (deterministic for any thread count).
// Parameters without a gradient are skipped; with no gradients at all the norm is 0.
// norm_type must be > 0 (or +inf).
double grad_norm(const std::vector<Tensor>& params, double norm_type = 2.0);

// Computes total = grad_norm(params, norm_type); when max_norm / (total + 1e-6) < 1, multiplies
// every gradient in place by that factor. Returns total (the norm before clipping). A non-finite
// total (a NaN or Inf in some gradient) is returned and the gradients are left untouched, so that
// the caller can detect it and skip the step (PyTorch would scale the gradients by NaN or 0
// instead). max_norm must be >= 0.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0);

}  // namespace gradus
