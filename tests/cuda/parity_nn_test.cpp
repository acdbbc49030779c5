// CPU/GPU parity of the network ops: matmul and linear (plain, transposed, sliced, batched and
// broadcast operands, 1-D operands, k = 0, large k), rms_norm and layer_norm (narrow and wide rows,
// with and without weight / bias), cross_entropy (every reduction, ignored targets, 3-D and
// transposed logits, a large vocabulary), embedding (repeated ids), rope and dropout; f32, and f64
// for a few. Index errors must name the same first bad position on both backends.
#include <algorithm>
#include <string>

#include "autodiff/ops/cross_entropy.h"
#include "autodiff/ops/dropout.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/embedding.h"
#include "autodiff/ops/linear_cross_entropy.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/norm.h"
#include "autodiff/ops/rope.h"
#include "autodiff/ops/view.h"
#include "support/cuda_parity.h"

namespace gradus {
namespace {

using testing::expect_same_error;
using testing::kExact;
using testing::ParityOptions;
using testing::ParityRun;
using testing::sum_tolerance;

// Dot products of k unit-scale terms forward; the backward's products run over `k_backward` terms
// (dA sums over n, dB over m and the batch).
ParityOptions dot_options(int64_t k, int64_t k_backward, DType dtype = DType::f32) {
  ParityOptions o;
  o.dtype = dtype;
  o.forward = sum_tolerance(dtype, k);
  o.backward = sum_tolerance(dtype, k_backward);
  return o;
}

// ---------------------------------------------------------------- matmul / linear
TEST(CudaParity, matmul) {
  GRADUS_PARITY_SETUP(run);
  auto mm = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); };
  run.check("(33, 65) (65, 17)", mm, {run.normal({33, 65}), run.normal({65, 17})},
            dot_options(65, 33));
  // Transposed views reach the gemm as transpose flags; a sliced (stride 2) one is copied first.
  run.check(
      "transposed a",
      [](const std::vector<Tensor>& in) { return matmul(transpose(in[0], 0, 1), in[1]); },
      {run.normal({65, 33}), run.normal({65, 17})}, dot_options(65, 33));
  run.check(
      "transposed b",
      [](const std::vector<Tensor>& in) { return matmul(in[0], transpose(in[1], 0, 1)); },
      {run.normal({33, 65}), run.normal({17, 65})}, dot_options(65, 33));
  run.check(
      "sliced a",
      [](const std::vector<Tensor>& in) { return matmul(slice(in[0], 1, 0, 130, 2), in[1]); },
      {run.normal({33, 130}), run.normal({65, 17})}, dot_options(65, 33));
  // Batches: b broadcast over (2, 3) (its gradient accumulated over 6 products), both broadcast,
  // and a permuted batch layout.
  run.check("(2, 3, 33, 65) (65, 17)", mm, {run.normal({2, 3, 33, 65}), run.normal({65, 17})},
            dot_options(65, 6 * 33));
  run.check("(2, 1, 5, 8) (3, 8, 4)", mm, {run.normal({2, 1, 5, 8}), run.normal({3, 8, 4})},
            dot_options(8, 10));
  run.check(
      "permuted batch",
      [](const std::vector<Tensor>& in) {
        return matmul(permute(in[0], {1, 0, 2}), in[1]);
      },
      {run.normal({33, 4, 65}), run.normal({4, 65, 17})}, dot_options(65, 33));
  // numpy's 1-D rules.
  run.check("(65) (65, 17)", mm, {run.normal({65}), run.normal({65, 17})}, dot_options(65, 17));
  run.check("(33, 65) (65)", mm, {run.normal({33, 65}), run.normal({65})}, dot_options(65, 33));
  run.check("(65) (65)", mm, {run.normal({65}), run.normal({65})}, dot_options(65, 1));
  // Large k (tolerance grows with k, see sum_tolerance), and k = 0 (a zero product; C not read).
  run.check("(16, 1024) (1024, 16)", mm, {run.normal({16, 1024}), run.normal({1024, 16})},
            dot_options(1024, 16));
  run.check("(3, 0) (0, 4)", mm, {run.normal({3, 0}), run.normal({0, 4})}, dot_options(1, 1));
  run.check("(0, 5) (5, 4)", mm, {run.normal({0, 5}), run.normal({5, 4})}, dot_options(5, 1));
  run.check("(33, 65) (65, 17)", mm, {run.normal({33, 65}), run.normal({65, 17})},
            dot_options(65, 33, DType::f64));
  run.check("(2, 3, 33, 65) (65, 17)", mm, {run.normal({2, 3, 33, 65}), run.normal({65, 17})},
            dot_options(65, 6 * 33, DType::f64));
}

TEST(CudaParity, linear) {
  GRADUS_PARITY_SETUP(run);
  auto lin = [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); };
  // dweight and dbias sum over the 28 rows of x; dx over the 17 outputs.
  run.check("x (4, 7, 33), bias", lin,
            {run.normal({4, 7, 33}), run.normal({17, 33}), run.normal({17})}, dot_options(33, 28));
  run.check(
      "no bias", [](const std::vector<Tensor>& in) { return linear(in[0], in[1]); },
      {run.normal({28, 33}), run.normal({17, 33})}, dot_options(33, 28));
  run.check(
      "transposed weight, 1-D x",
      [](const std::vector<Tensor>& in) { return linear(in[0], transpose(in[1], 0, 1), in[2]); },
      {run.normal({33}), run.normal({33, 17}), run.normal({17})}, dot_options(33, 17));
  run.check("wide", lin, {run.normal({64, 512}), run.normal({96, 512}), run.normal({96})},
            dot_options(512, 96));
  run.check("x (4, 7, 33), bias", lin,
            {run.normal({4, 7, 33}), run.normal({17, 33}), run.normal({17})},
            dot_options(33, 28, DType::f64));
}

// ---------------------------------------------------------------- norms
// Forward: a mean of C squares (relative error far inside 1e-5). Backward: dx has a dot product
// over the C channels, dweight / dbias sum over the rows.
ParityOptions norm_options(int64_t channels, int64_t rows, DType dtype = DType::f32) {
  ParityOptions o;
  o.dtype = dtype;
  o.backward = sum_tolerance(dtype, std::max(channels, rows), 2.0);
  return o;
}

TEST(CudaParity, rms_norm) {
  GRADUS_PARITY_SETUP(run);
  auto with_weight = [](const std::vector<Tensor>& in) { return rms_norm(in[0], in[1]); };
  run.check("(6, 7, 128) weighted", with_weight,
            {run.normal({6, 7, 128}), run.normal({128}, 1, 0.5)}, norm_options(128, 42));
  run.check("(4, 3000) wide rows", with_weight,
            {run.normal({4, 3000}, 0, 3), run.normal({3000}, 1, 0.5)}, norm_options(3000, 4));
  run.check(
      "(37, 7) no weight, eps 1e-6",
      [](const std::vector<Tensor>& in) { return rms_norm(in[0], Tensor(), 1e-6); },
      {run.normal({37, 7})}, norm_options(7, 37));
  run.check(
      "transposed x",
      [](const std::vector<Tensor>& in) { return rms_norm(transpose(in[0], 0, 1), in[1]); },
      {run.normal({96, 9}), run.normal({96}, 1, 0.5)}, norm_options(96, 9));
  run.check("one row of one channel", with_weight, {run.normal({1, 1}), run.normal({1})},
            norm_options(1, 1));
  run.check("(6, 7, 128) weighted", with_weight,
            {run.normal({6, 7, 128}), run.normal({128}, 1, 0.5)},
            norm_options(128, 42, DType::f64));
}

TEST(CudaParity, add_rms_norm) {
  GRADUS_PARITY_SETUP(run);
  // Both outputs reach the result, so the backward gets a gradient for each.
  auto both = [](const std::vector<Tensor>& in) {
    const SumAndNorm r = add_rms_norm(in[0], in[1], in[2]);
    return r.sum * 0.7 + r.norm * r.norm;
  };
  run.check("(6, 7, 128) weighted", both,
            {run.normal({6, 7, 128}), run.normal({6, 7, 128}), run.normal({128}, 1, 0.5)},
            norm_options(128, 42));
  run.check("(4, 3000) wide rows", both,
            {run.normal({4, 3000}, 0, 3), run.normal({4, 3000}), run.normal({3000}, 1, 0.5)},
            norm_options(3000, 4));
  run.check(
      "(37, 7) no weight, norm only",
      [](const std::vector<Tensor>& in) { return add_rms_norm(in[0], in[1], Tensor(), 1e-6).norm; },
      {run.normal({37, 7}), run.normal({37, 7})}, norm_options(7, 37));
  run.check(
      "transposed x",
      [](const std::vector<Tensor>& in) {
        const SumAndNorm r = add_rms_norm(transpose(in[0], 0, 1), in[1], in[2]);
        return r.sum + r.norm;
      },
      {run.normal({96, 9}), run.normal({9, 96}), run.normal({96}, 1, 0.5)}, norm_options(96, 9));
  run.check("(6, 7, 128) weighted", both,
            {run.normal({6, 7, 128}), run.normal({6, 7, 128}), run.normal({128}, 1, 0.5)},
            norm_options(128, 42, DType::f64));
}

TEST(CudaParity, layer_norm) {
  GRADUS_PARITY_SETUP(run);
  auto full = [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2]); };
  run.check("(6, 7, 128) weight and bias", full,
            {run.normal({6, 7, 128}, 0.5, 2), run.normal({128}, 1, 0.5), run.normal({128})},
            norm_options(128, 42));
  run.check("(4, 3000) wide rows", full,
            {run.normal({4, 3000}, 1, 3), run.normal({3000}, 1, 0.5), run.normal({3000})},
            norm_options(3000, 4));
  run.check(
      "weight only",
      [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], Tensor()); },
      {run.normal({37, 7}), run.normal({7}, 1, 0.5)}, norm_options(7, 37));
  run.check(
      "neither, transposed x, eps 1e-3",
      [](const std::vector<Tensor>& in) {
        return layer_norm(transpose(in[0], 0, 1), Tensor(), Tensor(), 1e-3);
      },
      {run.normal({96, 9})}, norm_options(96, 9));
  run.check("(6, 7, 128) weight and bias", full,
            {run.normal({6, 7, 128}, 0.5, 2), run.normal({128}, 1, 0.5), run.normal({128})},
            norm_options(128, 42, DType::f64));
}

// ---------------------------------------------------------------- cross_entropy
// rows targets in [0, V) with every `ignore_every`-th set to ignore_index.
Tensor targets(ParityRun& run, const Shape& shape, int64_t V, int64_t ignore_every,
               int64_t ignore_index = -100) {
  Tensor t = run.ids(shape, V);
  std::vector<int64_t> ignored;
  for (int64_t i = 0; i < t.numel(); i += ignore_every) ignored.push_back(i);
  return ParityRun::with_values(t, ignored, static_cast<double>(ignore_index));
}

TEST(CudaParity, cross_entropy) {
  GRADUS_PARITY_SETUP(run);
  // Losses are O(log V); "sum" / "mean" add up to 64 of them (sum_tolerance with scale 10).
  ParityOptions options;
  options.forward = sum_tolerance(DType::f32, 64, 10.0);
  for (const char* reduction : {"none", "sum", "mean"}) {
    auto fn = [reduction](const std::vector<Tensor>& in) {
      return cross_entropy(in[0], in[1], -100, reduction);
    };
    run.check(fmt::format("(64, 100) {}", reduction), fn,
              {run.normal({64, 100}, 0, 2), targets(run, {64}, 100, 7)}, options);
    run.check(fmt::format("(2, 8, 5003) {}", reduction), fn,
              {run.normal({2, 8, 5003}, 0, 2), targets(run, {2, 8}, 5003, 5)}, options);
    run.check(
        fmt::format("transposed logits {}", reduction),
        [reduction](const std::vector<Tensor>& in) {
          return cross_entropy(transpose(in[0], 0, 1), in[1], -100, reduction);
        },
        {run.normal({100, 64}, 0, 2), targets(run, {64}, 100, 9)}, options);
    // Large logits (the maximum is subtracted first), ignore_index a valid class. The gradient
    // exp(x - lse) carries lse's rounding (magnitude_tolerance).
    const Tensor large = run.normal({32, 10}, 0, 60);
    ParityOptions large_options = options;
    large_options.backward = testing::magnitude_tolerance(DType::f32, testing::max_abs(large));
    run.check(
        fmt::format("large logits, ignore_index 3, {}", reduction),
        [reduction](const std::vector<Tensor>& in) {
          return cross_entropy(in[0], in[1], 3, reduction);
        },
        {large, run.ids({32}, 10)}, large_options);
    ParityOptions f64 = options;
    f64.dtype = DType::f64;
    f64.forward = sum_tolerance(DType::f64, 64, 10.0);
    run.check(fmt::format("(64, 100) {}", reduction), fn,
              {run.normal({64, 100}, 0, 2), targets(run, {64}, 100, 7)}, f64);
  }
  // Every target ignored: "mean" is NaN (0 / 0), as PyTorch; forward only.
  ParityOptions forward_only;
  forward_only.differentiate = false;
  run.check(
      "all ignored, mean",
      [](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1]); },
      {run.normal({4, 6}), targets(run, {4}, 6, 1)}, forward_only);
  // A target out of range: the same first bad position on both backends.
  Tensor bad = ParityRun::with_values(ParityRun::with_values(run.ids({40}, 9), {13}, 9), {30}, -1);
  expect_same_error("target out of range",
                    [](const std::vector<Tensor>& in) { cross_entropy(in[0], in[1]); },
                    {rand_normal({40, 9}, run.generator()), bad});
}

// ---------------------------------------------------------------- linear_cross_entropy
// The head and the loss in chunks of rows (autodiff/ops/linear_cross_entropy.h): the gemm and
// cross-entropy kernels per chunk, the gradients computed in the forward and scaled by the
// upstream gradient on the device in the backward.
TEST(CudaParity, linear_cross_entropy) {
  GRADUS_PARITY_SETUP(run);
  // The loss adds up to 64 row losses of O(log V) (sum_tolerance with scale 10); the gradients are
  // products of length V (dx = g W) and of length rows (dW = g^T x) with terms of O(1).
  auto options = [](DType dtype, int64_t rows, int64_t vocab) {
    ParityOptions o;
    o.dtype = dtype;
    o.forward = sum_tolerance(dtype, 64, 10.0);
    o.backward = sum_tolerance(dtype, std::max(rows, vocab));
    return o;
  };
  for (const char* reduction : {"sum", "mean"})
    for (int64_t chunk : {0, 7}) {
      auto fn = [reduction, chunk](const std::vector<Tensor>& in) {
        return linear_cross_entropy(in[0], in[1], in[2], -100, reduction, chunk);
      };
      run.check(fmt::format("(64, 32) (100, 32) {} chunk {}", reduction, chunk), fn,
                {run.normal({64, 32}), run.normal({100, 32}), targets(run, {64}, 100, 7)},
                options(DType::f32, 64, 100));
      run.check(fmt::format("f64 {} chunk {}", reduction, chunk), fn,
                {run.normal({64, 32}), run.normal({100, 32}), targets(run, {64}, 100, 7)},
                options(DType::f64, 64, 100));
    }
  run.check(
      "(2, 8, 16) (5003, 16) chunk 3, transposed weight",
      [](const std::vector<Tensor>& in) {
        return linear_cross_entropy(in[0], transpose(in[1], 0, 1), in[2], -100, "mean", 3);
      },
      {run.normal({2, 8, 16}), run.normal({16, 5003}), targets(run, {2, 8}, 5003, 5)},
      options(DType::f32, 16, 5003));
  // A target out of range in the second chunk: the same position on both backends.
  Tensor bad = ParityRun::with_values(run.ids({40}, 9), {30}, 9);
  expect_same_error(
      "target out of range",
      [](const std::vector<Tensor>& in) {
        linear_cross_entropy(in[0], in[1], in[2], -100, "mean", 16);
      },
      {rand_normal({40, 5}, run.generator()), rand_normal({9, 5}, run.generator()), bad});
}

// ---------------------------------------------------------------- embedding
TEST(CudaParity, embedding) {
  GRADUS_PARITY_SETUP(run);
  // The forward copies rows (exact); the backward scatter-adds the gradient rows of repeated ids,
  // about 200 / 11 each, in an order that may differ between the backends.
  auto emb = [](const std::vector<Tensor>& in) { return embedding(in[0], in[1]); };
  ParityOptions options;
  options.forward = kExact;
  options.backward = sum_tolerance(DType::f32, 200);
  run.check("(11, 32) ids (4, 50)", emb, {run.normal({11, 32}), run.ids({4, 50}, 11)}, options);
  run.check(
      "transposed weight and ids",
      [](const std::vector<Tensor>& in) {
        return embedding(transpose(in[0], 0, 1), transpose(in[1], 0, 1));
      },
      {run.normal({32, 11}), run.ids({50, 4}, 11)}, options);
  // Few rows, many repeats, wide rows.
  options.backward = sum_tolerance(DType::f32, 3000);
  run.check("(7, 300) ids (3000)", emb, {run.normal({7, 300}), run.ids({3000}, 7)}, options);
  run.check("no ids", emb, {run.normal({7, 5}), run.ids({0}, 7)}, options);
  ParityOptions f64 = options;
  f64.dtype = DType::f64;
  f64.backward = sum_tolerance(DType::f64, 3000);
  run.check("(7, 300) ids (3000)", emb, {run.normal({7, 300}), run.ids({3000}, 7)}, f64);
  Tensor bad =
      ParityRun::with_values(ParityRun::with_values(run.ids({6, 9}, 11), {22}, 11), {40}, -3);
  expect_same_error("id out of range",
                    [](const std::vector<Tensor>& in) { embedding(in[0], in[1]); },
                    {rand_normal({11, 4}, run.generator()), bad});
}

// ---------------------------------------------------------------- rope, dropout
TEST(CudaParity, rope) {
  GRADUS_PARITY_SETUP(run);
  // cos and sin come from double on both backends; the rest is two products and a sum per element.
  run.check("(2, 3, 16, 64)", [](const std::vector<Tensor>& in) { return rope(in[0]); },
            {run.normal({2, 3, 16, 64})});
  run.check("(5, 32) offset 100",
            [](const std::vector<Tensor>& in) { return rope(in[0], 10000.0, 100); },
            {run.normal({5, 32})});
  run.check(
      "(B, T, H, D) transposed, theta 5e5, offset 4096",
      [](const std::vector<Tensor>& in) { return rope(transpose(in[0], 1, 2), 500000.0, 4096); },
      {run.normal({2, 9, 4, 16})});
  run.check("D = 2", [](const std::vector<Tensor>& in) { return rope(in[0]); },
            {run.normal({3, 2})});
  ParityOptions f64;
  f64.dtype = DType::f64;
  run.check(
      "(2, 3, 16, 64)", [](const std::vector<Tensor>& in) { return rope(in[0]); },
      {run.normal({2, 3, 16, 64})}, f64);
}

TEST(CudaParity, dropout) {
  GRADUS_PARITY_SETUP(run);
  // The same (seed, offset) draws the same mask on both backends; each call of fn starts from an
  // identical generator. The offset is not a multiple of anything in particular.
  const uint64_t seed = run.seed() ^ 0x9e3779b97f4a7c15ull;
  auto with_p = [seed](double p) {
    return [seed, p](const std::vector<Tensor>& in) {
      Generator gen(seed, 7);
      return dropout(in[0], p, gen);
    };
  };
  run.check("p 0.3, 1031 elements", with_p(0.3), {run.normal({1031})});
  run.check("p 0.5, transposed",
            [seed](const std::vector<Tensor>& in) {
              Generator gen(seed, 12345);
              return dropout(transpose(in[0], 0, 1), 0.5, gen);
            },
            {run.normal({53, 37})});
  run.check("p 0.9, 5 elements", with_p(0.9), {run.normal({5})});
  run.check("p 0.1, 2^18 + 3 elements", with_p(0.1), {run.normal({(1 << 18) + 3})});
  ParityOptions f64;
  f64.dtype = DType::f64;
  run.check("p 0.3, 1031 elements", with_p(0.3), {run.normal({1031})}, f64);
}

}  // namespace
}  // namespace gradus
