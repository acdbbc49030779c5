#include "models/nn/lm.h"

#include "autodiff/ops/cross_entropy.h"
#include "autodiff/ops/linear_cross_entropy.h"
#include "core/env_switch.h"
#include "core/error.h"

namespace gradus {

DecoderModel::DecoderModel(const ModelConfig& config, Generator& gen) : config_(config) {
  config.validate();
  embed_tokens_ = register_module(
      "embed_tokens", std::make_shared<Embedding>(config.vocab_size, config.hidden_size, gen));
  layers_ = register_module("layers", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i)
    layers_->push_back(std::make_shared<DecoderBlock>(config, i, gen));
  norm_ =
      register_module("norm", std::make_shared<RMSNorm>(config.hidden_size, config.rms_norm_eps));
  embed_map_ = make_channel_map(config, ChannelMapSite::embedding, -1);
  if (embed_map_) {
    register_module("embed_map", embed_map_);
    embed_map_->fold_into({embed_tokens_->weight()});
  }
}

Tensor DecoderModel::forward(const Tensor& ids, int64_t position_offset) {
  GRADUS_CHECK(ids.defined() && ids.dim() == 2 && ids.dtype() == DType::i64, "DecoderModel",
               "expected ids of shape (B, T) and dtype i64 but found {}",
               ids.defined() ? ids.describe() : std::string("undefined"));
  GRADUS_CHECK(
      position_offset >= 0 && position_offset + ids.size(1) <= config_.max_position_embeddings,
      "DecoderModel",
      "positions {}..{} exceed max_position_embeddings ({}): ids {} at position_offset {}",
      position_offset, position_offset + ids.size(1) - 1, config_.max_position_embeddings,
      ids.describe(), position_offset);
  Tensor h = embed_tokens_->forward(ids);
  if (embed_map_) h = embed_map_->forward(h);
  // Each block leaves its feed-forward output pending; the next norm (the final one last) adds it
  // in its own kernel.
  ResidualStream stream{h, Tensor()};
  for (size_t i = 0; i < layers_->size(); ++i)
    stream = layer(i)->forward_stream(stream, position_offset);
  if (!stream.pending.defined()) return norm_->forward(stream.base);
  return norm_->forward_residual(stream.base, stream.pending).norm;
}

DecoderLM::DecoderLM(const ModelConfig& config, Generator& gen) : config_(config) {
  config.validate();
  model_ = register_module("model", std::make_shared<DecoderModel>(config, gen));
  lm_head_ = register_module(
      "lm_head", config.tie_word_embeddings
                     ? std::make_shared<Linear>(model_->embed_tokens()->weight())
                     : std::make_shared<Linear>(config.hidden_size, config.vocab_size, false, gen));
  set_rng(std::make_shared<Generator>(gen.seed, uint64_t{1} << 62));
}

Tensor DecoderLM::forward(const Tensor& ids, int64_t position_offset) {
  return lm_head_->forward(model_->forward(ids, position_offset));
}

Tensor DecoderLM::loss(const Tensor& ids, const Tensor& targets, int64_t position_offset) {
  GRADUS_CHECK(targets.defined() && targets.shape() == ids.shape() && targets.dtype() == DType::i64,
               "DecoderLM::loss", "targets must be i64 of the shape of ids {}, found {}",
               ids.describe(), targets.defined() ? targets.describe() : std::string("undefined"));
  if (fused_loss_enabled() && !lm_head_->bias().defined())
    return linear_cross_entropy(model_->forward(ids, position_offset), lm_head_->weight(), targets);
  return cross_entropy(forward(ids, position_offset), targets);
}

namespace {
EnvSwitch& fused_loss_switch() {
  static EnvSwitch on("GRADUS_FUSED_LOSS");
  return on;
}
}  // namespace

void set_fused_loss(bool on) { fused_loss_switch().set(on); }
bool fused_loss_enabled() { return fused_loss_switch().on(); }

}  // namespace gradus
