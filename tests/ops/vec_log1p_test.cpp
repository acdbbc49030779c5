// The vectorisable f32 log1p of kernels/cpu/vec_log1p.h against the f64 std::log1p: relative error
// within 2 ulp from just above -1 through the f32 range (tiny arguments, where log1p(y) = y,
// included), and the special values.
#include "kernels/cpu/vec_log1p.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace gradus::kernels::cpu {
namespace {

TEST(VecLog1p, F32WithinTwoUlpOfTheF64Log1p) {
  const double ulp = std::numeric_limits<float>::epsilon();
  double worst = 0;
  float worst_at = 0;
  auto check = [&](float y) {
    const double want = std::log1p(static_cast<double>(y));
    const double err = std::abs(static_cast<double>(vlog1p_f32(y)) - want) / std::abs(want);
    if (!(err <= worst)) worst = err, worst_at = y;
  };
  // Both signs of magnitudes from 1e-30 up: every binade, 64 points each.
  for (float mag = 1e-30f; mag < 1e30f; mag *= 1.0111f) {
    check(mag);
    if (mag < 1.0f) check(-mag);
  }
  // Near -1, where 1 + y loses most of y's digits.
  for (float y = -0.999999f; y < -0.9f; y = std::nextafter(y + 1e-6f, 0.0f)) check(y);
  EXPECT_LE(worst, 2 * ulp) << "at y = " << worst_at;
}

TEST(VecLog1p, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(vlog1p_f32(0.0f), 0.0f);
  EXPECT_EQ(vlog1p_f32(-1.0f), -inf);
  EXPECT_TRUE(std::isnan(vlog1p_f32(-2.0f)));
  EXPECT_TRUE(std::isnan(vlog1p_f32(-inf)));
  EXPECT_EQ(vlog1p_f32(inf), inf);
  EXPECT_TRUE(std::isnan(vlog1p_f32(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_FLOAT_EQ(vlog1p_f32(std::numeric_limits<float>::max()), std::log1p(3.4028235e38));
  EXPECT_EQ(vlog1p<double>(0.5), std::log1p(0.5));
}

}  // namespace
}  // namespace gradus::kernels::cpu
