#include "models/graph/lora.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "autodiff/ops/dropout.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/matmul.h"
#include "core/error.h"

namespace gradus::graph {

namespace {
const std::vector<std::string> kDecoderLinears = {"q_proj",    "k_proj",  "v_proj",    "o_proj",
                                                  "gate_proj", "up_proj", "down_proj", "lm_head"};
}

LoraLinear::LoraLinear(std::shared_ptr<Linear> base, int64_t rank, double alpha, double dropout,
                       Generator& gen)
    : base_(std::move(base)), scaling_(alpha / static_cast<double>(rank)), dropout_(dropout) {
  GRADUS_CHECK(base_ != nullptr, "LoraLinear", "the base Linear is null");
  GRADUS_CHECK(rank >= 1, "LoraLinear", "rank must be >= 1, found {}", rank);
  GRADUS_CHECK(std::isfinite(alpha), "LoraLinear", "alpha must be finite, found {}", alpha);
  GRADUS_CHECK(dropout >= 0 && dropout < 1, "LoraLinear", "dropout must be in [0, 1), found {}",
               dropout);
  const DType dt = base_->weight().dtype();
  a_ = register_parameter("lora_A", rand_normal({rank, base_->in_features()}, gen, DType::f32, 0.0,
                                                1.0 / static_cast<double>(rank)));
  b_ = register_parameter("lora_B", Tensor::zeros({base_->out_features(), rank}));
  if (dt != DType::f32) to(dt);
}

Tensor LoraLinear::forward(const Tensor& x) const {
  Tensor u = gradus::dropout(x, dropout_, *rng(), is_training());
  return base_->forward(x) + linear(linear(u, a_), b_) * scaling_;
}

void check_lora_targets(const std::vector<std::string>& targets) {
  GRADUS_CHECK(!targets.empty(), "LoRA", "targets must name at least one Linear ({})",
               fmt::join(kDecoderLinears, ", "));
  for (const std::string& t : targets)
    GRADUS_CHECK(
        std::find(kDecoderLinears.begin(), kDecoderLinears.end(), t) != kDecoderLinears.end(),
        "LoRA", "target \"{}\" is not a Linear of the decoder (expected one of {})", t,
        fmt::join(kDecoderLinears, ", "));
}

int64_t lora_parameter_count(const ModelConfig& c, const std::vector<std::string>& targets,
                             int64_t rank) {
  check_lora_targets(targets);
  const int64_t C = c.hidden_size, F = c.intermediate_size;
  int64_t per_layer = 0, once = 0;
  for (const std::string& t : targets) {
    if (t == "gate_proj" || t == "up_proj" || t == "down_proj")
      per_layer += rank * (C + F);
    else if (t == "lm_head")
      once += rank * (C + c.vocab_size);
    else
      per_layer += rank * (2 * C);
  }
  return per_layer * c.num_hidden_layers + once;
}

int64_t lora_rank_matching(const ModelConfig& c, const std::vector<std::string>& targets,
                           int64_t budget) {
  const int64_t per_rank = lora_parameter_count(c, targets, 1);
  const int64_t lo = std::max<int64_t>(1, budget / per_rank);
  const int64_t hi = lo + 1;
  return std::llabs(lora_parameter_count(c, targets, lo) - budget) <=
                 std::llabs(lora_parameter_count(c, targets, hi) - budget)
             ? lo
             : hi;
}

}  // namespace gradus::graph
