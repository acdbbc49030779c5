// A small decoder over token or real-valued sequences, for the synthetic graded experiments
// (multi-scale prediction, bracket-depth tagging): the DecoderLM stack with its own input and
// output layers. Any registered attention kind; graded kinds bring their embedding and
// feed-forward gradings through the decoder's channel-map hook (models/nn/attention.h).
//   tokens (B, T) i64 -> Embedding          or  features (B, T, F) -> Linear (F -> C)
//   -> embed_map (the kind's; graded: x Phi_emb) -> DecoderBlock x L -> RMSNorm -> Linear (C -> K)
#pragma once

#include <memory>

#include "models/nn/block.h"
#include "models/nn/config.h"
#include "models/nn/embedding.h"
#include "models/nn/linear.h"
#include "models/nn/norm.h"

namespace gradus::graded {

class SequenceModel : public Module {
 public:
  // input_features 0: token inputs over config.vocab_size; else real inputs of that many
  // features. outputs: K. Draws the input layer, the blocks, then the head from gen.
  SequenceModel(const ModelConfig& config, int64_t input_features, int64_t outputs, Generator& gen);

  // x: (B, T) i64 tokens or (B, T, F) reals -> (B, T, K)
  Tensor forward(const Tensor& x);

  const ModelConfig& config() const { return config_; }

 private:
  ModelConfig config_;
  std::shared_ptr<Embedding> embed_;  // token inputs
  std::shared_ptr<Linear> in_proj_;   // real inputs
  std::shared_ptr<ChannelMap> embed_map_;
  std::shared_ptr<ModuleList> layers_;
  std::shared_ptr<RMSNorm> norm_;
  std::shared_ptr<Linear> head_;
};

}  // namespace gradus::graded
