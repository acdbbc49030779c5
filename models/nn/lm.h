// The decoder-only language model, laid out as Hugging Face's LlamaForCausalLM so that
// named_parameters() gives the Llama checkpoint names:
//   model.embed_tokens.weight                        (V, C)
//   model.layers.{i}.self_attn.{q,k,v,o}_proj.weight (C, C)       (kind "std")
//   model.layers.{i}.mlp.{gate,up}_proj.weight       (F, C)
//   model.layers.{i}.mlp.down_proj.weight            (C, F)
//   model.layers.{i}.input_layernorm.weight          (C)
//   model.layers.{i}.post_attention_layernorm.weight (C)
//   model.norm.weight                                (C)
//   lm_head.weight                                   (V, C)       (absent when tied)
// With tie_word_embeddings the head's weight is the embedding tensor itself (one parameter, listed
// once under model.embed_tokens.weight, its gradient the sum of both uses).
#pragma once

#include <cstdint>
#include <memory>

#include "models/nn/block.h"
#include "models/nn/config.h"
#include "models/nn/embedding.h"
#include "models/nn/linear.h"
#include "models/nn/module.h"
#include "models/nn/norm.h"

namespace gradus {

// Hugging Face LlamaModel: embedding, the blocks, the final norm. Submodules embed_tokens,
// layers (a ModuleList of DecoderBlock), norm.
class DecoderModel : public Module {
 public:
  DecoderModel(const ModelConfig& config, Generator& gen);

  // ids: (B, T) i64 -> hidden states (B, T, C) after the final norm.
  Tensor forward(const Tensor& ids, int64_t position_offset = 0);

  const std::shared_ptr<Embedding>& embed_tokens() const { return embed_tokens_; }
  const std::shared_ptr<ModuleList>& layers() const { return layers_; }
  std::shared_ptr<DecoderBlock> layer(size_t i) const { return layers_->at<DecoderBlock>(i); }
  const std::shared_ptr<RMSNorm>& norm() const { return norm_; }
  // The kind's map after the embedding (attention.h, ChannelMap), registered as "embed_map" after
  // the final norm; null for kinds without one.
  const std::shared_ptr<ChannelMap>& embed_map() const { return embed_map_; }

 private:
  ModelConfig config_;
  std::shared_ptr<ChannelMap> embed_map_;
  std::shared_ptr<Embedding> embed_tokens_;
  std::shared_ptr<ModuleList> layers_;
  std::shared_ptr<RMSNorm> norm_;
};

// On by default; GRADUS_FUSED_LOSS=0 in the environment turns it off for the process (to measure
// what the fusion does, or to compare with the reference). Thread-safe.
void set_fused_loss(bool on);
bool fused_loss_enabled();

class DecoderLM : public Module {
 public:
  // Validates config, then draws every parameter from gen in named_parameters() order (the untied
  // head last). The dropout generator (rng()) is seeded gen.seed at offset 2^62, a stream that the
  // initialisation draws never reach, so one seed fixes both. f32; convert with Module::to.
  DecoderLM(const ModelConfig& config, Generator& gen);

  // ids: (B, T) i64, each in [0, vocab_size), position_offset + T <= max_position_embeddings
  // -> logits (B, T, V).
  Tensor forward(const Tensor& ids, int64_t position_offset = 0);
  // Mean next-token cross-entropy of forward(ids) against targets: (B, T) i64 -> () scalar. Runs
  // the head and the loss as one op (linear_cross_entropy: no (B, T, V) logits or their gradient
  // in memory) unless the fused loss is switched off; the composite cross_entropy(forward(ids))
  // is the readable reference.
  Tensor loss(const Tensor& ids, const Tensor& targets, int64_t position_offset = 0);

  const ModelConfig& config() const { return config_; }
  const std::shared_ptr<DecoderModel>& model() const { return model_; }
  const std::shared_ptr<Linear>& lm_head() const { return lm_head_; }

 private:
  ModelConfig config_;
  std::shared_ptr<DecoderModel> model_;
  std::shared_ptr<Linear> lm_head_;
};

}  // namespace gradus
