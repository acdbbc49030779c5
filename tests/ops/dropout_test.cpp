// dropout: the keep rule against the Philox stream it is defined by, keep fraction and mean over
// 1e5 elements, reproducibility from (seed, offset), gradient = mask / (1 - p), f64 gradcheck with
// a fixed generator, identity cases and errors.
#include "autodiff/ops/dropout.h"

#include <cmath>
#include <string>

#include "autodiff/ops/reduce.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

using testing::noncontiguous_leaf;
using testing::randn_leaf;

TEST(Dropout, KeepsElementsWherePhiloxUniformIsAtLeastP) {
  for (DType dt : {DType::f32, DType::f64}) {
    Generator gen(42, 5);
    Tensor x = Tensor::full({3, 7}, 2.0, dt);  // 21 elements: a partial last Philox block
    Tensor y = dropout(x, 0.4, gen);
    EXPECT_EQ(gen.offset, 5u + 6u);  // ceil(21 / 4) blocks reserved
    std::vector<double> yv = y.to_vector();
    for (uint64_t i = 0; i < yv.size(); ++i) {
      const bool keep = static_cast<double>(philox_uniform_f32(42, 5, i)) >= 0.4;
      const double expect = keep ? static_cast<double>(static_cast<float>(2.0 / 0.6)) : 0.0;
      if (dt == DType::f64)
        EXPECT_DOUBLE_EQ(yv[i], keep ? 2.0 / 0.6 : 0.0) << i;
      else
        EXPECT_EQ(yv[i], expect) << i;
    }
  }
}

TEST(Dropout, KeepFractionAndMeanOverManyElements) {
  for (double p : {0.1, 0.5, 0.9}) {
    Generator gen(7);
    const int64_t n = 100000;
    Tensor y = dropout(Tensor::ones({n}, DType::f64), p, gen);
    std::vector<double> v = y.to_vector();
    int64_t kept = 0;
    for (double e : v) kept += e != 0.0;
    // Binomial standard deviation of the fraction is at most 0.0016 here: 6 sigma bounds.
    EXPECT_NEAR(static_cast<double>(kept) / n, 1.0 - p, 0.01) << p;
    EXPECT_NEAR(mean(y).item(), 1.0, 0.01 / (1.0 - p)) << p;  // expectation preserved
  }
}

TEST(Dropout, SameSeedAndOffsetSameMaskAcrossDtypes) {
  Generator a(3, 100), b(3, 100), c(3, 101), d(4, 100);
  Tensor x = Tensor::ones({1000}, DType::f64);
  std::vector<double> ya = dropout(x, 0.5, a).to_vector();
  std::vector<double> yb = dropout(Tensor::ones({1000}, DType::f32), 0.5, b).to_vector();
  std::vector<double> yc = dropout(x, 0.5, c).to_vector();
  std::vector<double> yd = dropout(x, 0.5, d).to_vector();
  int diff_offset = 0, diff_seed = 0;
  for (size_t i = 0; i < ya.size(); ++i) {
    EXPECT_EQ(ya[i] != 0, yb[i] != 0) << i;  // f32 and f64 drop the same elements
    diff_offset += (ya[i] != 0) != (yc[i] != 0);
    diff_seed += (ya[i] != 0) != (yd[i] != 0);
  }
  EXPECT_GT(diff_offset, 300);  // independent masks differ in about half the places
  EXPECT_GT(diff_seed, 300);
  // Consecutive calls on one generator draw fresh masks.
  Generator g(3, 100);
  std::vector<double> first = dropout(x, 0.5, g).to_vector();
  std::vector<double> second = dropout(x, 0.5, g).to_vector();
  EXPECT_EQ(first, ya);
  EXPECT_NE(first, second);
}

TEST(Dropout, GradientIsTheMaskScaled) {
  Generator gen(9);
  Tensor x = randn_leaf({50, 4}, 10);
  Tensor y = dropout(x, 0.3, gen);
  backward(sum(y));
  std::vector<double> yv = y.to_vector(), gv = x.grad().to_vector();
  for (size_t i = 0; i < yv.size(); ++i) EXPECT_DOUBLE_EQ(gv[i], yv[i] != 0 ? 1.0 / 0.7 : 0.0) << i;
}

// The mask depends on the generator state, so each call of fn copies the same fixed generator: the
// finite differences then see the mask the analytic gradient re-draws from (seed, offset).
TEST(Gradcheck, dropout) {
  const Generator fixed(11, 3);
  auto fn = [&](const std::vector<Tensor>& in) {
    Generator g = fixed;
    return dropout(in[0], 0.35, g);
  };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn_leaf({6, 5}, 12)}));
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{noncontiguous_leaf({4, 5}, 13)}));
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{noncontiguous_leaf({2, 3, 3}, 14)}));
}

TEST(Dropout, IdentityWhenNotTrainingOrPZero) {
  Generator gen(1, 2);
  Tensor x = randn_leaf({4, 4}, 15);
  EXPECT_TRUE(dropout(x, 0.5, gen, /*training=*/false).same(x));
  EXPECT_TRUE(dropout(x, 0.0, gen).same(x));
  EXPECT_EQ(gen.offset, 2u);  // nothing drawn
}

TEST(Dropout, ErrorsNameTheProblem) {
  Generator gen(1);
  Tensor x = Tensor::ones({3});
  for (double p : {1.0, -0.1, 1.5, std::nan("")}) {
    try {
      dropout(x, p, gen);
      ADD_FAILURE() << "no error for p = " << p;
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("dropout"), std::string::npos) << msg;
      EXPECT_NE(msg.find("[0, 1)"), std::string::npos) << msg;
    }
  }
  EXPECT_THROW(dropout(x, 1.0, gen, /*training=*/false), Error);  // p is checked either way
  EXPECT_THROW(dropout(Tensor::zeros({3}, DType::i64), 0.5, gen), Error);
}

}  // namespace
}  // namespace gradus
