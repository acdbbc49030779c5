// Optimisers: each update checked against the published formulas evaluated in doubles here (never
// against values printed by the implementation), parameter groups, zero_grad, skipped parameters,
// the exact relation between AdamW and Adam, state round trips, validation messages, gradient-norm
// clipping, and convergence on a quadratic and on the Rosenbrock function with gradients from the
// engine's own backward(). Every numeric test runs in f32 and f64.
#include "kernels/optim.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/ops/view.h"
#include "autodiff/tape.h"
#include "kernels/registry.h"
#include "models/optim/adam.h"
#include "models/optim/clip.h"
#include "models/optim/sgd.h"

namespace gradus {
namespace {

using Vec = std::vector<double>;
constexpr DType kDTypes[] = {DType::f32, DType::f64};

Tensor leaf(const Vec& values, DType dt) {
  Tensor t = Tensor::from_vector(values, {static_cast<int64_t>(values.size())}, dt);
  t.set_requires_grad(true);
  return t;
}

void set_grad(const Tensor& p, const Vec& g) {
  p.set_grad(Tensor::from_vector(g, p.shape(), p.dtype()));
}

// Values as the parameter's dtype holds them (the reference starts from the same numbers).
Vec rounded(const Vec& v, DType dt) {
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}, dt).to_vector();
}

// f32 runs the update in single precision: a few ulps of O(1) values per step.
double tol(DType dt) { return dt == DType::f32 ? 2e-6 : 1e-13; }

void expect_values(const Tensor& t, const Vec& expected, double tolerance,
                   const std::string& what) {
  Vec got = t.to_vector();
  ASSERT_EQ(got.size(), expected.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], expected[i], tolerance * std::max(1.0, std::abs(expected[i])))
        << what << " element " << i;
}

template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// ------------------------------------------------------------------ reference updates (doubles)

// torch.optim.SGD's documented algorithm, one step.
void sgd_reference(Vec& p, const Vec& grad, Vec& buf, bool first, double lr, double momentum,
                   double dampening, double wd, bool nesterov) {
  for (size_t i = 0; i < p.size(); ++i) {
    double g = grad[i] + wd * p[i];
    if (momentum != 0) {
      buf[i] = first ? g : momentum * buf[i] + (1 - dampening) * g;
      g = nesterov ? g + momentum * buf[i] : buf[i];
    }
    p[i] -= lr * g;
  }
}

// Adam as published (Kingma & Ba, Algorithm 1) with bias-corrected moments, eps added to
// sqrt(v_hat) as PyTorch does; weight decay either added to the gradient (L2) or applied to p first
// (AdamW).
void adam_reference(Vec& p, const Vec& grad, Vec& m, Vec& v, int t, double lr, double b1, double b2,
                    double eps, double wd, bool decoupled) {
  for (size_t i = 0; i < p.size(); ++i) {
    double g = grad[i];
    if (decoupled)
      p[i] -= lr * wd * p[i];
    else
      g += wd * p[i];
    m[i] = b1 * m[i] + (1 - b1) * g;
    v[i] = b2 * v[i] + (1 - b2) * g * g;
    const double m_hat = m[i] / (1 - std::pow(b1, t));
    const double v_hat = v[i] / (1 - std::pow(b2, t));
    p[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
  }
}

// ------------------------------------------------------------------ kernels

TEST(Optim, KernelsRegisteredForCpuF32AndF64) {
  for (const char* name :
       {kernels::kSgdStep, kernels::kAdamStep, kernels::kNormPowSum, kernels::kScaleInplace})
    for (DType dt : kDTypes)
      EXPECT_TRUE(kernels::supports(name, DeviceType::cpu, dt)) << name << " " << dtype_name(dt);
}

// ------------------------------------------------------------------ SGD

TEST(Optim, SgdPlainStepsMatchFormula) {
  for (DType dt : kDTypes) {
    Tensor w = leaf({1.0, -2.0, 3.5}, dt);
    SGD opt({w}, 0.1);
    Vec p = rounded({1.0, -2.0, 3.5}, dt), buf(3);
    const std::vector<Vec> grads = {{0.5, 0.25, -1.0}, {-0.75, 2.0, 0.125}};
    for (size_t s = 0; s < grads.size(); ++s) {
      set_grad(w, grads[s]);
      opt.step();
      sgd_reference(p, rounded(grads[s], dt), buf, s == 0, 0.1, 0, 0, 0, false);
      expect_values(w, p, tol(dt), fmt::format("{} step {}", dtype_name(dt), s + 1));
    }
    EXPECT_EQ(opt.step_count(), 2);
    EXPECT_TRUE(opt.state(0, 0).buffers.empty());  // no momentum, no buffer
  }
}

TEST(Optim, SgdMomentumDampeningWeightDecayMatchFormula) {
  for (DType dt : kDTypes) {
    const Vec init = {0.3, -1.1, 2.0};
    Tensor w = leaf(init, dt);
    SGD opt({w}, 0.05, SGDOptions{.momentum = 0.9, .dampening = 0.2}, 0.01);
    Vec p = rounded(init, dt), buf(3);
    const std::vector<Vec> grads = {{1.0, -0.5, 0.25}, {0.8, 0.1, -0.3}, {-0.2, 0.6, 0.9}};
    for (size_t s = 0; s < grads.size(); ++s) {
      set_grad(w, grads[s]);
      opt.step();
      sgd_reference(p, rounded(grads[s], dt), buf, s == 0, 0.05, 0.9, 0.2, 0.01, false);
      expect_values(w, p, tol(dt), fmt::format("{} step {}", dtype_name(dt), s + 1));
      expect_values(opt.state(0, 0).buffers.at("momentum_buffer"), buf, tol(dt), "buffer");
    }
  }
}

TEST(Optim, SgdNesterovMatchesFormula) {
  for (DType dt : kDTypes) {
    const Vec init = {-0.7, 0.4, 1.5};
    Tensor w = leaf(init, dt);
    SGD opt({w}, 0.1, SGDOptions{.momentum = 0.8, .nesterov = true}, 0.05);
    Vec p = rounded(init, dt), buf(3);
    const std::vector<Vec> grads = {{0.5, -1.0, 0.25}, {0.4, -0.6, 0.1}, {0.3, 0.2, -0.1}};
    for (size_t s = 0; s < grads.size(); ++s) {
      set_grad(w, grads[s]);
      opt.step();
      sgd_reference(p, rounded(grads[s], dt), buf, s == 0, 0.1, 0.8, 0, 0.05, true);
      expect_values(w, p, tol(dt), fmt::format("{} step {}", dtype_name(dt), s + 1));
    }
  }
}

// ------------------------------------------------------------------ Adam / AdamW

TEST(Optim, AdamTwoStepsMatchPublishedFormula) {
  for (DType dt : kDTypes) {
    const Vec init = {0.5, -1.25, 2.0};
    Tensor w = leaf(init, dt);
    Adam opt({w}, 0.01);
    Vec p = rounded(init, dt), m(3), v(3);
    const std::vector<Vec> grads = {{0.1, -2.0, 0.5}, {-0.3, -1.0, 0.7}};
    for (size_t s = 0; s < grads.size(); ++s) {
      set_grad(w, grads[s]);
      opt.step();
      adam_reference(p, rounded(grads[s], dt), m, v, static_cast<int>(s + 1), 0.01, 0.9, 0.999,
                     1e-8, 0.0, false);
      expect_values(w, p, tol(dt), fmt::format("{} step {}", dtype_name(dt), s + 1));
      expect_values(opt.state(0, 0).buffers.at("exp_avg"), m, tol(dt), "exp_avg");
      expect_values(opt.state(0, 0).buffers.at("exp_avg_sq"), v, tol(dt), "exp_avg_sq");
      EXPECT_EQ(opt.state(0, 0).step, static_cast<int64_t>(s + 1));
    }
  }
}

TEST(Optim, AdamCustomBetasEpsAndL2WeightDecayMatchFormula) {
  // A large eps makes its placement (after the square root) visible in the result.
  for (DType dt : kDTypes) {
    const Vec init = {1.5, -0.5, 0.25};
    Tensor w = leaf(init, dt);
    Adam opt({w}, 0.05, AdamOptions{.beta1 = 0.8, .beta2 = 0.95, .eps = 1e-2}, 0.1);
    Vec p = rounded(init, dt), m(3), v(3);
    const std::vector<Vec> grads = {{0.2, 0.4, -0.6}, {0.05, -0.3, -0.2}, {0.01, 0.02, 0.03}};
    for (size_t s = 0; s < grads.size(); ++s) {
      set_grad(w, grads[s]);
      opt.step();
      adam_reference(p, rounded(grads[s], dt), m, v, static_cast<int>(s + 1), 0.05, 0.8, 0.95, 1e-2,
                     0.1, false);
      expect_values(w, p, tol(dt), fmt::format("{} step {}", dtype_name(dt), s + 1));
    }
  }
}

TEST(Optim, AdamWTwoStepsMatchPublishedFormula) {
  for (DType dt : kDTypes) {
    const Vec init = {0.5, -1.25, 2.0};
    Tensor w = leaf(init, dt);
    AdamW opt({w}, 0.01, 0.1);
    EXPECT_TRUE(opt.options().decoupled_weight_decay);
    Vec p = rounded(init, dt), m(3), v(3);
    const std::vector<Vec> grads = {{0.1, -2.0, 0.5}, {-0.3, -1.0, 0.7}};
    for (size_t s = 0; s < grads.size(); ++s) {
      set_grad(w, grads[s]);
      opt.step();
      adam_reference(p, rounded(grads[s], dt), m, v, static_cast<int>(s + 1), 0.01, 0.9, 0.999,
                     1e-8, 0.1, true);
      expect_values(w, p, tol(dt), fmt::format("{} step {}", dtype_name(dt), s + 1));
    }
  }
}

TEST(Optim, AdamWDefaultsMatchPyTorch) {
  Tensor w = leaf({1.0}, DType::f64);
  AdamW opt({w});
  EXPECT_EQ(opt.param_groups()[0].weight_decay, 0.01);
  EXPECT_EQ(opt.param_groups()[0].lr, 1e-3);
  EXPECT_EQ(opt.name(), "AdamW");
  Adam adam({leaf({1.0}, DType::f64)});
  EXPECT_EQ(adam.param_groups()[0].weight_decay, 0.0);
  EXPECT_FALSE(adam.options().decoupled_weight_decay);
}

// Multiplies t in place by `factor` rounded to t's dtype, with one rounding as the dtype's own
// multiplication does (a product of two floats is exact in double).
void scale_like_dtype(const Tensor& t, double lr, double wd) {
  const double factor = Tensor::scalar(1.0 - lr * wd, t.dtype()).item();
  Vec v = t.to_vector();
  for (double& x : v) x *= factor;
  raw_copy_(t, Tensor::from_vector(v, t.shape(), t.dtype()));
}

TEST(Optim, AdamWIsAdamAfterDecoupledDecayExactly) {
  // AdamW(wd) on p == Adam(wd = 0) on p * (1 - lr * wd), bit for bit, step after step.
  for (DType dt : kDTypes) {
    const Vec init = {0.9, -0.4, 1.7, -2.2};
    const double lr = 0.02, wd = 0.3;
    Tensor a = leaf(init, dt), b = leaf(init, dt);
    AdamW adamw({a}, lr, wd);
    Adam adam({b}, lr);
    const std::vector<Vec> grads = {
        {0.3, -0.1, 0.8, 0.0}, {0.2, 0.4, -0.5, 1.0}, {-0.6, 0.1, 0.2, 0.3}};
    for (const Vec& g : grads) {
      set_grad(a, g);
      set_grad(b, g);
      adamw.step();
      scale_like_dtype(b, lr, wd);
      adam.step();
      EXPECT_EQ(a.to_vector(), b.to_vector()) << dtype_name(dt);
    }
    // ... and differs from Adam's L2 decay, which goes through the moments.
    Tensor c = leaf(init, dt), d = leaf(init, dt);
    Adam l2({c}, lr, AdamOptions{}, wd);
    AdamW dec({d}, lr, wd);
    set_grad(c, grads[0]);
    set_grad(d, grads[0]);
    l2.step();
    dec.step();
    EXPECT_NE(c.to_vector(), d.to_vector());
  }
}

// ------------------------------------------------------------------ groups, zero_grad, skipping

TEST(Optim, ParamGroupsUseTheirOwnLrAndWeightDecay) {
  for (DType dt : kDTypes) {
    Tensor a = leaf({1.0, 2.0}, dt), b = leaf({-1.0, 0.5}, dt);
    SGD opt({ParamGroup{{a}, 0.1, 0.0, "fast"}, ParamGroup{{b}, 0.01, 0.5, "decayed"}},
            SGDOptions{.momentum = 0.5});
    Vec pa = rounded({1.0, 2.0}, dt), pb = rounded({-1.0, 0.5}, dt), ba(2), bb(2);
    const Vec ga = {0.5, -0.5}, gb = {0.25, 1.0};
    set_grad(a, ga);
    set_grad(b, gb);
    opt.step();
    sgd_reference(pa, ga, ba, true, 0.1, 0.5, 0, 0.0, false);
    sgd_reference(pb, gb, bb, true, 0.01, 0.5, 0, 0.5, false);
    expect_values(a, pa, tol(dt), "group 0 step 1");
    expect_values(b, pb, tol(dt), "group 1 step 1");
    // A schedule changes lr through param_groups(); the next step uses it.
    opt.param_groups()[1].lr = 0.2;
    opt.step();
    sgd_reference(pa, ga, ba, false, 0.1, 0.5, 0, 0.0, false);
    sgd_reference(pb, gb, bb, false, 0.2, 0.5, 0, 0.5, false);
    expect_values(a, pa, tol(dt), "group 0 step 2");
    expect_values(b, pb, tol(dt), "group 1 step 2");
  }
  for (DType dt : kDTypes) {
    Tensor a = leaf({1.0, 2.0}, dt), b = leaf({-1.0, 0.5}, dt);
    Adam opt({ParamGroup{{a}, 0.1, 0.0}, ParamGroup{{b}, 0.01, 0.5}});
    Vec pa = rounded({1.0, 2.0}, dt), pb = rounded({-1.0, 0.5}, dt), ma(2), va(2), mb(2), vb(2);
    const Vec ga = {0.5, -0.5}, gb = {0.25, 1.0};
    set_grad(a, ga);
    set_grad(b, gb);
    opt.step();
    adam_reference(pa, ga, ma, va, 1, 0.1, 0.9, 0.999, 1e-8, 0.0, false);
    adam_reference(pb, gb, mb, vb, 1, 0.01, 0.9, 0.999, 1e-8, 0.5, false);
    expect_values(a, pa, tol(dt), "Adam group 0");
    expect_values(b, pb, tol(dt), "Adam group 1");
  }
}

TEST(Optim, ZeroGradDropsGradients) {
  for (DType dt : kDTypes) {
    Tensor a = leaf({1.0, 2.0}, dt), b = leaf({3.0}, dt);
    Adam opt({a, b}, 0.1);
    backward(sum(a * a) + sum(b));
    ASSERT_TRUE(a.grad().defined());
    ASSERT_TRUE(b.grad().defined());
    opt.zero_grad();
    EXPECT_FALSE(a.grad().defined());
    EXPECT_FALSE(b.grad().defined());
    // A step with no gradients changes nothing but the count.
    opt.step();
    EXPECT_EQ(a.to_vector(), rounded({1.0, 2.0}, dt));
    EXPECT_EQ(b.to_vector(), rounded({3.0}, dt));
    EXPECT_EQ(opt.step_count(), 1);
    EXPECT_EQ(opt.state(0, 0).step, 0);
  }
}

TEST(Optim, ParamsWithoutGradAreSkippedAndKeepTheirOwnStepCount) {
  for (DType dt : kDTypes) {
    Tensor a = leaf({1.0, -1.0}, dt), b = leaf({0.5, 0.25}, dt);
    Adam opt({a, b}, 0.1);
    Vec pa = rounded({1.0, -1.0}, dt), pb = rounded({0.5, 0.25}, dt), ma(2), va(2), mb(2), vb(2);
    const Vec g = {0.3, -0.2};
    set_grad(a, g);  // b has no gradient
    opt.step();
    adam_reference(pa, g, ma, va, 1, 0.1, 0.9, 0.999, 1e-8, 0, false);
    expect_values(a, pa, tol(dt), "a");
    EXPECT_EQ(b.to_vector(), pb);
    EXPECT_TRUE(opt.state(0, 1).buffers.empty());
    // b's first update is its own step 1 (bias correction for t = 1), as in PyTorch.
    opt.zero_grad();
    const Vec a_before = a.to_vector();
    set_grad(b, g);
    opt.step();
    adam_reference(pb, g, mb, vb, 1, 0.1, 0.9, 0.999, 1e-8, 0, false);
    expect_values(b, pb, tol(dt), "b");
    EXPECT_EQ(a.to_vector(), a_before);
    EXPECT_EQ(opt.state(0, 0).step, 1);
    EXPECT_EQ(opt.state(0, 1).step, 1);
    EXPECT_EQ(opt.step_count(), 2);
  }
}

TEST(Optim, StridedParameterAndGradientAreUpdatedInPlace) {
  for (DType dt : kDTypes) {
    // The parameter is a transposed view: the update must land in the base's storage.
    Tensor base = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, dt);
    Tensor w = raw_transpose(base, 0, 1);  // (3, 2), strides (1, 3)
    w.set_requires_grad(true);
    // The gradient is a transposed view too: g(i, j) = gbase(j, i).
    Tensor gbase = Tensor::from_vector({0.1, 0.2, 0.3, 0.4, 0.5, 0.6}, {2, 3}, dt);
    w.set_grad(raw_transpose(gbase, 0, 1));
    ASSERT_FALSE(w.grad().is_contiguous());
    SGD opt({w}, 0.5, SGDOptions{.momentum = 0.9});
    opt.step();
    // First momentum step: buf = g, so base -= 0.5 * gbase elementwise.
    Vec expect = {1 - 0.05, 2 - 0.1, 3 - 0.15, 4 - 0.2, 5 - 0.25, 6 - 0.3};
    expect_values(base, expect, tol(dt), fmt::format("{} base", dtype_name(dt)));
    EXPECT_TRUE(w.shares_storage(base));
  }
}

// ------------------------------------------------------------------ state for checkpoints

TEST(Optim, StateTensorsNamesAndRoundTrip) {
  for (DType dt : kDTypes) {
    Tensor a = leaf({1.0, -1.0}, dt), b = leaf({0.5}, dt), c = leaf({2.0}, dt);
    Adam opt({ParamGroup{{a, b}, 0.1}, ParamGroup{{c}, 0.05}});
    set_grad(a, {0.3, -0.2});
    set_grad(c, {0.7});
    opt.step();
    opt.step();
    std::vector<std::string> names;
    for (const auto& [n, t] : opt.state_tensors()) names.push_back(n);
    EXPECT_EQ(names,
              (std::vector<std::string>{"step_count", "group0.param0.step", "group0.param0.exp_avg",
                                        "group0.param0.exp_avg_sq", "group1.param0.step",
                                        "group1.param0.exp_avg", "group1.param0.exp_avg_sq"}));
    EXPECT_EQ(opt.state_tensors()[0].second.item(), 2);
    EXPECT_EQ(opt.state_tensors()[0].second.dtype(), DType::i64);

    // A second optimiser on copies of the parameters, loaded from the first, continues identically.
    Tensor a2 = leaf(a.to_vector(), dt), b2 = leaf(b.to_vector(), dt), c2 = leaf(c.to_vector(), dt);
    Adam other({ParamGroup{{a2, b2}, 0.1}, ParamGroup{{c2}, 0.05}});
    other.load_state_tensors(opt.state_tensors());
    EXPECT_EQ(other.step_count(), 2);
    for (Tensor p : {a, b, c, a2, b2, c2}) set_grad(p, Vec(p.numel(), 0.4));
    opt.step();
    other.step();
    EXPECT_EQ(a.to_vector(), a2.to_vector());
    EXPECT_EQ(b.to_vector(), b2.to_vector());
    EXPECT_EQ(c.to_vector(), c2.to_vector());
    EXPECT_EQ(other.state(0, 1).step, 1);

    // Bad names and shapes are refused with the name in the message, leaving the state as it was.
    auto bad_name = opt.state_tensors();
    bad_name.emplace_back("group0.param9.exp_avg", Tensor::zeros({2}, dt));
    EXPECT_NE(error_of([&] { other.load_state_tensors(bad_name); }).find("group0.param9"),
              std::string::npos);
    auto bad_shape = opt.state_tensors();
    bad_shape[2].second = Tensor::zeros({5}, dt);
    EXPECT_NE(error_of([&] { other.load_state_tensors(bad_shape); }).find("group0.param0.exp_avg"),
              std::string::npos);
    EXPECT_EQ(other.step_count(), 3);
  }
}

// ------------------------------------------------------------------ validation

TEST(Optim, HyperParameterErrorsNameOptimiserAndField) {
  Tensor w = leaf({1.0}, DType::f64);
  auto has = [](const std::string& msg, std::initializer_list<const char*> parts) {
    for (const char* p : parts)
      if (msg.find(p) == std::string::npos) return ::testing::AssertionFailure() << msg;
    return ::testing::AssertionSuccess();
  };
  EXPECT_TRUE(has(error_of([&] { Adam({w}, -1.0); }), {"Adam", "lr", "-1"}));
  EXPECT_TRUE(has(error_of([&] { SGD({w}, std::nan("")); }), {"SGD", "lr"}));
  EXPECT_TRUE(has(error_of([&] { Adam({w}, 0.1, AdamOptions{.beta1 = 1.0}); }), {"Adam", "beta1"}));
  EXPECT_TRUE(has(error_of([&] { AdamW({w}, 0.1, 0.01, AdamOptions{.beta2 = -0.1}); }),
                  {"AdamW", "beta2"}));
  EXPECT_TRUE(has(error_of([&] { Adam({w}, 0.1, AdamOptions{.eps = 0.0}); }), {"Adam", "eps"}));
  EXPECT_TRUE(
      has(error_of([&] { Adam({w}, 0.1, AdamOptions{}, -0.5); }), {"Adam", "weight_decay"}));
  EXPECT_TRUE(
      has(error_of([&] { SGD({w}, 0.1, SGDOptions{.momentum = -0.1}); }), {"SGD", "momentum"}));
  EXPECT_TRUE(
      has(error_of([&] { SGD({w}, 0.1, SGDOptions{.dampening = 1.5}); }), {"SGD", "dampening"}));
  EXPECT_TRUE(
      has(error_of([&] { SGD({w}, 0.1, SGDOptions{.nesterov = true}); }), {"SGD", "nesterov"}));
  EXPECT_TRUE(has(error_of([&] { SGD(std::vector<Tensor>{}, 0.1); }), {"SGD", "empty"}));
  EXPECT_TRUE(has(error_of([&] { SGD({w, w}, 0.1); }), {"SGD", "more than once"}));
  Tensor non_leaf = w * 2.0;
  EXPECT_TRUE(has(error_of([&] { Adam({non_leaf}); }), {"Adam", "leaf"}));
  EXPECT_TRUE(has(error_of([&] { SGD({Tensor()}, 0.1); }), {"SGD", "undefined"}));
  // A schedule that sets a bad lr is caught at the next step, naming the group.
  Adam opt({ParamGroup{{w}, 0.1, 0.0, "head"}});
  opt.param_groups()[0].lr = -0.1;
  EXPECT_TRUE(has(error_of([&] { opt.step(); }), {"Adam", "lr", "head"}));
}

// ------------------------------------------------------------------ clip_grad_norm

TEST(Optim, ClipGradNormValuesAndScaling) {
  for (DType dt : kDTypes) {
    Tensor a = leaf({3.0, -4.0}, dt), b = leaf({12.0}, dt), none = leaf({100.0}, dt);
    auto reset = [&] {
      set_grad(a, {3.0, -4.0});
      set_grad(b, {-12.0});
    };
    const std::vector<Tensor> params = {a, none, b};  // `none` has no gradient and is skipped
    reset();
    EXPECT_DOUBLE_EQ(grad_norm(params), 13.0);
    EXPECT_DOUBLE_EQ(grad_norm(params, 1.0), 19.0);
    EXPECT_DOUBLE_EQ(grad_norm(params, std::numeric_limits<double>::infinity()), 12.0);
    EXPECT_NEAR(grad_norm(params, 3.0), std::cbrt(27.0 + 64.0 + 1728.0), 1e-12);

    // Above max_norm: scaled by max_norm / (norm + 1e-6); the norm before clipping is returned.
    const double total = clip_grad_norm(params, 6.5);
    EXPECT_DOUBLE_EQ(total, 13.0);
    const double k = 6.5 / (13.0 + 1e-6);
    expect_values(a.grad(), {3.0 * k, -4.0 * k}, tol(dt), "a.grad");
    expect_values(b.grad(), {-12.0 * k}, tol(dt), "b.grad");
    EXPECT_FALSE(none.grad().defined());
    EXPECT_NEAR(grad_norm(params), 13.0 * k, dt == DType::f32 ? 1e-5 : 1e-12);

    // At or below max_norm: untouched.
    reset();
    EXPECT_DOUBLE_EQ(clip_grad_norm(params, 20.0), 13.0);
    EXPECT_EQ(a.grad().to_vector(), (Vec{3.0, -4.0}));
    EXPECT_EQ(b.grad().to_vector(), (Vec{-12.0}));

    // The inf norm clips by the largest magnitude.
    const double inf = std::numeric_limits<double>::infinity();
    EXPECT_DOUBLE_EQ(clip_grad_norm(params, 6.0, inf), 12.0);
    const double ki = 6.0 / (12.0 + 1e-6);
    expect_values(b.grad(), {-12.0 * ki}, tol(dt), "b.grad inf");
    expect_values(a.grad(), {3.0 * ki, -4.0 * ki}, tol(dt), "a.grad inf");

    // Non-finite norms are returned and the gradients left as they are.
    set_grad(a, {std::nan(""), 1.0});
    set_grad(b, {2.0});
    EXPECT_TRUE(std::isnan(clip_grad_norm(params, 1.0)));
    EXPECT_TRUE(std::isnan(clip_grad_norm(params, 1.0, inf)));
    EXPECT_EQ(b.grad().to_vector(), (Vec{2.0}));
    set_grad(a, {inf, 1.0});
    EXPECT_EQ(clip_grad_norm(params, 1.0), inf);
    EXPECT_EQ(b.grad().to_vector(), (Vec{2.0}));

    // No gradients at all: norm 0.
    EXPECT_EQ(clip_grad_norm({none}, 1.0), 0.0);
  }
}

TEST(Optim, ClipGradNormLargeIsAccurateAndThreadCountIndependent) {
  for (DType dt : kDTypes) {
    const int64_t n = 300000;  // many blocks, parallel path
    Vec values(n);
    for (int64_t i = 0; i < n; ++i)
      values[i] = std::sin(0.001 * static_cast<double>(i)) * static_cast<double>(1 + i % 7);
    Tensor w = Tensor::zeros({n}, dt);
    w.set_requires_grad(true);
    Tensor g = Tensor::from_vector(values, {n}, dt);
    long double ref = 0;  // a plain running sum in extended precision as the reference
    for (double x : g.to_vector()) ref += static_cast<long double>(x) * x;
    w.set_grad(g);
    const double many = grad_norm({w});
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const double one = grad_norm({w});
    omp_set_num_threads(threads);
    EXPECT_EQ(many, one);
    const double expected = std::sqrt(static_cast<double>(ref));
    EXPECT_NEAR(many, expected, 1e-12 * expected);
  }
}

TEST(Optim, ClipGradNormRejectsBadArguments) {
  Tensor w = leaf({1.0}, DType::f64);
  set_grad(w, {1.0});
  EXPECT_NE(error_of([&] { clip_grad_norm({w}, -1.0); }).find("max_norm"), std::string::npos);
  EXPECT_NE(error_of([&] { clip_grad_norm({w}, 1.0, 0.0); }).find("norm_type"), std::string::npos);
  EXPECT_NE(error_of([&] { grad_norm({w}, -2.0); }).find("norm_type"), std::string::npos);
}

// ------------------------------------------------------------------ convergence

double max_abs_diff(const Tensor& x, const Vec& target) {
  Vec v = x.to_vector();
  double d = 0;
  for (size_t i = 0; i < v.size(); ++i) d = std::max(d, std::abs(v[i] - target[i]));
  return d;
}

Tensor quadratic_loss(const Tensor& x, const Tensor& c) { return sum(square(x - c)); }

// f(x, y) = (1 - x)^2 + 100 (y - x^2)^2, minimum at (1, 1).
Tensor rosenbrock(const Tensor& xy) {
  Tensor x = slice(xy, 0, 0, 1), y = slice(xy, 0, 1, 2);
  return sum(square(1.0 - x) + 100.0 * square(y - square(x)));
}

// Runs `steps` iterations of zero_grad -> loss -> backward -> step.
template <class LossFn>
void minimise(Optimizer& opt, LossFn loss, int steps) {
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    backward(loss());
    opt.step();
  }
}

TEST(Optim, QuadraticConvergesWithAdamAndSgdMomentum) {
  // Targets within [-1, 1], so that 1e-6 is several f32 ulps: Adam's steps near the optimum are
  // lr * m / sqrt(v) with v remembering the early large gradients, and an update below half an ulp
  // of a larger target would be lost to rounding in f32.
  const Vec target = {0.5, -0.75, 0.25, 1.0};
  for (DType dt : kDTypes) {
    const Tensor c = Tensor::from_vector(target, {4}, dt);
    {
      Tensor x = leaf({0, 0, 0, 0}, dt);
      Adam opt({x}, 0.05);
      minimise(
          opt, [&] { return quadratic_loss(x, c); }, 1000);
      EXPECT_LT(max_abs_diff(x, target), 1e-6) << "Adam " << dtype_name(dt);
    }
    {
      Tensor x = leaf({0, 0, 0, 0}, dt);
      SGD opt({x}, 0.1, SGDOptions{.momentum = 0.9});
      minimise(
          opt, [&] { return quadratic_loss(x, c); }, 500);
      EXPECT_LT(max_abs_diff(x, target), 1e-6) << "SGD " << dtype_name(dt);
    }
  }
}

TEST(Optim, RosenbrockConvergesWithAdamAndSgdMomentum) {
  // From (-1.5, 2) along the curved valley to (1, 1). The largest curvature on the way is about
  // 2000, so SGD's lr must stay below 2 (1 + momentum) / 2000.
  const Vec start = {-1.5, 2.0}, optimum = {1.0, 1.0};
  for (DType dt : kDTypes) {
    {
      Tensor xy = leaf(start, dt);
      Adam opt({xy}, 0.02);
      minimise(
          opt, [&] { return rosenbrock(xy); }, 4000);
      EXPECT_LT(max_abs_diff(xy, optimum), 1e-3)
          << "Adam " << dtype_name(dt) << " ended at " << fmt::format("{}", xy.to_vector());
    }
    {
      Tensor xy = leaf(start, dt);
      SGD opt({xy}, 1e-3, SGDOptions{.momentum = 0.9});
      minimise(
          opt, [&] { return rosenbrock(xy); }, 3000);
      EXPECT_LT(max_abs_diff(xy, optimum), 1e-3)
          << "SGD " << dtype_name(dt) << " ended at " << fmt::format("{}", xy.to_vector());
    }
  }
}

}  // namespace
}  // namespace gradus
