#include "models/nn/block.h"

#include "autodiff/ops/elementwise.h"

namespace gradus {

DecoderBlock::DecoderBlock(const ModelConfig& config, int64_t layer_index, Generator& gen) {
  config.validate();
  self_attn_ = register_module("self_attn", make_attention(config, layer_index, gen));
  mlp_ = register_module(
      "mlp", std::make_shared<SwiGLU>(config.hidden_size, config.intermediate_size, gen));
  input_layernorm_ = register_module(
      "input_layernorm", std::make_shared<RMSNorm>(config.hidden_size, config.rms_norm_eps));
  post_attention_layernorm_ =
      register_module("post_attention_layernorm",
                      std::make_shared<RMSNorm>(config.hidden_size, config.rms_norm_eps));
  mlp_input_map_ = make_channel_map(config, ChannelMapSite::mlp_input, layer_index);
  if (mlp_input_map_) {
    register_module("mlp_input_map", mlp_input_map_);
    mlp_input_map_->fold_into({mlp_->gate_proj()->weight(), mlp_->up_proj()->weight()});
  }
}

Tensor DecoderBlock::forward(const Tensor& x, int64_t position_offset) {
  const ResidualStream out = forward_stream({x, Tensor()}, position_offset);
  return out.base + out.pending;
}

ResidualStream DecoderBlock::forward_stream(const ResidualStream& in, int64_t position_offset) {
  // x = in.base + in.pending and its norm: one kernel (add_rms_norm) when an addition is pending.
  Tensor x, normed;
  if (in.pending.defined()) {
    const SumAndNorm sum = input_layernorm_->forward_residual(in.base, in.pending);
    x = sum.sum;
    normed = sum.norm;
  } else {
    x = in.base;
    normed = input_layernorm_->forward(x);
  }
  // h = x + attention, y = norm(h): one kernel as well (under mixed precision the attention's bf16
  // output is widened in it).
  auto [h, y] =
      post_attention_layernorm_->forward_residual(x, self_attn_->forward(normed, position_offset));
  if (mlp_input_map_) y = mlp_input_map_->forward(y);
  return {h, mlp_->forward(y)};  // out = h + mlp(y), added by the next norm
}

}  // namespace gradus
