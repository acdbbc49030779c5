// The graded loss (models/graded/graded_loss.h): equal weights give the plain losses, weights are
// detached by default, the prior term, and the gradient-stability bounds of the spec.
#include "models/graded/graded_loss.h"

#include <gtest/gtest.h>

#include <cmath>

#include "autodiff/ops/cross_entropy.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/tape.h"
#include "support/expect_error.h"

namespace gradus::graded {
namespace {

Tensor values(std::vector<double> v, Shape s) { return Tensor::from_vector(v, s, DType::f64); }

std::shared_ptr<GradingOperator> grading(GradingKind kind, std::vector<double> q,
                                         bool learnable = false) {
  GradingOptions o;
  o.kind = kind;
  o.dim = static_cast<int64_t>(q.size());
  o.init_values = q;
  o.learnable = learnable;
  auto g = std::make_shared<GradingOperator>(o);
  g->to(DType::f64);
  return g;
}

TEST(GradedLoss, EqualWeightsGiveThePlainLosses) {
  Tensor pred = values({0.5, -1, 2, 0, 1, 1}, {2, 3}), target = values({1, 1, 1, 0, 0, 0}, {2, 3});
  Tensor ones = Tensor::ones({3}, DType::f64);
  EXPECT_NEAR(graded_mse(pred, target, ones).item(), mean(square(pred - target)).item(), 1e-15);
  Tensor classes = raw_to_dtype(values({2, 0}, {2}), DType::i64);
  EXPECT_NEAR(graded_cross_entropy(pred, classes, ones).item(), cross_entropy(pred, classes).item(),
              1e-15);
}

TEST(GradedLoss, WeightsFollowTheGrades) {
  // Component losses 1 and 4 with LGT weights 1 and 3: (1 + 12) / 4.
  auto owner = grading(GradingKind::linear, {1, 3});
  GradingOperator& g = *owner;
  Tensor w = loss_weights(g, DType::f64, kCPU);
  EXPECT_EQ(w.to_vector(), (std::vector<double>{1, 3}));
  Tensor pred = values({1, 2}, {1, 2}), target = values({0, 0}, {1, 2});
  EXPECT_DOUBLE_EQ(graded_mse(pred, target, w).item(), 13.0 / 4.0);
  // Positions: the same weighting along the last axis.
  EXPECT_DOUBLE_EQ(graded_positions(values({1, 4}, {1, 2}), w).item(), 13.0 / 4.0);
}

TEST(GradedLoss, WeightsAreDetachedUnlessAskedOtherwise) {
  for (bool detach : {true, false}) {
    auto owner = grading(GradingKind::exponential, {0.5, 1.5}, /*learnable=*/true);
    GradingOperator& g = *owner;
    Tensor pred = values({1, 2}, {1, 2}), target = values({0, 0}, {1, 2});
    pred.set_requires_grad(true);
    backward(graded_mse(pred, target, loss_weights(g, DType::f64, kCPU, detach)) +
             grade_prior(g, {1, 1}, 0.0, DType::f64));
    EXPECT_EQ(g.parameter("theta").grad().defined(), !detach);
  }
}

TEST(GradedLoss, PriorPullsTheGradesTowardsItsValues) {
  auto owner = grading(GradingKind::linear, {1, 3}, true);
  GradingOperator& g = *owner;
  Tensor prior = grade_prior(g, {2, 2}, 0.5, DType::f64);
  EXPECT_NEAR(prior.item(), 0.5 * (1 + 1), 1e-6);
  backward(prior);
  std::vector<double> grad = g.parameter("theta").grad().to_vector();
  EXPECT_LT(grad[0], 0);  // q_0 = 1 below its prior: the loss falls as q_0 rises
  EXPECT_GT(grad[1], 0);
  testing::expect_error([&] { grade_prior(g, {1, 2, 3}, 1.0); }, {"grade_prior", "2 grades"});
}

TEST(GradedLoss, GradientNormBounds) {
  // ||grad L|| <= max_i ||grad l_i||; graded / ungraded norm within [1/kappa, kappa].
  auto owner = grading(GradingKind::exponential, {0, 1, 2, 3});
  GradingOperator& g = *owner;
  const double kappa = g.kappa();
  Tensor w = loss_weights(g, DType::f64, kCPU), ones = Tensor::ones({4}, DType::f64);
  Tensor target = values({0, 0, 0, 0, 0, 0, 0, 0}, {2, 4});
  std::vector<double> p = {0.3, -2, 1, 0.1, 4, 0.2, -0.5, 1};
  auto grad_norm = [&](const Tensor& weights) {
    Tensor pred = values(p, {2, 4});
    pred.set_requires_grad(true);
    backward(graded_mse(pred, target, weights));
    double s = 0;
    for (double v : pred.grad().to_vector()) s += v * v;
    return std::sqrt(s);
  };
  double max_component = 0;
  for (int i = 0; i < 4; ++i)
    max_component = std::max(max_component, std::hypot(p[i], p[4 + i]));  // 2 e / N, N = 2
  const double gg = grad_norm(w), gu = grad_norm(ones);
  EXPECT_LE(gg, max_component * (1 + 1e-12));
  EXPECT_LE(gg / gu, kappa);
  EXPECT_GE(gg / gu, 1 / kappa);
}

TEST(GradedLoss, ShapeErrors) {
  Tensor pred = values({1, 2}, {1, 2});
  testing::expect_error([&] { graded_mse(pred, pred, Tensor::ones({3}, DType::f64)); },
                        {"graded_mse", "(K)", "(3,)"});
}

}  // namespace
}  // namespace gradus::graded
