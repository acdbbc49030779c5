#include "models/graded/graded_attention.h"

#include <cmath>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/view.h"
#include "core/error.h"
#include "models/graded/graded_channel_map.h"
#include "models/nn/attention_heads.h"

namespace gradus::graded {

namespace {

GradingOptions attention_options(const ModelConfig& c, GradingKind kind) {
  return GradingOptions::from_config(c, kind, c.graded_per_head ? c.num_attention_heads : 1,
                                     c.head_dim());
}

// The per-output-channel scale of a projection, (C) for the C = H d_h rows of Wq: head h's rows
// take row h of s (or the one shared row).
std::vector<double> row_scales(const GradingOperator& g, int64_t heads) {
  std::vector<double> s = g.scale_values(), out;
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < g.dim(); ++i)
      out.push_back(s[static_cast<size_t>((g.rows() == 1 ? 0 : h) * g.dim() + i)]);
  return out;
}

}  // namespace

void validate_graded_config(const ModelConfig& c, GradingKind kind) {
  const std::string where = fmt::format("attention kind \"{}\"", kind_name(kind));
  attention_options(c, kind).validate(where);
  GRADUS_CHECK(!(c.graded_folded && c.graded_embedding && c.tie_word_embeddings), where,
               "model.graded_folded with graded_embedding and tie_word_embeddings would scale the "
               "output head too (it is the embedding table); untie the head or set "
               "graded_embedding false");
}

GradedSelfAttention::GradedSelfAttention(const ModelConfig& c, GradingKind kind, Generator& gen)
    : hidden_size_(c.hidden_size),
      num_heads_(c.num_attention_heads),
      head_dim_(c.head_dim()),
      score_power_(c.graded_score_power),
      rope_theta_(c.rope_theta),
      dropout_(c.attention_dropout),
      graded_values_(c.graded_values),
      folded_(c.graded_folded) {
  c.validate();
  validate_graded_config(c, kind);
  const int64_t C = hidden_size_;
  q_proj_ = add_projection(*this, "q_proj", C, gen);
  k_proj_ = add_projection(*this, "k_proj", C, gen);
  v_proj_ = add_projection(*this, "v_proj", C, gen);
  o_proj_ = add_projection(*this, "o_proj", C, gen);
  grading_ = std::make_shared<GradingOperator>(attention_options(c, kind));
  if (folded_) {
    // Q Phi = Y (Phi Wq)^T: scale the rows of Wq (and Wk, Wv) once; run ungraded from then on.
    std::vector<double> s = row_scales(*grading_, num_heads_);
    scale_rows_(q_proj_->weight(), s);
    if (score_power_ == 2) scale_rows_(k_proj_->weight(), s);
    if (graded_values_) scale_rows_(v_proj_->weight(), s);
  } else {
    register_module("grading", grading_);
  }
}

Tensor GradedSelfAttention::forward(const Tensor& x, int64_t position_offset) {
  check_attention_input("GradedSelfAttention", x, hidden_size_);
  const int64_t H = num_heads_, D = head_dim_, C = hidden_size_;
  Tensor wq = q_proj_->weight(), wk = k_proj_->weight(), wv = v_proj_->weight();
  if (!folded_) {
    // s: (rows, D) -> one scale per output row of the projections, (C, 1). Phi applied to the
    // (C, C) weight rather than to the (B, T, C) activations: the same product, a fraction of the
    // work, and exactly the ungraded weights when s == 1.
    Tensor s = grading_->scales(x.dtype(), x.device());
    Tensor rows = reshape(expand(s, {H, D}), {C, 1});
    wq = wq * rows;
    if (score_power_ == 2) wk = wk * rows;
    if (graded_values_) wv = wv * rows;
  }
  Tensor q = rope_heads(linear(x, wq), H, rope_theta_, position_offset);
  Tensor k = rope_heads(linear(x, wk), H, rope_theta_, position_offset);
  Tensor v = split_heads(linear(x, wv), H);  // (B, H, T, D)
  Tensor out = causal_softmax_attention(q, k, v, 1.0 / std::sqrt(static_cast<double>(D)), dropout_,
                                        *rng(), is_training());  // (B, H, T, D)
  return o_proj_->forward(merge_heads(out));                     // (B, T, C)
}

namespace {

std::shared_ptr<ChannelMap> graded_map(const ModelConfig& c, GradingKind kind,
                                       ChannelMapSite site) {
  const bool on = site == ChannelMapSite::embedding ? c.graded_embedding : c.graded_ffn;
  if (!on) return nullptr;
  return std::make_shared<GradedChannelMap>(GradingOptions::from_config(c, kind, 1, c.hidden_size),
                                            c.graded_folded);
}

AttentionFactory attention_factory(GradingKind kind) {
  return [kind](const ModelConfig& c, int64_t, Generator& init) -> std::shared_ptr<AttentionKind> {
    return std::make_shared<GradedSelfAttention>(c, kind, init);
  };
}

ChannelMapFactory map_factory(GradingKind kind) {
  return [kind](const ModelConfig& c, ChannelMapSite site, int64_t) {
    return graded_map(c, kind, site);
  };
}

const AttentionKindRegistrar kLgt("lgt", attention_factory(GradingKind::linear),
                                  map_factory(GradingKind::linear));
const AttentionKindRegistrar kEgt("egt", attention_factory(GradingKind::exponential),
                                  map_factory(GradingKind::exponential));

}  // namespace

}  // namespace gradus::graded
