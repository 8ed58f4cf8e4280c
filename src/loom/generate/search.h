// Greedy and beam search for encoder-decoder models, reproducing transformers 4.46.3 generate().
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "loom/generate/options.h"

namespace loom::models {
class EncoderDecoder;
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
