// `loom train mt`: flags of pipeline::train_mt_job (the job: data preparation, SentencePiece,
// Trainer, export), and the `loom train` command group.
#include <CLI/CLI.hpp>

#include "loom/cli/commands.h"
#include "loom/pipeline/train_mt_job.h"

namespace loom::cli {

void add_train(CLI::App& app) {
  auto* train = app.add_subcommand("train", "Train models (loom train mt|lm ...)");
  train->require_subcommand(1);
  add_train_mt(*train);
  add_train_lm(*train);
}

void add_train_mt(CLI::App& train) {
  auto* mt = train.add_subcommand("mt", "Train a Transformer/DeLighT translation model from parallel text");
  static pipeline::TrainMtOptions f;
  mt->add_option("--config", f.run.config, "Model config JSON with optional \"train\" and \"data\" sections")->required();
  mt->add_option("--data", f.data, "Parallel TSV: source<TAB>target[<TAB>...] per line");
  mt->add_option("--src-file", f.src_file, "Source sentences, one per line (with --tgt-file)");
  mt->add_option("--tgt-file", f.tgt_file, "Target sentences, line-aligned with --src-file");
  mt->add_option("--out", f.run.out, "Run directory (data/, spm/, checkpoints/, metrics.jsonl, plots/, model/)")->required();
  mt->add_option("--steps", f.run.steps, "Optimizer updates (train.steps)");
  mt->add_option("--max-tokens", f.max_tokens, "Token budget per batch (train.max_tokens)");
  mt->add_option("--lr", f.run.lr, "Peak learning rate (train.lr)");
  mt->add_option("--seed", f.run.seed, "Random seed of initialisation, dropout and batch order (train.seed)");
  mt->add_option("--valid-every", f.run.valid_every, "Updates between validations (train.valid_every)");
  mt->add_option("--save-every", f.run.save_every, "Updates between checkpoints (train.save_every)");
  mt->add_option("--valid-size", f.valid_size, "Validation pairs held out (data.valid)");
  mt->add_option("--test-size", f.test_size, "Test pairs held out (data.test)");
  mt->add_option("--spm-vocab-size", f.spm_vocab_size, "SentencePiece vocabulary size (data.spm_vocab_size)");
  mt->add_option("--src-spm", f.spm_src, "Use this SentencePiece model instead of training one (joint unless --tgt-spm)");
  mt->add_option("--tgt-spm", f.spm_tgt, "Target SentencePiece model (with --src-spm)");
  mt->add_option("--beam", f.beam, "Beam size of validation decoding, 1 = greedy (train.beam)");
  mt->add_option("--bleu-sentences", f.bleu_sentences, "Validation sentences decoded for BLEU/chrF, 0 = none");
  mt->add_option("--average-last", f.average_last, "Export the average of the last N checkpoints");
  mt->add_option("--export", f.run.export_which, "Model to export: auto, last, best, average")->capture_default_str();
  mt->add_flag("--resume", f.run.resume, "Continue the run in --out from its newest checkpoint");
  mt->add_option("--nproc", f.run.nproc, "Data-parallel worker processes on this machine")->capture_default_str();
  mt->add_flag("--quiet", f.run.quiet, "No progress output");
  mt->callback([] {
    int rc = pipeline::train_mt_job(f);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace loom::cli
