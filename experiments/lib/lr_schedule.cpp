#include "experiments/lib/lr_schedule.h"

#include <cmath>
#include <numbers>

#include "core/error.h"

namespace gradus::experiments {

void LrSchedule::validate() const {
  GRADUS_CHECK(std::isfinite(lr) && lr > 0, "LrSchedule", "lr must be positive, found {}", lr);
  GRADUS_CHECK(min_lr >= 0 && min_lr <= lr, "LrSchedule",
               "min_lr must be in [0, lr = {}], found {}", lr, min_lr);
  GRADUS_CHECK(total_steps >= 1, "LrSchedule", "total_steps must be positive, found {}",
               total_steps);
  GRADUS_CHECK(warmup_steps >= 0 && warmup_steps <= total_steps, "LrSchedule",
               "warmup_steps must be in [0, total_steps = {}], found {}", total_steps,
               warmup_steps);
}

double LrSchedule::at(int64_t step) const {
  GRADUS_CHECK(step >= 0, "LrSchedule", "step must be >= 0, found {}", step);
  if (step < warmup_steps)
    return lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  if (kind == ScheduleKind::constant) return lr;
  if (step >= total_steps) return min_lr;
  double progress = static_cast<double>(step - warmup_steps) /
                    static_cast<double>(total_steps - warmup_steps);  // in [0, 1)
  return min_lr + (lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

ScheduleKind parse_schedule_kind(const std::string& name) {
  if (name == "cosine") return ScheduleKind::cosine;
  if (name == "constant") return ScheduleKind::constant;
  GRADUS_FAIL("LrSchedule", "unknown schedule \"{}\" (expected cosine or constant)", name);
}

}  // namespace gradus::experiments
