// MtTask — the translation TrainTask: token-budget batches of encoded sentence pairs, teacher-
// forced label-smoothed cross-entropy through any encoder-decoder forward function, and
// validation loss plus BLEU/chrF of decoded validation sentences. Model, tokenizers, decoding
// and metrics come in as callables, so this layer knows no concrete architecture.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "loom/data/batching.h"
#include "loom/train/trainer.h"

namespace loom::train {

/// A tokenized pair. src ends with eos; tgt holds the target ids followed by eos (no bos): the
/// decoder input is [bos, tgt[0..n-2]] and the labels are tgt (teacher forcing, as fairseq).
struct EncodedPair {
  std::vector<int64_t> src;
  std::vector<int64_t> tgt;
};

/// logits [B, T, V] = forward(src_ids [B, S] int64, src_mask [B, S] bool (true = real token),
/// tgt_in [B, T] int64).
using Seq2SeqForward = std::function<torch::Tensor(const torch::Tensor& src_ids, const torch::Tensor& src_mask,
                                                   const torch::Tensor& tgt_in)>;
/// Translates source sentences (detokenized text in, text out), in eval mode.
using TranslateFn = std::function<std::vector<std::string>(const std::vector<std::string>& sources)>;
/// Corpus-level scores of hypotheses against one reference each, e.g. {"bleu": .., "chrf": ..}.
using ScoreFn = std::function<std::map<std::string, double>(const std::vector<std::string>& hyps,
                                                            const std::vector<std::string>& refs)>;

/// Settings of MtTask.
struct MtTaskOptions {
  int64_t max_tokens = 4096;        ///< token budget of a training batch (see TokenBatcher)
  int64_t valid_max_tokens = 4096;  ///< token budget of a validation-loss batch
  double label_smoothing = 0.1;     ///< epsilon of label_smoothed_nll_loss
  uint64_t seed = 1;                ///< batch-order shuffle seed
  int64_t pad_id = 0, bos_id = 2;   ///< pad (ignored in the loss) and decoder-start ids
  int64_t bleu_sentences = 200;     ///< validation sentences decoded for BLEU/chrF; 0 = none
};

/// The translation task. Holds references to the model and callables, which must outlive it.
class MtTask : public TrainTask {
 public:
  /// train/valid: encoded pairs; valid_src/valid_ref: the raw validation text (same order as
  /// valid) for BLEU/chrF; translate/score may be empty (then no BLEU/chrF). Throws loom::Error
  /// when train is empty or a pair has an empty side (at least eos is expected), or
  /// valid_src/valid_ref sizes differ from valid.
  MtTask(torch::nn::Module& model, Seq2SeqForward forward, std::vector<EncodedPair> train,
         std::vector<EncodedPair> valid, std::vector<std::string> valid_src,
         std::vector<std::string> valid_ref, TranslateFn translate, ScoreFn score,
         MtTaskOptions options);

  torch::nn::Module& model() override { return model_; }
  int64_t num_batches() override { return train_batches_->num_batches(); }
  /// Pads the rank's slice of the batch to [b, S] / [b, T] and returns the summed loss over its
  /// target tokens (labels == pad are ignored).
  LossSum batch_loss(int64_t epoch, int64_t index, int rank, int world) override;
  /// {"valid_loss", "valid_nll"} in nats per target token over all valid pairs (label-smoothed
  /// and plain), "valid_ppl" = exp(valid_nll), and the ScoreFn's scores ("bleu", "chrf") of
  /// the first bleu_sentences valid sentences.
  std::map<std::string, double> validate() override;

  /// Tensors of a batch of pairs: src [b, S], src_mask [b, S], tgt_in [b, T], labels [b, T].
  struct Tensors {
    torch::Tensor src, src_mask, tgt_in, labels;
  };
  /// Builds padded tensors for pairs[ids] (right padding with pad_id).
  Tensors make_batch(const std::vector<EncodedPair>& pairs, const std::vector<int64_t>& ids) const;

 private:
  torch::nn::Module& model_;
  Seq2SeqForward forward_;
  std::vector<EncodedPair> train_, valid_;
  std::vector<std::string> valid_src_, valid_ref_;
  TranslateFn translate_;
  ScoreFn score_;
  MtTaskOptions opt_;
  std::unique_ptr<data::TokenBatcher> train_batches_, valid_batches_;
};

}  // namespace loom::train
