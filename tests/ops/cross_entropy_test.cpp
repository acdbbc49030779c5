// cross_entropy: f64 gradchecks (every reduction, ignored targets, non-contiguous and 3-d logits),
// forward and backward against naive loops in f32 and f64, stability for large logits, the
// all-ignored mean, thread-count independence, and errors.
#include "autodiff/ops/cross_entropy.h"

#include <omp.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "kernels/cross_entropy.h"
#include "kernels/registry.h"
#include "support/expect_error.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

using testing::error_message;

using testing::noncontiguous_leaf;
using testing::randn_leaf;

Tensor targets_tensor(const std::vector<double>& values, const Shape& shape) {
  return Tensor::from_vector(values, shape, DType::i64);
}

// Per-row losses of logits: (rows, V), 0 at ignored rows.
std::vector<double> loss_ref(const std::vector<double>& x, const std::vector<double>& t,
                             int64_t vocab, int64_t ignore_index) {
  std::vector<double> out;
  for (size_t r = 0; r < t.size(); ++r) {
    if (static_cast<int64_t>(t[r]) == ignore_index) {
      out.push_back(0.0);
      continue;
    }
    double m = -INFINITY, s = 0;
    for (int64_t j = 0; j < vocab; ++j) m = std::max(m, x[r * vocab + j]);
    for (int64_t j = 0; j < vocab; ++j) s += std::exp(x[r * vocab + j] - m);
    out.push_back(m + std::log(s) - x[r * vocab + static_cast<int64_t>(t[r])]);
  }
  return out;
}

const char* const kReductions[] = {"none", "sum", "mean"};

TEST(Gradcheck, cross_entropy) {
  Tensor t = targets_tensor({2, -100, 6, 0, 3}, {5});
  for (const char* red : kReductions) {
    SCOPED_TRACE(red);
    auto fn = [&](const std::vector<Tensor>& in) { return cross_entropy(in[0], t, -100, red); };
    EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn_leaf({5, 7}, 1)}));
    EXPECT_GRADCHECK(fn, (std::vector<Tensor>{noncontiguous_leaf({5, 7}, 2)}));
    // (B, T, V) logits, non-contiguous, with ignore_index a valid class (1).
    Tensor t3 = targets_tensor({1, 0, 3, 1, 2, 3}, {2, 3});
    auto fn3 = [&](const std::vector<Tensor>& in) { return cross_entropy(in[0], t3, 1, red); };
    EXPECT_GRADCHECK(fn3, (std::vector<Tensor>{noncontiguous_leaf({2, 3, 4}, 3)}));
  }
  // In a graph: logits from another op, the loss used again.
  auto composed = [&](const std::vector<Tensor>& in) {
    Tensor l = cross_entropy(in[0] * in[0], t);
    return l * l;
  };
  EXPECT_GRADCHECK(composed, (std::vector<Tensor>{randn_leaf({5, 7}, 4)}));
}

TEST(CrossEntropy, ForwardMatchesReferenceForEveryReduction) {
  for (DType dt : {DType::f32, DType::f64}) {
    Generator gen(11);
    Tensor x = rand_normal({3, 4, 10}, gen, dt, 0.0, 3.0);
    std::vector<double> tv{3, 9, -1, 0, 0, 5, -1, 2, 8, 1, 4, -1};
    Tensor t = targets_tensor(tv, {3, 4});
    std::vector<double> ref = loss_ref(x.to_vector(), tv, 10, -1);
    const double tol = dt == DType::f32 ? 2e-6 : 1e-13;
    Tensor none = cross_entropy(x, t, -1, "none");
    ASSERT_EQ(none.shape(), (Shape{3, 4}));
    std::vector<double> got = none.to_vector();
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(got[i], ref[i], tol * (1 + ref[i])) << i;
    double total = 0;
    for (double v : ref) total += v;
    Tensor s = cross_entropy(x, t, -1, "sum"), m = cross_entropy(x, t, -1, "mean");
    EXPECT_EQ(s.dim(), 0);
    EXPECT_EQ(m.dim(), 0);
    EXPECT_NEAR(s.item(), total, tol * (1 + total));
    EXPECT_NEAR(m.item(), total / 9.0, tol * (1 + total));  // 9 targets are not ignored
    // Non-contiguous logits read the same logical values.
    Tensor xt = raw_transpose(rand_normal({10, 6}, gen, dt), 0, 1);
    Tensor t6 = targets_tensor({0, 1, 2, 3, 4, 9}, {6});
    EXPECT_EQ(cross_entropy(xt, t6, -100, "none").to_vector(),
              cross_entropy(raw_clone(xt), t6, -100, "none").to_vector());
  }
}

TEST(CrossEntropy, BackwardIsSoftmaxMinusOneHot) {
  for (DType dt : {DType::f32, DType::f64}) {
    for (const char* red : kReductions) {
      Generator gen(21);
      const int64_t rows = 4, vocab = 6;
      Tensor x = rand_normal({rows, vocab}, gen, dt);
      x.set_requires_grad(true);
      std::vector<double> tv{5, -100, 0, 2};
      Tensor loss = cross_entropy(x, targets_tensor(tv, {rows}), -100, red);
      Tensor g =
          std::string(red) == "none" ? rand_normal({rows}, gen, dt) : Tensor::full({}, 1.5, dt);
      backward(loss, g);
      std::vector<double> xs = x.to_vector(), gs = g.to_vector(), got = x.grad().to_vector();
      for (int64_t r = 0; r < rows; ++r) {
        double up = std::string(red) == "none" ? gs[r] : gs[0];
        if (std::string(red) == "mean") up /= 3.0;
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < vocab; ++j) m = std::max(m, xs[r * vocab + j]);
        for (int64_t j = 0; j < vocab; ++j) s += std::exp(xs[r * vocab + j] - m);
        for (int64_t j = 0; j < vocab; ++j) {
          double want = tv[r] == -100 ? 0.0
                                      : (std::exp(xs[r * vocab + j] - m) / s -
                                         (j == static_cast<int64_t>(tv[r]) ? 1.0 : 0.0)) *
                                            up;
          EXPECT_NEAR(got[r * vocab + j], want, dt == DType::f32 ? 1e-6 : 1e-14)
              << red << " " << dtype_name(dt) << " " << r << " " << j;
        }
      }
    }
  }
}

TEST(CrossEntropy, LargeLogitsGiveFiniteLossAndGradient) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = Tensor::from_vector(
        std::vector<double>{1000, 0, -1000, 1000, 1000, 1000, -1000, 999, 1000}, {3, 3}, dt);
    x.set_requires_grad(true);
    Tensor loss = cross_entropy(x, targets_tensor({0, 1, 1}, {3}), -100, "none");
    std::vector<double> l = loss.to_vector();
    EXPECT_NEAR(l[0], 0.0, 1e-6);
    EXPECT_NEAR(l[1], std::log(3.0), 1e-5);
    EXPECT_NEAR(l[2], std::log1p(std::exp(-1.0)) + 1.0, 1e-4);  // -log softmax of 999 vs 1000
    backward(sum(loss));
    for (double g : x.grad().to_vector()) EXPECT_TRUE(std::isfinite(g)) << dtype_name(dt);
  }
}

TEST(CrossEntropy, MeanOverOnlyIgnoredTargetsIsNaNWithZeroGradient) {
  Tensor x = randn_leaf({3, 4}, 31);
  Tensor t = targets_tensor({-100, -100, -100}, {3});
  Tensor m = cross_entropy(x, t);
  EXPECT_TRUE(std::isnan(m.item()));
  EXPECT_EQ(cross_entropy(x, t, -100, "sum").item(), 0.0);
  backward(m);
  for (double g : x.grad().to_vector()) EXPECT_EQ(g, 0.0);
}

TEST(CrossEntropy, NoRowsGiveNaNMeanAndZeroSum) {
  Tensor x = Tensor::zeros({0, 4}, DType::f64);
  Tensor t = Tensor::zeros({0}, DType::i64);
  EXPECT_TRUE(std::isnan(cross_entropy(x, t).item()));
  EXPECT_EQ(cross_entropy(x, t, -100, "sum").item(), 0.0);
  EXPECT_EQ(cross_entropy(x, t, -100, "none").shape(), (Shape{0}));
}

TEST(CrossEntropy, IsBitwiseIdenticalAcrossThreadCounts) {
  const int threads_before = omp_get_max_threads();
  auto run = [](int threads) {
    omp_set_num_threads(threads);
    Generator gen(41);
    Tensor x = rand_normal({3000, 33}, gen, DType::f32, 0.0, 4.0);
    x.set_requires_grad(true);
    std::vector<double> tv(3000);
    for (size_t i = 0; i < tv.size(); ++i) tv[i] = i % 11 == 0 ? -100.0 : double((i * 13) % 33);
    Tensor loss = cross_entropy(x, targets_tensor(tv, {3000}));
    backward(loss);
    std::vector<float> out = x.grad().to_float_vector();
    out.push_back(static_cast<float>(loss.item()));
    return out;
  };
  std::vector<float> one = run(1);
  EXPECT_EQ(one, run(3));
  EXPECT_EQ(one, run(8));
  omp_set_num_threads(threads_before);
}

TEST(CrossEntropy, OutOfRangeTargetNamesTheTargetPositionAndV) {
  Tensor x = Tensor::zeros({2, 3, 5});
  std::string msg = error_message([&] {
    cross_entropy(x, targets_tensor({0, 1, -100, 4, 5, 2}, {2, 3}));
  });
  EXPECT_NE(msg.find("cross_entropy"), std::string::npos) << msg;
  EXPECT_NE(msg.find("target 5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("position (1, 1)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("V = 5"), std::string::npos) << msg;

  msg = error_message([&] { cross_entropy(Tensor::zeros({2, 5}), targets_tensor({-3, 0}, {2})); });
  EXPECT_NE(msg.find("target -3 at position (0,)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("-100"), std::string::npos) << msg;  // names the ignore_index in force
}

TEST(CrossEntropy, BadArgumentsNameTheOpAndShapes) {
  Tensor x = Tensor::zeros({4, 5});
  std::string msg = error_message([&] { cross_entropy(x, targets_tensor({0, 1, 2}, {3})); });
  EXPECT_NE(msg.find("cross_entropy"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(4,)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(3,)"), std::string::npos) << msg;

  msg = error_message([&] { cross_entropy(x, Tensor::zeros({4})); });
  EXPECT_NE(msg.find("i64"), std::string::npos) << msg;

  msg = error_message([&] { cross_entropy(x, targets_tensor({0, 1, 2, 3}, {4}), -100, "avg"); });
  EXPECT_NE(msg.find("\"avg\""), std::string::npos) << msg;

  msg = error_message([&] { cross_entropy(Tensor::scalar(1.0), targets_tensor({0}, {})); });
  EXPECT_NE(msg.find("class axis"), std::string::npos) << msg;
}

}  // namespace
}  // namespace gradus

namespace gradus {
namespace {

// The backward kernel writes dL/dlogits in the logits' dtype or the next narrower one (what a
// mixed-precision head's products read): each value is the wide one converted, bit for bit, for
// f64 logits with an f32 gradient and f32 logits with a bf16 one; ignored rows are zeros; any
// other dtype is refused by name.
TEST(CrossEntropyKernel, NarrowerGradientIsTheWideOneConverted) {
  static const kernels::KernelRef<kernels::CrossEntropyForwardFn> forward(
      kernels::kCrossEntropyForward);
  static const kernels::KernelRef<kernels::CrossEntropyBackwardFn> backward_kernel(
      kernels::kCrossEntropyBackward);
  const int64_t rows = 5, vocab = 300;
  const Tensor targets = Tensor::from_vector({3, -100, 299, 0, 150}, {rows}, DType::i64);
  const int64_t* t = static_cast<const int64_t*>(targets.raw_data());
  for (auto [wide, narrow] :
       {std::pair{DType::f64, DType::f32}, std::pair{DType::f32, DType::bf16}}) {
    SCOPED_TRACE(std::string(dtype_name(wide)) + " logits, " + std::string(dtype_name(narrow)) +
                 " gradient");
    Generator gen(12);
    const Tensor logits = rand_normal({rows, vocab}, gen, wide, 0.0, 3.0);
    Tensor loss = Tensor::empty({rows}, wide), lse = Tensor::empty({rows}, wide);
    forward(kCPU, wide)(logits.raw_data(), t, loss.raw_data(), lse.raw_data(), rows, vocab, -100);
    const Tensor g = Tensor::full({}, 0.7, wide);
    Tensor full = Tensor::empty({rows, vocab}, wide), part = Tensor::empty({rows, vocab}, narrow);
    backward_kernel(kCPU, wide)(logits.raw_data(), t, lse.raw_data(), g.raw_data(), 0, 0.5,
                                full.raw_data(), wide, rows, vocab, -100);
    backward_kernel(kCPU, wide)(logits.raw_data(), t, lse.raw_data(), g.raw_data(), 0, 0.5,
                                part.raw_data(), narrow, rows, vocab, -100);
    EXPECT_EQ(part.to_vector(), raw_to_dtype(full, narrow).to_vector());
    EXPECT_EQ(part.at({1, 7}), 0.0) << "an ignored row is zeros";
    Tensor wrong = Tensor::empty({rows, vocab}, DType::i64);
    EXPECT_THROW(backward_kernel(kCPU, wide)(logits.raw_data(), t, lse.raw_data(), g.raw_data(), 0,
                                             1.0, wrong.raw_data(), DType::i64, rows, vocab, -100),
                 Error);
  }
}

}  // namespace
}  // namespace gradus
