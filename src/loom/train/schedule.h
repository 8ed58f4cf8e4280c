// Learning-rate schedules, as functions of the update number (1-based: the rate for update 1 is
// lr(1)), so the schedule's whole state is the step counter.
#pragma once

#include <cstdint>
#include <string>

namespace loom::train {

/// Parameters of a schedule. Learning rates are per update, in optimizer units.
struct ScheduleOptions {
  std::string kind = "inverse_sqrt";  ///< "inverse_sqrt", "cosine" or "constant"
  double lr = 5e-4;                   ///< peak learning rate (reached at the end of warmup)
  int64_t warmup_steps = 4000;        ///< linear warmup updates (0 = none)
  double warmup_init_lr = 0.0;        ///< rate at step 0 of the warmup ramp
  double min_lr = 0.0;                ///< cosine: rate at total_steps
  int64_t total_steps = 0;            ///< cosine: length of the schedule (> warmup_steps)
};

/// Learning rate for update `step` (>= 1):
///  - warmup (step < warmup_steps): warmup_init_lr + (lr - warmup_init_lr) * step / warmup_steps
///  - inverse_sqrt after warmup: lr * sqrt(warmup_steps / step) (lr when warmup_steps = 0:
///    then lr / sqrt(step)), as fairseq's inverse_square_root scheduler;
///  - cosine after warmup: min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2 with
///    p = min(1, (step - warmup_steps) / (total_steps - warmup_steps)), as HF's
///    get_cosine_schedule_with_warmup (with a floor);
///  - constant after warmup: lr.
/// Throws loom::Error naming the field for an unknown kind, lr <= 0, negative warmup, or a
/// cosine schedule without total_steps > warmup_steps.
double learning_rate(const ScheduleOptions& options, int64_t step);

/// Validates options as learning_rate() does, without computing a rate.
void validate(const ScheduleOptions& options);

}  // namespace loom::train
