// SwiGLU's gate as one op: silu(gate) * up (kernels/swiglu.h). The composite silu-then-mul keeps
// silu(gate) for the product's backward; this keeps only gate and up (one (rows, F) tensor less
// per MLP) and runs one pass each way.
#pragma once

#include "core/tensor.h"

namespace gradus {

// gate, up: (...) of one shape, one float dtype and device -> (...) = gate * sigmoid(gate) * up.
// Differentiable in both. Under autocast, operands of different dtypes promote to the wider.
Tensor swiglu(const Tensor& gate, const Tensor& up);

}  // namespace gradus
