#include "models/graph/gin_attention.h"

#include <cmath>

#include "autodiff/ops/dropout.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/mask.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/softmax.h"
#include "autodiff/ops/view.h"
#include "core/error.h"
#include "models/nn/attention.h"
#include "models/nn/attention_heads.h"

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
  q_proj_ = add_projection(*this, "q_proj", C, gen);
  k_proj_ = add_projection(*this, "k_proj", C, gen);
  if (c.gin_o_proj) o_proj_ = add_projection(*this, "o_proj", C, gen);
  mlp_in_ = register_module("mlp_in", std::make_shared<HeadLinear>(H, D, mlp_dim_, true, gen));
  mlp_out_ = register_module("mlp_out", std::make_shared<HeadLinear>(H, mlp_dim_, D, true, gen));
  mlp_norm_ =
      register_module("mlp_norm", std::make_shared<HeadRMSNorm>(H, mlp_dim_, c.rms_norm_eps));
  if (c.gin_sharpening) alpha_ = register_parameter("sharpening", Tensor::scalar(1.0));
  eps_ = register_parameter("eps", Tensor::zeros({H, 1, 1}));
}

Tensor GinAttention::forward(const Tensor& x, int64_t position_offset) {
  check_attention_input("GinAttention", x, hidden_size_);
  const int64_t D = head_dim_;
  Tensor q = rope_heads(q_proj_->forward(x), num_heads_, rope_theta_, position_offset);
  Tensor k = rope_heads(k_proj_->forward(x), num_heads_, rope_theta_, position_offset);
  Tensor v = split_heads(x, num_heads_);  // (B, H, T, D): a view, no projection
  // alpha scales q (B H T D elements) rather than the scores (B H T T); under autocast q keeps its
  // dtype (alpha is 0-dim), as PyTorch's q * alpha does. 1 / (sqrt(d_h) T) is the attention's
  // scale where the fused op runs, so it is never rounded to q's dtype.
  const double scale = 1.0 / (std::sqrt(static_cast<double>(D)) * temperature_);
  if (alpha_.defined()) q = q * alpha_;
  Tensor av;  // A v: (B, H, T, D)
  if (threshold_.mode == ThresholdMode::none && !keep_adjacency_) {
    // A is the plain causal softmax: the fused op where it applies, A never materialised.
    av = causal_softmax_attention(q, k, v, scale, attention_dropout_, *rng(), is_training());
  } else {
    Tensor a =
        softmax(causal_masked_fill(matmul(q * scale, transpose(k, -2, -1))), -1);  // (B, H, T, T)
    a = gradus::dropout(a, attention_dropout_, *rng(), is_training());
    a = threshold_adjacency(a, threshold_);
    if (keep_adjacency_) last_adjacency_ = detach(a);
    av = matmul(a, v);
  }
  // The per-head MLP runs heads first, on (H, B T, .): each head's rows are then one contiguous
  // matrix, so each of its products (forward and backward) is one strided-batched product over the
  // heads rather than one call per batch entry (on the GPU, B calls of H tiny products each), and
  // its elementwise ops see contiguous operands. The add that makes z writes it in that order.
  const int64_t B = x.size(0), T = x.size(1), H = num_heads_;
  const Tensor eps = reshape(eps_, {H, 1, 1, 1});
  const Tensor v_heads_first = transpose(v, 0, 1);  // (H, B, T, D): views
  Tensor self = one_plus_eps_ ? v_heads_first * (eps + 1.0) : v_heads_first * eps;
  Tensor z = reshape(transpose(av, 0, 1) + self, {H, B * T, D});  // (H, B T, D)
  Tensor h = mlp_in_->forward(z);                                 // (H, B T, m)
  h = gradus::dropout(h, mlp_dropout_, *rng(), is_training());
  h = mlp_out_->forward(silu(mlp_norm_->forward(h)));  // (H, B T, D)
  Tensor out = merge_heads_first(h, B);                // (B, T, C)
  return o_proj_ ? o_proj_->forward(out) : out;
}

namespace {
const AttentionKindRegistrar kGin("gin", [](const ModelConfig& config, int64_t /*layer_index*/,
                                            Generator& init) {
  return std::make_shared<GinAttention>(config, init);
});
}  // namespace

}  // namespace gradus::graph
