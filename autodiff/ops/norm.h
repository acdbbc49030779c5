// Fused normalisations over the last axis (one forward kernel and one backward kernel each).
#pragma once

#include "core/tensor.h"

namespace gradus {

// RMSNorm: y = x * rsqrt(mean(x^2) + eps) * weight, the mean taken over the last axis.
// x: (..., C); weight: (C) or an undefined Tensor (no scale) -> (..., C).
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-5);

// LayerNorm (as torch.nn.functional.layer_norm over the last axis, population variance):
// y = (x - mean) * rsqrt(var + eps) * weight + bias.
// x: (..., C); weight, bias: (C) each, or an undefined Tensor (no scale / no shift) -> (..., C).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);

}  // namespace gradus
