#include "loom/train/schedule.h"

#include <algorithm>
#include <cmath>

#include "loom/core/error.h"

namespace loom::train {

void validate(const ScheduleOptions& o) {
  if (o.kind != "inverse_sqrt" && o.kind != "cosine" && o.kind != "constant")
    fail(Where{"", 0, "schedule"}, "unknown schedule '{}' (inverse_sqrt, cosine, constant)", o.kind);
  if (!(o.lr > 0)) fail(Where{"", 0, "lr"}, "must be > 0, got {}", o.lr);
  if (o.warmup_steps < 0) fail(Where{"", 0, "warmup_steps"}, "must be >= 0, got {}", o.warmup_steps);
  if (o.warmup_init_lr < 0) fail(Where{"", 0, "warmup_init_lr"}, "must be >= 0, got {}", o.warmup_init_lr);
  if (o.min_lr < 0) fail(Where{"", 0, "min_lr"}, "must be >= 0, got {}", o.min_lr);
  if (o.kind == "cosine" && o.total_steps <= o.warmup_steps)
    fail(Where{"", 0, "total_steps"}, "cosine schedule needs total_steps ({}) > warmup_steps ({})",
         o.total_steps, o.warmup_steps);
}

double learning_rate(const ScheduleOptions& o, int64_t step) {
  validate(o);
  if (step < 1) fail("learning rate asked for update {} (updates count from 1)", step);
  if (step < o.warmup_steps)
    return o.warmup_init_lr + (o.lr - o.warmup_init_lr) * static_cast<double>(step) / o.warmup_steps;
  if (o.kind == "inverse_sqrt")
    return o.lr * std::sqrt(static_cast<double>(std::max<int64_t>(o.warmup_steps, 1)) / step);
  if (o.kind == "cosine") {
    double p = std::min(1.0, static_cast<double>(step - o.warmup_steps) /
                                 static_cast<double>(o.total_steps - o.warmup_steps));
    return o.min_lr + (o.lr - o.min_lr) * 0.5 * (1.0 + std::cos(M_PI * p));
  }
  return o.lr;
}

}  // namespace loom::train
