// Greedy and beam search for encoder-decoder models, reproducing transformers 4.46.3 generate().
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <torch/torch.h>

#include "loom/generate/options.h"

namespace loom::models {
class EncoderDecoder;
class DecoderState;
}

namespace loom::generate {

/// One generated sequence.
struct Hypothesis {
  /// Generated tokens after the decoder start token, ending with an eos id when the hypothesis
  /// finished (transformers' sequence minus its first token and minus trailing padding).
  std::vector<int64_t> tokens;
  /// Beam search: transformers' sequences_scores (sum of processed log-probs / new_tokens^
  /// length_penalty). Greedy: the same formula over the chosen tokens' log-probabilities under
  /// the processed distribution (transformers reports no greedy score).
  float score = 0.0f;
  /// True when the length limit ended the hypothesis (it reached max_new_tokens without an eos
  /// of its own; an eos forced by forced_eos_token_id at the last position counts as capped).
  bool capped = false;
};

/// Scores after the logits processors of transformers, in its order: repetition_penalty,
/// no_repeat_ngram_size, bad_words_ids, min_length, min_new_tokens, forced_bos_token_id,
/// forced_eos_token_id (then the caller applies renormalize_logits). scores [R, V] float32 is
/// modified in place; sequences[r] is row r's decoder sequence so far (start token included);
/// max_length[r] its decoder length limit (1 + its max new tokens).
void apply_logits_processors(torch::Tensor& scores, const std::vector<const std::vector<int64_t>*>& sequences,
                             const std::vector<int64_t>& max_length, const GenerationOptions& options);

/// A sentence that a StepwiseSearch finished: its id from add() and num_return_sequences
/// hypotheses, best first.
struct FinishedSentence {
  int64_t id = 0;
  std::vector<Hypothesis> hypotheses;
};

/// The one implementation of greedy search, sampling and beam search (generate() is a loop over
/// it), as a step loop that sentences join and leave at any step — continuous batching. add()
/// encodes new sentences and appends their rows (1 per sentence, or num_beams) to the running
/// decoder state (models::DecoderState::append: the newcomers' first token takes decoder
/// position 0, the positions decoded before they joined are masked); step() runs ONE decoder
/// call for every row of every sentence, whatever its options, then each sentence's search
/// advances exactly as in transformers' generate() (logits processors, BeamHypotheses, the
/// same candidates), and finished sentences leave the batch. A sentence's tokens therefore do
/// not depend on when it joined or on the other sentences (up to float rounding: padded
/// positions change the summation length). Not thread-safe. The model must outlive it.
class StepwiseSearch {
 public:
  explicit StepwiseSearch(models::EncoderDecoder& model);
  ~StepwiseSearch();
  StepwiseSearch(const StepwiseSearch&) = delete;
  StepwiseSearch& operator=(const StepwiseSearch&) = delete;

  /// Encodes `sources` (token ids without padding; one encoder batch, right-padded with
  /// options->pad_token_id) and adds them to the batch; their first token is decoded by the next
  /// step(). Sentences added with the same options object are processed by the same tensor
  /// calls; options must stay unchanged. Each sentence gets max_new_tokens_per_source(its
  /// length) new tokens at most (and no more than the model's decoder positions). Returns the
  /// sentences' ids (increasing, never reused). Throws loom::Error for invalid options, a token
  /// id outside the vocabulary or an empty source; nothing is added then.
  std::vector<int64_t> add(const std::vector<std::vector<int64_t>>& sources,
                           std::shared_ptr<const GenerationOptions> options);

  /// One decoder step for every row; returns the sentences that finished in it (in batch
  /// order) and drops their rows. Returns {} when the batch is empty. Throws loom::Error from
  /// the model or when beam search runs out of candidates (the search is then unusable).
  std::vector<FinishedSentence> step();

  /// Drops sentence `id`'s rows from the batch; returns false when it is not in the batch
  /// (unknown or finished).
  bool cancel(int64_t id);

  bool empty() const { return sentences_.empty(); }
  /// Sentences in the batch.
  int64_t sentences() const { return static_cast<int64_t>(sentences_.size()); }
  /// Decoder rows in the batch (sentences × their beams).
  int64_t rows() const;
  /// step() calls that ran the decoder, since construction.
  int64_t steps() const { return steps_; }

  /// (Implementation) One sentence's search state, defined in search.cc.
  struct Sentence;

 private:
  void drop_rows(const std::vector<int64_t>& keep_rows, bool same_sentences);

  models::EncoderDecoder& model_;
  std::unique_ptr<models::DecoderState> state_;
  std::vector<std::unique_ptr<Sentence>> sentences_;  // batch order: rows of sentence i follow those of i-1
  int64_t next_id_ = 0;
  int64_t steps_ = 0;
};

/// Translates a batch of sources (token ids, without padding) with greedy search (num_beams 1),
/// sampling (do_sample: each sentence seeded from options.seed and its source ids) or beam search, as transformers' generate() with the same options does. Sources are
/// right-padded with pad_token_id and masked; finished sentences are dropped from the batch, so
/// a sentence's result does not depend on the rest of the batch (up to float rounding).
/// Returns, per source, num_return_sequences hypotheses, best first. Each sentence gets
/// max_new_tokens_per_source(its length) new tokens at most. Throws loom::Error for invalid
/// options or an empty source.
std::vector<std::vector<Hypothesis>> generate(models::EncoderDecoder& model,
                                              const std::vector<std::vector<int64_t>>& sources,
                                              const GenerationOptions& options);

}  // namespace loom::generate
