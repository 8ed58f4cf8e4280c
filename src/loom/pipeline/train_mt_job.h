// The `loom train mt` job: trains a loom-native translation model (Transformer or DeLighT,
// models::NativeSeq2Seq) from parallel text: clean + split the data (written into RUN/data),
// train SentencePiece (RUN/spm), train with train::Trainer + train::MtTask (checkpoints,
// metrics.jsonl, plots), export the final / best / averaged model as a loom model directory
// (RUN/model) and score it on the held-out test split (RUN/test_scores.json). docs/training.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "loom/pipeline/train_job.h"

namespace loom::pipeline {

/// Options of the MT job; each optional overrides the config's "train" / "data" value.
struct TrainMtOptions {
  TrainRunOptions run;                    ///< config, run directory, train.* overrides, export, workers
  std::string data;                       ///< parallel TSV (source<TAB>target per line), or
  std::string src_file, tgt_file;         ///< two line-aligned files
  std::string spm_src, spm_tgt;           ///< SentencePiece models to use instead of training one
  std::optional<int64_t> max_tokens;      ///< train.max_tokens: token budget per batch
  std::optional<int64_t> beam;            ///< train.beam: validation beam size (1 = greedy)
  std::optional<int64_t> bleu_sentences;  ///< train.bleu_sentences (0 = no BLEU/chrF validation)
  std::optional<int64_t> valid_size;      ///< data.valid: pairs held out for validation
  std::optional<int64_t> test_size;       ///< data.test: pairs held out for the test score
  std::optional<int64_t> spm_vocab_size;  ///< data.spm_vocab_size
  int64_t average_last = 0;               ///< export the average of the last N checkpoints (0 = config's)
};

/// Runs the whole job (every rank of a data-parallel group calls it; rank 0 prepares data and
/// exports). Returns the process exit code (0, or the local workers' code with run.nproc > 1).
/// Throws loom::Error naming the config file and field ("data.valid", "train.max_tokens") or
/// the flag ("--export") for bad options, and the file for unreadable data.
int train_mt_job(const TrainMtOptions& options);

}  // namespace loom::pipeline
