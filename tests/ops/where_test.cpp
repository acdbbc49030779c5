// where and masked_fill: forward against naive loops in f32 and f64 with float and i64 conditions,
// f64 gradchecks (broadcast, non-contiguous), and the error messages.
#include <cmath>
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

// A 1 / 0 mask of `shape` in `dtype` (i64 or floating) with roughly half the entries set.
Tensor random_mask(const Shape& shape, uint64_t seed, DType dtype) {
  Generator gen(seed);
  std::vector<double> u = rand_uniform(shape, gen, DType::f64).to_vector();
  for (double& v : u) v = v < 0.5 ? 1.0 : 0.0;
  return Tensor::from_vector(u, shape, dtype);
}

TEST(Gradcheck, where) {
  for (DType cond_dtype : {DType::f64, DType::i64}) {
    Tensor cond = random_mask({3, 4}, 1, cond_dtype);
    auto fn = [&](const std::vector<Tensor>& in) { return where(cond, in[0], in[1]); };
    EXPECT_GRADCHECK(fn,
                     (std::vector<Tensor>{randn_leaf({3, 4}, 2), noncontiguous_leaf({3, 4}, 3)}));
    // a and b broadcast against the condition (and each other).
    EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn_leaf({3, 1}, 4), randn_leaf({4}, 5)}));
  }
  // The condition broadcasts too: (4,) against (2, 3, 4) values.
  Tensor row = random_mask({4}, 6, DType::i64);
  auto fn_row = [&](const std::vector<Tensor>& in) { return where(row, in[0], in[1]); };
  EXPECT_GRADCHECK(fn_row,
                   (std::vector<Tensor>{noncontiguous_leaf({2, 3, 4}, 7), randn_leaf({}, 8)}));
}

TEST(Gradcheck, masked_fill) {
  for (DType mask_dtype : {DType::f64, DType::i64}) {
    Tensor mask = random_mask({3, 4}, 9, mask_dtype);
    auto fn = [&](const std::vector<Tensor>& in) { return masked_fill(in[0], mask, 2.5); };
    EXPECT_GRADCHECK(fn, (std::vector<Tensor>{noncontiguous_leaf({3, 4}, 10)}));
    Tensor col = random_mask({3, 1}, 11, mask_dtype);  // broadcast mask
    auto fn_col = [&](const std::vector<Tensor>& in) { return masked_fill(in[0], col, -1.0); };
    EXPECT_GRADCHECK(fn_col, (std::vector<Tensor>{randn_leaf({2, 3, 4}, 12)}));
  }
}

TEST(Where, ForwardMatchesNaiveLoop) {
  for (DType dt : {DType::f32, DType::f64}) {
    for (DType cond_dtype : {dt, DType::i64}) {
      Generator gen(13);
      Tensor a = rand_normal({3, 1}, gen, dt), b = rand_normal({1, 4}, gen, dt);
      Tensor cond = random_mask({3, 4}, 14, cond_dtype);
      Tensor y = where(cond, a, b);
      ASSERT_EQ(y.shape(), (Shape{3, 4}));
      for (int64_t i = 0; i < 3; ++i)
        for (int64_t j = 0; j < 4; ++j)
          EXPECT_EQ(y.at({i, j}), cond.at({i, j}) != 0 ? a.at({i, 0}) : b.at({0, j}));
    }
  }
}

TEST(Where, MaskedFillForwardAndGradient) {
  for (DType dt : {DType::f32, DType::f64}) {
    Generator gen(15);
    Tensor x = rand_normal({2, 3}, gen, dt);
    x.set_requires_grad();
    Tensor mask = random_mask({1, 3}, 16, DType::i64);
    Tensor y = masked_fill(x, mask, -INFINITY);
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 3; ++j) {
        if (mask.at({0, j}) != 0)
          EXPECT_EQ(y.at({i, j}), -INFINITY);
        else
          EXPECT_EQ(y.at({i, j}), x.at({i, j}));
      }
    backward(y, Tensor::full({2, 3}, 3.0, dt));
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 3; ++j)
        EXPECT_EQ(x.grad().at({i, j}), mask.at({0, j}) != 0 ? 0.0 : 3.0);
  }
}

TEST(Where, ConditionTakesNoGradient) {
  Tensor cond = Tensor::from_vector(std::vector<double>{1, 0}, {2}, DType::f64);
  cond.set_requires_grad();
  Tensor a = randn_leaf({2}, 17), b = randn_leaf({2}, 18);
  backward(sum(where(cond, a, b)));
  EXPECT_FALSE(cond.grad().defined());
  EXPECT_EQ(a.grad().to_vector(), (std::vector<double>{1, 0}));
  EXPECT_EQ(b.grad().to_vector(), (std::vector<double>{0, 1}));
}

TEST(Where, ErrorsNameTheProblem) {
  Tensor x = Tensor::zeros({2, 3});
  expect_error(
      [&] {
        where(Tensor::zeros({2, 3}, DType::f64), x, x);
      },
      {"where", "condition", "i64", "f64 (2, 3)"});
  expect_error([&] { where(Tensor::zeros({2, 3}), x, Tensor::zeros({4})); }, {"where", "(4,)"});
  expect_error(
      [&] {
        where(Tensor::zeros({2, 3}), x, Tensor::zeros({2, 3}, DType::f64));
      },
      {"where", "dtypes"});
  expect_error(
      [&] {
        masked_fill(x, Tensor::zeros({2, 2, 3}), 0.0);
      },
      {"masked_fill", "(2, 2, 3)", "does not broadcast"});
  expect_error([&] { masked_fill(x, Tensor::zeros({3, 2}), 0.0); }, {"masked_fill", "(3, 2)"});
  expect_error([&] { masked_fill(Tensor::zeros({2}, DType::i64), Tensor::zeros({2}), 0.0); },
               {"masked_fill", "floating"});
}

}  // namespace
}  // namespace gradus
