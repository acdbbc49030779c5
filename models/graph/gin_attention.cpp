#include "models/graph/gin_attention.h"

#include <cmath>

#include "autodiff/ops/dropout.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/mask.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/rope.h"
#include "autodiff/ops/softmax.h"
#include "autodiff/ops/view.h"
#include "core/error.h"

namespace gradus::graph {

GinAttention::GinAttention(const ModelConfig& c, Generator& gen)
    : hidden_size_(c.hidden_size),
      num_heads_(c.num_attention_heads),
      head_dim_(c.head_dim()),
      mlp_dim_(static_cast<int64_t>(c.graph_mlp_multiplier * static_cast<double>(c.head_dim()))),
      rope_theta_(c.rope_theta),
      attention_dropout_(c.attention_dropout),
      temperature_(c.graph_temperature),
      mlp_dropout_(c.gin_mlp_dropout),
      one_plus_eps_(c.gin_self_term == "1+eps") {
  c.validate();
  threshold_ = {parse_threshold_mode("gin_threshold_mode", c.gin_threshold_mode), c.graph_threshold,
                c.graph_beta, c.graph_topk_fraction};
  const int64_t C = hidden_size_, H = num_heads_, D = head_dim_;
  q_proj_ = register_module("q_proj", std::make_shared<Linear>(C, C, false, gen));
  k_proj_ = register_module("k_proj", std::make_shared<Linear>(C, C, false, gen));
  if (c.gin_o_proj) o_proj_ = register_module("o_proj", std::make_shared<Linear>(C, C, false, gen));
  mlp_in_ = register_module("mlp_in", std::make_shared<HeadLinear>(H, D, mlp_dim_, true, gen));
  mlp_out_ = register_module("mlp_out", std::make_shared<HeadLinear>(H, mlp_dim_, D, true, gen));
  mlp_norm_ =
      register_module("mlp_norm", std::make_shared<HeadRMSNorm>(H, mlp_dim_, c.rms_norm_eps));
  if (c.gin_sharpening) alpha_ = register_parameter("sharpening", Tensor::scalar(1.0));
  eps_ = register_parameter("eps", Tensor::zeros({H, 1, 1}));
}

Tensor GinAttention::forward(const Tensor& x, int64_t position_offset) {
  GRADUS_CHECK(x.dim() == 3 && x.size(2) == hidden_size_, "GinAttention",
               "expected x of shape (B, T, {}) but found {}", hidden_size_, x.describe());
  const int64_t B = x.size(0), T = x.size(1), H = num_heads_, D = head_dim_;
  auto heads = [&](const Tensor& t) { return transpose(reshape(t, {B, T, H, D}), 1, 2); };
  Tensor q = rope(heads(q_proj_->forward(x)), rope_theta_, position_offset);
  Tensor k = rope(heads(k_proj_->forward(x)), rope_theta_, position_offset);
  Tensor v = heads(x);  // (B, H, T, D): a view, no projection
  // alpha / (sqrt(d_h) T) scales q (B H T D elements) rather than the scores (B H T T).
  const double scale = 1.0 / (std::sqrt(static_cast<double>(D)) * temperature_);
  q = alpha_.defined() ? q * (alpha_ * scale) : q * scale;
  Tensor a = softmax(causal_masked_fill(matmul(q, transpose(k, -2, -1))), -1);  // (B, H, T, T)
  a = gradus::dropout(a, attention_dropout_, *rng(), is_training());
  a = threshold_adjacency(a, threshold_);
  if (keep_adjacency_) last_adjacency_ = detach(a);
  Tensor self = one_plus_eps_ ? v * (eps_ + 1.0) : v * eps_;
  Tensor z = matmul(a, v) + self;  // (B, H, T, D)
  Tensor h = mlp_in_->forward(z);  // (B, H, T, m)
  h = gradus::dropout(h, mlp_dropout_, *rng(), is_training());
  h = mlp_out_->forward(silu(mlp_norm_->forward(h)));  // (B, H, T, D)
  Tensor out = reshape(transpose(h, 1, 2), {B, T, H * D});
  return o_proj_ ? o_proj_->forward(out) : out;
}

namespace {
const AttentionKindRegistrar kGin("gin", [](const ModelConfig& config, int64_t /*layer_index*/,
                                            Generator& init) {
  return std::make_shared<GinAttention>(config, init);
});
}  // namespace

}  // namespace gradus::graph
