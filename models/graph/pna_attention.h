// PNA-Attention (attention kind "pna"): Buehler, arXiv 2501.02393, as in the reference code
// (LlamaAttentionPNA). The attention scores define a soft adjacency; each head aggregates its
// values with several PNA aggregators and mixes them with its own MLP:
//   q, k, v = rope(x Wq^T), rope(x Wk^T), x Wv^T                  (B, H, T, d_h)
//   S       = mask(q k^T / sqrt(d_h))         (none of the (B, H, T, T) tensors below is stored
//   when
//                                              the streaming op runs: see forward)
//   A       = relu(S) ("relu", default) or softmax(S / T) ("softmax"); dropout
//   A'      = threshold(A)  (pna_threshold_mode, default sharp_softplus), re-masked causally
//   deg_i   = sum_j A'_ij, 0 replaced by 1
//   sum = A' v   mean = sum / deg   max/min = extremum over {j : A'_ij > 0} (unweighted)
//   var = relu(A' v^2 / deg - mean^2)   std = sqrt(var + 1e-5)
//   features = the pna_aggregators in order, each times every pna_scaler:
//     identity 1, amplification log(deg + 1) / delta, attenuation delta / log(deg + 1)
//   out_h = W2 SiLU(W1 features)      W1: n_features d_h -> floor(gamma d_h), W2: -> d_h, no bias
//   out   = concat_h(out_h) Wo^T
// Parameters (drawn in this order): q_proj, k_proj, v_proj, o_proj, mlp_in, mlp_out.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "autodiff/ops/pna.h"
#include "models/graph/adjacency.h"
#include "models/graph/head_mlp.h"
#include "models/nn/attention.h"

namespace gradus::graph {

enum class PnaAggregator { sum, mean, max, min, var, std };
enum class PnaScaler { identity, amplification, attenuation };

// Comma-separated lists as in ModelConfig::pna_aggregators / pna_scalers; throws gradus::Error
// naming the key otherwise.
std::vector<PnaAggregator> parse_pna_aggregators(const std::string& text);
std::vector<PnaScaler> parse_pna_scalers(const std::string& text);

// The moments the aggregators read (pna_moments' blocks) for `aggregators` and `scalers`: the
// square only for var / std, the extrema only when listed. options.scale / adjacency / threshold
// are left at their defaults for the caller to set.
PnaMomentsOptions pna_moment_options(const std::vector<PnaAggregator>& aggregators);

// The moments of values v over a dense soft adjacency a, with the ops of the composite (the
// readable reference of pna_moments, and the path for adjacencies that cannot be streamed):
// a: (..., L, L) (rows receive), v: (..., L, d) -> blocks (..., L, d) and degree (..., L, 1).
PnaMomentBlocks pna_moments_dense(const Tensor& a, const Tensor& v,
                                  const PnaMomentsOptions& wanted);

// The PNA feature blocks from the moments: (..., L, n d) with n = aggregators x scalers, ordered
// scaler-major: [agg_1 .. agg_k] x identity, then x amplification, ... A zero degree is replaced by
// 1 (an isolated token divides by 1). delta <= 0 uses the mean of log(deg + 1) over the batch (a
// constant, no gradient); *delta_used receives the delta applied when non-null.
Tensor pna_features_from_moments(const PnaMomentBlocks& moments,
                                 const std::vector<PnaAggregator>& aggregators,
                                 const std::vector<PnaScaler>& scalers, double delta,
                                 double* delta_used = nullptr);

// pna_features_from_moments(pna_moments_dense(a, v, ...), ...): a: (..., L, L), v: (..., L, d)
// -> (..., L, n d).
Tensor pna_features(const Tensor& a, const Tensor& v, const std::vector<PnaAggregator>& aggregators,
                    const std::vector<PnaScaler>& scalers, double delta,
                    double* delta_used = nullptr);

class PnaAttention : public AttentionKind {
 public:
  PnaAttention(const ModelConfig& config, Generator& gen);
  Tensor forward(const Tensor& x, int64_t position_offset = 0) override;

  int64_t num_heads() const { return num_heads_; }
  int64_t head_dim() const { return head_dim_; }
  int64_t mlp_dim() const { return mlp_dim_; }
  // The number of d_h-wide feature blocks the MLP reads: aggregators x scalers.
  int64_t feature_blocks() const {
    return static_cast<int64_t>(aggregators_.size() * scalers_.size());
  }
  // The delta used by the last forward (the batch's mean log(deg + 1) when pna_delta is 0).
  double last_delta() const { return last_delta_; }
  // Whether the last forward ran the streaming op (pna_moments) rather than the composite. It
  // streams unless attention dropout is active while training (it needs the dense adjacency), the
  // threshold is topk (a row-wise selection), or fused attention is switched off
  // (GRADUS_FUSED_ATTENTION=0 / set_fused_attention(false)).
  bool last_forward_streamed() const { return last_streamed_; }

 private:
  int64_t hidden_size_, num_heads_, head_dim_, mlp_dim_;
  double rope_theta_, attention_dropout_, temperature_, delta_;
  bool softmax_adjacency_;
  ThresholdOptions threshold_;
  std::vector<PnaAggregator> aggregators_;
  std::vector<PnaScaler> scalers_;
  std::shared_ptr<Linear> q_proj_, k_proj_, v_proj_, o_proj_;
  std::shared_ptr<HeadLinear> mlp_in_, mlp_out_;
  double last_delta_ = 0.0;
  bool last_streamed_ = false;
};

}  // namespace gradus::graph
