// Linear: y = x W^T + b with W stored (out, in), as torch.nn.Linear stores it (so checkpoints map
// one to one onto PyTorch and Hugging Face weights).
#pragma once

#include <cstdint>

#include "models/nn/module.h"

namespace gradus {

class Linear : public Module {
 public:
  // Fresh parameters drawn from gen as torch.nn.Linear's reset_parameters does: weight and bias
  // uniform on [-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform with a = sqrt(5) reduces to this bound),
  // weight first, then bias. f32; convert with Module::to.
  Linear(int64_t in_features, int64_t out_features, bool bias, Generator& gen);
  // Wraps existing tensors (registered as they are: a tied output head passes the embedding table).
  // weight: (out, in); bias: (out) or undefined.
  explicit Linear(Tensor weight, Tensor bias = Tensor());

  // x: (..., in) -> (..., out)
  Tensor forward(const Tensor& x) const;

  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // undefined without bias
  int64_t in_features() const { return weight_.size(1); }
  int64_t out_features() const { return weight_.size(0); }

 private:
  Tensor weight_;
  Tensor bias_;
};

}  // namespace gradus
