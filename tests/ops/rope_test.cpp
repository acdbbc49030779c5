// RoPE: forward against the per-element formula (Hugging Face rotate_half convention) in f64 and
// f32, position_offset, the relative-position property, the heads of a projection read in place,
// f64 gradchecks and the error messages.
#include "autodiff/ops/rope.h"

#include <cmath>
#include <string>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/ops/view.h"
#include "core/kernel_census.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

using testing::noncontiguous_leaf;
using testing::randn_leaf;

// y[..., t, i] for x: (rows, T, D) row-major values, computed element by element in double.
std::vector<double> rope_reference(const std::vector<double>& x, int64_t rows, int64_t T, int64_t D,
                                   double theta, int64_t offset) {
  std::vector<double> y(x.size());
  const int64_t half = D / 2;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < D; ++i) {
        const int64_t k = i % half;
        const double angle = static_cast<double>(offset + t) * std::pow(theta, -2.0 * k / D);
        const double* row = x.data() + (r * T + t) * D;
        // y = x * cos + rotate_half(x) * sin, rotate_half(x) = (-x[half:], x[:half]).
        const double rotated = i < half ? -row[i + half] : row[i - half];
        y[(r * T + t) * D + i] = row[i] * std::cos(angle) + rotated * std::sin(angle);
      }
  return y;
}

TEST(Rope, ForwardMatchesPerElementFormula) {
  for (DType dt : {DType::f32, DType::f64}) {
    for (int64_t offset : {0, 7}) {
      Generator gen(1);
      Tensor x = rand_normal({2, 3, 5, 8}, gen, dt);
      Tensor y = rope(x, 10000.0, offset);
      ASSERT_EQ(y.shape(), x.shape());
      std::vector<double> expect = rope_reference(x.to_vector(), 6, 5, 8, 10000.0, offset);
      std::vector<double> got = y.to_vector();
      const double tol = dt == DType::f32 ? 2e-6 : 1e-13;
      for (size_t i = 0; i < got.size(); ++i)
        EXPECT_NEAR(got[i], expect[i], tol * (1 + std::abs(expect[i])))
            << dtype_name(dt) << " offset " << offset << " element " << i;
    }
  }
}

TEST(Rope, NonContiguousInputAndOtherTheta) {
  Generator gen(2);
  Tensor base = rand_normal({4, 3, 6}, gen, DType::f64);
  Tensor x = transpose(base, 0, 1);  // (3, 4, 6): T = 4, D = 6, not contiguous
  Tensor y = rope(x, 500.0, 3);
  std::vector<double> expect = rope_reference(x.to_vector(), 3, 4, 6, 500.0, 3);
  std::vector<double> got = y.to_vector();
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expect[i], 1e-13);
}

// Rotating rows 3..5 with offset 3 is rotating the whole sequence and keeping rows 3..5 (the
// KV-cache use of position_offset).
TEST(Rope, PositionOffsetShiftsPositions) {
  for (DType dt : {DType::f32, DType::f64}) {
    Generator gen(3);
    Tensor x = rand_normal({2, 8, 4}, gen, dt);
    Tensor whole = slice(rope(x), 1, 3, 6);
    Tensor part = rope(slice(x, 1, 3, 6), 10000.0, 3);
    EXPECT_EQ(part.to_vector(), whole.to_vector());
  }
}

// <rope(q) at m, rope(k) at n> depends only on m - n.
TEST(Rope, DotProductDependsOnRelativePosition) {
  Generator gen(4);
  Tensor q = rand_normal({1, 16}, gen, DType::f64), k = rand_normal({1, 16}, gen, DType::f64);
  auto score = [&](int64_t m, int64_t n) {
    return sum(mul(rope(q, 10000.0, m), rope(k, 10000.0, n))).item();
  };
  EXPECT_NEAR(score(5, 2), score(13, 10), 1e-12);
  EXPECT_NEAR(score(0, 0), score(9, 9), 1e-12);
  EXPECT_GT(std::abs(score(5, 2) - score(5, 4)), 1e-6);  // and does depend on it
}

// The heads of a (B, T, C) projection, viewed as (B, H, T, D): read through their strides (no copy)
// and rotated into the same (B, T, H, D) layout, with the values of the contiguous path.
TEST(Rope, HeadsOfAProjectionAreReadInPlaceAndKeepTheirLayout) {
  for (DType dt : {DType::f32, DType::f64}) {
    Generator gen(6);
    const Tensor projected = rand_normal({2, 7, 3, 8}, gen, dt);  // (B, T, H, D)
    const Tensor heads = transpose(projected, 1, 2);              // (B, H, T, D) view
    census::open();
    const Tensor y = rope(heads, 10000.0, 5);
    const auto calls = census::close();
    ASSERT_EQ(calls.size(), 1u);
    EXPECT_EQ(calls[0].first, "rope") << "no copy of the heads";
    EXPECT_LT(y.stride(1), y.stride(2)) << "the result keeps the (B, T, H, D) layout";
    EXPECT_EQ(y.shape(), heads.shape());
    EXPECT_EQ(y.to_vector(), rope(raw_contiguous(heads), 10000.0, 5).to_vector());
    // A contiguous (B, H, T, D) input gives a contiguous result.
    EXPECT_TRUE(rope(raw_contiguous(heads)).is_contiguous());
  }
}

TEST(Gradcheck, rope) {
  auto fn = [](const std::vector<Tensor>& in) { return rope(in[0], 10000.0, 2); };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn_leaf({2, 3, 5, 8}, 5)}));
  // Heads of a projection (strided rows, the layout kept) and rows with a gap (a slice of D).
  auto heads = [](const std::vector<Tensor>& in) { return rope(transpose(in[0], 1, 2), 500.0, 1); };
  EXPECT_GRADCHECK(heads, (std::vector<Tensor>{randn_leaf({2, 5, 3, 6}, 8)}));
  auto gap = [](const std::vector<Tensor>& in) { return rope(slice(in[0], 3, 0, 4), 500.0, 0); };
  EXPECT_GRADCHECK(gap, (std::vector<Tensor>{randn_leaf({2, 3, 4, 7}, 9)}));
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{noncontiguous_leaf({5, 6}, 6)}));
  auto fn_theta = [](const std::vector<Tensor>& in) { return rope(in[0], 100.0, 11); };
  EXPECT_GRADCHECK(fn_theta, (std::vector<Tensor>{noncontiguous_leaf({2, 4, 6}, 7)}));
}

TEST(Rope, ErrorsNameTheProblem) {
  try {
    rope(Tensor::zeros({2, 3, 5}));
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("rope"), std::string::npos) << msg;
    EXPECT_NE(msg.find("even"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(2, 3, 5)"), std::string::npos) << msg;
  }
  EXPECT_THROW(rope(Tensor::zeros({4})), Error);
  EXPECT_THROW(rope(Tensor::zeros({2, 4}), 0.0), Error);
  EXPECT_THROW(rope(Tensor::zeros({2, 4}), 10000.0, -1), Error);
  EXPECT_THROW(rope(Tensor::zeros({2, 4}, DType::i64)), Error);
}

}  // namespace
}  // namespace gradus
