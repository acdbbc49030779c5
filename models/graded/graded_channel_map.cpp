#include "models/graded/graded_channel_map.h"

#include "autodiff/ops/elementwise.h"
#include "autodiff/tape.h"
#include "core/error.h"

namespace gradus::graded {

GradedChannelMap::GradedChannelMap(GradingOptions options, bool folded) : folded_(folded) {
  GRADUS_CHECK(options.rows == 1, "GradedChannelMap",
               "a channel map has one grade vector, found {}", options.rows);
  grading_ = std::make_shared<GradingOperator>(std::move(options));
  // Folded, the grades live in the weights; the model has no grading left to train or to log.
  if (!folded_) register_module("grading", grading_);
}

Tensor GradedChannelMap::forward(const Tensor& x) {
  if (folded_) return x;
  return grading_->apply(x);
}

void GradedChannelMap::fold_into(const std::vector<Tensor>& consumers) {
  if (folded_) scale_columns_(consumers, grading_->scale_values());
}

void scale_columns_(const std::vector<Tensor>& weights, const std::vector<double>& s) {
  NoGradGuard no_grad;
  for (const Tensor& w : weights) {
    GRADUS_CHECK(w.dim() == 2 && w.size(1) == static_cast<int64_t>(s.size()), "scale_columns_",
                 "expected a weight (rows, {}), found {}", s.size(), w.describe());
    Tensor scale = raw_to_device(
        Tensor::from_vector(s, {static_cast<int64_t>(s.size())}, w.dtype()), w.device());
    raw_copy_(w, w * scale);
  }
}

void scale_rows_(const Tensor& w, const std::vector<double>& s) {
  NoGradGuard no_grad;
  GRADUS_CHECK(w.dim() == 2 && w.size(0) == static_cast<int64_t>(s.size()), "scale_rows_",
               "expected a weight ({}, in), found {}", s.size(), w.describe());
  Tensor scale = raw_to_device(
      Tensor::from_vector(s, {static_cast<int64_t>(s.size()), 1}, w.dtype()), w.device());
  raw_copy_(w, w * scale);
}

}  // namespace gradus::graded
