// GIN-Attention (attention kind "gin"): Buehler, "Graph-Aware Isomorphic Attention for Adaptive
// Dynamics in Transformers" (arXiv 2501.02393), as in the reference code (LlamaAttentionGIN). The
// causal softmax is read as the adjacency of a graph over the tokens and each head runs one GIN
// step on its slice of the input (no value projection):
//   q, k  = rope(x Wq^T), rope(x Wk^T)                  (B, H, T, d_h)
//   v     = x split into heads                           (B, H, T, d_h), no V projection
//   A     = softmax(mask(alpha q k^T / (sqrt(d_h) T)))  alpha: a learnable sharpening per layer
//   A     = threshold(dropout(A))                        gin_threshold_mode, re-masked causally
//   z     = eps_h v + A v   ("eps", the code)   or   (1 + eps_h) v + A v   ("1+eps", the paper)
//   out_h = Lin2(SiLU(RMSNorm(Dropout(Lin1(z)))))        Lin1: d_h -> floor(gamma d_h), biases
//   out   = concat_h(out_h)  [Wo^T when gin_o_proj]
// Parameters (drawn in this order): q_proj, k_proj, [o_proj], mlp_in, mlp_out (HeadLinear with
// biases), then sharpening (alpha, 1.0), eps (H, 1, 1) zeros and mlp_norm (HeadRMSNorm) draw
// nothing.
#pragma once

#include <memory>

#include "models/graph/adjacency.h"
#include "models/graph/head_mlp.h"
#include "models/nn/attention.h"

namespace gradus::graph {

class GinAttention : public AttentionKind {
 public:
  GinAttention(const ModelConfig& config, Generator& gen);
  Tensor forward(const Tensor& x, int64_t position_offset = 0) override;

  int64_t num_heads() const { return num_heads_; }
  int64_t head_dim() const { return head_dim_; }
  int64_t mlp_dim() const { return mlp_dim_; }
  // With keep_adjacency(true), the adjacency of the last forward (B, H, T, T), after thresholding
  // (for inspection: edge densities, plots, tests); undefined otherwise, so that training does not
  // hold B H T^2 values per layer between steps.
  void keep_adjacency(bool on) { keep_adjacency_ = on; }
  const Tensor& last_adjacency() const { return last_adjacency_; }
  const Tensor& sharpening() const { return alpha_; }  // undefined without gin_sharpening
  const Tensor& eps() const { return eps_; }

 private:
  int64_t hidden_size_, num_heads_, head_dim_, mlp_dim_;
  double rope_theta_, attention_dropout_, temperature_, mlp_dropout_;
  bool one_plus_eps_;
  bool keep_adjacency_ = false;
  ThresholdOptions threshold_;
  std::shared_ptr<Linear> q_proj_, k_proj_, o_proj_;
  std::shared_ptr<HeadLinear> mlp_in_, mlp_out_;
  std::shared_ptr<HeadRMSNorm> mlp_norm_;
  Tensor alpha_, eps_;
  Tensor last_adjacency_;
};

}  // namespace gradus::graph
