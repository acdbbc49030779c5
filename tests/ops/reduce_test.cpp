// Reductions (sum, mean, max, min, var, logsumexp): forward against naive loops over every choice
// of axes in f32 and f64 (contiguous and permuted inputs), f64 gradchecks (full reduction, one
// axis, non-adjacent axes, keepdim, non-contiguous inputs), the tie / NaN / -inf rules, bit-for-bit
// determinism across thread counts, and error messages that name the op.
#include "autodiff/ops/reduce.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

#include "autodiff/ops/elementwise.h"
#include "support/census.h"
#include "support/expect_error.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

using testing::expect_error;

using testing::noncontiguous_leaf;
using testing::randn_leaf;
using Axes = std::vector<int64_t>;
using ReduceOpFn = std::function<Tensor(const Tensor&, const Axes&, bool)>;
using RefFn = std::function<double(const std::vector<double>&)>;

constexpr double kInf = std::numeric_limits<double>::infinity();

// For each output element (row-major over the keepdim shape), the row-major flat indices of the
// input elements reduced into it, in row-major order.
std::vector<std::vector<int64_t>> reduction_groups(const Shape& shape, Axes axes) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  if (axes.empty())
    for (int64_t d = 0; d < nd; ++d) axes.push_back(d);
  for (int64_t& a : axes) a = a < 0 ? a + nd : a;
  Shape keep = shape;
  for (int64_t a : axes) keep[a] = 1;
  std::vector<std::vector<int64_t>> groups(static_cast<size_t>(shape_numel(keep)));
  std::vector<int64_t> index(shape.size(), 0);
  for (int64_t flat = 0; flat < shape_numel(shape); ++flat) {
    int64_t out = 0;
    for (int64_t d = 0; d < nd; ++d) out = out * keep[d] + (keep[d] == 1 ? 0 : index[d]);
    groups[out].push_back(flat);
    for (int64_t d = nd - 1; d >= 0; --d) {
      if (++index[d] < shape[d]) break;
      index[d] = 0;
    }
  }
  return groups;
}

double ref_sum(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}
double ref_mean(const std::vector<double>& v) { return ref_sum(v) / static_cast<double>(v.size()); }
double ref_max(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }
double ref_min(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }
double ref_var(const std::vector<double>& v, int64_t correction) {
  const double m = ref_mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return s / static_cast<double>(static_cast<int64_t>(v.size()) - correction);
}
double ref_logsumexp(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += std::exp(x);  // inputs are small here, so no shift is needed
  return std::log(s);
}

struct ReduceCase {
  const char* name;
  ReduceOpFn op;
  RefFn ref;
};

std::vector<ReduceCase> reduce_cases() {
  return {
      {"sum", [](const Tensor& x, const Axes& a, bool k) { return sum(x, a, k); }, ref_sum},
      {"mean", [](const Tensor& x, const Axes& a, bool k) { return mean(x, a, k); }, ref_mean},
      {"max", [](const Tensor& x, const Axes& a, bool k) { return max(x, a, k); }, ref_max},
      {"min", [](const Tensor& x, const Axes& a, bool k) { return min(x, a, k); }, ref_min},
      {"var", [](const Tensor& x, const Axes& a, bool k) { return var(x, a, k); },
       [](const std::vector<double>& v) { return ref_var(v, 1); }},
      {"var_population", [](const Tensor& x, const Axes& a, bool k) { return var(x, a, k, 0); },
       [](const std::vector<double>& v) { return ref_var(v, 0); }},
      {"logsumexp", [](const Tensor& x, const Axes& a, bool k) { return logsumexp(x, a, k); },
       ref_logsumexp},
  };
}

const std::vector<Axes>& axis_choices() {
  static const std::vector<Axes> choices = {{},     {0},    {1},    {2},    {-1},
                                            {0, 2}, {2, 0}, {0, 1}, {1, 2}, {0, 1, 2}};
  return choices;
}

Shape expected_shape(const Shape& shape, Axes axes, bool keepdim) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  if (axes.empty())
    for (int64_t d = 0; d < nd; ++d) axes.push_back(d);
  for (int64_t& a : axes) a = a < 0 ? a + nd : a;
  Shape out;
  for (int64_t d = 0; d < nd; ++d) {
    bool reduced = std::find(axes.begin(), axes.end(), d) != axes.end();
    if (!reduced)
      out.push_back(shape[d]);
    else if (keepdim)
      out.push_back(1);
  }
  return out;
}

void check_forward(const ReduceCase& c, const Tensor& x, const Axes& axes, bool keepdim) {
  SCOPED_TRACE(
      fmt::format("{} {} axes {} keepdim {}", c.name, x.describe(), shape_str(axes), keepdim));
  Tensor y = c.op(x, axes, keepdim);
  ASSERT_EQ(y.shape(), expected_shape(x.shape(), axes, keepdim));
  ASSERT_EQ(y.dtype(), x.dtype());
  const std::vector<double> xs = x.to_vector(), ys = y.to_vector();
  const auto groups = reduction_groups(x.shape(), axes);
  ASSERT_EQ(ys.size(), groups.size());
  // Relative to the result, plus a term for cancellation: the same reduction of |x| bounds the
  // magnitudes a sum passes through (a long sum of mixed signs can end near 0).
  const double tol = x.dtype() == DType::f32 ? 1e-5 : 1e-12;
  const double cancel_tol = x.dtype() == DType::f32 ? 1e-6 : 1e-15;
  for (size_t o = 0; o < groups.size(); ++o) {
    std::vector<double> vals;
    for (int64_t i : groups[o]) vals.push_back(xs[i]);
    const double expect = c.ref(vals);
    for (double& v : vals) v = std::abs(v);
    const double bound = tol * (1 + std::abs(expect)) + cancel_tol * std::abs(c.ref(vals));
    EXPECT_NEAR(ys[o], expect, bound) << "output " << o;
  }
}

TEST(Reduce, ForwardMatchesNaiveReferenceForEveryAxisChoice) {
  for (const ReduceCase& c : reduce_cases()) {
    for (DType dt : {DType::f32, DType::f64}) {
      Generator gen(31);
      Tensor x = rand_uniform({3, 4, 5}, gen, dt, -2, 2);
      // The same logical shape laid out non-contiguously: a permutation of a (5, 3, 4) tensor.
      Tensor base = rand_uniform({5, 3, 4}, gen, dt, -2, 2);
      Tensor xp = raw_permute(base, {1, 2, 0});
      ASSERT_FALSE(xp.is_contiguous());
      for (const Axes& axes : axis_choices())
        for (bool keepdim : {false, true}) {
          check_forward(c, x, axes, keepdim);
          check_forward(c, xp, axes, keepdim);
        }
    }
  }
}

TEST(Reduce, ForwardOnWideInnerAndLongRows) {
  // inner > 256 (several column chunks) and rows long enough for the blocked full reduction.
  for (const ReduceCase& c : reduce_cases()) {
    for (DType dt : {DType::f32, DType::f64}) {
      Generator gen(32);
      check_forward(c, rand_uniform({2, 3, 600}, gen, dt, -1, 1), {1}, false);
      check_forward(c, rand_uniform({70000}, gen, dt, -1, 1), {}, false);
    }
  }
}

// A sum over axes that are not adjacent (a broadcast gradient: a bias (H, 1, X) from (B, H, T, X))
// reduces each run of adjacent axes in turn, reading the input in place: no copy into a permuted
// layout, one reduce call per run; the values are the naive sums (above, every axis choice).
TEST(Reduce, NonAdjacentSumReadsItsInputInPlace) {
  for (DType dt : {DType::f32, DType::f64}) {
    SCOPED_TRACE(dtype_name(dt));
    Generator gen(33);
    const Tensor x = rand_uniform({3, 4, 50, 6}, gen, dt, -1, 1);
    Tensor bias_grad, total;
    const auto calls = testing::census_of([&] {
      bias_grad = sum_to(x, {4, 1, 6});
      total = sum(x, {0, 2, 3});
    });
    EXPECT_EQ(calls.count("copy"), 0u);
    EXPECT_EQ(calls.at("reduce"), 4);  // two runs each: {2} then {0}; {2, 3} then {0}
    ASSERT_EQ(bias_grad.shape(), (Shape{4, 1, 6}));
    ASSERT_EQ(total.shape(), (Shape{4}));
    const std::vector<double> xs = x.to_vector(), got = bias_grad.to_vector(),
                              got_total = total.to_vector();
    for (int64_t h = 0; h < 4; ++h) {
      double want_total = 0;
      for (int64_t c = 0; c < 6; ++c) {
        double want = 0;
        for (int64_t b = 0; b < 3; ++b)
          for (int64_t t = 0; t < 50; ++t) want += xs[((b * 4 + h) * 50 + t) * 6 + c];
        want_total += want;
        EXPECT_NEAR(got[h * 6 + c], want, dt == DType::f32 ? 2e-5 : 1e-13) << h << ", " << c;
      }
      EXPECT_NEAR(got_total[h], want_total, dt == DType::f32 ? 1e-4 : 1e-12) << h;
    }
  }
  // The mean keeps the one-pass path over the permuted copy.
  Generator gen(34);
  const Tensor x = rand_uniform({3, 4, 5}, gen, DType::f32, -1, 1);
  const auto calls = testing::census_of([&] { mean(x, {0, 2}); });
  EXPECT_EQ(calls.at("reduce"), 1);
}

TEST(Reduce, RankZeroInputIsItsOwnReduction) {
  Tensor x = Tensor::scalar(1.5, DType::f64);
  EXPECT_EQ(sum(x).item(), 1.5);
  EXPECT_EQ(max(x).item(), 1.5);
  EXPECT_EQ(min(x, {0}).item(), 1.5);
  EXPECT_NEAR(logsumexp(x).item(), 1.5, 1e-15);
  EXPECT_EQ(var(x, {}, false, 0).item(), 0.0);
}

// ---- gradchecks: full reduction, one axis, non-adjacent axes, keepdim, non-contiguous input ----

void check_reduction_grads(const ReduceOpFn& op) {
  auto with = [&](Axes axes, bool keepdim) {
    return [op, axes, keepdim](const std::vector<Tensor>& in) { return op(in[0], axes, keepdim); };
  };
  EXPECT_GRADCHECK(with({}, false), (std::vector<Tensor>{randn_leaf({3, 4}, 1)}));
  EXPECT_GRADCHECK(with({1}, false), (std::vector<Tensor>{randn_leaf({3, 4}, 2)}));
  EXPECT_GRADCHECK(with({0}, true), (std::vector<Tensor>{randn_leaf({3, 4}, 3)}));
  EXPECT_GRADCHECK(with({0, 2}, false), (std::vector<Tensor>{randn_leaf({3, 2, 4}, 4)}));
  EXPECT_GRADCHECK(with({-1, 0}, true), (std::vector<Tensor>{randn_leaf({3, 2, 4}, 5)}));
  EXPECT_GRADCHECK(with({1}, false), (std::vector<Tensor>{randn_leaf({2, 3, 4}, 6)}));
  // Non-contiguous inputs: a transposed matrix and a strided slice.
  EXPECT_GRADCHECK(with({0}, false), (std::vector<Tensor>{noncontiguous_leaf({4, 3}, 7)}));
  EXPECT_GRADCHECK(with({}, true), (std::vector<Tensor>{noncontiguous_leaf({4, 3}, 8)}));
  EXPECT_GRADCHECK(with({0, 2}, true), (std::vector<Tensor>{noncontiguous_leaf({2, 3, 4}, 9)}));
  EXPECT_GRADCHECK(with({2}, false), (std::vector<Tensor>{noncontiguous_leaf({2, 3, 4}, 10)}));
}

TEST(Gradcheck, sum) {
  check_reduction_grads([](const Tensor& x, const Axes& a, bool k) { return sum(x, a, k); });
}
TEST(Gradcheck, mean) {
  check_reduction_grads([](const Tensor& x, const Axes& a, bool k) { return mean(x, a, k); });
}
// Random inputs have no ties, so max/min are differentiable at them.
TEST(Gradcheck, max) {
  check_reduction_grads([](const Tensor& x, const Axes& a, bool k) { return max(x, a, k); });
}
TEST(Gradcheck, min) {
  check_reduction_grads([](const Tensor& x, const Axes& a, bool k) { return min(x, a, k); });
}
TEST(Gradcheck, var) {
  check_reduction_grads([](const Tensor& x, const Axes& a, bool k) { return var(x, a, k); });
  check_reduction_grads([](const Tensor& x, const Axes& a, bool k) { return var(x, a, k, 0); });
}
TEST(Gradcheck, logsumexp) {
  check_reduction_grads([](const Tensor& x, const Axes& a, bool k) { return logsumexp(x, a, k); });
  // Large inputs: the gradient is the softmax, still finite.
  auto fn = [](const std::vector<Tensor>& in) { return logsumexp(in[0] * 300.0, {1}); };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn_leaf({3, 4}, 11)}));
}

// ---- max / min rules ----

Tensor grad_of(const std::function<Tensor(const Tensor&)>& fn, const Tensor& x) {
  x.zero_grad();
  backward(sum(fn(x)));
  return x.grad();
}

TEST(Reduce, MaxMinGradientGoesToTheFirstTie) {
  Tensor x =
      Tensor::from_vector(std::vector<double>{1, 3, 3, 2, -1, -1, 0, -1}, {2, 4}, DType::f64);
  x.set_requires_grad();
  EXPECT_EQ(grad_of([](const Tensor& t) { return max(t, {1}); }, x).to_vector(),
            (std::vector<double>{0, 1, 0, 0, 0, 0, 1, 0}));
  EXPECT_EQ(grad_of([](const Tensor& t) { return min(t, {1}); }, x).to_vector(),
            (std::vector<double>{1, 0, 0, 0, 1, 0, 0, 0}));
  // Full reduction: the first 3 (row-major) takes the whole gradient.
  EXPECT_EQ(grad_of([](const Tensor& t) { return max(t); }, x).to_vector(),
            (std::vector<double>{0, 1, 0, 0, 0, 0, 0, 0}));
  // Along axis 0 (inner > 1 in the kernel): ties in column 0 for max and column 1 for min.
  Tensor y = Tensor::from_vector(std::vector<double>{2, 1, 2, 0, 1, 0}, {3, 2}, DType::f64);
  y.set_requires_grad();
  EXPECT_EQ(grad_of([](const Tensor& t) { return max(t, {0}); }, y).to_vector(),
            (std::vector<double>{1, 1, 0, 0, 0, 0}));
  EXPECT_EQ(grad_of([](const Tensor& t) { return min(t, {0}, true); }, y).to_vector(),
            (std::vector<double>{0, 0, 0, 1, 1, 0}));
}

TEST(Reduce, MaxTieAcrossNonAdjacentAxesPicksTheRowMajorFirst) {
  // x: (2, 2, 2) with the maximum 5 at [0, 0, 1] and [1, 0, 0]; reducing axes {0, 2} walks (a0, a2)
  // in row-major order, so (0, 1) comes before (1, 0).
  Tensor x =
      Tensor::from_vector(std::vector<double>{0, 5, 1, 2, 5, 0, 3, 4}, {2, 2, 2}, DType::f64);
  x.set_requires_grad();
  Tensor g = grad_of([](const Tensor& t) { return max(t, {0, 2}); }, x);
  EXPECT_EQ(g.to_vector(), (std::vector<double>{0, 1, 0, 0, 0, 0, 0, 1}));
  EXPECT_EQ(max(x, {0, 2}).to_vector(), (std::vector<double>{5, 4}));
}

TEST(Reduce, MaxMinPropagateNaNAndSendItTheGradient) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = Tensor::from_vector(std::vector<double>{1, nan, 5, 2, -kInf, 0}, {2, 3}, dt);
    std::vector<double> mx = max(x, {1}).to_vector(), mn = min(x, {1}).to_vector();
    EXPECT_TRUE(std::isnan(mx[0]));
    EXPECT_TRUE(std::isnan(mn[0]));
    EXPECT_EQ(mx[1], 2.0);
    EXPECT_EQ(mn[1], -kInf);
    EXPECT_TRUE(std::isnan(max(x).item()));
    EXPECT_TRUE(std::isnan(min(x, {0}).to_vector()[1]));  // inner > 1 path
  }
  Tensor x = Tensor::from_vector(std::vector<double>{1, nan, 5, nan}, {4}, DType::f64);
  x.set_requires_grad();
  EXPECT_EQ(grad_of([](const Tensor& t) { return max(t); }, x).to_vector(),
            (std::vector<double>{0, 1, 0, 0}));
}

TEST(Reduce, LongRowMaxFindsTheFirstExtremeAcrossBlocks) {
  // 70000 elements: the blocked path. Equal maxima in different blocks: the first wins.
  std::vector<double> v(70000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(static_cast<double>(i));
  v[20000] = 7;
  v[50000] = 7;
  Tensor x = Tensor::from_vector(v, {70000}, DType::f64);
  x.set_requires_grad();
  Tensor g = grad_of([](const Tensor& t) { return max(t); }, x);
  std::vector<double> gv = g.to_vector();
  EXPECT_EQ(gv[20000], 1.0);
  EXPECT_EQ(std::count(gv.begin(), gv.end(), 0.0), 69999);
  EXPECT_EQ(max(x).item(), 7.0);
}

// ---- var / logsumexp accuracy and special values ----

TEST(Reduce, VarIsTwoPassAccurateWithALargeMean) {
  // A one-pass E[x^2] - E[x]^2 loses every digit here; deviations from the mean do not.
  Tensor x32 =
      Tensor::from_vector(std::vector<double>{1e4, 1e4 + 1, 1e4 + 2, 1e4 + 3}, {4}, DType::f32);
  EXPECT_NEAR(var(x32).item(), 5.0 / 3.0, 1e-6);
  Tensor x64 =
      Tensor::from_vector(std::vector<double>{1e9, 1e9 + 1, 1e9 + 2, 1e9 + 3}, {4}, DType::f64);
  EXPECT_NEAR(var(x64, {}, false, 0).item(), 1.25, 1e-12);
}

TEST(Reduce, VarWithoutEnoughElementsIsNaNOrInf) {
  // As torch.var: 0 / 0 for one element with correction 1, positive / 0 when N == correction.
  EXPECT_TRUE(std::isnan(var(Tensor::full({1}, 3.0, DType::f64)).item()));
  Tensor two = Tensor::from_vector(std::vector<double>{1, 2}, {2}, DType::f64);
  EXPECT_TRUE(std::isinf(var(two, {}, false, 2).item()));
}

TEST(Reduce, LogSumExpIsStableForLargeAndInfiniteInputs) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor big = Tensor::from_vector(std::vector<double>{1000, 1000, -1000, 999}, {2, 2}, dt);
    std::vector<double> y = logsumexp(big, {1}).to_vector();
    EXPECT_NEAR(y[0], 1000 + std::log(2.0), 1e-4);
    EXPECT_NEAR(y[1], 999.0, 1e-4);
    Tensor inf =
        Tensor::from_vector(std::vector<double>{-kInf, 0, -kInf, -kInf, 1, kInf}, {3, 2}, dt);
    std::vector<double> z = logsumexp(inf, {1}).to_vector();
    EXPECT_NEAR(z[0], 0.0, 1e-7);
    EXPECT_EQ(z[1], -kInf);
    EXPECT_EQ(z[2], kInf);
    // The same along axis 0 (inner > 1 in the kernel).
    std::vector<double> w = logsumexp(raw_transpose(inf, 0, 1), {0}).to_vector();
    EXPECT_EQ(w, z);
  }
}

TEST(Reduce, LogSumExpGradientIsTheSoftmaxAndZeroAtMinusInf) {
  Tensor x = Tensor::from_vector(std::vector<double>{-kInf, 1000, 1000}, {3}, DType::f64);
  x.set_requires_grad();
  std::vector<double> g = grad_of([](const Tensor& t) { return logsumexp(t); }, x).to_vector();
  EXPECT_EQ(g[0], 0.0);
  EXPECT_NEAR(g[1], 0.5, 1e-12);
  EXPECT_NEAR(g[2], 0.5, 1e-12);
}

// ---- determinism ----

// Raw bytes of a (contiguous copy of a) tensor, so NaNs and signed zeros compare exactly.
std::vector<unsigned char> bytes_of(const Tensor& t) {
  Tensor c = raw_contiguous(t);
  std::vector<unsigned char> out(c.nbytes());
  std::memcpy(out.data(), c.raw_data(), out.size());
  return out;
}

struct ThreadCount {
  int previous = omp_get_max_threads();
  explicit ThreadCount(int n) { omp_set_num_threads(n); }
  ~ThreadCount() { omp_set_num_threads(previous); }
};

TEST(Reduce, SameBitsWhenComputedTwiceAndForOneOrTwoThreads) {
  Generator gen(41);
  Tensor x = rand_uniform({1 << 20}, gen, DType::f32, -1, 1);  // long: the blocked parallel path
  Tensor m = rand_uniform({256, 1024}, gen, DType::f32, -1, 1);
  auto all = [&]() {
    std::vector<std::vector<unsigned char>> r;
    r.push_back(bytes_of(sum(x)));
    r.push_back(bytes_of(mean(x)));
    r.push_back(bytes_of(var(x)));
    r.push_back(bytes_of(logsumexp(x)));
    r.push_back(bytes_of(max(x)));
    r.push_back(bytes_of(sum(m, {1})));
    r.push_back(bytes_of(sum(m, {0})));
    r.push_back(bytes_of(var(m, {0})));
    r.push_back(bytes_of(logsumexp(m, {1})));
    r.push_back(bytes_of(min(m, {0})));
    return r;
  };
  std::vector<std::vector<unsigned char>> one, two, again;
  {
    ThreadCount t(1);
    one = all();
  }
  {
    ThreadCount t(2);
    two = all();
    again = all();
  }
  ASSERT_EQ(one.size(), two.size());
  for (size_t i = 0; i < one.size(); ++i) {
    EXPECT_EQ(one[i], two[i]) << "result " << i << " differs between 1 and 2 threads";
    EXPECT_EQ(two[i], again[i]) << "result " << i << " differs between two runs";
  }
}

// ---- errors ----

TEST(Reduce, BadAxisNamesTheOp) {
  Tensor x = Tensor::zeros({2, 3});
  for (const ReduceCase& c : reduce_cases()) {
    std::string op = c.name == std::string("var_population") ? "var" : c.name;
    expect_error([&] { c.op(x, {2}, false); }, {op + ":", "axis 2", "rank 2"});
    expect_error([&] { c.op(x, {-3}, false); }, {op + ":", "axis -3"});
    expect_error([&] { c.op(x, {1, -1}, false); }, {op + ":", "repeated"});
  }
}

TEST(Reduce, BadArgumentsNameTheOp) {
  Tensor idx = Tensor::zeros({2, 3}, DType::i64);
  expect_error([&] { max(idx); }, {"max:", "floating-point", "i64"});
  expect_error([&] { logsumexp(idx); }, {"logsumexp:", "floating-point"});
  expect_error([&] { var(Tensor::zeros({2, 3}), {0}, false, -1); }, {"var:", "correction", "-1"});
  expect_error([&] { max(Tensor::zeros({2, 0}), {1}); }, {"max:", "(2, 0)", "empty"});
  expect_error([&] { min(Tensor::zeros({0, 2})); }, {"min:", "(0, 2)"});
  // Empty kept axes are fine: nothing to reduce into.
  EXPECT_EQ(max(Tensor::zeros({0, 2}), {1}).shape(), (Shape{0}));
}

}  // namespace
}  // namespace gradus
