// causal_mask and causal_masked_fill: values against the definition (j > i masked), gradcheck, the
// zero gradient at masked positions, and agreement between the additive and the filled forms.
#include "autodiff/ops/mask.h"

#include <cmath>
#include <limits>
#include <string>

#include "autodiff/ops/elementwise.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

using testing::noncontiguous_leaf;
using testing::randn_leaf;

constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(Mask, CausalMaskIsZeroOnAndBelowTheDiagonal) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor m = causal_mask(5, dt);
    ASSERT_EQ(m.shape(), (Shape{5, 5}));
    EXPECT_EQ(m.dtype(), dt);
    EXPECT_FALSE(m.requires_grad());
    for (int64_t i = 0; i < 5; ++i)
      for (int64_t j = 0; j < 5; ++j) EXPECT_EQ(m.at({i, j}), j > i ? -kInf : 0.0) << i << "," << j;
  }
  EXPECT_EQ(causal_mask(0).numel(), 0);
}

// Masked positions get a finite value here: with -inf the finite differences would be inf - inf.
TEST(Gradcheck, causal_masked_fill) {
  auto fn = [](const std::vector<Tensor>& in) { return causal_masked_fill(in[0], -3.0); };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn_leaf({2, 3, 4, 4}, 1)}));
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{noncontiguous_leaf({5, 5}, 2)}));
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{noncontiguous_leaf({2, 3, 3}, 3)}));
}

TEST(Mask, CausalMaskedFillForwardAndGradient) {
  for (DType dt : {DType::f32, DType::f64}) {
    Generator gen(4);
    Tensor s = rand_normal({2, 4, 4}, gen, dt);
    s.set_requires_grad();
    Tensor y = causal_masked_fill(s);  // default value: -inf
    // Same as adding the additive mask.
    Tensor added = add(s, causal_mask(4, dt));
    EXPECT_EQ(y.to_vector(), added.to_vector());
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t i = 0; i < 4; ++i)
        for (int64_t j = 0; j < 4; ++j) EXPECT_EQ(y.at({b, i, j}), j > i ? -kInf : s.at({b, i, j}));
    backward(y, Tensor::full({2, 4, 4}, 2.0, dt));
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t i = 0; i < 4; ++i)
        for (int64_t j = 0; j < 4; ++j) EXPECT_EQ(s.grad().at({b, i, j}), j > i ? 0.0 : 2.0);
  }
}

TEST(Mask, ErrorsNameTheProblem) {
  try {
    causal_masked_fill(Tensor::zeros({2, 3, 4}));
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("causal_masked_fill"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(..., T, T)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(2, 3, 4)"), std::string::npos) << msg;
  }
  EXPECT_THROW(causal_masked_fill(Tensor::zeros({4})), Error);
  EXPECT_THROW(causal_mask(-1), Error);
  EXPECT_THROW(causal_mask(3, DType::i64), Error);
}

}  // namespace
}  // namespace gradus
