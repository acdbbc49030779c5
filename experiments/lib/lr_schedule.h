// The learning-rate schedule of a training run: a linear warm-up, then either a cosine decay to a
// floor or a constant rate.
//
// For the update with 0-based index s (s updates have been applied before it), with peak rate lr,
// floor min_lr, W warm-up steps and S steps in all:
//   s < W:               lr * (s + 1) / W                      (reaches lr at the last warm-up
//   step) s >= W, constant:    lr s >= W, cosine:      min_lr + (lr - min_lr) * (1 + cos(pi * (s -
//   W) / (S - W))) / 2
// The cosine starts at lr and would reach min_lr at s = S, one step after the last update (as
// torch.optim.lr_scheduler.CosineAnnealingLR with T_max = S - W). Indices s >= S give min_lr
// (cosine) or lr (constant).
#pragma once

#include <cstdint>
#include <string>

namespace gradus::experiments {

enum class ScheduleKind { cosine, constant };

struct LrSchedule {
  double lr = 1e-3;
  double min_lr = 0.0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  ScheduleKind kind = ScheduleKind::cosine;

  // Throws gradus::Error for lr <= 0, min_lr outside [0, lr], total_steps < 1, warmup_steps
  // outside [0, total_steps], or a negative step.
  void validate() const;
  // The rate for the update with 0-based index `step` (see above).
  double at(int64_t step) const;
};

// "cosine" or "constant"; throws naming the value otherwise.
ScheduleKind parse_schedule_kind(const std::string& name);

}  // namespace gradus::experiments
