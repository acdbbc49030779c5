// rms_norm and layer_norm: f64 gradchecks (contiguous and non-contiguous inputs, with and without
// weight / bias, parameters alone), forward and backward against naive double-precision loops in
// f32 and f64, bit-for-bit equality across thread counts, and argument errors.
#include "autodiff/ops/norm.h"

#include <omp.h>

#include <cmath>
#include <string>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "support/expect_error.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

using testing::error_message;

using testing::noncontiguous_leaf;
using testing::randn_leaf;

// ---- naive references over x: (rows, cols) row-major ----
std::vector<double> rms_ref(const std::vector<double>& x, const std::vector<double>* w,
                            int64_t rows, int64_t cols, double eps) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t c = 0; c < cols; ++c) ss += x[r * cols + c] * x[r * cols + c];
    double rs = 1.0 / std::sqrt(ss / cols + eps);
    for (int64_t c = 0; c < cols; ++c) y[r * cols + c] = x[r * cols + c] * rs * (w ? (*w)[c] : 1.0);
  }
  return y;
}

std::vector<double> layer_ref(const std::vector<double>& x, const std::vector<double>* w,
                              const std::vector<double>* b, int64_t rows, int64_t cols,
                              double eps) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double mu = 0, var = 0;
    for (int64_t c = 0; c < cols; ++c) mu += x[r * cols + c];
    mu /= cols;
    for (int64_t c = 0; c < cols; ++c) var += (x[r * cols + c] - mu) * (x[r * cols + c] - mu);
    double rs = 1.0 / std::sqrt(var / cols + eps);
    for (int64_t c = 0; c < cols; ++c)
      y[r * cols + c] = (x[r * cols + c] - mu) * rs * (w ? (*w)[c] : 1.0) + (b ? (*b)[c] : 0.0);
  }
  return y;
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, double tol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * (1 + std::abs(want[i]))) << what << " element " << i;
}

Tensor plain(const Shape& shape, uint64_t seed, DType dt = DType::f64, double mean = 0.0) {
  Generator gen(seed);
  return rand_normal(shape, gen, dt, mean, 1.0);
}

// ---------------------------------------------------------------- gradchecks
TEST(Gradcheck, rms_norm) {
  auto with_w = [](const std::vector<Tensor>& in) { return rms_norm(in[0], in[1]); };
  auto no_w = [](const std::vector<Tensor>& in) { return rms_norm(in[0], Tensor(), 1e-3); };
  EXPECT_GRADCHECK(with_w, (std::vector<Tensor>{randn_leaf({4, 6}, 1), randn_leaf({6}, 2)}));
  EXPECT_GRADCHECK(
      with_w, (std::vector<Tensor>{noncontiguous_leaf({4, 6}, 3), noncontiguous_leaf({6}, 4)}));
  EXPECT_GRADCHECK(with_w,
                   (std::vector<Tensor>{noncontiguous_leaf({2, 3, 5}, 5), randn_leaf({5}, 6)}));
  EXPECT_GRADCHECK(no_w, (std::vector<Tensor>{noncontiguous_leaf({3, 7}, 7)}));
  EXPECT_GRADCHECK(no_w, (std::vector<Tensor>{randn_leaf({9}, 8)}));  // a single row
  // Only the weight requires gradients (x is a constant).
  EXPECT_GRADCHECK(with_w, (std::vector<Tensor>{plain({5, 4}, 9), randn_leaf({4}, 10)}));
  // Inside a graph: the weight is shared (broadcast) by every row, and x comes from another op.
  auto composed = [](const std::vector<Tensor>& in) {
    return rms_norm(in[0] * 2.0 + 0.5, in[1]) * in[0];
  };
  EXPECT_GRADCHECK(composed, (std::vector<Tensor>{randn_leaf({3, 4}, 11), randn_leaf({4}, 12)}));
}

TEST(Gradcheck, layer_norm) {
  auto wb = [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2]); };
  auto w_only = [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], Tensor()); };
  auto b_only = [](const std::vector<Tensor>& in) { return layer_norm(in[0], Tensor(), in[1]); };
  auto none = [](const std::vector<Tensor>& in) {
    return layer_norm(in[0], Tensor(), Tensor(), 1e-3);
  };
  EXPECT_GRADCHECK(
      wb, (std::vector<Tensor>{randn_leaf({4, 6}, 21), randn_leaf({6}, 22), randn_leaf({6}, 23)}));
  EXPECT_GRADCHECK(wb,
                   (std::vector<Tensor>{noncontiguous_leaf({4, 6}, 24), noncontiguous_leaf({6}, 25),
                                        noncontiguous_leaf({6}, 26)}));
  EXPECT_GRADCHECK(wb, (std::vector<Tensor>{noncontiguous_leaf({2, 3, 5}, 27), randn_leaf({5}, 28),
                                            randn_leaf({5}, 29)}));
  EXPECT_GRADCHECK(w_only, (std::vector<Tensor>{randn_leaf({3, 5}, 30), randn_leaf({5}, 31)}));
  EXPECT_GRADCHECK(b_only,
                   (std::vector<Tensor>{noncontiguous_leaf({5, 3}, 32), randn_leaf({3}, 33)}));
  EXPECT_GRADCHECK(none, (std::vector<Tensor>{noncontiguous_leaf({3, 7}, 34)}));
  // Parameters only (x constant).
  EXPECT_GRADCHECK(
      wb, (std::vector<Tensor>{plain({5, 4}, 35), randn_leaf({4}, 36), randn_leaf({4}, 37)}));
  auto composed = [](const std::vector<Tensor>& in) {
    return layer_norm(in[0] * in[0], in[1], in[2]) * in[0];
  };
  EXPECT_GRADCHECK(composed, (std::vector<Tensor>{randn_leaf({3, 4}, 38), randn_leaf({4}, 39),
                                                  randn_leaf({4}, 40)}));
}

// ---------------------------------------------------------------- forward against references
TEST(Norm, RmsNormForwardMatchesReference) {
  for (DType dt : {DType::f32, DType::f64}) {
    const double tol = dt == DType::f32 ? 2e-6 : 1e-13;
    Tensor x = plain({3, 4, 37}, 41, dt);
    Tensor w = plain({37}, 42, dt);
    std::vector<double> xs = x.to_vector(), ws = w.to_vector();
    expect_close(rms_norm(x, w, 1e-5).to_vector(), rms_ref(xs, &ws, 12, 37, 1e-5), tol,
                 std::string("rms_norm with weight ") + std::string(dtype_name(dt)));
    expect_close(rms_norm(x, Tensor(), 0.1).to_vector(), rms_ref(xs, nullptr, 12, 37, 0.1), tol,
                 std::string("rms_norm without weight ") + std::string(dtype_name(dt)));
    // A non-contiguous x gives the values of its contiguous copy.
    Tensor xt = raw_transpose(plain({37, 5}, 43, dt), 0, 1);
    expect_close(rms_norm(xt, w).to_vector(), rms_ref(xt.to_vector(), &ws, 5, 37, 1e-5), tol,
                 "rms_norm non-contiguous");
  }
}

TEST(Norm, LayerNormForwardMatchesReference) {
  for (DType dt : {DType::f32, DType::f64}) {
    const double tol = dt == DType::f32 ? 2e-6 : 1e-13;
    Tensor x = plain({2, 5, 19}, 51, dt);
    Tensor w = plain({19}, 52, dt), b = plain({19}, 53, dt);
    std::vector<double> xs = x.to_vector(), ws = w.to_vector(), bs = b.to_vector();
    const std::string d(dtype_name(dt));
    expect_close(layer_norm(x, w, b).to_vector(), layer_ref(xs, &ws, &bs, 10, 19, 1e-5), tol,
                 "layer_norm w+b " + d);
    expect_close(layer_norm(x, w, Tensor()).to_vector(), layer_ref(xs, &ws, nullptr, 10, 19, 1e-5),
                 tol, "layer_norm w " + d);
    expect_close(layer_norm(x, Tensor(), b).to_vector(), layer_ref(xs, nullptr, &bs, 10, 19, 1e-5),
                 tol, "layer_norm b " + d);
    expect_close(layer_norm(x, Tensor(), Tensor(), 0.5).to_vector(),
                 layer_ref(xs, nullptr, nullptr, 10, 19, 0.5), tol, "layer_norm plain " + d);
    Tensor xt = raw_transpose(plain({19, 6}, 54, dt), 0, 1);
    expect_close(layer_norm(xt, w, b).to_vector(), layer_ref(xt.to_vector(), &ws, &bs, 6, 19, 1e-5),
                 tol, "layer_norm non-contiguous " + d);
  }
}

TEST(Norm, LayerNormIsStableForRowsWithALargeMean) {
  // Values 1000 + N(0, 1) in f32: a one-pass E[x^2] - E[x]^2 would lose most digits of the
  // variance.
  Tensor x = plain({4, 64}, 55, DType::f32, 1000.0);
  std::vector<double> y = layer_norm(x, Tensor(), Tensor()).to_vector();
  expect_close(y, layer_ref(x.to_vector(), nullptr, nullptr, 4, 64, 1e-5), 2e-3, "large mean");
}

// ---------------------------------------------------------------- backward against references
// grad of sum(y * v) computed by central differences is what gradcheck does in f64; here the
// analytic f32 gradients are compared with the f64 ones of the same op (themselves gradchecked).
TEST(Norm, F32BackwardMatchesF64) {
  Tensor x64 = plain({6, 33}, 61), w64 = plain({33}, 62), b64 = plain({33}, 63),
         v64 = plain({6, 33}, 64);
  auto grads = [&](DType dt, bool layer) {
    // Fresh copies: every call gets its own leaves and gradients.
    Tensor x = raw_clone(raw_to_dtype(x64, dt)), w = raw_clone(raw_to_dtype(w64, dt));
    Tensor b = raw_clone(raw_to_dtype(b64, dt)), v = raw_to_dtype(v64, dt);
    x.set_requires_grad(true);
    w.set_requires_grad(true);
    b.set_requires_grad(true);
    Tensor y = layer ? layer_norm(x, w, b) : rms_norm(x, w);
    backward(sum(y * v));
    std::vector<std::vector<double>> out{x.grad().to_vector(), w.grad().to_vector()};
    if (layer) out.push_back(b.grad().to_vector());
    return out;
  };
  for (bool layer : {false, true}) {
    auto g32 = grads(DType::f32, layer), g64 = grads(DType::f64, layer);
    for (size_t i = 0; i < g64.size(); ++i)
      expect_close(g32[i], g64[i], 1e-4,
                   (layer ? "layer_norm grad " : "rms_norm grad ") + std::to_string(i));
  }
}

TEST(Norm, WeightGradientMatchesNaiveRowSum) {
  // grad_weight[c] = sum_r grad_y[r, c] * xhat[r, c], checked with xhat from the reference.
  const int64_t rows = 300, cols = 7;  // several row blocks
  Tensor x = plain({rows, cols}, 71), w = randn_leaf({cols}, 72), v = plain({rows, cols}, 73);
  backward(sum(rms_norm(x, w) * v));
  std::vector<double> xhat = rms_ref(x.to_vector(), nullptr, rows, cols, 1e-5);
  std::vector<double> vs = v.to_vector(), want(cols, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) want[c] += vs[r * cols + c] * xhat[r * cols + c];
  expect_close(w.grad().to_vector(), want, 1e-12, "rms_norm grad_weight");
}

TEST(Norm, BackwardIsBitwiseIdenticalAcrossThreadCounts) {
  const int threads_before = omp_get_max_threads();
  auto run = [](int threads, bool layer) {
    omp_set_num_threads(threads);
    Tensor x = plain({1000, 48}, 81, DType::f32), v = plain({1000, 48}, 82, DType::f32);
    Tensor w = plain({48}, 83, DType::f32), b = plain({48}, 84, DType::f32);
    x.set_requires_grad(true);
    w.set_requires_grad(true);
    b.set_requires_grad(true);
    Tensor y = layer ? layer_norm(x, w, b) : rms_norm(x, w);
    backward(sum(y * v));
    std::vector<float> out = y.to_float_vector();
    for (const Tensor& t : {x, w, b})
      if (t.grad().defined()) {
        std::vector<float> g = t.grad().to_float_vector();
        out.insert(out.end(), g.begin(), g.end());
      }
    return out;
  };
  for (bool layer : {false, true}) {
    std::vector<float> one = run(1, layer), three = run(3, layer), eight = run(8, layer);
    EXPECT_EQ(one, three) << (layer ? "layer_norm" : "rms_norm");
    EXPECT_EQ(one, eight) << (layer ? "layer_norm" : "rms_norm");
  }
  omp_set_num_threads(threads_before);
}

TEST(Norm, EmptyInputGivesZeroParameterGradients) {
  Tensor x = Tensor::zeros({0, 4}, DType::f64);
  Tensor w = randn_leaf({4}, 95), b = randn_leaf({4}, 96);
  Tensor y = layer_norm(x, w, b) + rms_norm(x, w);
  EXPECT_EQ(y.shape(), (Shape{0, 4}));
  backward(sum(y));
  EXPECT_EQ(w.grad().to_vector(), std::vector<double>(4, 0.0));
  EXPECT_EQ(b.grad().to_vector(), std::vector<double>(4, 0.0));
}

// ---------------------------------------------------------------- errors
TEST(Norm, BadArgumentsNameTheOpAndShapes) {
  Tensor x = plain({2, 8}, 91, DType::f32);
  std::string msg = error_message([&] { rms_norm(x, plain({7}, 92, DType::f32)); });
  EXPECT_NE(msg.find("rms_norm"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(8,)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(7,)"), std::string::npos) << msg;

  msg = error_message([&] { layer_norm(x, Tensor(), plain({2, 8}, 93, DType::f32)); });
  EXPECT_NE(msg.find("layer_norm"), std::string::npos) << msg;
  EXPECT_NE(msg.find("bias"), std::string::npos) << msg;

  msg = error_message([&] { layer_norm(x, plain({8}, 94, DType::f64), Tensor()); });
  EXPECT_NE(msg.find("dtypes differ"), std::string::npos) << msg;

  msg = error_message([&] { rms_norm(Tensor::scalar(1.0), Tensor()); });
  EXPECT_NE(msg.find("at least one axis"), std::string::npos) << msg;

  msg = error_message([&] { rms_norm(x, Tensor(), -1.0); });
  EXPECT_NE(msg.find("eps"), std::string::npos) << msg;

  msg = error_message([&] { rms_norm(Tensor::zeros({2, 3}, DType::i64), Tensor()); });
  EXPECT_NE(msg.find("floating-point"), std::string::npos) << msg;
}

}  // namespace
}  // namespace gradus
