// CPU/GPU parity of the reductions (sum, mean, max, min, var, logsumexp) and of softmax /
// log_softmax: every axis pattern (all, leading, trailing, middle, non-adjacent, keepdim), long and
// wide reductions, transposed inputs, ties, NaN, -inf and large values; f32, and f64 for a few.
#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "autodiff/ops/reduce.h"
#include "autodiff/ops/softmax.h"
#include "autodiff/ops/view.h"
#include "support/cuda_parity.h"

namespace gradus {
namespace {

using testing::kExact;
using testing::ParityOptions;
using testing::ParityRun;
using testing::sum_tolerance;
using Axes = std::vector<int64_t>;
using ReduceFn = std::function<Tensor(const Tensor&, const Axes&, bool)>;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The number of elements reduced into each output.
int64_t reduced_count(const Shape& shape, const Axes& axes) {
  if (axes.empty()) return shape_numel(shape);
  int64_t n = 1;
  for (int64_t a : axes) n *= shape[a < 0 ? a + static_cast<int64_t>(shape.size()) : a];
  return n;
}

struct ReduceCase {
  Shape shape;
  Axes axes;
  bool keepdim;
  bool transposed;  // the input is transpose(leaf, 0, -1) of a leaf with those axes swapped
};

// Every axis pattern of a rank-3 input, plus a long reduction over rows (1031 rows, 97 columns:
// the reduced axis is not the innermost) and a wide one (5000 along the last axis).
std::vector<ReduceCase> reduce_cases() {
  return {{{4, 5, 6}, {}, false, false},      {{4, 5, 6}, {0}, false, false},
          {{4, 5, 6}, {1}, true, false},      {{4, 5, 6}, {-1}, false, false},
          {{4, 5, 6}, {0, 2}, true, false},   {{4, 5, 6}, {0, 1}, false, false},
          {{4, 5, 6}, {1}, false, true},      {{6, 5, 4}, {-1}, true, true},
          {{1031, 97}, {0}, false, false},    {{3, 5000}, {-1}, false, false},
          {{2, 1, 3}, {1}, false, false}};
}

std::string describe(const std::string& name, const ReduceCase& c) {
  return fmt::format("{} of {}{} over {} keepdim {}", name, shape_str(c.shape),
                     c.transposed ? " (transposed)" : "", fmt::join(c.axes, ","), c.keepdim);
}

// `draw` makes the CPU leaf; `tolerance` gives the (forward, backward) tolerance for a case.
void check_reduction(ParityRun& run, const std::string& name, const ReduceFn& op,
                     const std::function<Tensor(const Shape&)>& draw,
                     const std::function<ParityOptions(int64_t n)>& options_for) {
  for (const ReduceCase& c : reduce_cases()) {
    Shape leaf_shape = c.shape;
    if (c.transposed) std::swap(leaf_shape.front(), leaf_shape.back());
    run.check(describe(name, c), [&](const std::vector<Tensor>& in) {
      return op(c.transposed ? transpose(in[0], 0, -1) : in[0], c.axes, c.keepdim);
    }, {draw(leaf_shape)}, options_for(reduced_count(c.shape, c.axes)));
  }
}

ParityOptions with_tolerance(testing::Tolerance forward, testing::Tolerance backward,
                             DType dtype = DType::f32) {
  ParityOptions o;
  o.dtype = dtype;
  o.forward = forward;
  o.backward = backward;
  return o;
}

// 10^6 multiples of 1/16 in [-1, 1]: every partial sum, in any order, is a multiple of 2^-4 below
// 2^20 in magnitude, so exact in f32 (24-bit significand). The sums must agree bit for bit.
Tensor exact_terms(ParityRun& run) { return run.grid({1000, 1000}, -1, 1, 1.0 / 16); }

TEST(CudaParity, sum) {
  GRADUS_PARITY_SETUP(run);
  auto op = [](const Tensor& x, const Axes& a, bool k) { return sum(x, a, k); };
  // Random-sign unit terms: the order of the additions differs (sum_tolerance); the gradient is a
  // broadcast of the upstream one, exact.
  check_reduction(run, "sum", op, [&](const Shape& s) { return run.normal(s); }, [](int64_t n) {
    return with_tolerance(sum_tolerance(DType::f32, n), kExact);
  });
  check_reduction(run, "sum", op, [&](const Shape& s) { return run.normal(s); }, [](int64_t n) {
    return with_tolerance(sum_tolerance(DType::f64, n), kExact, DType::f64);
  });
  for (const Axes& axes : {Axes{}, Axes{0}, Axes{1}})
    run.check(fmt::format("sum of 10^6 exact terms over {}", fmt::join(axes, ",")),
              [&](const std::vector<Tensor>& in) { return sum(in[0], axes); }, {exact_terms(run)},
              with_tolerance(kExact, kExact));
}

TEST(CudaParity, mean) {
  GRADUS_PARITY_SETUP(run);
  auto op = [](const Tensor& x, const Axes& a, bool k) { return mean(x, a, k); };
  // The sum's tolerance divided by the count; the gradient is v / n, one rounding.
  check_reduction(run, "mean", op, [&](const Shape& s) { return run.normal(s); }, [](int64_t n) {
    testing::Tolerance t = sum_tolerance(DType::f32, n);
    t.atol /= static_cast<double>(n);
    return with_tolerance(t, testing::kF32Tolerance);
  });
  // An exact sum of 10^6 terms divided once: within an ulp or two.
  run.check("mean of 10^6 exact terms", [](const std::vector<Tensor>& in) { return mean(in[0]); },
            {exact_terms(run)}, with_tolerance({1e-6, 0.0}, {1e-6, 0.0}));
}

// max / min select an element: forward and gradient (routed to the first extreme) are exact. Values
// on a grid of 1/4 in [-2, 2] make ties in every reduction.
void check_extreme(ParityRun& run, const std::string& name, const ReduceFn& op) {
  check_reduction(run, name, op, [&](const Shape& s) { return run.grid(s, -2, 2, 0.25); },
                  [](int64_t) { return with_tolerance(kExact, kExact); });
  // A NaN wins (the first one), as in PyTorch; its position takes the gradient.
  run.check(name + " with NaN", [&](const std::vector<Tensor>& in) { return op(in[0], {1}, false); },
            {ParityRun::with_values(run.normal({3, 9}), {4, 7, 10, 26}, kNaN)},
            with_tolerance(kExact, kExact));
  run.check(name + " with infinities", [&](const std::vector<Tensor>& in) {
    return op(in[0], {0}, true);
  }, {ParityRun::with_values(run.normal({5, 4}), {0, 5, 11, 18}, name == "max" ? kInf : -kInf)},
            with_tolerance(kExact, kExact));
  run.check(name + " of 10^6", [&](const std::vector<Tensor>& in) { return op(in[0], {}, false); },
            {run.grid({1000, 1000}, -4, 4, 1.0 / 8)}, with_tolerance(kExact, kExact));
}

TEST(CudaParity, max) {
  GRADUS_PARITY_SETUP(run);
  check_extreme(run, "max", [](const Tensor& x, const Axes& a, bool k) { return max(x, a, k); });
}
TEST(CudaParity, min) {
  GRADUS_PARITY_SETUP(run);
  check_extreme(run, "min", [](const Tensor& x, const Axes& a, bool k) { return min(x, a, k); });
}

TEST(CudaParity, var) {
  GRADUS_PARITY_SETUP(run);
  // Sums of positive squared deviations (relative error well inside 1e-5); the gradient
  // 2 (x - mean) / divisor is elementwise.
  for (int64_t correction : {0, 1}) {
    auto op = [correction](const Tensor& x, const Axes& a, bool k) { return var(x, a, k, correction); };
    check_reduction(run, fmt::format("var correction {}", correction), op,
                    [&](const Shape& s) { return run.normal(s, 0.5, 2.0); },
                    [](int64_t) { return ParityOptions{}; });
  }
  check_reduction(run, "var", [](const Tensor& x, const Axes& a, bool k) { return var(x, a, k); },
                  [&](const Shape& s) { return run.normal(s, 0.5, 2.0); },
                  [](int64_t) { return with_tolerance(testing::kF64Tolerance, testing::kF64Tolerance, DType::f64); });
  // One element with correction 1: the divisor is 0, the variance NaN (forward only).
  ParityOptions forward_only;
  forward_only.differentiate = false;
  run.check("var of one element", [](const std::vector<Tensor>& in) { return var(in[0], {1}); },
            {run.normal({4, 1})}, forward_only);
}

TEST(CudaParity, logsumexp) {
  GRADUS_PARITY_SETUP(run);
  auto op = [](const Tensor& x, const Axes& a, bool k) { return logsumexp(x, a, k); };
  check_reduction(run, "logsumexp", op, [&](const Shape& s) { return run.normal(s, 0, 3); },
                  [](int64_t) { return ParityOptions{}; });
  // Large values (the maximum is subtracted first) and -inf entries (gradient 0 there).
  const Tensor large = ParityRun::with_values(run.normal({4, 300}, 0, 400), {3, 301, 302, 1199}, -kInf);
  ParityOptions large_options;
  large_options.forward = testing::magnitude_tolerance(DType::f32, testing::max_abs(large));
  run.check("logsumexp large and -inf", [](const std::vector<Tensor>& in) {
    return logsumexp(in[0], {-1});
  }, {large}, large_options);
  // Rows entirely -inf give -inf, a row holding +inf gives +inf (forward only: the gradient is NaN).
  ParityOptions forward_only;
  forward_only.differentiate = false;
  run.check("logsumexp infinite rows", [](const std::vector<Tensor>& in) {
    return logsumexp(in[0], {1});
  }, {ParityRun::with_values(ParityRun::with_values(run.normal({3, 5}), {0, 1, 2, 3, 4}, -kInf),
                             {7}, kInf)}, forward_only);
}

// ---------------------------------------------------------------- softmax / log_softmax
void check_softmax_family(ParityRun& run, const std::string& name,
                          const std::function<Tensor(const Tensor&, int64_t)>& op) {
  auto along = [&](int64_t axis) {
    return [&op, axis](const std::vector<Tensor>& in) { return op(in[0], axis); };
  };
  for (int64_t axis : {-1, 0, 1})
    run.check(fmt::format("{} of (4, 5, 6) along {}", name, axis), along(axis), {run.normal({4, 5, 6}, 0, 3)});
  run.check(name + " transposed", [&](const std::vector<Tensor>& in) {
    return op(transpose(in[0], 0, 1), -1);
  }, {run.normal({37, 21}, 0, 3)});
  // Rows wider than a block (the reductions inside span several warps / blocks), and a wide inner
  // axis (softmax along a non-last axis with many columns).
  // Gradients: g - (sum of g * y) terms over 3000 entries (sum_tolerance).
  ParityOptions wide;
  wide.backward = sum_tolerance(DType::f32, 3000);
  run.check(name + " wide rows", along(-1), {run.normal({3, 3000}, 0, 3)}, wide);
  run.check(name + " wide inner axis", along(1), {run.normal({2, 6, 600}, 0, 3)});
  run.check(name + " one element per row", along(-1), {run.normal({5, 1})});
  // Large logits (stability) and -inf entries (probability 0).
  const Tensor large = ParityRun::with_values(run.normal({4, 50}, 0, 300), {0, 1, 77, 199}, -kInf);
  ParityOptions large_options;
  large_options.forward = testing::magnitude_tolerance(DType::f32, testing::max_abs(large));
  run.check(name + " large and -inf", along(-1), {large}, large_options);
  ParityOptions f64;
  f64.dtype = DType::f64;
  run.check(name + " wide rows", along(-1), {run.normal({3, 3000}, 0, 3)}, f64);
  // A row entirely -inf: NaN (softmax) / -inf... as PyTorch; forward only.
  ParityOptions forward_only;
  forward_only.differentiate = false;
  run.check(name + " row of -inf", along(-1),
            {ParityRun::with_values(run.normal({3, 4}), {4, 5, 6, 7}, -kInf)}, forward_only);
}

TEST(CudaParity, softmax) {
  GRADUS_PARITY_SETUP(run);
  check_softmax_family(run, "softmax", [](const Tensor& x, int64_t axis) { return softmax(x, axis); });
}
TEST(CudaParity, log_softmax) {
  GRADUS_PARITY_SETUP(run);
  check_softmax_family(run, "log_softmax",
                       [](const Tensor& x, int64_t axis) { return log_softmax(x, axis); });
}

}  // namespace
}  // namespace gradus
