// LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", 2021) on any Linear:
//   y = W x + (alpha / r) B A dropout(x)      A: (r, in) ~ N(0, 1/r^2), B: (out, r) = 0
// (the Gaussian initialisation of PEFT's init_lora_weights="gaussian"; B = 0 makes the adapted
// layer start as the frozen one). The base Linear is not a child: the adapter's parameters are
// its own A and B only, so an adapter tree lists exactly what trains.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/random.h"
#include "models/nn/config.h"
#include "models/nn/linear.h"
#include "models/nn/module.h"

namespace gradus::graph {

struct LoraOptions {
  int64_t rank = 8;
  double alpha = 16.0;   // the update is scaled by alpha / rank
  double dropout = 0.0;  // on the adapter's input, while training
  // Linear layers adapted, by their last name component (decoder: q_proj, k_proj, v_proj,
  // o_proj, gate_proj, up_proj, down_proj, lm_head).
  std::vector<std::string> targets = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                      "gate_proj", "up_proj", "down_proj"};
};

class LoraLinear : public Module {
 public:
  // Parameters lora_A (rank, in), lora_B (out, rank), drawn from gen (A only; B is zero).
  LoraLinear(std::shared_ptr<Linear> base, int64_t rank, double alpha, double dropout,
             Generator& gen);
  // x: (..., in) -> (..., out)
  Tensor forward(const Tensor& x) const;
  const std::shared_ptr<Linear>& base() const { return base_; }
  const Tensor& lora_A() const { return a_; }
  const Tensor& lora_B() const { return b_; }
  double scaling() const { return scaling_; }

 private:
  std::shared_ptr<Linear> base_;
  Tensor a_, b_;
  double scaling_, dropout_;
};

// Parameters LoRA of `rank` adds to `targets` of a decoder with `config` (every layer).
int64_t lora_parameter_count(const ModelConfig& config, const std::vector<std::string>& targets,
                             int64_t rank);
// The rank whose LoRA parameter count is closest to `budget` (at least 1; the smaller rank on a
// tie): "LoRA at equal trainable parameters".
int64_t lora_rank_matching(const ModelConfig& config, const std::vector<std::string>& targets,
                           int64_t budget);
// Throws gradus::Error naming the target when it is not one of the decoder's Linear names.
void check_lora_targets(const std::vector<std::string>& targets);

}  // namespace gradus::graph
