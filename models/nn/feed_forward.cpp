#include "models/nn/feed_forward.h"

#include "autodiff/ops/elementwise.h"

namespace gradus {

SwiGLU::SwiGLU(int64_t hidden_size, int64_t intermediate_size, Generator& gen) {
  gate_proj_ = register_module(
      "gate_proj", std::make_shared<Linear>(hidden_size, intermediate_size, false, gen));
  up_proj_ = register_module("up_proj",
                             std::make_shared<Linear>(hidden_size, intermediate_size, false, gen));
  down_proj_ = register_module(
      "down_proj", std::make_shared<Linear>(intermediate_size, hidden_size, false, gen));
}

Tensor SwiGLU::forward(const Tensor& x) const {
  return down_proj_->forward(silu(gate_proj_->forward(x)) * up_proj_->forward(x));
}

GeluFFN::GeluFFN(int64_t hidden_size, int64_t intermediate_size, Generator& gen, bool bias,
                 bool tanh_approximation)
    : tanh_approximation_(tanh_approximation) {
  up_proj_ = register_module("up_proj",
                             std::make_shared<Linear>(hidden_size, intermediate_size, bias, gen));
  down_proj_ = register_module("down_proj",
                               std::make_shared<Linear>(intermediate_size, hidden_size, bias, gen));
}

Tensor GeluFFN::forward(const Tensor& x) const {
  return down_proj_->forward(gelu(up_proj_->forward(x), tanh_approximation_));
}

}  // namespace gradus
