// concat, split, stack, index_select, gather: forward against naive loops in f32 and f64, f64
// gradchecks (contiguous, non-contiguous, repeated indices, unused split pieces), a bitwise check
// of the scatter-add order, and the error messages.
#include "autodiff/ops/shape.h"

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

Tensor ivec(const std::vector<double>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape, DType::i64);
}

// ---------------------------------------------------------------- gradchecks

TEST(Gradcheck, concat) {
  auto fn1 = [](const std::vector<Tensor>& in) { return concat(in, 1); };
  EXPECT_GRADCHECK(fn1, (std::vector<Tensor>{randn_leaf({3, 2}, 1), noncontiguous_leaf({3, 4}, 2),
                                             randn_leaf({3, 1}, 3)}));
  auto fn0 = [](const std::vector<Tensor>& in) { return concat(in, -3); };
  EXPECT_GRADCHECK(
      fn0, (std::vector<Tensor>{randn_leaf({1, 2, 3}, 4), noncontiguous_leaf({2, 2, 3}, 5)}));
  // Broadcast inside the function: a (1, 3) operand expanded before joining.
  auto fnb = [](const std::vector<Tensor>& in) {
    return concat({in[0], mul(in[1], Tensor::ones({2, 3}, DType::f64))}, 0);
  };
  EXPECT_GRADCHECK(fnb, (std::vector<Tensor>{randn_leaf({2, 3}, 6), randn_leaf({1, 3}, 7)}));
}

TEST(Gradcheck, split) {
  // Piece 1 is unused: its gradient is undefined and must come back as zeros.
  auto fn = [](const std::vector<Tensor>& in) {
    std::vector<Tensor> p = split(in[0], {2, 1, 3}, 1);
    return concat({square(p[2]), p[0]}, 1);
  };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn_leaf({4, 6}, 8)}));
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{noncontiguous_leaf({4, 6}, 9)}));
  auto only_middle = [](const std::vector<Tensor>& in) { return split(in[0], {1, 2, 0}, -1)[1]; };
  EXPECT_GRADCHECK(only_middle, (std::vector<Tensor>{noncontiguous_leaf({2, 3, 3}, 10)}));
}

TEST(Gradcheck, stack) {
  for (int64_t axis : {0, 1, 2, -1}) {
    auto fn = [axis](const std::vector<Tensor>& in) { return stack(in, axis); };
    EXPECT_GRADCHECK(fn,
                     (std::vector<Tensor>{randn_leaf({3, 4}, 11), noncontiguous_leaf({3, 4}, 12)}));
  }
}

TEST(Gradcheck, index_select) {
  Tensor idx = ivec({2, 0, 2, 2, 1}, {5});  // repeated indices accumulate
  for (int64_t axis : {0, 1}) {
    auto fn = [&, axis](const std::vector<Tensor>& in) { return index_select(in[0], axis, idx); };
    EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn_leaf({3, 3}, 13)}));
    EXPECT_GRADCHECK(fn, (std::vector<Tensor>{noncontiguous_leaf({3, 3}, 14)}));
  }
  auto fn3 = [&](const std::vector<Tensor>& in) { return index_select(in[0], -2, idx); };
  EXPECT_GRADCHECK(fn3, (std::vector<Tensor>{noncontiguous_leaf({2, 4, 3}, 15)}));
}

TEST(Gradcheck, gather) {
  // x (3, 4), axis 1, index (2, 5): smaller than x on axis 0, longer on the gathered axis.
  Tensor idx = ivec({0, 3, 3, 1, 3, 2, 2, 0, 1, 2}, {2, 5});
  auto fn = [&](const std::vector<Tensor>& in) { return gather(in[0], 1, idx); };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn_leaf({3, 4}, 16)}));
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{noncontiguous_leaf({3, 4}, 17)}));
  // axis 0 of a rank-3 tensor.
  Tensor idx3 = ivec({1, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1}, {3, 2, 2});
  auto fn3 = [&](const std::vector<Tensor>& in) { return gather(in[0], 0, idx3); };
  EXPECT_GRADCHECK(fn3, (std::vector<Tensor>{noncontiguous_leaf({2, 3, 2}, 18)}));
}

// ---------------------------------------------------------------- forward references

TEST(Shape, ConcatSplitStackMatchNaiveLoops) {
  for (DType dt : {DType::f32, DType::f64}) {
    Generator gen(3);
    Tensor a = rand_normal({2, 3}, gen, dt), b = rand_normal({2, 2}, gen, dt);
    Tensor c = concat({a, b}, 1);
    ASSERT_EQ(c.shape(), (Shape{2, 5}));
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 5; ++j)
        EXPECT_EQ(c.at({i, j}), j < 3 ? a.at({i, j}) : b.at({i, j - 3}));

    std::vector<Tensor> p = split(c, {1, 4}, -1);
    ASSERT_EQ(p.size(), 2u);
    EXPECT_EQ(p[0].shape(), (Shape{2, 1}));
    EXPECT_EQ(p[1].shape(), (Shape{2, 4}));
    for (int64_t i = 0; i < 2; ++i) {
      EXPECT_EQ(p[0].at({i, 0}), c.at({i, 0}));
      for (int64_t j = 0; j < 4; ++j) EXPECT_EQ(p[1].at({i, j}), c.at({i, j + 1}));
    }

    Tensor a2 = rand_normal({2, 3}, gen, dt);
    Tensor s = stack({a, a2}, 1);
    ASSERT_EQ(s.shape(), (Shape{2, 2, 3}));
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 3; ++j) {
        EXPECT_EQ(s.at({i, 0, j}), a.at({i, j}));
        EXPECT_EQ(s.at({i, 1, j}), a2.at({i, j}));
      }
  }
}

TEST(Shape, ConcatOfIndicesRecordsNothing) {
  Tensor c = concat({ivec({1, 2}, {2}), ivec({3}, {1})}, 0);
  EXPECT_EQ(c.dtype(), DType::i64);
  EXPECT_EQ(c.to_vector(), (std::vector<double>{1, 2, 3}));
  EXPECT_FALSE(c.requires_grad());
}

TEST(Shape, IndexSelectAndGatherMatchNaiveLoops) {
  for (DType dt : {DType::f32, DType::f64}) {
    Generator gen(5);
    Tensor x = rand_normal({3, 4, 2}, gen, dt);
    Tensor idx = ivec({3, 0, 3}, {3});
    Tensor y = index_select(x, 1, idx);
    ASSERT_EQ(y.shape(), (Shape{3, 3, 2}));
    for (int64_t a = 0; a < 3; ++a)
      for (int64_t k = 0; k < 3; ++k)
        for (int64_t c = 0; c < 2; ++c)
          EXPECT_EQ(y.at({a, k, c}), x.at({a, static_cast<int64_t>(idx.at({k})), c}));

    Tensor gi = ivec({1, 1, 0, 2, 1, 0, 0, 0, 2, 1, 1, 2}, {3, 2, 2});
    Tensor g = gather(x, 0, gi);  // x's axis 0 has size 3; index (3, 2, 2) on a (3, 4, 2) tensor
    ASSERT_EQ(g.shape(), (Shape{3, 2, 2}));
    for (int64_t a = 0; a < 3; ++a)
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t c = 0; c < 2; ++c)
          EXPECT_EQ(g.at({a, b, c}), x.at({static_cast<int64_t>(gi.at({a, b, c})), b, c}));
  }
}

// The scatter-add of index_select's backward adds in ascending index position whatever the thread
// count: compare bit for bit with a serial loop in f32 (where the order changes the rounding).
TEST(Shape, IndexSelectBackwardAccumulatesInAFixedOrder) {
  const int64_t n = 7, K = 5000, C = 200;
  std::vector<double> iv(K);
  for (int64_t k = 0; k < K; ++k) iv[k] = static_cast<double>((k * 5 + k / 3) % n);
  Tensor idx = ivec(iv, {K});
  Tensor x = Tensor::zeros({n, C}, DType::f32);
  x.set_requires_grad();
  Generator gen(9);
  Tensor g = rand_normal({K, C}, gen, DType::f32);
  backward(index_select(x, 0, idx), g);
  std::vector<float> expect(n * C, 0.0f);
  std::vector<float> gv = g.to_float_vector();
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < C; ++c) expect[static_cast<int64_t>(iv[k]) * C + c] += gv[k * C + c];
  EXPECT_EQ(x.grad().to_float_vector(), expect);
}

TEST(Shape, GatherBackwardAccumulatesRepeatedIndices) {
  Tensor x = Tensor::zeros({2, 3}, DType::f64);
  x.set_requires_grad();
  backward(sum(gather(x, 1, ivec({2, 0, 2, 2}, {1, 4}))));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{1, 0, 3, 0, 0, 0}));
}

// ---------------------------------------------------------------- errors

TEST(Shape, ErrorsNameTheProblem) {
  Tensor x = Tensor::zeros({2, 3});
  expect_error([&] { concat({x, Tensor::zeros({3, 3})}, 1); }, {"concat", "(3, 3)", "axis 1"});
  expect_error([&] { concat({x, Tensor::zeros({2, 3}, DType::f64)}, 0); }, {"concat", "dtypes"});
  expect_error([&] { concat({}, 0); }, {"concat", "empty"});
  expect_error([&] { split(x, {1, 1}, 1); }, {"split", "add up to 2", "size 3"});
  expect_error([&] { split(x, {4, -1}, 1); }, {"split", "non-negative"});
  expect_error([&] { stack({x, Tensor::zeros({3, 2})}, 0); }, {"stack", "(3, 2)"});
  expect_error(
      [&] {
        index_select(x, 1, ivec({0, 3, 1}, {3}));
      },
      {"index_select", "index 3", "position 1", "size 3"});
  expect_error([&] { index_select(x, 0, ivec({-1}, {1})); },
               {"index_select", "index -1", "size 2"});
  expect_error([&] { index_select(x, 0, Tensor::zeros({1})); }, {"index_select", "i64"});
  expect_error([&] { index_select(x, 0, ivec({0, 1}, {1, 2})); }, {"index_select", "rank-1"});
  expect_error(
      [&] {
        gather(x, 1, ivec({0, 1, 5, 0}, {2, 2}));
      },
      {"gather", "index 5", "position (1, 0)", "size 3"});
  expect_error([&] { gather(x, 1, ivec({0, 1}, {2})); }, {"gather", "rank"});
  expect_error([&] { gather(x, 1, ivec({0, 0, 0}, {3, 1})); }, {"gather", "axis 0"});
}

}  // namespace
}  // namespace gradus
