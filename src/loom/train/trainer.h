// loom::train::Trainer — a generic training loop over a TrainTask (translation, language
// modelling, ...): token-normalised gradient accumulation across micro-batches and
// data-parallel ranks, Adam/AdamW, learning-rate schedules, gradient clipping, periodic
// validation, atomic checkpoints with exact resume, metrics as JSONL and SVG plots.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "loom/train/distributed.h"
#include "loom/train/loss.h"
#include "loom/train/schedule.h"

namespace loom::train {

/// What a task supplies to the Trainer. The data order is owned by the Trainer: a data position
/// is (epoch, batch index) of the task's fixed list of global batches, so a task holds no
/// iteration state and resuming means asking for the same position again.
class TrainTask {
 public:
  virtual ~TrainTask() = default;
  /// The module being trained (its parameters are optimised; its train()/eval() mode is set
  /// by the Trainer; dropout comes from the model's own configuration).
  virtual torch::nn::Module& model() = 0;
  /// Number of global batches in one epoch (>= 1, the same every epoch).
  virtual int64_t num_batches() = 0;
  /// Summed loss of rank `rank`'s slice (of `world` slices) of global batch `index` of `epoch`
  /// (0 <= index < num_batches()), computed with autograd in training mode. A rank whose slice
  /// is empty returns a zero loss with n_tokens = 0 (it still takes part in the all-reduce).
  virtual LossSum batch_loss(int64_t epoch, int64_t index, int rank, int world) = 0;
  /// Validation metrics computed on rank 0 in eval mode under NoGradGuard, e.g.
  /// {"valid_loss": nats/token, "valid_nll": ..., "bleu": ..., "chrf": ...}.
  virtual std::map<std::string, double> validate() = 0;
};

/// Hyper-parameters of the training loop (the "train" section of a config; see
/// trainer_options_from_json for the JSON field names).
struct TrainerOptions {
  std::string run_dir;                ///< checkpoints/, metrics.jsonl, plots/ go here
  int64_t max_steps = 1000;           ///< optimizer updates in total
  int64_t update_freq = 1;            ///< global batches accumulated per update
  ScheduleOptions schedule;           ///< learning rate per update
  std::string optimizer = "adam";     ///< "adam" (L2 weight decay) or "adamw" (decoupled)
  double beta1 = 0.9, beta2 = 0.98;   ///< Adam betas (Vaswani et al. 2017)
  double adam_eps = 1e-8;             ///< Adam epsilon
  double weight_decay = 0.0;          ///< weight decay
  double clip_norm = 0.0;             ///< max global L2 norm of the gradient; 0 = no clipping
  int64_t log_every = 10;             ///< updates between train metric records
  int64_t valid_every = 0;            ///< updates between validations; 0 = only at the end
  int64_t save_every = 0;             ///< updates between checkpoints; 0 = only at the end
  int64_t keep_last = 5;              ///< step checkpoints kept (older ones deleted), >= 1
  std::string best_metric = "valid_loss";  ///< metric that selects checkpoints/best/
  bool best_higher = false;           ///< true when a larger best_metric is better (BLEU)
  uint64_t seed = 1;                  ///< torch RNG seed (rank r uses seed + r for dropout)
  bool resume = false;                ///< continue from the newest checkpoint in run_dir
  bool progress = true;               ///< progress line on stderr (live only on a terminal)
  bool plots = true;                  ///< write plots/*.svg from metrics.jsonl
};

/// Reads a "train" JSON object into options (unknown keys are errors; every field optional):
/// steps, update_freq, lr, schedule, warmup_steps, warmup_init_lr, min_lr, optimizer,
/// adam_betas [b1, b2], adam_eps, weight_decay, clip_norm, log_every, valid_every, save_every,
/// keep_last, best_metric, seed. Throws loom::Error naming "<where>.<field>" for a bad type or
/// value (e.g. negative steps, betas outside [0, 1)).
TrainerOptions trainer_options_from_json(const nlohmann::json& j, const std::string& where,
                                         TrainerOptions defaults = {});

/// Checks every option's range; throws loom::Error naming the field.
void validate(const TrainerOptions& options);

/// The position and counters a checkpoint stores besides tensors.
struct TrainState {
  int64_t step = 0;          ///< updates done
  int64_t epoch = 0;         ///< data position: epoch of the next batch
  int64_t batch_index = 0;   ///< data position: index of the next batch in that epoch
  double best = 0.0;         ///< best value of best_metric so far
  int64_t best_step = -1;    ///< update of the best checkpoint, -1 = none yet
  double wall_s = 0.0;       ///< training wall time over all runs, seconds
  double tokens = 0.0;       ///< target tokens trained on, all ranks
};

/// The training loop. One Trainer per process; all ranks run the same loop in lockstep.
class Trainer {
 public:
  /// `task` and `comm` must outlive the Trainer. Validates options; creates run_dir (rank 0).
  /// Throws loom::Error when run_dir already has checkpoints and options.resume is false (so a
  /// run is never overwritten by accident) or when resume is set and there is nothing to resume
  /// from is NOT an error (training starts fresh).
  Trainer(TrainTask& task, TrainerOptions options, Communicator& comm);
  ~Trainer();

  /// Trains until options.max_steps updates are done (resuming first if asked), validating and
  /// checkpointing at the configured intervals and at the end. Returns the final state.
  TrainState run();

  /// State after run() (or after a resume).
  const TrainState& state() const { return state_; }

  /// Path of the checkpoints/best/ directory if it exists, else "".
  std::string best_checkpoint() const;
  /// Step checkpoints in run_dir/checkpoints, oldest first.
  std::vector<std::string> step_checkpoints() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  TrainState state_;
};

/// Names and tensors of a module's parameters and buffers (the model part of a checkpoint).
std::vector<std::pair<std::string, torch::Tensor>> model_tensors(torch::nn::Module& model);

/// Loads the model tensors of a training checkpoint into `model` (names must match exactly;
/// throws loom::Error naming the checkpoint and the missing/unexpected tensor or a shape
/// mismatch).
void load_model_from_checkpoint(torch::nn::Module& model, const std::string& checkpoint);

/// Sets `model`'s parameters and float buffers to the elementwise mean of the model tensors of
/// `checkpoints` (fairseq's scripts/average_checkpoints.py; accumulated in float64). Throws
/// loom::Error on an empty list, or tensors that differ in name or shape between checkpoints.
void average_checkpoints(torch::nn::Module& model, const std::vector<std::string>& checkpoints);

/// Reads RUN/metrics.jsonl (one JSON object per line); [] when the file does not exist.
std::vector<nlohmann::json> read_metrics(const std::string& run_dir);

/// Writes plots/loss.svg (train and valid loss vs step), plots/lr.svg, and plots/bleu.svg
/// (when records have "bleu") under run_dir from metric records.
void write_training_plots(const std::string& run_dir, const std::vector<nlohmann::json>& records);

}  // namespace loom::train
