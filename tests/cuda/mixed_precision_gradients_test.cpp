// bf16 mixed precision on the GPU writes the gradients of f32 operands in f32 straight from the
// bf16 products (kernels::kGemmWideOutput): summed in f32 and never rounded to bf16. Checked
// against a double loop over the same bf16 values with a bound (2^-14 of the largest element) that
// f32 summation meets by far and a bf16 rounding (up to 2^-9 of an element) would not.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "autodiff/autocast.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/linear_cross_entropy.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/norm.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/tape.h"
#include "core/random.h"
#include "kernels/gemm.h"
#include "kernels/registry.h"
#include "support/census.h"
#include "support/cuda.h"

namespace gradus {
namespace {

using testing::census_of;
using testing::kCUDA;

// Values exactly representable in bf16 (rounded on the CPU), as an f32 leaf on the GPU; `host`
// receives them in double.
Tensor bf16_valued_leaf(const Shape& shape, uint64_t seed, std::vector<double>& host,
                        double std = 1.0) {
  Generator gen(seed);
  const Tensor rounded = raw_to_dtype(
      raw_to_dtype(rand_normal(shape, gen, DType::f32, 0.0, std), DType::bf16), DType::f32);
  host = rounded.to_vector();
  Tensor leaf = raw_to_device(rounded, kCUDA);
  leaf.set_requires_grad(true);
  return leaf;
}

void expect_f32_accurate(const Tensor& grad, const std::vector<double>& want, const char* what) {
  ASSERT_EQ(grad.dtype(), DType::f32) << what;
  const std::vector<double> got = grad.to_vector();
  double scale = 0, worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    scale = std::max(scale, std::abs(want[i]));
    worst = std::max(worst, std::abs(got[i] - want[i]));
  }
  EXPECT_LE(worst, 0x1p-14 * scale) << what << ": a bf16 rounding would show as ~2^-9";
}

TEST(CudaMixedPrecision, LinearWritesF32GradientsOfBf16Products) {
  GRADUS_REQUIRE_CUDA();
  ASSERT_TRUE(kernels::supports(kernels::kGemmWideOutput, DeviceType::cuda, DType::bf16));
  const int64_t rows = 96, in = 64, out = 48;
  std::vector<double> xv, wv, dyv;
  const Tensor x = bf16_valued_leaf({rows, in}, 31, xv), w = bf16_valued_leaf({out, in}, 32, wv);
  Tensor y;
  {
    AutocastGuard mixed(DType::bf16, DType::f32);
    y = linear(x, w);
  }
  ASSERT_EQ(y.dtype(), DType::bf16);
  Generator gen(33);
  const Tensor dy = raw_to_dtype(rand_normal({rows, out}, gen), DType::bf16);
  dyv = dy.to_vector();
  const auto calls = census_of([&] { backward(y, raw_to_device(dy, kCUDA)); });
  EXPECT_EQ(calls.count("copy (dtype conversion)"), 0u);

  std::vector<double> dw(out * in, 0.0), dx(rows * in, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) {
        dw[o * in + i] += dyv[r * out + o] * xv[r * in + i];
        dx[r * in + i] += dyv[r * out + o] * wv[o * in + i];
      }
  expect_f32_accurate(w.grad(), dw, "dW");
  expect_f32_accurate(x.grad(), dx, "dx");
}

TEST(CudaMixedPrecision, LinearCrossEntropyWritesAnF32WeightGradient) {
  GRADUS_REQUIRE_CUDA();
  const int64_t rows = 40, C = 64, V = 300;
  std::vector<double> xv, wv;
  // Logits of about unit size keep the bf16 rounding of the logits and of their gradient small.
  const Tensor x = bf16_valued_leaf({rows, C}, 34, xv, 0.125), w = bf16_valued_leaf({V, C}, 35, wv);
  std::vector<double> t(rows);
  for (int64_t r = 0; r < rows; ++r) t[r] = static_cast<double>((r * 37) % V);
  const Tensor targets = raw_to_device(Tensor::from_vector(t, {rows}, DType::i64), kCUDA);
  Tensor loss;
  {
    AutocastGuard mixed(DType::bf16, DType::f32);
    loss = linear_cross_entropy(x, w, targets, -100, "sum", /*chunk_rows=*/16);
  }
  const auto calls = census_of([&] { backward(loss); });
  EXPECT_EQ(calls.count("copy (dtype conversion)"), 0u);
  ASSERT_EQ(w.grad().dtype(), DType::f32);
  ASSERT_EQ(x.grad().dtype(), DType::f32);

  // The reference from the same bf16 logits: dL/dlogits = softmax - onehot per row (the kernel
  // rounds the logits and their gradient to bf16, so this bound is looser: 2^-7 of the scale,
  // still checked per element against a double loop).
  std::vector<double> dw(V * C, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> logit(V);
    double top = -1e300, sum = 0;
    for (int64_t v = 0; v < V; ++v) {
      double s = 0;
      for (int64_t c = 0; c < C; ++c) s += xv[r * C + c] * wv[v * C + c];
      logit[v] = s;
      top = std::max(top, s);
    }
    for (int64_t v = 0; v < V; ++v) sum += std::exp(logit[v] - top);
    for (int64_t v = 0; v < V; ++v) {
      const double g = std::exp(logit[v] - top) / sum - (v == static_cast<int64_t>(t[r]) ? 1 : 0);
      for (int64_t c = 0; c < C; ++c) dw[v * C + c] += g * xv[r * C + c];
    }
  }
  const std::vector<double> got = w.grad().to_vector();
  double scale = 0, worst = 0;
  for (size_t i = 0; i < dw.size(); ++i) {
    scale = std::max(scale, std::abs(dw[i]));
    worst = std::max(worst, std::abs(got[i] - dw[i]));
  }
  EXPECT_LE(worst, 0x1p-7 * scale);
}

// Under bf16 autocast, add_rms_norm adds the bf16 output of a product to the f32 stream in its
// kernel: the same sum, norm and gradients (delta's in bf16) as the composite (a widening cast, the
// add, rms_norm; set_fused_norm(false)), to f32 rounding.
TEST(CudaMixedPrecision, AddRmsNormWidensABf16DeltaInItsKernel) {
  GRADUS_REQUIRE_CUDA();
  Generator gen(36);
  auto leaf = [&](const Shape& shape, DType dt, double mean) {
    Tensor t =
        raw_to_device(raw_to_dtype(rand_normal(shape, gen, DType::f32, mean, 1.0), dt), kCUDA);
    t.set_requires_grad(true);
    return t;
  };
  const Tensor x = leaf({5, 9, 192}, DType::f32, 0.0), delta = leaf({5, 9, 192}, DType::bf16, 0.0),
               w = leaf({192}, DType::f32, 1.0);
  auto run = [&](bool fused) {
    set_fused_norm(fused);
    for (const Tensor& t : {x, delta, w}) t.zero_grad();
    SumAndNorm r;
    {
      AutocastGuard mixed(DType::bf16, DType::f32);
      r = add_rms_norm(x, delta, w);
    }
    backward(sum(r.sum * 0.5) + sum(r.norm * r.norm));
    set_fused_norm(true);
    return std::vector<std::vector<double>>{r.sum.to_vector(), r.norm.to_vector(),
                                            x.grad().to_vector(), delta.grad().to_vector(),
                                            w.grad().to_vector()};
  };
  const auto fused = run(true), composite = run(false);
  EXPECT_EQ(delta.grad().dtype(), DType::bf16);
  const char* names[] = {"sum", "norm", "grad x", "grad delta", "grad weight"};
  for (size_t i = 0; i < fused.size(); ++i) {
    double scale = 0, worst = 0;
    for (size_t j = 0; j < fused[i].size(); ++j) {
      scale = std::max(scale, std::abs(composite[i][j]));
      worst = std::max(worst, std::abs(fused[i][j] - composite[i][j]));
    }
    // bf16's rounding of grad delta (2^-8) bounds a one-ulp difference before it.
    EXPECT_LE(worst, (i == 3 ? 0x1p-8 : 0x1p-20) * scale) << names[i];
  }
}

// The norms write the bf16 copy the products read in their own pass (autocast_offer_cast): no
// conversion between a norm and the products reading it, and the copy equals a cast of the output.
TEST(CudaMixedPrecision, NormsWriteTheBf16CopyTheProductsRead) {
  GRADUS_REQUIRE_CUDA();
  Generator gen(37);
  auto on_gpu = [&](const Shape& shape, double mean) {
    return raw_to_device(rand_normal(shape, gen, DType::f32, mean, 1.0), kCUDA);
  };
  const Tensor x = on_gpu({6, 5, 256}, 0.0), g = on_gpu({256}, 1.0), w = on_gpu({64, 256}, 0.0);
  const Tensor delta = raw_to_dtype(on_gpu({6, 5, 256}, 0.0), DType::bf16);
  Tensor n, m, yn, ym;
  std::map<std::string, int64_t> calls;
  {
    AutocastGuard mixed(DType::bf16, DType::f32);
    n = rms_norm(x, g);
    m = add_rms_norm(x, delta, g).norm;
    calls = census_of([&] {
      yn = linear(n, w);
      ym = linear(m, w);
    });
  }
  EXPECT_EQ(calls["copy (dtype conversion)"], 2) << "the weight, twice; neither norm output";
  const Tensor w16 = raw_to_dtype(w, DType::bf16);
  auto bits = [](const Tensor& t) { return raw_to_dtype(t, DType::f32).to_vector(); };
  EXPECT_EQ(bits(yn), bits(linear(raw_to_dtype(n, DType::bf16), w16)));
  EXPECT_EQ(bits(ym), bits(linear(raw_to_dtype(m, DType::bf16), w16)));
}

}  // namespace
}  // namespace gradus
