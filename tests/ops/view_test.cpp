// View ops of autodiff/ops/view.cpp: f64 gradchecks for every registered view op (reshape, permute,
// slice, expand, contiguous, to_dtype) on contiguous and non-contiguous inputs, forward checks
// against index arithmetic, and to_dtype's gradient conversion.
#include "autodiff/ops/view.h"

#include <cmath>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

using testing::noncontiguous_leaf;
using testing::randn_leaf;

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// reshape's OpDef also backs view, flatten, unsqueeze and squeeze.
TEST(Gradcheck, reshape) {
  Fn copy_path = [](const std::vector<Tensor>& in) { return reshape(in[0], {2, -1}); };
  EXPECT_GRADCHECK(copy_path, (std::vector<Tensor>{noncontiguous_leaf({4, 3}, 1)}));  // not a view
  Fn view_path = [](const std::vector<Tensor>& in) { return view(in[0], {3, 2, 2}); };
  EXPECT_GRADCHECK(view_path, (std::vector<Tensor>{randn_leaf({4, 3}, 2)}));
  Fn flat = [](const std::vector<Tensor>& in) { return flatten(in[0], 1); };
  EXPECT_GRADCHECK(flat, (std::vector<Tensor>{noncontiguous_leaf({2, 3, 2}, 3)}));
  Fn squeezes = [](const std::vector<Tensor>& in) { return unsqueeze(squeeze(in[0], 1), -1); };
  EXPECT_GRADCHECK(squeezes, (std::vector<Tensor>{randn_leaf({3, 1, 2}, 4)}));
}

TEST(Gradcheck, permute) {
  Fn p = [](const std::vector<Tensor>& in) { return permute(in[0], {2, 0, 1}); };
  EXPECT_GRADCHECK(p, (std::vector<Tensor>{randn_leaf({2, 3, 4}, 5)}));
  EXPECT_GRADCHECK(p, (std::vector<Tensor>{noncontiguous_leaf({2, 3, 4}, 6)}));
  Fn t = [](const std::vector<Tensor>& in) { return transpose(in[0], 0, -1); };
  EXPECT_GRADCHECK(t, (std::vector<Tensor>{noncontiguous_leaf({3, 4}, 7)}));
}

TEST(Gradcheck, slice) {
  Fn stepped = [](const std::vector<Tensor>& in) { return slice(in[0], 1, -5, 6, 2); };
  EXPECT_GRADCHECK(stepped, (std::vector<Tensor>{noncontiguous_leaf({3, 6}, 8)}));
  Fn rows = [](const std::vector<Tensor>& in) { return slice(in[0], 0, 1, 3); };
  EXPECT_GRADCHECK(rows, (std::vector<Tensor>{randn_leaf({4, 2, 3}, 9)}));
  // Overlapping slices of one input: both gradients land in the same elements.
  Fn twice = [](const std::vector<Tensor>& in) {
    return mul(slice(in[0], 0, 0, 3), slice(in[0], 0, 1, 4));
  };
  EXPECT_GRADCHECK(twice, (std::vector<Tensor>{randn_leaf({4, 2}, 10)}));
}

TEST(Gradcheck, expand) {
  Fn e = [](const std::vector<Tensor>& in) { return expand(in[0], {2, 3, 4}); };
  EXPECT_GRADCHECK(e, (std::vector<Tensor>{randn_leaf({3, 1}, 11)}));
  Fn keep = [](const std::vector<Tensor>& in) { return expand(in[0], {3, -1}); };
  EXPECT_GRADCHECK(keep, (std::vector<Tensor>{noncontiguous_leaf({1, 4}, 12)}));
}

TEST(Gradcheck, contiguous) {
  Fn c = [](const std::vector<Tensor>& in) { return contiguous(in[0]); };
  EXPECT_GRADCHECK(c, (std::vector<Tensor>{noncontiguous_leaf({3, 4}, 13)}));
  EXPECT_GRADCHECK(c, (std::vector<Tensor>{noncontiguous_leaf({2, 3, 2}, 14)}));
}

// gradcheck needs f64 in and out, so the check goes f64 -> f32 -> f64: the f32 rounding of the
// output (relative 6e-8) divided by 2 eps needs the looser tolerances.
TEST(Gradcheck, to_dtype) {
  Fn round_trip = [](const std::vector<Tensor>& in) {
    return to_dtype(mul(to_dtype(in[0], DType::f32), to_dtype(in[1], DType::f32)), DType::f64);
  };
  GradcheckOptions opts;
  opts.eps = 1e-3;
  opts.atol = 1e-3;
  opts.rtol = 1e-3;
  GradcheckResult r =
      gradcheck(round_trip, {randn_leaf({3, 4}, 15), noncontiguous_leaf({3, 4}, 16)}, opts);
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_GT(r.elements_checked, 0);
}

TEST(View, ToDtypeGradientIsTheUpstreamGradientConverted) {
  Tensor x = randn_leaf({2, 3}, 17);
  Tensor y = to_dtype(x, DType::f32);
  ASSERT_EQ(y.dtype(), DType::f32);
  Generator gen(18);
  Tensor g = rand_normal({2, 3}, gen, DType::f32);
  backward(y, g);
  ASSERT_EQ(x.grad().dtype(), DType::f64);
  std::vector<float> gv = g.to_float_vector();
  std::vector<double> xg = x.grad().to_vector();
  for (size_t i = 0; i < gv.size(); ++i) EXPECT_EQ(xg[i], static_cast<double>(gv[i]));
  EXPECT_TRUE(to_dtype(x, DType::f64).same(x));  // same dtype: x itself
}

TEST(View, ForwardMatchesIndexArithmetic) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = to_dtype(Tensor::arange(24, DType::f64), dt);
    Tensor r = reshape(x, {2, 3, 4});
    for (int64_t a = 0; a < 2; ++a)
      for (int64_t b = 0; b < 3; ++b)
        for (int64_t c = 0; c < 4; ++c) EXPECT_EQ(r.at({a, b, c}), a * 12 + b * 4 + c);
    Tensor p = permute(r, {2, 0, 1});
    ASSERT_EQ(p.shape(), (Shape{4, 2, 3}));
    for (int64_t a = 0; a < 2; ++a)
      for (int64_t b = 0; b < 3; ++b)
        for (int64_t c = 0; c < 4; ++c) EXPECT_EQ(p.at({c, a, b}), r.at({a, b, c}));
    Tensor s = slice(r, 2, -3, 4, 2);  // elements 1 and 3 of the last axis
    ASSERT_EQ(s.shape(), (Shape{2, 3, 2}));
    for (int64_t a = 0; a < 2; ++a)
      for (int64_t b = 0; b < 3; ++b) {
        EXPECT_EQ(s.at({a, b, 0}), r.at({a, b, 1}));
        EXPECT_EQ(s.at({a, b, 1}), r.at({a, b, 3}));
      }
    Tensor e = expand(reshape(slice(x, 0, 0, 3), {3, 1}), {2, 3, 5});
    for (int64_t a = 0; a < 2; ++a)
      for (int64_t b = 0; b < 3; ++b)
        for (int64_t c = 0; c < 5; ++c) EXPECT_EQ(e.at({a, b, c}), b);
    Tensor c = contiguous(transpose(reshape(x, {4, 6}), 0, 1));
    EXPECT_TRUE(c.is_contiguous());
    for (int64_t i = 0; i < 6; ++i)
      for (int64_t j = 0; j < 4; ++j) EXPECT_EQ(c.at({i, j}), j * 6 + i);
  }
}

}  // namespace
}  // namespace gradus
