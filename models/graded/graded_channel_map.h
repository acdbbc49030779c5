// The graded embedding and the graded feed-forward input: x -> x Phi over the C channels of the
// residual stream, at the decoder's channel-map sites (models/nn/attention.h, ChannelMap):
//   X0 = E[t] Phi_emb                  (site embedding)
//   X <- X + mlp(Phi_in Norm(X))       (site mlp_input)
// Folded (the baseline with the grading absorbed at initialisation), the map scales the columns
// of the weights that read it (the embedding table; the SwiGLU gate and up projections) by the
// initial s once, and is the identity from then on.
#pragma once

#include <memory>

#include "models/graded/grading.h"
#include "models/nn/attention.h"

namespace gradus::graded {

class GradedChannelMap : public ChannelMap {
 public:
  // options.rows must be 1. Registers the operator as "grading" unless folded.
  GradedChannelMap(GradingOptions options, bool folded);

  // x: (..., C) -> (..., C)
  Tensor forward(const Tensor& x) override;
  void fold_into(const std::vector<Tensor>& consumers) override;

  const std::shared_ptr<GradingOperator>& grading() const { return grading_; }
  bool folded() const { return folded_; }

 private:
  std::shared_ptr<GradingOperator> grading_;
  bool folded_;
};

// Scales the columns of each (rows, C) weight in place by s (C), without the tape: the fold of a
// diagonal map x -> x diag(s) into the weights W that read it (x diag(s) W^T = x (W diag(s))^T).
void scale_columns_(const std::vector<Tensor>& weights, const std::vector<double>& s);
// Scales the rows of a (C, in) weight in place by s (C): diag(s) applied to the output of x W^T.
void scale_rows_(const Tensor& weight, const std::vector<double>& s);

}  // namespace gradus::graded
