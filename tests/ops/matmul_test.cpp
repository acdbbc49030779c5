// matmul and linear: forward against a naive triple loop in f32 and f64 (2-D, batched, broadcast,
// transposed views, 1-D operands), f64 gradchecks over the same layouts, and argument errors.
#include "autodiff/ops/matmul.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "core/allocator.h"
#include "core/random.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

using testing::noncontiguous_leaf;
using testing::randn_leaf;

// A leaf of `shape` whose last two axes are a transposed view of a contiguous tensor (the layout
// BLAS reads with a transpose flag).
Tensor transposed_leaf(Shape shape, uint64_t seed, DType dtype = DType::f64) {
  std::swap(shape[shape.size() - 1], shape[shape.size() - 2]);
  Generator gen(seed);
  Tensor t = raw_transpose(rand_normal(shape, gen, dtype), -1, -2);
  t.set_requires_grad(true);
  return t;
}

Tensor randn(const Shape& shape, uint64_t seed, DType dtype) {
  Generator gen(seed);
  return rand_normal(shape, gen, dtype);
}

// numpy.matmul by definition: 1-D operands promoted, batch axes broadcast, one triple loop per
// batch entry, summed in double.
std::vector<double> naive_matmul(const Tensor& a, const Tensor& b, Shape* out_shape) {
  Shape as = a.shape(), bs = b.shape();
  if (as.size() == 1) as.insert(as.begin(), 1);
  if (bs.size() == 1) bs.push_back(1);
  const std::vector<double> av = a.to_vector(), bv = b.to_vector();
  const int64_t M = as[as.size() - 2], K = as.back(), N = bs.back();
  const size_t nb = std::max(as.size(), bs.size()) - 2;
  Shape batch(nb, 1);
  Shape ab(nb, 1), bb(nb, 1);  // each operand's batch sizes, right-aligned and padded with 1
  for (size_t d = 0; d + 2 < as.size(); ++d) ab[nb - (as.size() - 2) + d] = as[d];
  for (size_t d = 0; d + 2 < bs.size(); ++d) bb[nb - (bs.size() - 2) + d] = bs[d];
  for (size_t d = 0; d < nb; ++d) batch[d] = std::max(ab[d], bb[d]);
  const int64_t nbatch = shape_numel(batch);
  std::vector<double> out(static_cast<size_t>(nbatch * M * N));
  for (int64_t i = 0; i < nbatch; ++i) {
    int64_t rem = i, ia = 0, ib = 0, sa = 1, sb = 1;
    for (int64_t d = static_cast<int64_t>(nb) - 1; d >= 0; --d) {
      const int64_t idx = rem % batch[d];
      rem /= batch[d];
      ia += (ab[d] == 1 ? 0 : idx) * sa;
      ib += (bb[d] == 1 ? 0 : idx) * sb;
      sa *= ab[d];
      sb *= bb[d];
    }
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < K; ++k) acc += av[(ia * M + m) * K + k] * bv[(ib * K + k) * N + n];
        out[(i * M + m) * N + n] = acc;
      }
  }
  *out_shape = batch;
  if (a.dim() > 1) out_shape->push_back(M);
  if (b.dim() > 1) out_shape->push_back(N);
  return out;
}

void expect_matches_naive(const Tensor& a, const Tensor& b, const std::string& what) {
  Shape expect_shape;
  const std::vector<double> expect = naive_matmul(a, b, &expect_shape);
  const Tensor c = matmul(a, b);
  ASSERT_EQ(c.shape(), expect_shape) << what;
  const std::vector<double> got = c.to_vector();
  const double tol = a.dtype() == DType::f32 ? 1e-5 : 1e-12;
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], expect[i], tol * (1 + std::abs(expect[i]))) << what << " at " << i;
}

struct MatmulCase {
  const char* name;
  Shape a, b;
  int layout_a = 0, layout_b = 0;  // 0: contiguous, 1: transposed view, 2: strided slice
};

std::vector<MatmulCase> matmul_cases() {
  return {
      {"2-D", {3, 4}, {4, 5}},
      {"batched", {2, 3, 4}, {2, 4, 5}},
      {"a batched, b 2-D", {2, 3, 4, 5}, {5, 6}},
      {"a 2-D, b batched", {4, 5}, {2, 5, 3}},
      {"batch broadcast from the left", {2, 3, 4, 5}, {3, 5, 6}},
      {"both broadcast", {2, 1, 3, 4}, {1, 3, 4, 2}},
      {"size-1 batch", {1, 3, 4}, {2, 4, 2}},
      {"a transposed", {3, 4}, {4, 5}, 1, 0},
      {"b transposed", {3, 4}, {4, 5}, 0, 1},
      {"both transposed", {3, 4}, {4, 5}, 1, 1},
      {"batched transposed", {2, 3, 4}, {4, 5}, 1, 1},
      {"broadcast transposed", {2, 3, 4, 5}, {3, 5, 6}, 1, 1},
      {"strided slices", {2, 3, 4}, {4, 5}, 2, 2},
      {"1-D @ 1-D", {4}, {4}},
      {"1-D @ 2-D", {4}, {4, 5}},
      {"2-D @ 1-D", {3, 4}, {4}},
      {"1-D @ batched", {4}, {2, 4, 5}},
      {"batched @ 1-D", {2, 3, 4}, {4}},
      {"strided 1-D", {4}, {4}, 2, 2},
      {"strided 1-D @ 2-D", {4}, {4, 3}, 2, 1},
      {"one row", {1, 4}, {4, 5}, 1, 0},
      {"one column", {3, 4}, {4, 1}, 0, 1},
  };
}

Tensor make_operand(const Shape& shape, int layout, uint64_t seed, DType dtype) {
  Tensor t;
  if (layout == 1)
    t = transposed_leaf(shape, seed, dtype);
  else if (layout == 2) {
    Shape wide = shape;
    wide.back() *= 2;
    t = raw_slice(randn(wide, seed, dtype), -1, 0, wide.back(), 2);
    t.set_requires_grad(true);
  } else {
    t = randn_leaf(shape, seed, 0.0, 1.0, dtype);
  }
  return t;
}

TEST(Gradcheck, matmul) {
  auto fn = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); };
  uint64_t seed = 100;
  for (const MatmulCase& c : matmul_cases()) {
    SCOPED_TRACE(c.name);
    std::vector<Tensor> in = {make_operand(c.a, c.layout_a, seed, DType::f64),
                              make_operand(c.b, c.layout_b, seed + 1, DType::f64)};
    seed += 2;
    EXPECT_GRADCHECK(fn, in);
  }
  // The library's own non-contiguous leaves, and a gradient requested for one operand only.
  EXPECT_GRADCHECK(
      fn, (std::vector<Tensor>{noncontiguous_leaf({3, 4}, 1), noncontiguous_leaf({4, 2}, 2)}));
  EXPECT_GRADCHECK(fn,
                   (std::vector<Tensor>{noncontiguous_leaf({2, 3, 4}, 3), randn_leaf({4, 2}, 4)}));
  Tensor fixed = randn({2, 5, 3}, 5, DType::f64);
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn_leaf({4, 5}, 6), fixed}));
}

TEST(Matmul, ForwardMatchesNaiveLoopInBothDtypes) {
  for (DType dt : {DType::f32, DType::f64}) {
    uint64_t seed = 200;
    for (const MatmulCase& c : matmul_cases()) {
      Tensor a = make_operand(c.a, c.layout_a, seed++, dt);
      Tensor b = make_operand(c.b, c.layout_b, seed++, dt);
      expect_matches_naive(a, b, std::string(c.name) + " " + std::string(dtype_name(dt)));
    }
  }
}

// Sizes big enough for the kernel's batch-parallel path (many small matrices), its folded path
// (a batch stacked into one gemm) and the BLAS-threaded path (few large matrices).
TEST(Matmul, ForwardMatchesNaiveLoopOnLargerShapes) {
  for (DType dt : {DType::f32, DType::f64}) {
    expect_matches_naive(randn({64, 16, 17}, 1, dt), randn({64, 17, 15}, 2, dt), "many small");
    expect_matches_naive(randn({3, 40, 30}, 3, dt), randn({30, 20}, 4, dt), "folded");
    expect_matches_naive(randn({2, 130, 140}, 5, dt), randn({2, 140, 150}, 6, dt), "large");
    expect_matches_naive(raw_transpose(randn({6, 20, 17}, 7, dt), 1, 2), randn({6, 20, 11}, 8, dt),
                         "transposed batch");
  }
}

// Each batch path gives the same bits whatever the thread count (BLAS splits m and n, never k).
TEST(Matmul, ResultsDoNotDependOnTheThreadCount) {
  const std::vector<std::pair<Tensor, Tensor>> cases = {
      {randn({64, 16, 17}, 1, DType::f32), randn({64, 17, 15}, 2, DType::f32)},
      {randn({3, 40, 300}, 3, DType::f32), randn({300, 200}, 4, DType::f32)},
      {randn({2, 130, 140}, 5, DType::f32), randn({2, 140, 150}, 6, DType::f32)}};
  const int threads = omp_get_max_threads();
  for (const auto& [a, b] : cases) {
    omp_set_num_threads(1);
    const std::vector<double> one = matmul(a, b).to_vector();
    omp_set_num_threads(std::max(threads, 4));
    const std::vector<double> many = matmul(a, b).to_vector();
    omp_set_num_threads(threads);
    EXPECT_EQ(one, many) << a.describe() << " @ " << b.describe();
  }
}

TEST(Matmul, EmptyInnerDimensionGivesZeros) {
  Tensor c = matmul(Tensor::ones({3, 0}), Tensor::ones({0, 2}));
  EXPECT_EQ(c.shape(), (Shape{3, 2}));
  for (double v : c.to_vector()) EXPECT_EQ(v, 0.0);
}

// A transposed view is read in place through the transpose flag: the only allocation is the output.
TEST(Matmul, TransposedViewsAreNotCopied) {
  Tensor a = raw_transpose(randn({64, 32}, 1, DType::f32), 0, 1);  // (32, 64)
  Tensor b = raw_transpose(randn({48, 64}, 2, DType::f32), 0, 1);  // (64, 48)
  Allocator& alloc = allocator_for(DeviceType::cpu);
  const int64_t before = alloc.stats().allocations;
  Tensor c = matmul(a, b);
  EXPECT_EQ(alloc.stats().allocations - before, 1);
  // A strided slice is not a BLAS layout: it is copied first (the output plus one copy).
  Tensor s = raw_slice(randn({32, 128}, 3, DType::f32), 1, 0, 128, 2);
  const int64_t before_slice = alloc.stats().allocations;
  Tensor d = matmul(s, b);
  EXPECT_EQ(alloc.stats().allocations - before_slice, 2);
}

// a: (B, M, K) with w: (K, N): dW is one gemm over the B*M rows; checked against the sum it stands
// for.
TEST(Matmul, BroadcastOperandGradientIsSummedOverTheBatch) {
  Tensor a = randn_leaf({3, 4, 5}, 1);
  Tensor w = randn_leaf({5, 2}, 2);
  Tensor g = randn({3, 4, 2}, 3, DType::f64);
  backward(matmul(a, w), g);
  // dW = sum_b a[b]^T g[b]
  const std::vector<double> av = a.to_vector(), gv = g.to_vector(), dw = w.grad().to_vector();
  for (int k = 0; k < 5; ++k)
    for (int n = 0; n < 2; ++n) {
      double acc = 0;
      for (int b = 0; b < 3; ++b)
        for (int m = 0; m < 4; ++m) acc += av[(b * 4 + m) * 5 + k] * gv[(b * 4 + m) * 2 + n];
      EXPECT_NEAR(dw[k * 2 + n], acc, 1e-12);
    }
}

TEST(Matmul, InnerDimensionMismatchNamesBothShapes) {
  try {
    matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("matmul"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(2, 3)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(4, 5)"), std::string::npos) << msg;
  }
  try {
    matmul(Tensor::zeros({2, 3, 4}), Tensor::zeros({3, 4, 5}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("(2, 3, 4)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(3, 4, 5)"), std::string::npos) << msg;
  }
  EXPECT_THROW(matmul(Tensor::zeros({2, 3}), Tensor::zeros({3, 2}, DType::f64)), Error);
  EXPECT_THROW(matmul(Tensor::scalar(1.0), Tensor::zeros({3, 2})), Error);
}

// ------------------------------------------------------------------------------------ linear

std::vector<double> naive_linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  const std::vector<double> xv = x.to_vector(), wv = w.to_vector();
  const std::vector<double> bv = bias.defined() ? bias.to_vector() : std::vector<double>();
  const int64_t in = w.size(1), out = w.size(0), rows = x.numel() / in;
  std::vector<double> y(static_cast<size_t>(rows * out));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double acc = bias.defined() ? bv[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) acc += xv[r * in + i] * wv[o * in + i];
      y[r * out + o] = acc;
    }
  return y;
}

TEST(Gradcheck, linear) {
  auto with_bias = [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); };
  auto no_bias = [](const std::vector<Tensor>& in) { return linear(in[0], in[1]); };
  EXPECT_GRADCHECK(with_bias, (std::vector<Tensor>{randn_leaf({3, 4}, 1), randn_leaf({5, 4}, 2),
                                                   randn_leaf({5}, 3)}));
  EXPECT_GRADCHECK(no_bias, (std::vector<Tensor>{randn_leaf({3, 4}, 4), randn_leaf({5, 4}, 5)}));
  // 3-D x: every row of the batch shares the weight.
  EXPECT_GRADCHECK(with_bias, (std::vector<Tensor>{randn_leaf({2, 3, 4}, 6), randn_leaf({5, 4}, 7),
                                                   randn_leaf({5}, 8)}));
  EXPECT_GRADCHECK(no_bias,
                   (std::vector<Tensor>{randn_leaf({2, 3, 4}, 9), randn_leaf({5, 4}, 10)}));
  // Non-contiguous x (transposed, strided) and weight (transposed), 1-D x.
  EXPECT_GRADCHECK(with_bias, (std::vector<Tensor>{noncontiguous_leaf({3, 4}, 11),
                                                   noncontiguous_leaf({5, 4}, 12),
                                                   noncontiguous_leaf({5}, 13)}));
  EXPECT_GRADCHECK(
      no_bias, (std::vector<Tensor>{noncontiguous_leaf({2, 3, 4}, 14), randn_leaf({5, 4}, 15)}));
  EXPECT_GRADCHECK(with_bias, (std::vector<Tensor>{randn_leaf({4}, 16), randn_leaf({5, 4}, 17),
                                                   randn_leaf({5}, 18)}));
}

TEST(Linear, ForwardMatchesNaiveLoopInBothDtypes) {
  for (DType dt : {DType::f32, DType::f64}) {
    const double tol = dt == DType::f32 ? 1e-5 : 1e-12;
    for (bool bias_on : {false, true}) {
      for (const Shape& xs : {Shape{6, 7}, Shape{2, 3, 7}, Shape{7}, Shape{0, 7}}) {
        Tensor x = randn(xs, 1, dt), w = randn({5, 7}, 2, dt);
        Tensor b = bias_on ? randn({5}, 3, dt) : Tensor();
        Tensor y = linear(x, w, b);
        Shape expect_shape(xs.begin(), xs.end() - 1);
        expect_shape.push_back(5);
        ASSERT_EQ(y.shape(), expect_shape);
        const std::vector<double> got = y.to_vector(), expect = naive_linear(x, w, b);
        for (size_t i = 0; i < got.size(); ++i)
          EXPECT_NEAR(got[i], expect[i], tol * (1 + std::abs(expect[i])))
              << shape_str(xs) << " bias " << bias_on << " " << dtype_name(dt);
      }
    }
  }
}

TEST(Linear, MatchesMatmulWithTransposedWeight) {
  Tensor x = randn({4, 3, 8}, 1, DType::f64), w = randn({6, 8}, 2, DType::f64);
  const std::vector<double> y = linear(x, w).to_vector();
  const std::vector<double> z = matmul(x, raw_transpose(w, 0, 1)).to_vector();
  ASSERT_EQ(y.size(), z.size());
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], z[i], 1e-12);
}

TEST(Linear, BadShapesNameTheShapes) {
  try {
    linear(Tensor::zeros({2, 3}), Tensor::zeros({5, 4}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("linear"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(2, 3)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(5, 4)"), std::string::npos) << msg;
  }
  try {
    linear(Tensor::zeros({2, 4}), Tensor::zeros({5, 4}), Tensor::zeros({4}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bias"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(4,)"), std::string::npos) << msg;
  }
  EXPECT_THROW(linear(Tensor::zeros({2, 4}), Tensor::zeros({4})), Error);
}

}  // namespace
}  // namespace gradus
