#include "models/nn/feed_forward.h"

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/swiglu.h"
#include "core/env_switch.h"

namespace gradus {

SwiGLU::SwiGLU(int64_t hidden_size, int64_t intermediate_size, Generator& gen) {
  gate_proj_ = register_module(
      "gate_proj", std::make_shared<Linear>(hidden_size, intermediate_size, false, gen));
  up_proj_ = register_module("up_proj",
                             std::make_shared<Linear>(hidden_size, intermediate_size, false, gen));
  down_proj_ = register_module(
      "down_proj", std::make_shared<Linear>(intermediate_size, hidden_size, false, gen));
}

namespace {
EnvSwitch& fused_swiglu_switch() {
  static EnvSwitch on("GRADUS_FUSED_SWIGLU");
  return on;
}
}  // namespace

void set_fused_swiglu(bool on) { fused_swiglu_switch().set(on); }
bool fused_swiglu_enabled() { return fused_swiglu_switch().on(); }

Tensor SwiGLU::forward(const Tensor& x) const {
  Tensor gate = gate_proj_->forward(x), up = up_proj_->forward(x);
  // The fused op keeps gate and up for its backward; the composite also keeps silu(gate).
  return down_proj_->forward(fused_swiglu_enabled() ? swiglu(gate, up) : silu(gate) * up);
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
