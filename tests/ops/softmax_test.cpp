// softmax and log_softmax: forward against a naive loop along every axis in f32 and f64
// (contiguous, non-contiguous, wide inner axes), f64 gradchecks along several axes on
// non-contiguous inputs, large and -inf inputs, determinism across thread counts, and error
// messages.
#include "autodiff/ops/softmax.h"

#include <omp.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "support/expect_error.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

using testing::expect_error;

using testing::noncontiguous_leaf;
using testing::randn_leaf;

constexpr double kInf = std::numeric_limits<double>::infinity();

// Naive softmax / log-softmax of x's row-major values along `axis` (non-negative), in double.
std::vector<double> naive_softmax(const Tensor& x, int64_t axis, bool log) {
  const std::vector<double> v = x.to_vector();
  int64_t outer = 1, n = x.shape()[axis], inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x.shape()[d];
  for (int64_t d = axis + 1; d < x.dim(); ++d) inner *= x.shape()[d];
  std::vector<double> out(v.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t j) { return static_cast<size_t>((o * n + j) * inner + i); };
      double m = -kInf;
      for (int64_t j = 0; j < n; ++j) m = std::max(m, v[at(j)]);
      double s = 0;
      for (int64_t j = 0; j < n; ++j) s += std::exp(v[at(j)] - m);
      for (int64_t j = 0; j < n; ++j)
        out[at(j)] = log ? v[at(j)] - m - std::log(s) : std::exp(v[at(j)] - m) / s;
    }
  return out;
}

void check_forward(const Tensor& x, int64_t axis) {
  const int64_t a = axis < 0 ? axis + x.dim() : axis;
  for (bool log : {false, true}) {
    SCOPED_TRACE(
        fmt::format("{} of {} along {}", log ? "log_softmax" : "softmax", x.describe(), axis));
    Tensor y = log ? log_softmax(x, axis) : softmax(x, axis);
    ASSERT_EQ(y.shape(), x.shape());
    ASSERT_EQ(y.dtype(), x.dtype());
    const std::vector<double> ys = y.to_vector(), ref = naive_softmax(x, a, log);
    const double tol = x.dtype() == DType::f32 ? 2e-6 : 1e-14;
    for (size_t i = 0; i < ys.size(); ++i)
      EXPECT_NEAR(ys[i], ref[i], tol * (1 + std::abs(ref[i]))) << "element " << i;
  }
}

TEST(Softmax, ForwardMatchesNaiveReferenceAlongEveryAxis) {
  for (DType dt : {DType::f32, DType::f64}) {
    Generator gen(51);
    // 13 along each axis at some point: more than one 8-wide partial-sum group, with a tail.
    Tensor x = rand_uniform({3, 13, 5}, gen, dt, -4, 4);
    Tensor xp = raw_permute(rand_uniform({13, 5, 3}, gen, dt, -4, 4), {2, 0, 1});
    ASSERT_FALSE(xp.is_contiguous());
    for (int64_t axis : {0, 1, 2, -1, -3}) {
      check_forward(x, axis);
      check_forward(xp, axis);
    }
    check_forward(rand_uniform({17}, gen, dt, -4, 4), 0);
    // Wide inner axis: more than one 256-column chunk.
    check_forward(rand_uniform({2, 6, 600}, gen, dt, -4, 4), 1);
    // Enough rows for the parallel path.
    check_forward(rand_uniform({300, 100}, gen, dt, -4, 4), -1);
  }
}

TEST(Softmax, RankZeroIsOne) {
  Tensor x = Tensor::scalar(3.0, DType::f64);
  EXPECT_EQ(softmax(x).item(), 1.0);
  EXPECT_EQ(log_softmax(x, 0).item(), 0.0);
}

TEST(Softmax, RowsSumToOneAndLogSoftmaxIsItsLog) {
  Generator gen(52);
  Tensor x = rand_uniform({4, 9}, gen, DType::f64, -3, 3);
  std::vector<double> s = sum(softmax(x), {1}).to_vector();
  for (double v : s) EXPECT_NEAR(v, 1.0, 1e-14);
  std::vector<double> a = log_softmax(x).to_vector(), b = log(softmax(x)).to_vector();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-14);
}

// ---- gradchecks: several axes (inner == 1 and inner > 1), non-contiguous inputs ----

void check_softmax_grads(const std::function<Tensor(const Tensor&, int64_t)>& op) {
  auto along = [op](int64_t axis) {
    return [op, axis](const std::vector<Tensor>& in) { return op(in[0], axis); };
  };
  EXPECT_GRADCHECK(along(-1), (std::vector<Tensor>{randn_leaf({3, 5}, 1)}));
  EXPECT_GRADCHECK(along(0), (std::vector<Tensor>{randn_leaf({3, 5}, 2)}));
  EXPECT_GRADCHECK(along(0), (std::vector<Tensor>{randn_leaf({9}, 3)}));
  EXPECT_GRADCHECK(along(1), (std::vector<Tensor>{randn_leaf({2, 3, 4}, 4)}));
  EXPECT_GRADCHECK(along(-1), (std::vector<Tensor>{noncontiguous_leaf({4, 3}, 5)}));
  EXPECT_GRADCHECK(along(0), (std::vector<Tensor>{noncontiguous_leaf({4, 3}, 6)}));
  EXPECT_GRADCHECK(along(0), (std::vector<Tensor>{noncontiguous_leaf({2, 3, 4}, 7)}));
  EXPECT_GRADCHECK(along(1), (std::vector<Tensor>{noncontiguous_leaf({2, 3, 4}, 8)}));
  EXPECT_GRADCHECK(along(2), (std::vector<Tensor>{noncontiguous_leaf({2, 3, 4}, 9)}));
  // Large inputs (shifted by 500): still finite and well conditioned.
  auto shifted = [op](const std::vector<Tensor>& in) { return op(in[0] + 500.0, -1); };
  EXPECT_GRADCHECK(shifted, (std::vector<Tensor>{randn_leaf({3, 4}, 10)}));
}

TEST(Gradcheck, softmax) {
  check_softmax_grads([](const Tensor& x, int64_t axis) { return softmax(x, axis); });
}
TEST(Gradcheck, log_softmax) {
  check_softmax_grads([](const Tensor& x, int64_t axis) { return log_softmax(x, axis); });
}

// ---- large and infinite inputs ----

TEST(Softmax, StableForLargeInputs) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor big =
        Tensor::from_vector(std::vector<double>{1000, 1001, 1002, -1000, -1001, -1002}, {2, 3}, dt);
    Tensor small = Tensor::from_vector(std::vector<double>{0, 1, 2, 2, 1, 0}, {2, 3}, dt);
    for (bool log : {false, true}) {
      std::vector<double> a = (log ? log_softmax(big) : softmax(big)).to_vector();
      std::vector<double> b = (log ? log_softmax(small) : softmax(small)).to_vector();
      for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_TRUE(std::isfinite(a[i])) << i;
        EXPECT_NEAR(a[i], b[i], 1e-6) << i;
      }
    }
  }
}

void check_minus_inf_rows(const Tensor& x, int64_t axis) {
  // Along `axis`: row 0 = {-inf, 0, 1}, row 1 = all -inf, row 2 = {2, -inf, 2}.
  const double e = std::exp(1.0);
  const std::vector<double> soft = softmax(x, axis).to_vector();
  const std::vector<double> logs = log_softmax(x, axis).to_vector();
  auto at = [&](int64_t row, int64_t j) { return axis == 1 ? row * 3 + j : j * 3 + row; };
  EXPECT_EQ(soft[at(0, 0)], 0.0);
  EXPECT_NEAR(soft[at(0, 1)], 1 / (1 + e), 1e-6);
  EXPECT_NEAR(soft[at(0, 2)], e / (1 + e), 1e-6);
  EXPECT_EQ(logs[at(0, 0)], -kInf);
  EXPECT_NEAR(logs[at(0, 2)], -std::log1p(1 / e), 1e-6);
  for (int64_t j = 0; j < 3; ++j) {
    EXPECT_TRUE(std::isnan(soft[at(1, j)])) << "a fully -inf row is NaN, as in PyTorch";
    EXPECT_TRUE(std::isnan(logs[at(1, j)]));
  }
  EXPECT_NEAR(soft[at(2, 0)], 0.5, 1e-7);
  EXPECT_EQ(soft[at(2, 1)], 0.0);
  EXPECT_EQ(logs[at(2, 1)], -kInf);
}

TEST(Softmax, MinusInfinityEntriesAndRows) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor rows = Tensor::from_vector(
        std::vector<double>{-kInf, 0, 1, -kInf, -kInf, -kInf, 2, -kInf, 2}, {3, 3}, dt);
    check_minus_inf_rows(rows, 1);                       // last axis (inner == 1)
    check_minus_inf_rows(raw_transpose(rows, 0, 1), 0);  // axis 0 (inner > 1)
  }
}

TEST(Softmax, GradientIsFiniteAndZeroAtMinusInfinity) {
  Tensor x =
      Tensor::from_vector(std::vector<double>{-kInf, 0, 1, 1000, 999, -kInf}, {2, 3}, DType::f64);
  Tensor w = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64);
  x.set_requires_grad();
  backward(sum(softmax(x) * w));
  std::vector<double> g = x.grad().to_vector();
  for (double v : g) EXPECT_TRUE(std::isfinite(v));
  EXPECT_EQ(g[0], 0.0);
  EXPECT_EQ(g[5], 0.0);
  x.zero_grad();
  // log_softmax: d/dx_j sum_i w_i y_i = w_j - softmax_j sum(w); at -inf that is w_j.
  backward(sum(log_softmax(x) * w));
  g = x.grad().to_vector();
  EXPECT_EQ(g[0], 1.0);
  EXPECT_EQ(g[5], 6.0);
  EXPECT_NEAR(g[1] + g[2], 2 + 3 - 6, 1e-12);
}

// ---- determinism ----

std::vector<unsigned char> bytes_of(const Tensor& t) {
  Tensor c = raw_contiguous(t);
  std::vector<unsigned char> out(c.nbytes());
  std::memcpy(out.data(), c.raw_data(), out.size());
  return out;
}

TEST(Softmax, SameBitsForOneOrTwoThreadsAndTwice) {
  Generator gen(53);
  Tensor x = rand_normal({512, 300}, gen, DType::f32, 0, 3);
  Tensor g = rand_normal({512, 300}, gen, DType::f32);
  auto run = [&]() {
    std::vector<std::vector<unsigned char>> r;
    for (int64_t axis : {0, 1})
      for (bool log : {false, true}) {
        Tensor leaf = raw_clone(x);
        leaf.set_requires_grad();
        Tensor y = log ? log_softmax(leaf, axis) : softmax(leaf, axis);
        backward(y, g);
        r.push_back(bytes_of(y));
        r.push_back(bytes_of(leaf.grad()));
      }
    return r;
  };
  const int previous = omp_get_max_threads();
  omp_set_num_threads(1);
  auto one = run();
  omp_set_num_threads(2);
  auto two = run();
  auto again = run();
  omp_set_num_threads(previous);
  for (size_t i = 0; i < one.size(); ++i) {
    EXPECT_EQ(one[i], two[i]) << "result " << i;
    EXPECT_EQ(two[i], again[i]) << "result " << i;
  }
}

// ---- errors ----

TEST(Softmax, BadArgumentsNameTheOp) {
  Tensor x = Tensor::zeros({2, 3});
  expect_error([&] { softmax(x, 2); }, {"softmax:", "axis 2", "rank 2"});
  expect_error([&] { log_softmax(x, -3); }, {"log_softmax:", "axis -3", "rank 2"});
  expect_error([&] { softmax(Tensor::zeros({2}, DType::i64)); },
               {"softmax:", "floating-point", "i64"});
  expect_error([&] { log_softmax(Tensor()); }, {"log_softmax:", "undefined"});
}

}  // namespace
}  // namespace gradus
