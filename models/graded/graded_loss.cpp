#include "models/graded/graded_loss.h"

#include "autodiff/ops/cross_entropy.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/ops/shape.h"
#include "autodiff/ops/view.h"
#include "core/error.h"

namespace gradus::graded {

Tensor loss_weights(const GradingOperator& grading, DType dtype, Device device, bool detach) {
  GRADUS_CHECK(grading.rows() == 1, "loss_weights",
               "loss weights come from a grading with one row, found {} rows", grading.rows());
  Tensor w = reshape(grading.scales(dtype, device), {grading.dim()});
  return detach ? gradus::detach(w) : w;
}

Tensor graded_mse(const Tensor& pred, const Tensor& target, const Tensor& weights) {
  GRADUS_CHECK(pred.shape() == target.shape() && pred.dim() >= 1 && weights.dim() == 1 &&
                   weights.size(0) == pred.size(-1),
               "graded_mse", "expected pred and target (..., K) and weights (K), found {}, {}, {}",
               pred.describe(), target.describe(), weights.describe());
  std::vector<int64_t> batch_axes;
  for (int64_t a = 0; a + 1 < pred.dim(); ++a) batch_axes.push_back(a);
  Tensor per_component = mean(square(pred - target), batch_axes);  // (K)
  return sum(per_component * weights) / sum(weights);
}

Tensor graded_cross_entropy(const Tensor& logits, const Tensor& targets, const Tensor& weights) {
  GRADUS_CHECK(logits.dim() >= 1 && weights.dim() == 1 && weights.size(0) == logits.size(-1),
               "graded_cross_entropy", "expected logits (..., V) and weights (V), found {} and {}",
               logits.describe(), weights.describe());
  Tensor ce = cross_entropy(logits, targets, -100, "none");  // (...)
  Tensor w = reshape(index_select(weights, 0, reshape(targets, {-1})), ce.shape());
  return sum(ce * w) / sum(w);
}

Tensor graded_positions(const Tensor& losses, const Tensor& weights) {
  GRADUS_CHECK(losses.dim() >= 1 && weights.dim() == 1 && weights.size(0) == losses.size(-1),
               "graded_positions", "expected losses (..., T) and weights (T), found {} and {}",
               losses.describe(), weights.describe());
  std::vector<int64_t> batch_axes;
  for (int64_t a = 0; a + 1 < losses.dim(); ++a) batch_axes.push_back(a);
  Tensor per_position = batch_axes.empty() ? losses : mean(losses, batch_axes);
  return sum(per_position * weights) / sum(weights);
}

Tensor grade_prior(const GradingOperator& grading, const std::vector<double>& q0, double alpha,
                   DType dtype) {
  GRADUS_CHECK(grading.rows() == 1 && static_cast<int64_t>(q0.size()) == grading.dim(),
               "grade_prior", "expected a prior of {} grades for a one-row grading, found {}",
               grading.dim(), q0.size());
  if (alpha == 0) return Tensor::scalar(0.0, dtype);
  Tensor q = reshape(grading.grades(dtype), {grading.dim()});
  Tensor prior = Tensor::from_vector(q0, {grading.dim()}, dtype);
  return sum(square(q - prior)) * alpha;
}

}  // namespace gradus::graded
