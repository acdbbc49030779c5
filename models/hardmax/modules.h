// The hardmax transformer on the tape, for inference and training experiments: the same blocks as
// models/hardmax/model.h (a built Net converts both ways), as Modules whose parameters are leaves.
//
// Parameter names (per block i):
//   blocks.{i}.ff.in_weight (h, d), blocks.{i}.ff.in_bias (h), blocks.{i}.ff.out_weight (h, d)
//   blocks.{i}.sa.q (d), blocks.{i}.sa.k (d)  or  blocks.{i}.sa.matrix (d, d);  blocks.{i}.sa.alpha
//   () readout.e (d)
// The FF runs through `linear`/`matmul` (BLAS), so its results can differ from the evaluator's
// fixed-order arithmetic in the last bits; the SA is the hardmax_attention op, bitwise equal to
// the evaluator. For exact classification of a built model use models/hardmax/forward.h.
#pragma once

#include <memory>

#include "models/hardmax/model.h"
#include "models/nn/module.h"

namespace gradus::hardmax {

// x + sum_r w_r relu(a_r . x + b_r), token-wise. x: (..., d) -> (..., d).
class HatFeedForward : public Module {
 public:
  HatFeedForward(int64_t d, int64_t width, DType dtype = DType::f64);
  Tensor forward(const Tensor& x) const;
  Tensor in_weight, in_bias, out_weight;
};

// Hardmax self-attention with rank-1 (q, k) or general (A) scores and a learnable alpha.
// x: (B, T, d), lengths: (B) i64 or undefined -> (B, T, d).
class HardmaxSelfAttention : public Module {
 public:
  HardmaxSelfAttention(int64_t d, Scores scores, DType dtype = DType::f64);
  Tensor forward(const Tensor& x, const Tensor& lengths = Tensor()) const;
  Scores scores;
  Tensor q, k, matrix, alpha;
};

class HardmaxBlock : public Module {
 public:
  HardmaxBlock(int64_t d, int64_t ff_width, Scores scores, DType dtype = DType::f64);
  Tensor forward(const Tensor& x, const Tensor& lengths = Tensor()) const;
  std::shared_ptr<HatFeedForward> ff;        // null when the block has no FF
  std::shared_ptr<HardmaxSelfAttention> sa;  // null when the block has no SA
};

class HardmaxTransformer : public Module {
 public:
  // Parameters copied from a built (or loaded) net, in its dtype.
  explicit HardmaxTransformer(const Net& net);
  // The final tokens. x: (B, T, d), lengths: (B) i64 or undefined -> (B, T, d).
  Tensor forward(const Tensor& x, const Tensor& lengths = Tensor()) const;
  // e . y_0 for each sequence: y (B, T, d) -> (B). Rounded, it is the predicted label.
  Tensor readout(const Tensor& y) const;
  // Back to plain data (e.g. after training), in the parameters' dtype.
  Net to_net() const;

  int64_t d = 0;
  std::vector<std::shared_ptr<HardmaxBlock>> blocks;
  std::vector<BlockRole> roles;
  Tensor e;
};

}  // namespace gradus::hardmax
