// The learning-rate schedule: linear warm-up, cosine to min_lr, constant; values worked out by
// hand from the formulas in experiments/lib/lr_schedule.h.
#include "experiments/lib/lr_schedule.h"

#include <gtest/gtest.h>

#include <string>

#include "core/error.h"

namespace gradus::experiments {
namespace {

TEST(LrSchedule, LinearWarmupReachesThePeakAtItsLastStep) {
  LrSchedule s{.lr = 1.0, .min_lr = 0.0, .warmup_steps = 4, .total_steps = 10};
  EXPECT_DOUBLE_EQ(s.at(0), 0.25);
  EXPECT_DOUBLE_EQ(s.at(1), 0.5);
  EXPECT_DOUBLE_EQ(s.at(2), 0.75);
  EXPECT_DOUBLE_EQ(s.at(3), 1.0);
}

TEST(LrSchedule, CosineFromPeakTowardsTheFloor) {
  // No warm-up, 10 steps, 1.0 -> 0.1: lr_s = 0.1 + 0.9 (1 + cos(pi s / 10)) / 2.
  LrSchedule s{.lr = 1.0, .min_lr = 0.1, .warmup_steps = 0, .total_steps = 10};
  EXPECT_DOUBLE_EQ(s.at(0), 1.0);
  EXPECT_DOUBLE_EQ(s.at(5), 0.55);  // cos(pi / 2) = 0: half way
  // cos(pi / 5) = (1 + sqrt 5) / 4, so lr_2 = 0.1 + 0.45 (1 + (1 + sqrt 5) / 4).
  EXPECT_NEAR(s.at(2), 0.1 + 0.45 * (1.0 + (1.0 + std::sqrt(5.0)) / 4.0), 1e-15);
  // Symmetry of the cosine about the midpoint: lr_s + lr_(10-s) = lr + min_lr.
  for (int64_t k = 1; k < 10; ++k) EXPECT_NEAR(s.at(k) + s.at(10 - k), 1.1, 1e-15) << k;
  EXPECT_GT(s.at(9), 0.1);  // the last update is still above the floor
  EXPECT_DOUBLE_EQ(s.at(10), 0.1);
  EXPECT_DOUBLE_EQ(s.at(1000), 0.1);
  for (int64_t k = 1; k < 10; ++k) EXPECT_LT(s.at(k), s.at(k - 1)) << k;
}

TEST(LrSchedule, CosineStartsAfterTheWarmup) {
  // 2 warm-up steps, then a cosine over the remaining 10: at s = 7 it is half way.
  LrSchedule s{.lr = 2.0, .min_lr = 0.0, .warmup_steps = 2, .total_steps = 12};
  EXPECT_DOUBLE_EQ(s.at(0), 1.0);
  EXPECT_DOUBLE_EQ(s.at(1), 2.0);
  EXPECT_DOUBLE_EQ(s.at(2), 2.0);
  EXPECT_DOUBLE_EQ(s.at(7), 1.0);
  EXPECT_DOUBLE_EQ(s.at(12), 0.0);
}

TEST(LrSchedule, ConstantAfterTheWarmup) {
  LrSchedule s{.lr = 0.3,
               .min_lr = 0.0,
               .warmup_steps = 3,
               .total_steps = 6,
               .kind = ScheduleKind::constant};
  EXPECT_DOUBLE_EQ(s.at(0), 0.1);
  EXPECT_DOUBLE_EQ(s.at(2), 0.3);
  for (int64_t k = 3; k < 10; ++k) EXPECT_EQ(s.at(k), 0.3) << k;
}

TEST(LrSchedule, WarmupOverEveryStep) {
  LrSchedule s{.lr = 1.0, .min_lr = 0.5, .warmup_steps = 5, .total_steps = 5};
  s.validate();
  EXPECT_DOUBLE_EQ(s.at(4), 1.0);
  EXPECT_DOUBLE_EQ(s.at(5), 0.5);
}

TEST(LrSchedule, InvalidSettingsAreErrors) {
  auto message = [](LrSchedule s) {
    try {
      s.validate();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(message({.lr = 0.0}), "LrSchedule: lr must be positive, found 0");
  EXPECT_EQ(message({.lr = 1.0, .min_lr = 2.0}),
            "LrSchedule: min_lr must be in [0, lr = 1], found 2");
  EXPECT_EQ(message({.lr = 1.0, .warmup_steps = 3, .total_steps = 2}),
            "LrSchedule: warmup_steps must be in [0, total_steps = 2], found 3");
  EXPECT_EQ(message({.lr = 1.0, .total_steps = 0}),
            "LrSchedule: total_steps must be positive, found 0");
  EXPECT_THROW(LrSchedule{}.at(-1), Error);
  EXPECT_EQ(parse_schedule_kind("constant"), ScheduleKind::constant);
  EXPECT_THROW(parse_schedule_kind("linear"), Error);
}

}  // namespace
}  // namespace gradus::experiments
