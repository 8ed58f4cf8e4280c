// What `loom train mt` and `loom train lm` share: the run-level flags (config, run directory,
// overrides of the "train" section, export choice, workers), how they override
// train::TrainerOptions, and the process group (single process, `--nproc N` local workers, or
// torchrun/Slurm-style RANK/WORLD_SIZE). The jobs themselves: pipeline/train_mt_job.h and
// pipeline/train_lm_job.h; cli/ only parses flags into these structs.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "loom/train/distributed.h"
#include "loom/train/trainer.h"

namespace loom::pipeline {

/// Run-level options of a training job; each optional overrides the config's "train" value.
struct TrainRunOptions {
  std::string config;                  ///< model config JSON with optional sections
  std::string out;                     ///< run directory
  std::optional<int64_t> steps;        ///< train.steps
  std::optional<int64_t> valid_every;  ///< train.valid_every
  std::optional<int64_t> save_every;   ///< train.save_every
  std::optional<double> lr;            ///< train.lr (peak learning rate)
  std::optional<uint64_t> seed;        ///< train.seed
  std::string export_which = "auto";   ///< model exported to RUN/model: auto, last, best (mt: average)
  bool resume = false;                 ///< continue the run in `out` from its newest checkpoint
  bool quiet = false;                  ///< no progress output
  int nproc = 1;                       ///< data-parallel worker processes on this machine
};

/// Reads field `key` of the config section object `j` ("data", "train", "passkey") through
/// core::config_fields (absent or null -> `def`) and removes it from `j`, so that
/// reject_unknown_fields can name what is left. T is int64_t, uint64_t (>= 0), double, bool or
/// std::string. Throws loom::Error naming `file` and "<section>.<key>" for a wrong type.
template <typename T>
T take_field(nlohmann::json& j, const std::string& file, const std::string& section, const char* key, T def);

/// Throws loom::Error naming `file` and "<section>.<key>" ("unknown option") for the first key
/// left in `j` (call it after take_field has removed every known key).
void reject_unknown_fields(const nlohmann::json& j, const std::string& file, const std::string& section);

/// Reads `path` as a JSON object (the training config). Throws loom::Error naming the file when
/// it cannot be read, is not JSON, or is not an object.
nlohmann::json read_config_object(const std::string& path);

/// Overrides `topt` with the run options (steps, lr, seed, valid_every, save_every when given;
/// run_dir, resume and progress always).
void apply_run_options(const TrainRunOptions& run, train::TrainerOptions* topt);

/// When `nproc` > 1 and this process is not already a worker (no WORLD_SIZE in the
/// environment): re-runs this command line as `nproc` local workers and returns their exit
/// code. Otherwise returns std::nullopt and the caller trains in this process. Throws
/// loom::Error ("--nproc") when nproc < 1.
std::optional<int> run_as_local_workers(int nproc);

/// The process group of this process (RANK/WORLD_SIZE from the environment; a single process
/// when unset). With several local workers and no OMP_NUM_THREADS, splits the machine's cores
/// between them instead of oversubscribing.
std::unique_ptr<train::Communicator> start_process_group();

/// Loads the checkpoint that `which` names ("best", or anything else = the newest step
/// checkpoint) into `model` after trainer.run(), and returns a note for the export metadata
/// ("best checkpoint by bleu (step 400)", "final checkpoint (step 500)"). Throws loom::Error
/// ("--export") when "best" is asked for and no validation ran.
std::string load_exported_checkpoint(torch::nn::Module& model, const train::Trainer& trainer,
                                     const train::TrainerOptions& topt, const std::string& which);

}  // namespace loom::pipeline
