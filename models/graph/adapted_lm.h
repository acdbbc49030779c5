// A frozen pretrained decoder (DecoderLM with "std" attention) with trainable adapters: LoRA on
// chosen Linear layers, Sparse-GIN between each layer's attention and MLP, or both. The base's
// parameters stop requiring gradients; this module's own parameters are exactly the adapters', so
// parameters() is what an optimiser trains and num_parameters() the trainable count.
//
// The forward runs the base's layers itself (the same ops in the same order as DecoderLM, so
// with no adapter the logits are bit for bit the base's), which is how it reaches the attention
// probabilities that Sparse-GIN reads and the Linear layers that LoRA wraps, without touching
// models/nn.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/graph/lora.h"
#include "models/graph/sparse_gin.h"
#include "models/nn/lm.h"

namespace gradus::graph {

struct AdapterOptions {
  std::optional<LoraOptions> lora;
  std::optional<SparseGinOptions> sparse_gin;
};

class AdaptedLM : public Module {
 public:
  // Freezes base (set_requires_grad(false)) and draws the adapters from gen: LoRA adapters layer
  // by layer in the order q, k, v, o, gate, up, down (then lm_head), then the Sparse-GIN layers.
  // Dropout draws from Generator(gen.seed, 2^62 + 2^61).
  AdaptedLM(std::shared_ptr<DecoderLM> base, const AdapterOptions& options, Generator& gen);

  // ids: (B, T) i64 -> logits (B, T, V). Dropout (the base's attention dropout and the adapters')
  // follows this module's train() / eval(). The Sparse-GIN graph is read from the probabilities
  // before dropout. lengths: (B,) i64 or undefined: tokens at or after
  // lengths[b] are padding (excluded from the Sparse-GIN graph).
  Tensor forward(const Tensor& ids, const Tensor& lengths = Tensor());
  Tensor loss(const Tensor& ids, const Tensor& targets);

  const std::shared_ptr<DecoderLM>& base() const { return base_; }
  const AdapterOptions& options() const { return options_; }
  // Per layer: the Sparse-GIN gate lambda (empty without Sparse-GIN) and the edge density of the
  // last forward.
  std::vector<double> gates() const;
  const std::vector<double>& last_densities() const { return densities_; }
  // "trainable 12,345 of 1,234,567 (1.00%)" and the parameter counts by adapter kind.
  std::string parameter_report() const;

 private:
  // The base Linear at `name` (q_proj, ..., down_proj) of layer `layer`, through its LoRA
  // adapter when it has one.
  Tensor linear(int64_t layer, const std::string& name, const Tensor& x) const;

  std::shared_ptr<DecoderLM> base_;
  AdapterOptions options_;
  std::map<std::string, std::shared_ptr<LoraLinear>> lora_;  // "layers.{i}.{name}" or "lm_head"
  std::vector<std::shared_ptr<SparseGinLayer>> gin_;
  std::vector<double> densities_;
};

}  // namespace gradus::graph
