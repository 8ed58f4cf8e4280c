// Text generation with the HF decoder-only LMs of models/causal_lm.h: a Sequence (one prompt,
// its own KV cache, step-able decode — the unit a server admits and retires), batched greedy /
// sampled generation with left padding, and stop-string matching for streamed text.
// Reference behaviour: transformers 4.46.3 GenerationMixin._sample (greedy and multinomial
// sampling, eos stops, left padding with position_ids = cumsum(attention_mask) - 1).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "loom/generate/sampling.h"
#include "loom/models/causal_lm.h"
#include "loom/text/causal_tokenizer.h"

namespace loom::generate {

/// Settings of one generation (HF generate() names).
struct CausalGenerateOptions {
  int64_t max_new_tokens = 100;      ///< new tokens at most (also bounded by the context window)
  SamplingOptions sampling;          ///< temperature 0 = greedy
  std::vector<int64_t> stop_ids;     ///< generation ends after emitting one of these (eos)
};

/// Stop token ids of a model: generation_config.json's eos_token_id (an int or a list), else
/// config.json's eos_token_id; empty when neither has one.
std::vector<int64_t> default_stop_ids(const models::CausalLM& model);

/// Why a sequence finished.
enum class FinishReason { kNone, kStopToken, kLength, kStopped };

/// One sequence being generated: owns its KV cache and sampler. Not thread-safe; several
/// Sequences of one model may run on different threads. Usage: construct, then call step()
/// until it returns nullopt (or call stop() to end it early, e.g. on a stop string).
/// extend() appends more input (the next chat turn) and keeps the cache.
class Sequence {
 public:
  /// `prompt` must be non-empty. Throws loom::Error when it has more tokens than the model's
  /// context window (the message names both lengths).
  Sequence(std::shared_ptr<const models::CausalLM> model, std::vector<int64_t> prompt, CausalGenerateOptions options);

  /// Runs the pending input (prefill, one batched forward) or the last token (decode) and picks
  /// the next token. Returns it, or nullopt once finished (stop id emitted last step, max_new_tokens
  /// reached, context full, or stop() called). A stop id is returned (the caller decides whether
  /// to show it) and the sequence is then finished.
  std::optional<int64_t> step();
  /// One step of several live Sequences of the same model in ONE batched forward (continuous
  /// batching: the server's scheduler calls it every step over the sequences running now, which
  /// joined at different times). Rows are left-padded to the longest pending input and the
  /// per-sequence KV caches are merged (left-padded, padding masked) for the forward and split
  /// back afterwards, so each Sequence keeps its own cache. next[i] is what seqs[i]->step()
  /// would return (nullopt for a finished or length-exhausted sequence, which runs nothing).
  /// For greedy fp32 the tokens equal stepping each sequence alone (up to float rounding of the
  /// batched GEMMs). Throws loom::Error when the sequences belong to different models.
  static std::vector<std::optional<int64_t>> step_batch(const std::vector<Sequence*>& seqs);
  /// Ends generation now (reason kStopped).
  void stop();
  /// Appends `ids` as new input after everything so far (the sampled tokens included), resets
  /// the new-token count and makes the sequence live again; the next step() prefills them on
  /// top of the cache. Throws loom::Error when the total exceeds the context window.
  void extend(const std::vector<int64_t>& ids);
  /// Keeps the first n tokens (inputs and generated ones) and drops the rest with their KV-cache
  /// entries; the n-th token stays pending, so the next step() has input to run. The sequence is
  /// live again and its sampler restarts from the seed, exactly as a new Sequence over those n
  /// tokens would, but the kept prefix is not prefilled again: a chat's next turn reuses the
  /// cache of the conversation so far (truncate to the common prefix, then extend()). Throws
  /// loom::Error unless 0 < n <= tokens().size().
  void truncate(std::size_t n);
  /// Forgets everything (cache and tokens) and starts over from `prompt`.
  void reset(std::vector<int64_t> prompt);

  bool finished() const { return reason_ != FinishReason::kNone; }
  FinishReason finish_reason() const { return reason_; }
  /// Every token so far: inputs and generated ones.
  const std::vector<int64_t>& tokens() const { return tokens_; }
  /// Tokens generated since construction / the last extend().
  const std::vector<int64_t>& generated() const { return generated_; }
  /// Logits [V] of the last step (before sampling processors).
  const torch::Tensor& last_logits() const { return last_logits_; }
  const models::KvCache& cache() const { return cache_; }

 private:
  // step() in two halves around the forward: ready() checks the limits (false = finished now);
  // accept() samples from the last position's logits [V] and records the token.
  bool ready();
  int64_t accept(torch::Tensor logits);
  std::shared_ptr<const models::CausalLM> model_;
  CausalGenerateOptions options_;
  models::KvCache cache_;
  std::vector<int64_t> tokens_, generated_;  // tokens_[cache_.length():] not yet run
  torch::Tensor last_logits_;
  std::mt19937_64 rng_;
  FinishReason reason_ = FinishReason::kNone;
};

/// Stop ids for chat-formatted prompts: default_stop_ids(model), the tokenizer's eos and the
/// end-of-turn tokens of the supported templates that the vocabulary has (<end_of_turn>,
/// <|eot_id|>, <|im_end|>), since instruction-tuned checkpoints end a turn with them.
std::vector<int64_t> chat_stop_ids(const models::CausalLM& model, const text::CausalTokenizer& tokenizer);

/// Generates for several prompts at once: left-padded batched prefill, then batched decode
/// (one [B, 1] forward per step), each row with its own sampler seeded by options.sampling.seed
/// + row, stopping independently (finished rows are fed padding that nothing attends to).
/// Returns the new tokens of every row (a stop id included when one ended the row). For greedy
/// fp32 a row's result equals generating it alone. Throws like Sequence for an empty or
/// too-long prompt.
std::vector<std::vector<int64_t>> generate_batch(const models::CausalLM& model,
                                                 const std::vector<std::vector<int64_t>>& prompts,
                                                 const CausalGenerateOptions& options);

/// Stop strings over streamed text: push() each new piece of text and get back what is safe to
/// show; text that could be the beginning of a stop string is held back until it is decided.
/// Once a stop string appears, stopped() is true and nothing from it on is ever returned.
class StopStrings {
 public:
  explicit StopStrings(std::vector<std::string> stops);
  /// New text in; returns the text that can be shown now.
  std::string push(std::string_view text);
  /// End of generation: returns what was held back (unless stopped).
  std::string finish();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace loom::generate
