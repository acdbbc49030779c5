// kernels::kGemmWideOutput on the CPU (f32 operands, f64 C): every batch layout the gemm kernel
// distinguishes (one product, the batch folded into m or k, independent products, accumulation
// into one C in batch order), transposes, padded leading dimensions, beta, k = 0, and a C that
// must not be read when beta = 0. Reference: a double loop over the same f32 values.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/random.h"
#include "core/tensor.h"
#include "kernels/gemm.h"
#include "kernels/registry.h"

namespace gradus {
namespace {

using kernels::GemmArgs;
using kernels::GemmFn;

struct WideCase {
  std::string name;
  GemmArgs g;  // sizes, flags, leading dimensions and strides; pointers are filled in by run()
};

// Element (i, j) of op(X[b]) for a stored matrix with leading dimension ld, transposed or not.
double op_at(const float* x, bool trans, int64_t ld, int64_t i, int64_t j) {
  return trans ? x[j * ld + i] : x[i * ld + j];
}

// Runs the case on random operands and checks C against the double loop: within f32 summation
// error (the products are summed by sgemm), padding between rows untouched, C not read when beta =
// 0.
void run(const WideCase& c) {
  SCOPED_TRACE(c.name);
  GemmArgs g = c.g;
  constexpr int64_t kBuffer = 1 << 14;
  Generator gen(41);
  const Tensor a = rand_normal({kBuffer}, gen, DType::f32), b = rand_normal({kBuffer}, gen);
  const bool read_c = g.beta != 0.0;
  Tensor out = read_c
                   ? rand_normal({kBuffer}, gen, DType::f64)
                   : Tensor::full({kBuffer}, std::numeric_limits<double>::quiet_NaN(), DType::f64);
  const std::vector<double> before = out.to_vector();
  g.a = a.raw_data();
  g.b = b.raw_data();
  g.c = out.raw_data();
  static const kernels::KernelRef<GemmFn> wide(kernels::kGemmWideOutput);
  wide(kCPU, DType::f32)(g);

  const float* av = a.data<float>();
  const float* bv = b.data<float>();
  const std::vector<double> got = out.to_vector();
  std::vector<bool> written(kBuffer, false);
  const int64_t entries = g.stride_c == 0 ? 1 : g.batch;
  for (int64_t e = 0; e < entries; ++e)
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) {
        const int64_t at = e * g.stride_c + i * g.ldc + j;
        double want = read_c ? g.beta * before[at] : 0.0, magnitude = std::abs(want);
        const int64_t first = g.stride_c == 0 ? 0 : e, last = g.stride_c == 0 ? g.batch : e + 1;
        for (int64_t bi = first; bi < last; ++bi)
          for (int64_t p = 0; p < g.k; ++p) {
            const double term = g.alpha * op_at(av + bi * g.stride_a, g.trans_a, g.lda, i, p) *
                                op_at(bv + bi * g.stride_b, g.trans_b, g.ldb, p, j);
            want += term;
            magnitude += std::abs(term);
          }
        // f32 summation of the products, then one f64 addition of beta C.
        const double tol = 4.0 * static_cast<double>(g.k * g.batch + 2) * 0x1p-24 * magnitude;
        ASSERT_LE(std::abs(got[at] - want), tol) << "C[" << e << "](" << i << ", " << j << ")";
        written[at] = true;
      }
  for (int64_t at = 0; at < kBuffer; ++at)
    if (!written[at]) {
      // Outside C (row padding, beyond the last entry): untouched, NaN included.
      if (std::isnan(before[at]))
        ASSERT_TRUE(std::isnan(got[at])) << "element " << at << " outside C was written";
      else
        ASSERT_EQ(got[at], before[at]) << "element " << at << " outside C was written";
    }
}

TEST(GemmWideOutput, EveryBatchLayoutMatchesADoubleLoop) {
  // One product, transposed B, C rows padded (ldc > n).
  run({"single", {.trans_b = true, .m = 5, .n = 7, .k = 9, .lda = 9, .ldb = 9, .ldc = 10}});
  // Shared B, consecutive A and C: the batch folds into m.
  run({"fold m",
       {.m = 4,
        .n = 6,
        .k = 8,
        .lda = 8,
        .stride_a = 32,
        .ldb = 6,
        .ldc = 6,
        .stride_c = 24,
        .batch = 3}});
  // Accumulation into one C with A^T and B consecutive along k (dW = X^T dY): folds into k.
  run({"fold k",
       {.trans_a = true,
        .m = 6,
        .n = 5,
        .k = 7,
        .lda = 6,
        .stride_a = 42,
        .ldb = 5,
        .stride_b = 35,
        .ldc = 5,
        .stride_c = 0,
        .batch = 4}});
  // Accumulation no fold covers (A's rows too short for k' = batch k): summed in batch order.
  run({"accumulate in order",
       {.m = 3,
        .n = 4,
        .k = 5,
        .lda = 5,
        .stride_a = 15,
        .ldb = 4,
        .stride_b = 20,
        .ldc = 4,
        .stride_c = 0,
        .batch = 5}});
  // Independent products, both operands transposed, alpha and beta.
  run({"independent, alpha, beta",
       {.trans_a = true,
        .trans_b = true,
        .m = 6,
        .n = 3,
        .k = 4,
        .alpha = 0.5,
        .beta = -1.5,
        .lda = 6,
        .stride_a = 24,
        .ldb = 4,
        .stride_b = 12,
        .ldc = 5,
        .stride_c = 30,
        .batch = 3}});
  run({"accumulate with beta",
       {.m = 3,
        .n = 4,
        .k = 5,
        .beta = 0.25,
        .lda = 5,
        .stride_a = 15,
        .ldb = 4,
        .stride_b = 20,
        .ldc = 4,
        .stride_c = 0,
        .batch = 2}});
  // k = 0: C = beta C, or zeros without reading C.
  run({"k = 0, beta = 0", {.m = 3, .n = 4, .k = 0, .lda = 1, .ldb = 4, .ldc = 4}});
  run({"k = 0, beta", {.m = 3, .n = 4, .k = 0, .beta = 2.0, .lda = 1, .ldb = 4, .ldc = 4}});
  // Larger than one BLAS block and the OpenMP threshold.
  run({"large", {.trans_b = true, .m = 70, .n = 90, .k = 110, .lda = 110, .ldb = 110, .ldc = 90}});
}

// The wide C is the f32 product widened (no other rounding): bit-equal to kGemm on f32 operands
// with an f32 C, element by element.
TEST(GemmWideOutput, EqualsTheF32ProductWidened) {
  Generator gen(43);
  const Tensor a = rand_normal({37, 51}, gen), b = rand_normal({51, 29}, gen);
  Tensor narrow = Tensor::empty({37, 29}, DType::f32), wide = Tensor::empty({37, 29}, DType::f64);
  GemmArgs g{.m = 37,
             .n = 29,
             .k = 51,
             .a = a.raw_data(),
             .lda = 51,
             .b = b.raw_data(),
             .ldb = 29,
             .ldc = 29};
  static const kernels::KernelRef<GemmFn> gemm(kernels::kGemm), wide_gemm(kernels::kGemmWideOutput);
  g.c = narrow.raw_data();
  gemm(kCPU, DType::f32)(g);
  g.c = wide.raw_data();
  wide_gemm(kCPU, DType::f32)(g);
  const std::vector<double> n = narrow.to_vector(), w = wide.to_vector();
  for (size_t i = 0; i < n.size(); ++i) ASSERT_EQ(w[i], n[i]) << i;
}

TEST(GemmWideOutput, RegisteredWhereAWiderDtypeExists) {
  EXPECT_EQ(kernels::gemm_wide_dtype(DType::bf16), DType::f32);
  EXPECT_EQ(kernels::gemm_wide_dtype(DType::f32), DType::f64);
  EXPECT_EQ(kernels::gemm_wide_dtype(DType::f64), DType::f64);
  EXPECT_TRUE(kernels::supports(kernels::kGemmWideOutput, DeviceType::cpu, DType::f32));
  EXPECT_FALSE(kernels::supports(kernels::kGemmWideOutput, DeviceType::cpu, DType::f64));
  static const kernels::KernelRef<GemmFn> wide(kernels::kGemmWideOutput);
  try {
    wide(kCPU, DType::f64);
    FAIL() << "f64 operands have no wider C";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no kernel for dtype f64 on cpu (registered: cpu/f32"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace gradus
