// DecoderBlock: one pre-norm transformer layer, as Hugging Face LlamaDecoderLayer:
//   h   = x + self_attn(input_layernorm(x))
//   out = h + mlp(post_attention_layernorm(h))
// (with a kind's channel map, attention.h: out = h + mlp(map(post_attention_layernorm(h)))).
// The attention is whatever kind config.attention_kind names in the registry (attention.h); the
// block does not know the kinds.
#pragma once

#include <cstdint>
#include <memory>

#include "models/nn/attention.h"
#include "models/nn/config.h"
#include "models/nn/feed_forward.h"
#include "models/nn/module.h"
#include "models/nn/norm.h"

namespace gradus {

// The residual stream between blocks with its last addition still pending: the stream is
// base + pending (base alone when pending is undefined). Handing the sum on unmade lets the next
// norm add it in its own kernel (add_rms_norm): one pass where an add and a norm ran.
struct ResidualStream {
  Tensor base, pending;
};

class DecoderBlock : public Module {
 public:
  // Submodules, registered (and drawn from gen) in Hugging Face's order: self_attn, mlp (SwiGLU),
  // input_layernorm, post_attention_layernorm (RMSNorm with config.rms_norm_eps).
  DecoderBlock(const ModelConfig& config, int64_t layer_index, Generator& gen);

  // x: (B, T, C) -> (B, T, C); row t is at position position_offset + t.
  Tensor forward(const Tensor& x, int64_t position_offset = 0);
  // The same layer on a stream whose last addition is pending: the input norm adds it in its
  // kernel, and this block's feed-forward output is left pending in turn (out = base + pending).
  // in.base, in.pending: (B, T, C) (pending may be undefined) -> the same.
  ResidualStream forward_stream(const ResidualStream& in, int64_t position_offset = 0);

  const std::shared_ptr<AttentionKind>& self_attn() const { return self_attn_; }
  const std::shared_ptr<SwiGLU>& mlp() const { return mlp_; }
  const std::shared_ptr<RMSNorm>& input_layernorm() const { return input_layernorm_; }
  const std::shared_ptr<RMSNorm>& post_attention_layernorm() const {
    return post_attention_layernorm_;
  }
  // The kind's map before the feed-forward (attention.h, ChannelMap), registered as
  // "mlp_input_map" after the norms; null for kinds without one.
  const std::shared_ptr<ChannelMap>& mlp_input_map() const { return mlp_input_map_; }

 private:
  std::shared_ptr<AttentionKind> self_attn_;
  std::shared_ptr<SwiGLU> mlp_;
  std::shared_ptr<RMSNorm> input_layernorm_, post_attention_layernorm_;
  std::shared_ptr<ChannelMap> mlp_input_map_;
};

}  // namespace gradus
