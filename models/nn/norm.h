// Normalisation layers over the last axis (the fused ops of autodiff/ops/norm.h with a learnt
// scale).
#pragma once

#include <cstdint>

#include "autodiff/ops/norm.h"
#include "models/nn/module.h"

namespace gradus {

// y = x * rsqrt(mean(x^2) + eps) * weight; weight: (dim) starts at 1 (the identity scale).
class RMSNorm : public Module {
 public:
  explicit RMSNorm(int64_t dim, double eps = 1e-5);
  // x: (..., dim) -> (..., dim)
  Tensor forward(const Tensor& x) const;
  // The pre-norm residual step: sum = x + delta and its norm, in one kernel (add_rms_norm).
  // x, delta: (..., dim) -> {sum, norm}: (..., dim) each.
  SumAndNorm forward_residual(const Tensor& x, const Tensor& delta) const;
  const Tensor& weight() const { return weight_; }
  double eps() const { return eps_; }

 private:
  Tensor weight_;
  double eps_;
};

// y = (x - mean) * rsqrt(var + eps) * weight + bias (population variance), as torch.nn.LayerNorm;
// weight starts at 1 and bias at 0. With bias = false there is no shift parameter.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool bias = true);
  // x: (..., dim) -> (..., dim)
  Tensor forward(const Tensor& x) const;
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }
  double eps() const { return eps_; }

 private:
  Tensor weight_;
  Tensor bias_;
  double eps_;
};

}  // namespace gradus
