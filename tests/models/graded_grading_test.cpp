// The grading operator of graded transformers (models/graded/grading.h): values, identity
// settings, learnable parametrisations, the options' errors.
#include <gtest/gtest.h>

#include <cmath>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/tape.h"
#include "models/graded/grading.h"
#include "support/expect_error.h"

namespace gradus::graded {
namespace {

GradingOptions ramp(GradingKind kind, int64_t dim, double a, double b) {
  GradingOptions o;
  o.kind = kind;
  o.dim = dim;
  o.init = parse_grade_init(fmt::format("{}..{}", a, b));
  return o;
}

TEST(GradedGrading, LinearAndExponentialScalesOfARamp) {
  GradingOperator lgt(ramp(GradingKind::linear, 3, 0.5, 2.5));
  EXPECT_EQ(lgt.scale_values(), (std::vector<double>{0.5, 1.5, 2.5}));
  EXPECT_DOUBLE_EQ(lgt.kappa(), 5.0);
  GradingOptions e = ramp(GradingKind::exponential, 3, 0, 2);
  e.base = 3;
  GradingOperator egt(e);
  EXPECT_EQ(egt.scale_values(), (std::vector<double>{1.0, 3.0, 9.0}));
  EXPECT_DOUBLE_EQ(egt.kappa(), 9.0);  // lambda^(q_max - q_min)
  // The tensor the model multiplies by, in f32 and f64.
  EXPECT_EQ(egt.scales(DType::f64).to_vector(), (std::vector<double>{1.0, 3.0, 9.0}));
  EXPECT_EQ(egt.scales(DType::f32).shape(), (Shape{1, 3}));
}

TEST(GradedGrading, RmsNormalisationHasUnitMeanSquare) {
  GradingOptions o = ramp(GradingKind::exponential, 4, 0, 3);
  o.rms_norm = true;
  GradingOperator g(o);
  double ms = 0;
  for (double s : g.scale_values()) ms += s * s / 4;
  EXPECT_NEAR(ms, 1.0, 1e-15);
  EXPECT_NEAR(g.kappa(), 8.0, 1e-12);  // normalisation keeps ratios
}

TEST(GradedGrading, IdentitySettingsAreExactlyOne) {
  GradingOptions lgt;
  lgt.dim = 5;  // identity init: q = 1
  EXPECT_TRUE(GradingOperator(lgt).is_identity());
  GradingOptions egt;
  egt.kind = GradingKind::exponential;
  egt.dim = 5;  // q = 0
  EXPECT_TRUE(GradingOperator(egt).is_identity());
  GradingOptions flat = ramp(GradingKind::exponential, 5, 0.5, 4);
  flat.base = 1;  // lambda = 1: any grades
  EXPECT_TRUE(GradingOperator(flat).is_identity());
  EXPECT_FALSE(GradingOperator(ramp(GradingKind::linear, 5, 0.5, 4)).is_identity());
}

TEST(GradedGrading, LearnableGradesStartAtTheirInitialValues) {
  for (bool monotone : {false, true}) {
    GradingOptions o = ramp(GradingKind::exponential, 6, 0.2, 3);
    o.learnable = true;
    o.monotone = monotone;
    o.rows = 2;
    o.learn_base = true;
    o.base = 1.7;
    GradingOperator g(o);
    g.to(DType::f64);
    EXPECT_EQ(g.parameters().size(), 2u);  // theta or delta, and rho
    std::vector<double> q = g.grade_values();
    ASSERT_EQ(q.size(), 12u);
    for (int64_t r = 0; r < 2; ++r)
      for (int64_t i = 0; i < 6; ++i) EXPECT_NEAR(q[r * 6 + i], 0.2 + 2.8 * i / 5.0, 1e-6);
    EXPECT_NEAR(g.base_value(), 1.7, 1e-6);  // stored in f32, read in f64
  }
}

TEST(GradedGrading, GradesAreClampedToQMax) {
  GradingOptions o = ramp(GradingKind::linear, 2, 1, 2);
  o.learnable = true;
  o.q_max = 3;
  GradingOperator g(o);
  {
    NoGradGuard no_grad;
    raw_copy_(g.parameter("theta"), Tensor::from_vector(std::vector<float>{50.0f, -50.0f}, {1, 2}));
  }
  std::vector<double> q = g.grade_values();
  EXPECT_DOUBLE_EQ(q[0], 3.0);
  EXPECT_NEAR(q[1], 1e-3, 1e-9);  // q_min + softplus(-50)
  // No gradient flows through the clamp.
  backward(sum(g.scales(DType::f32)));
  EXPECT_EQ(g.parameter("theta").grad().to_vector()[0], 0.0);
  EXPECT_GT(g.parameter("theta").grad().to_vector()[1], 0.0);
}

TEST(GradedGrading, ApplyScalesTheLastAxisPerRow) {
  GradingOptions o = ramp(GradingKind::linear, 2, 1, 2);
  o.rows = 2;
  GradingOperator g(o);
  Tensor x = Tensor::ones({3, 2, 2}, DType::f64);
  EXPECT_EQ(g.apply(x).to_vector(), (std::vector<double>{1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2}));
  testing::expect_error(
      [&] {
        g.apply(Tensor::ones({3, 2}, DType::f64));
      },
      {"GradingOperator::apply", "(..., 2, 2)", "(3, 2)"});
}

TEST(GradedGrading, FindsGradingsAndTheirParameters) {
  Module root;
  GradingOptions o = ramp(GradingKind::linear, 3, 1, 2);
  o.learnable = true;
  auto child = std::make_shared<Module>();
  root.register_module("block", child);
  child->register_module("grading", std::make_shared<GradingOperator>(o));
  auto found = find_gradings(root);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].first, "block.grading");
  EXPECT_EQ(grade_parameters(root).size(), 1u);
}

TEST(GradedGrading, OptionErrorsNameTheKey) {
  GradingOptions low = ramp(GradingKind::linear, 3, 0, 1);
  testing::expect_error([&] { GradingOperator g(low); },
                        {"model.graded_q_init", "lgt", "found 0 at channel 0"});
  GradingOptions learn = ramp(GradingKind::exponential, 3, 0, 1);
  learn.learnable = true;
  testing::expect_error([&] { GradingOperator g(learn); },
                        {"model.graded_q_init", "learnable", "cannot start at 0"});
  GradingOptions flat = ramp(GradingKind::linear, 3, 1, 1);
  flat.learnable = flat.monotone = true;
  testing::expect_error([&] { GradingOperator g(flat); },
                        {"model.graded_monotone", "strictly increasing"});
  GradingOptions base = ramp(GradingKind::linear, 3, 1, 2);
  base.learn_base = true;
  testing::expect_error([&] { GradingOperator g(base); }, {"model.graded_learn_base", "egt"});
  GradingOptions fixed_monotone = ramp(GradingKind::linear, 3, 1, 2);
  fixed_monotone.monotone = true;
  testing::expect_error([&] { GradingOperator g(fixed_monotone); },
                        {"model.graded_monotone", "graded_learnable"});
  testing::expect_error([] { parse_grade_init("1..x"); }, {"graded_q_init", "\"1..x\""});
}

TEST(GradedGrading, InverseSoftplus) {
  for (double y : {1e-6, 0.3, 1.0, 7.0, 30.0})
    EXPECT_NEAR(std::log1p(std::exp(inverse_softplus(y))), y, 1e-12 * std::max(1.0, y));
}

}  // namespace
}  // namespace gradus::graded
