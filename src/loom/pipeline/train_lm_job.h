// The `loom train lm` job: trains a models::DecoderLM (standard / Infini-attention / Memorizing
// kNN layers, OpenELM layer-wise scaling) with train::Trainer on text windows of W segments of
// one document (train::LmTask) or on passkey retrieval (train::PasskeyTask), then exports
// RUN/model (weights + tokenizer) and RUN/plots/passkey.svg. docs/training.md.
#pragma once

#include <string>
#include <vector>

#include "loom/pipeline/train_job.h"

namespace loom::pipeline {

/// Options of the LM job (run.* override the config's "train" values).
struct TrainLmOptions {
  TrainRunOptions run;             ///< config, run directory, train.* overrides, export (auto|last|best), workers
  std::vector<std::string> data;   ///< training text files (documents per data.doc_split)
  std::vector<std::string> valid;  ///< validation text files (empty: data.valid_windows held out of data)
  std::string task;                ///< "lm" or "passkey"; "" = the config's "task" (default "lm")
  /// Model or run directory whose weights initialise the model (models::init_decoder_lm_from;
  /// names and shapes must match, fresh optimizer and schedule); "" = random initialisation.
  /// With --resume, a checkpoint already in the run directory takes precedence.
  std::string init_from;
};

/// Runs the whole job (every rank calls it; rank 0 trains the tokenizer and exports). Returns
/// the process exit code. Throws loom::Error naming the config file and field ("data.tokenizer",
/// "passkey.min_tokens") or the flag ("--data", "--export") for bad options.
int train_lm_job(const TrainLmOptions& options);

}  // namespace loom::pipeline
