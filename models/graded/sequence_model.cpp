#include "models/graded/sequence_model.h"

#include "core/error.h"

namespace gradus::graded {

SequenceModel::SequenceModel(const ModelConfig& config, int64_t input_features, int64_t outputs,
                             Generator& gen)
    : config_(config) {
  config.validate();
  GRADUS_CHECK(input_features >= 0 && outputs >= 1, "SequenceModel",
               "expected input_features >= 0 and outputs >= 1, found {} and {}", input_features,
               outputs);
  const int64_t C = config.hidden_size;
  if (input_features == 0)
    embed_ = register_module("embed", std::make_shared<Embedding>(config.vocab_size, C, gen));
  else
    in_proj_ = register_module("in_proj", std::make_shared<Linear>(input_features, C, true, gen));
  layers_ = register_module("layers", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i)
    layers_->push_back(std::make_shared<DecoderBlock>(config, i, gen));
  norm_ = register_module("norm", std::make_shared<RMSNorm>(C, config.rms_norm_eps));
  head_ = register_module("head", std::make_shared<Linear>(C, outputs, false, gen));
  embed_map_ = make_channel_map(config, ChannelMapSite::embedding, -1);
  if (embed_map_) {
    register_module("embed_map", embed_map_);
    // The map reads the input layer's output channels: the table's columns, or the rows of the
    // projection (its transpose's columns) and its bias.
    if (embed_)
      embed_map_->fold_into({embed_->weight()});
    else
      embed_map_->fold_into(
          {raw_transpose(in_proj_->weight(), 0, 1), raw_unsqueeze(in_proj_->bias(), 0)});
  }
}

Tensor SequenceModel::forward(const Tensor& x) {
  Tensor h;
  if (embed_) {
    GRADUS_CHECK(x.dim() == 2 && x.dtype() == DType::i64, "SequenceModel",
                 "expected tokens (B, T) i64, found {}", x.describe());
    h = embed_->forward(x);
  } else {
    GRADUS_CHECK(x.dim() == 3 && x.size(2) == in_proj_->in_features(), "SequenceModel",
                 "expected features (B, T, {}), found {}", in_proj_->in_features(), x.describe());
    h = in_proj_->forward(x);
  }
  if (embed_map_) h = embed_map_->forward(h);
  for (size_t i = 0; i < layers_->size(); ++i) h = layers_->at<DecoderBlock>(i)->forward(h, 0);
  return head_->forward(norm_->forward(h));
}

}  // namespace gradus::graded
