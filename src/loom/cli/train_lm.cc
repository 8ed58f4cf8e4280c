// `loom train lm`: flags of pipeline::train_lm_job (the job: tokenizer, windows or passkey
// samples, Trainer, export).
#include <CLI/CLI.hpp>

#include "loom/cli/commands.h"
#include "loom/pipeline/train_lm_job.h"

namespace loom::cli {

void add_train_lm(CLI::App& train) {
  auto* lm = train.add_subcommand("lm", "Train a decoder-only LM (standard / Infini-attention / kNN memory)");
  static pipeline::TrainLmOptions f;
  lm->add_option("--config", f.run.config, "Model config JSON with optional \"data\", \"train\", \"passkey\" sections and \"task\"")
      ->required();
  lm->add_option("--data", f.data, "Training text files (one file = one document unless data.doc_split says otherwise)");
  lm->add_option("--valid", f.valid, "Validation text files (default: data.valid_windows windows held out of --data)");
  lm->add_option("--out", f.run.out, "Run directory (checkpoints/, metrics.jsonl, plots/, model/)")->required();
  lm->add_option("--task", f.task, "lm or passkey (overrides the config's \"task\")");
  lm->add_option("--steps", f.run.steps, "Optimizer updates (train.steps)");
  lm->add_option("--lr", f.run.lr, "Peak learning rate (train.lr)");
  lm->add_option("--seed", f.run.seed, "Seed of initialisation and batch order (train.seed)");
  lm->add_option("--valid-every", f.run.valid_every, "Updates between validations (train.valid_every)");
  lm->add_option("--save-every", f.run.save_every, "Updates between checkpoints (train.save_every)");
  lm->add_option("--export", f.run.export_which, "Model to export: auto (best if validated, else last), last, best")
      ->capture_default_str();
  lm->add_flag("--resume", f.run.resume, "Continue the run in --out from its newest checkpoint");
  lm->add_option("--init-from", f.init_from,
                 "Start from the weights of this model or run directory (same names and shapes; the config may "
                 "differ otherwise, e.g. kNN memory size; fresh optimizer)");
  lm->add_option("--nproc", f.run.nproc, "Data-parallel worker processes on this machine")->capture_default_str();
  lm->add_flag("--quiet", f.run.quiet, "No progress output");
  lm->callback([] {
    int rc = pipeline::train_lm_job(f);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace loom::cli
