// linear_cross_entropy: the loss and the gradients of x and the weight against the composite
// cross_entropy(matmul(x, W^T)) in f64 and f32, for both reductions, ignored targets, chunks of
// 1 row to all rows (uneven last chunk), an upstream gradient other than 1; f64 gradchecks
// (non-contiguous x and weight); accumulation; no gradient work without grad mode; autocast; the
// memory the chunks save; the errors.
#include "autodiff/ops/linear_cross_entropy.h"

#include <cmath>
#include <limits>

#include "autodiff/autocast.h"
#include "autodiff/ops/cross_entropy.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/ops/view.h"
#include "core/allocator.h"
#include "support/compare.h"
#include "support/expect_error.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

using testing::expect_error;
using testing::max_abs_difference;
using testing::noncontiguous_leaf;
using testing::randn_leaf;

// (shape) i64 targets in [0, V), every `ignore_every`-th one (when > 0) set to -100.
Tensor random_targets(const Shape& shape, int64_t vocab, uint64_t seed, int64_t ignore_every = 0) {
  Generator gen(seed);
  std::vector<double> u = rand_uniform(shape, gen, DType::f64, 0.0, 1.0).to_vector();
  for (size_t i = 0; i < u.size(); ++i)
    u[i] = ignore_every > 0 && i % static_cast<size_t>(ignore_every) == 1
               ? -100.0
               : std::floor(u[i] * static_cast<double>(vocab));
  return Tensor::from_vector(u, shape, DType::i64);
}

// Loss and the gradients of x and W for loss * 2.5 equal the composite's within `tolerance`.
void expect_matches_composite(DType dtype, const std::string& reduction, int64_t chunk_rows,
                              double tolerance, uint64_t seed) {
  SCOPED_TRACE(::testing::Message()
               << dtype_name(dtype) << " " << reduction << " chunk_rows " << chunk_rows);
  const int64_t B = 3, T = 7, C = 6, V = 11;
  Tensor x = randn_leaf({B, T, C}, seed, 0, 1, dtype);
  Tensor w = randn_leaf({V, C}, seed + 1, 0, 1, dtype);
  const Tensor targets = random_targets({B, T}, V, seed + 2, /*ignore_every=*/5);
  Tensor fused = linear_cross_entropy(x, w, targets, -100, reduction, chunk_rows);
  backward(fused * 2.5);
  const Tensor gx = x.grad(), gw = w.grad();
  x.zero_grad();
  w.zero_grad();
  Tensor reference = cross_entropy(matmul(x, transpose(w, 0, 1)), targets, -100, reduction);
  backward(reference * 2.5);
  EXPECT_EQ(fused.shape(), Shape{});
  EXPECT_EQ(fused.dtype(), dtype);
  EXPECT_LE(max_abs_difference(fused, reference, /*nan_equal=*/true),
            tolerance * (1 + std::abs(reference.item())));
  EXPECT_LE(max_abs_difference(gx, x.grad()), tolerance) << "grad x";
  EXPECT_LE(max_abs_difference(gw, w.grad()), tolerance) << "grad W";
}

TEST(LinearCrossEntropy, MatchesTheCompositeInF64) {
  uint64_t seed = 10;
  for (const char* reduction : {"mean", "sum"})
    for (int64_t chunk : {0, 1, 4, 21})  // auto (one chunk), single rows, uneven, all rows
      expect_matches_composite(DType::f64, reduction, chunk, 1e-12, seed += 3);
}

TEST(LinearCrossEntropy, MatchesTheCompositeInF32) {
  uint64_t seed = 50;
  for (const char* reduction : {"mean", "sum"})
    for (int64_t chunk : {0, 4})
      expect_matches_composite(DType::f32, reduction, chunk, 2e-5, seed += 3);
}

TEST(Gradcheck, linear_cross_entropy) {
  const Tensor targets = random_targets({2, 3}, 5, 1, /*ignore_every=*/4);
  for (const char* reduction : {"mean", "sum"}) {
    SCOPED_TRACE(reduction);
    auto chunked = [&](const std::vector<Tensor>& in) {
      return linear_cross_entropy(in[0], in[1], targets, -100, reduction, 2);
    };
    EXPECT_GRADCHECK(chunked,
                     (std::vector<Tensor>{randn_leaf({2, 3, 4}, 2), randn_leaf({5, 4}, 3)}));
  }
  // Non-contiguous operands: x a strided slice, W the transpose of a (C, V) tensor.
  auto strided = [&](const std::vector<Tensor>& in) {
    return linear_cross_entropy(in[0], in[1], targets, -100, "mean", 4);
  };
  EXPECT_GRADCHECK(strided, (std::vector<Tensor>{noncontiguous_leaf({2, 3, 4}, 4),
                                                 noncontiguous_leaf({5, 4}, 5)}));
}

TEST(LinearCrossEntropy, GradientsAccumulate) {
  Tensor x = randn_leaf({4, 3}, 20), w = randn_leaf({6, 3}, 21);
  const Tensor targets = random_targets({4}, 6, 22);
  backward(linear_cross_entropy(x, w, targets, -100, "mean", 3));
  const std::vector<double> once_x = x.grad().to_vector(), once_w = w.grad().to_vector();
  backward(linear_cross_entropy(x, w, targets, -100, "mean", 3));
  const std::vector<double> twice_x = x.grad().to_vector(), twice_w = w.grad().to_vector();
  for (size_t i = 0; i < once_x.size(); ++i) EXPECT_DOUBLE_EQ(twice_x[i], 2 * once_x[i]);
  for (size_t i = 0; i < once_w.size(); ++i) EXPECT_DOUBLE_EQ(twice_w[i], 2 * once_w[i]);
}

// The weight shared with another use (a tied embedding): both gradients add up.
TEST(LinearCrossEntropy, SharedWeightGetsTheSumOfItsGradients) {
  Tensor x = randn_leaf({5, 3}, 30), w = randn_leaf({4, 3}, 31);
  const Tensor targets = random_targets({5}, 4, 32);
  auto loss = [&](bool fused) {
    Tensor head = fused ? linear_cross_entropy(x, w, targets)
                        : cross_entropy(matmul(x, transpose(w, 0, 1)), targets);
    return head + sum(w * w);
  };
  backward(loss(true));
  const Tensor g = w.grad();
  w.zero_grad();
  backward(loss(false));
  EXPECT_LE(max_abs_difference(g, w.grad()), 1e-12);
}

// Without grad mode (evaluation) the op records nothing and computes no gradient.
TEST(LinearCrossEntropy, WithoutGradModeOnlyTheLoss) {
  Tensor x = randn_leaf({6, 3}, 40), w = randn_leaf({5, 3}, 41);
  const Tensor targets = random_targets({6}, 5, 42);
  const double with_grad = linear_cross_entropy(x, w, targets).item();
  const size_t records = tape_size();
  Tensor loss;
  {
    NoGradGuard no_grad;
    loss = linear_cross_entropy(x, w, targets);
  }
  EXPECT_EQ(tape_size(), records);
  EXPECT_FALSE(loss.requires_grad());
  EXPECT_EQ(loss.item(), with_grad);
}

TEST(LinearCrossEntropy, EveryTargetIgnored) {
  Tensor x = randn_leaf({3, 2}, 50), w = randn_leaf({4, 2}, 51);
  const Tensor ignored = Tensor::from_vector({-100.0, -100.0, -100.0}, {3}, DType::i64);
  EXPECT_TRUE(std::isnan(linear_cross_entropy(x, w, ignored).item())) << "0 / 0, as PyTorch";
  Tensor total = linear_cross_entropy(x, w, ignored, -100, "sum");
  EXPECT_EQ(total.item(), 0.0);
  backward(total);
  for (double g : x.grad().to_vector()) EXPECT_EQ(g, 0.0);
  for (double g : w.grad().to_vector()) EXPECT_EQ(g, 0.0);
}

// Under autocast the product runs in the compute dtype and the loss in the wide one (here f32 and
// f64, the CPU's stand-in for bf16 and f32), as the composite does.
TEST(LinearCrossEntropy, AutocastComputesInTheNarrowDtypeAndLossInTheWide) {
  Tensor x = randn_leaf({4, 5}, 60), w = randn_leaf({7, 5}, 61);
  const Tensor targets = random_targets({4}, 7, 62);
  Tensor fused, reference;
  {
    AutocastGuard mixed(DType::f32, DType::f64);
    fused = linear_cross_entropy(x, w, targets, -100, "mean", 3);
    reference = cross_entropy(matmul(x, transpose(w, 0, 1)), targets);
  }
  EXPECT_EQ(fused.dtype(), DType::f64);
  EXPECT_LE(max_abs_difference(fused, reference), 1e-6);
  backward(fused);
  const Tensor gx = x.grad(), gw = w.grad();
  EXPECT_EQ(gx.dtype(), DType::f64) << "the master's dtype, through the differentiable cast";
  x.zero_grad();
  w.zero_grad();
  backward(reference);
  EXPECT_LE(max_abs_difference(gx, x.grad()), 1e-6);
  EXPECT_LE(max_abs_difference(gw, w.grad()), 1e-6);
}

// The composite keeps the (rows, V) logits for its backward and creates their gradient; in chunks
// of 64 rows the op's transient is two (64, V) blocks.
TEST(LinearCrossEntropy, ChunksKeepTheLogitsOutOfMemory) {
  const int64_t rows = 512, C = 8, V = 2048;
  Tensor x = randn_leaf({rows, C}, 70), w = randn_leaf({V, C}, 71);
  const Tensor targets = random_targets({rows}, V, 72);
  Allocator& alloc = allocator_for(DeviceType::cpu);
  auto peak = [&](bool fused) {
    x.zero_grad();
    w.zero_grad();
    const int64_t start = alloc.stats().bytes_in_use;
    alloc.reset_peak();
    Tensor loss = fused ? linear_cross_entropy(x, w, targets, -100, "mean", 64)
                        : cross_entropy(matmul(x, transpose(w, 0, 1)), targets);
    backward(loss);
    return alloc.stats().peak_bytes_in_use - start;
  };
  const int64_t fused = peak(true), composite = peak(false);
  const int64_t logits_bytes = rows * V * 8;  // 8 MiB in f64
  EXPECT_GE(composite, 2 * logits_bytes) << "the logits and their gradient";
  EXPECT_LT(fused, logits_bytes / 2) << "fused " << fused << " B, composite " << composite << " B";
}

TEST(LinearCrossEntropy, ErrorsNameTheProblem) {
  const Tensor x = Tensor::zeros({2, 3, 4}, DType::f64), w = Tensor::zeros({5, 4}, DType::f64);
  const Tensor targets = Tensor::from_vector({0.0, 1.0, 2.0, 3.0, 7.0, 1.0}, {2, 3}, DType::i64);
  expect_error([&] { linear_cross_entropy(x, w, targets, -100, "mean", 2); },
               {"linear_cross_entropy", "target 7 at position (1, 1)", "V = 5"});
  const Tensor good = Tensor::from_vector({0.0, 1.0, 2.0, 3.0, 4.0, 1.0}, {2, 3}, DType::i64);
  expect_error([&] { linear_cross_entropy(x, w, good, -100, "none"); },
               {"linear_cross_entropy", "\"mean\" or \"sum\"", "\"none\""});
  expect_error(
      [&] {
        linear_cross_entropy(x, Tensor::zeros({5, 3}, DType::f64), good);
      },
      {"linear_cross_entropy", "C = 3"});
  expect_error([&] { linear_cross_entropy(x, w, Tensor::zeros({6}, DType::i64)); },
               {"linear_cross_entropy", "leading shape (2, 3)"});
  expect_error(
      [&] {
        linear_cross_entropy(x, Tensor::zeros({5, 4}, DType::f32), good);
      },
      {"linear_cross_entropy"});
}

}  // namespace
}  // namespace gradus
