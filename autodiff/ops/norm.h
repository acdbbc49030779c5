// Fused normalisations over the last axis (one forward kernel and one backward kernel each).
#pragma once

#include "core/tensor.h"

namespace gradus {

// RMSNorm: y = x * rsqrt(mean(x^2) + eps) * weight, the mean taken over the last axis.
// x: (..., C); weight: (C) or an undefined Tensor (no scale) -> (..., C).
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-5);

// The pre-norm residual step: sum = x + delta, y = rms_norm(sum, weight, eps), in one kernel each
// way (what `h = x + attn; y = norm(h)` costs three kernels for, and under mixed precision three
// more: delta's widening cast, the gradients of h summed, the cast back).
// x, delta: (..., C), one shape; weight: (C) or undefined -> {sum, y}: (..., C) each. sum has x's
// dtype; delta has it too or, under autocast, a narrower one (the bf16 output of a product added
// to the f32 residual stream), read and widened in the kernel. Equal, value for value, to the
// composite, which runs where the fused kernel does not apply (x narrower than delta, x not in
// autocast's wide dtype, a device without the kernel) or when GRADUS_FUSED_NORM=0
// (set_fused_norm(false)).
struct SumAndNorm {
  Tensor sum, norm;
};
SumAndNorm add_rms_norm(const Tensor& x, const Tensor& delta, const Tensor& weight,
                        double eps = 1e-5);
void set_fused_norm(bool on);
bool fused_norm_enabled();

// LayerNorm (as torch.nn.functional.layer_norm over the last axis, population variance):
// y = (x - mean) * rsqrt(var + eps) * weight + bias.
// x: (..., C); weight, bias: (C) each, or an undefined Tensor (no scale / no shift) -> (..., C).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);

}  // namespace gradus
