// Language-model TrainTasks for models::DecoderLM on the shared train::Trainer:
//   - LmTask: next-token prediction on fixed windows of W consecutive segments of one document
//     (train::make_lm_windows); each window starts with a fresh DecoderLMState (memories reset,
//     papers.md §5.4), so windows are independent and a batch depends only on (epoch, index);
//   - PasskeyTask: passkey retrieval (data::make_passkey_sample, papers.md §5.3; Mohtashami &
//     Jaggi 2023, Munkhdalai et al. 2024 §4.1) with the loss on the answer tokens (or on every
//     token), optionally with a length curriculum; samples are generated from a seed derived from
//     (epoch, index, row), so training needs no stored data and resumes exactly.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "loom/data/passkey.h"
#include "loom/models/decoder_lm.h"
#include "loom/train/lm_data.h"
#include "loom/train/trainer.h"

namespace loom::train {

/// Summed next-token cross-entropy of a DecoderLM over a batch of independent sequences, each
/// streamed from a fresh state (every row starts a new document). ids [B, T] int64 (padding
/// anywhere a label is ignored), labels [B, T] int64 with -1 = ignored (labels[b, t] is the
/// target after ids[b, ..t]). The input is fed in chunks of `chunk` tokens (0 = all at once;
/// DecoderLM gives the same result for any chunking). loss = nll (no smoothing), n_tokens =
/// labels >= 0. Throws loom::Error on shape mismatch.
LossSum lm_loss(models::DecoderLMImpl& model, const torch::Tensor& ids, const torch::Tensor& labels, int64_t chunk = 0);

/// Settings of LmTask.
struct LmTaskOptions {
  int64_t batch_windows = 8;   ///< windows per global batch
  uint64_t seed = 1;           ///< batch-order shuffle seed (epoch e uses seed + e)
  int64_t chunk = 0;           ///< tokens per forward call inside a window (0 = whole window)
};

/// The text LM task. Holds references to the model, which must outlive it.
class LmTask : public TrainTask {
 public:
  /// docs: tokenized documents; train / valid: windows over them (make_lm_windows). Throws
  /// loom::Error when train is empty, a window lies outside its document, or batch_windows < 1.
  LmTask(models::DecoderLM model, std::vector<std::vector<int64_t>> docs, std::vector<LmWindow> train,
         std::vector<LmWindow> valid, LmTaskOptions options);

  torch::nn::Module& model() override { return *model_; }
  /// ceil(train windows / batch_windows).
  int64_t num_batches() override;
  /// Batch `index` of epoch `epoch`: windows perm_epoch[index·bw, (index+1)·bw) where perm_epoch
  /// is data::shuffle_indices(0..n−1, seed + epoch); rank `rank` takes its rank_slice.
  LossSum batch_loss(int64_t epoch, int64_t index, int rank, int world) override;
  /// {"valid_loss" = "valid_nll" (nats/token over all valid windows), "valid_ppl"}; {} without
  /// valid windows.
  std::map<std::string, double> validate() override;

  /// ids [b, T] and labels [b, T] (-1 = padding) of the given windows.
  std::pair<torch::Tensor, torch::Tensor> make_batch(const std::vector<LmWindow>& windows) const;

 private:
  models::DecoderLM model_;
  std::vector<std::vector<int64_t>> docs_;
  std::vector<LmWindow> train_, valid_;
  LmTaskOptions opt_;
};

/// Settings of PasskeyTask.
/// One stage of a passkey length curriculum: updates before `until_step` draw prompt lengths
/// uniformly in [min_tokens, max_tokens] (short prompts first, then longer).
struct PasskeyStage {
  int64_t until_step = 0;  ///< the stage covers global batches [previous until_step, until_step)
  int64_t min_tokens = 0;
  int64_t max_tokens = 0;
};

struct PasskeyTaskOptions {
  int64_t batch_size = 8;        ///< samples per global batch
  int64_t batches_per_epoch = 1000;  ///< the epoch length (samples are generated, not stored)
  int64_t min_tokens = 256;      ///< prompt length drawn uniformly in [min_tokens, max_tokens]
  int64_t max_tokens = 1024;
  double min_depth = 0.0;        ///< needle depth drawn uniformly in [min_depth, max_depth]
  double max_depth = 1.0;
  uint64_t seed = 1;             ///< data seed
  int64_t valid_samples = 64;    ///< fixed validation samples (seed-derived, disjoint stream)
  int64_t chunk = 0;             ///< tokens per forward call (0 = whole sequence)
  /// Length curriculum, stages in increasing until_step; global batch g = epoch ·
  /// batches_per_epoch + index uses the first stage with g < until_step, and
  /// [min_tokens, max_tokens] after the last one. Validation always uses [min_tokens, max_tokens].
  std::vector<PasskeyStage> curriculum;
  /// false: loss on the answer tokens only (the task as evaluated); true: next-token loss on the
  /// whole prompt too (filler, needle — whose second copy of the key is predictable from the
  /// first — and question), an auxiliary signal that teaches copying within a segment.
  bool loss_on_prompt = false;
};

/// Passkey retrieval training: loss on the answer tokens " " + 5 digits (and, with
/// loss_on_prompt, on the prompt). Validation always scores the answer tokens only.
class PasskeyTask : public TrainTask {
 public:
  /// encode: the model's tokenizer. Throws loom::Error for inconsistent options.
  PasskeyTask(models::DecoderLM model, data::EncodeFn encode, PasskeyTaskOptions options);
  torch::nn::Module& model() override { return *model_; }
  int64_t num_batches() override { return opt_.batches_per_epoch; }
  /// Generates the batch's samples (seed = hash(seed, epoch, index, row)) and returns the
  /// summed cross-entropy of the answer tokens of this rank's rows.
  LossSum batch_loss(int64_t epoch, int64_t index, int rank, int world) override;
  /// {"valid_loss" (nats per answer token), "passkey_acc" (every answer token is the argmax
  /// under teacher forcing), "token_acc" (share of answer tokens that are)} over the
  /// validation samples.
  std::map<std::string, double> validate() override;
  /// The sample of (epoch, index, row); epoch −1 is the validation stream.
  data::PasskeySample sample(int64_t epoch, int64_t index, int64_t row) const;
  /// ids [b, T] and labels [b, T] of samples: labels are -1 except on the answer tokens (and,
  /// with loss_on_prompt, on every prompt token after the first); -1 also pads short rows.
  static std::pair<torch::Tensor, torch::Tensor> make_batch(const std::vector<data::PasskeySample>& samples,
                                                           bool loss_on_prompt = false);
  /// The [min_tokens, max_tokens] range of global batch g under the curriculum.
  std::pair<int64_t, int64_t> length_range(int64_t global_batch) const;

 private:
  models::DecoderLM model_;
  data::EncodeFn encode_;
  PasskeyTaskOptions opt_;
};

}  // namespace loom::train
