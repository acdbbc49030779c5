// Per-head layers of the graph-aware attention kinds: every head has its own weights, stored
// stacked along a leading head axis so that one batched matrix product runs all heads.
#pragma once

#include <cstdint>

#include "core/random.h"
#include "models/nn/module.h"

namespace gradus::graph {

// H independent torch.nn.Linear layers: y[.., h, :, :] = x[.., h, :, :] W[h]^T + b[h].
// weight: (H, out, in) (torch's (out, in) per head), bias: (H, 1, out) or none; drawn from gen as
// torch.nn.Linear draws them: U(-1/sqrt(in), 1/sqrt(in)), the weights of every head, then the
// biases.
class HeadLinear : public Module {
 public:
  HeadLinear(int64_t heads, int64_t in_features, int64_t out_features, bool bias, Generator& gen);
  // x: (..., H, T, in) -> (..., H, T, out)
  Tensor forward(const Tensor& x) const;
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 private:
  Tensor weight_, bias_;
};

// RMSNorm over the last axis with a gain per head: weight (H, 1, dim), starting at 1.
class HeadRMSNorm : public Module {
 public:
  HeadRMSNorm(int64_t heads, int64_t dim, double eps);
  // x: (..., H, T, dim) -> (..., H, T, dim)
  Tensor forward(const Tensor& x) const;
  const Tensor& weight() const { return weight_; }

 private:
  Tensor weight_;
  double eps_;
};

}  // namespace gradus::graph
