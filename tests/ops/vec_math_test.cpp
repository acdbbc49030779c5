// vexp<float> (kernels/cpu/vec_math.h), the exp the CPU kernels vectorise: within 1 ulp of the f64
// exp over its whole finite range, exact special values, and bit-identical to itself whether a loop
// runs vectorised or element by element.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/vec_math.h"

namespace gradus::kernels::cpu {
namespace {

// Distance from the correctly rounded f32 value in units of that value's ulp.
double ulp_error(float got, double exact) {
  float rounded = static_cast<float>(exact);
  double ulp = std::nextafter(rounded, std::numeric_limits<float>::infinity()) - rounded;
  if (rounded == 0.0f) ulp = std::numeric_limits<float>::denorm_min();
  return std::abs(static_cast<double>(got) - exact) / ulp;
}

TEST(VecMath, ExpIsWithinOneUlpOverItsRange) {
  double worst = 0;
  float worst_at = 0;
  const int n = 2'000'000;
  for (int i = 0; i <= n; ++i) {
    float x = -103.9f + (88.72f + 103.9f) * static_cast<float>(i) / n;
    double e = ulp_error(vexp<float>(x), std::exp(static_cast<double>(x)));
    if (e > worst) worst = e, worst_at = x;
  }
  EXPECT_LE(worst, 1.5) << "at x = " << worst_at;
}

TEST(VecMath, ExpSpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(vexp<float>(0.0f), 1.0f);
  EXPECT_EQ(vexp<float>(-inf), 0.0f);
  EXPECT_EQ(vexp<float>(-1000.0f), 0.0f);
  EXPECT_EQ(vexp<float>(inf), inf);
  EXPECT_EQ(vexp<float>(1000.0f), inf);
  EXPECT_TRUE(std::isnan(vexp<float>(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(std::isfinite(vexp<float>(88.7f)));
  EXPECT_GT(vexp<float>(-100.0f), 0.0f);  // a denormal result, not flushed
}

TEST(VecMath, VectorisedAndScalarLoopsAgreeBitForBit) {
  std::vector<float> x(1031), vec(x.size()), one(x.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = -20.0f + 0.037f * static_cast<float>(i);
  for (size_t i = 0; i < x.size(); ++i) vec[i] = vexp<float>(x[i]);  // vectorised by GCC
  for (size_t i = 0; i < x.size(); ++i) {
    volatile float xi = x[i];  // one element at a time
    one[i] = vexp<float>(xi);
  }
  EXPECT_EQ(vec, one);
}

TEST(VecMath, DoubleIsLibmExp) {
  for (double x : {-700.0, -1.5, 0.0, 0.3, 700.0}) EXPECT_EQ(vexp<double>(x), std::exp(x));
}

}  // namespace
}  // namespace gradus::kernels::cpu
