// Graded attention, the attention kinds "lgt" (linear grading) and "egt" (exponential grading) of
// the decoder (docs/graded.md). Per head h with d_h = C / H channels and Y = Norm(X):
//   Q, K, V = Y Wq^T, Y Wk^T, Y Wv^T                 split into heads (B, H, T, d_h)
//   Q, K    = rope(Q Phi_h), rope(K Phi_h)            score_power 2 (default)
//           = rope(Q Phi_h), rope(K)                  score_power 1
//   V       = V Phi_h                                 with graded_values
//   O_h     = softmax(mask(Q K^T / sqrt(d_h))) V;  out = concat_h(O_h) Wo^T
// Phi is applied before RoPE, inside the projection: Q Phi = Y (Phi Wq)^T, computed as such (a
// (C, C) scale per step instead of a (B, T, C) one), which is also why the fold into Wq is exact.
// Phi_h is one operator of H rows (graded_per_head) or of one row shared by the heads.
// The kinds also grade the embedding and the feed-forward input (graded_channel_map.h) unless
// graded_embedding / graded_ffn are false. Folded (graded_folded), the initial Phi is absorbed into
// Wq, Wk, Wv, the embedding table and the SwiGLU input weights at construction and the model runs
// as "std" from then on: the baseline with the same function at initialisation.
#pragma once

#include <memory>

#include "models/graded/grading.h"
#include "models/nn/attention.h"

namespace gradus::graded {

class GradedSelfAttention : public AttentionKind {
 public:
  // Draws q_proj, k_proj, v_proj, o_proj from gen exactly as "std" does; then the grading
  // (registered as "grading", no draws) unless folded.
  GradedSelfAttention(const ModelConfig& config, GradingKind kind, Generator& gen);

  // x: (B, T, C) -> (B, T, C)
  Tensor forward(const Tensor& x, int64_t position_offset = 0) override;

  const std::shared_ptr<GradingOperator>& grading() const { return grading_; }
  int64_t num_heads() const { return num_heads_; }
  int64_t head_dim() const { return head_dim_; }
  bool folded() const { return folded_; }
  const std::shared_ptr<Linear>& q_proj() const { return q_proj_; }
  const std::shared_ptr<Linear>& k_proj() const { return k_proj_; }
  const std::shared_ptr<Linear>& v_proj() const { return v_proj_; }
  const std::shared_ptr<Linear>& o_proj() const { return o_proj_; }

 private:
  int64_t hidden_size_, num_heads_, head_dim_, score_power_;
  double rope_theta_, dropout_;
  bool graded_values_, folded_;
  std::shared_ptr<Linear> q_proj_, k_proj_, v_proj_, o_proj_;
  std::shared_ptr<GradingOperator> grading_;
};

// Checks the graded_* keys of `config` for a graded kind (errors name the key). Called by the
// factories of "lgt" and "egt".
void validate_graded_config(const ModelConfig& config, GradingKind kind);

}  // namespace gradus::graded
