// Decoding options with the names, defaults and meaning of transformers' GenerationConfig.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom::generate {

/// When beam search stops a sentence (GenerationConfig.early_stopping).
enum class EarlyStopping {
  kHeuristic,  ///< false: stop when the best open beam cannot beat the worst kept hypothesis (HF heuristic)
  kTrue,       ///< true: stop as soon as num_beams hypotheses are finished
  kNever,      ///< "never": stop only when no better hypothesis is possible at all (canonical beam search)
};

/// Options of generate(). Field names and defaults are transformers 4.46.3 GenerationConfig's;
/// lengths count decoder tokens including the decoder start token, as in transformers.
struct GenerationOptions {
  int64_t num_beams = 1;                 ///< 1 = greedy
  double length_penalty = 1.0;           ///< beam score = sum log-probs / new_tokens^length_penalty
  EarlyStopping early_stopping = EarlyStopping::kHeuristic;
  int64_t max_length = 20;               ///< decoder length incl. the start token (used when max_new_tokens is unset)
  std::optional<int64_t> max_new_tokens; ///< when set: the same limit for every sentence (HF semantics)
  int64_t min_length = 0;                ///< eos banned while the decoder length < min_length
  std::optional<int64_t> min_new_tokens; ///< eos banned while fewer new tokens were generated
  std::vector<std::vector<int64_t>> bad_words_ids;  ///< token sequences never generated (eos-only entries ignored)
  std::optional<int64_t> forced_bos_token_id;       ///< forced as the first new token
  std::optional<int64_t> forced_eos_token_id;       ///< forced as the last token allowed by the length limit
  int64_t no_repeat_ngram_size = 0;      ///< ban tokens that would repeat an n-gram of the decoder sequence
  double repetition_penalty = 1.0;       ///< CTRL penalty on tokens already in the decoder sequence
  int64_t num_return_sequences = 1;      ///< hypotheses returned per sentence (<= num_beams)
  bool renormalize_logits = false;       ///< log_softmax after the logits processors
  int64_t decoder_start_token_id = 0;
  std::vector<int64_t> eos_token_ids;    ///< the first one is appended to finished beam hypotheses
  int64_t pad_token_id = 0;              ///< pads sources
  /// loom extension, used only when max_new_tokens is unset: a sentence of src_len source tokens
  /// gets at most floor(max_new_tokens_a · src_len + max_new_tokens_b) new tokens (and never more
  /// than max_length - 1). Keeps runaway hypotheses of a batch from decoding to max_length.
  /// Set max_new_tokens_a < 0 to disable.
  double max_new_tokens_a = 2.0;
  double max_new_tokens_b = 10.0;
  /// Sampling instead of greedy search (HF do_sample; needs num_beams 1 and num_return_sequences 1).
  /// Each step draws from softmax(processed scores / temperature) restricted by top_k and top_p
  /// (HF TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, in that order).
  bool do_sample = false;
  double temperature = 1.0;  ///< > 0
  int64_t top_k = 0;         ///< 0 = off (HF's default 50 is not applied: loom samples only when asked)
  double top_p = 1.0;        ///< in (0, 1]; 1 = off
  /// loom extension: a sentence's draws come from std::mt19937_64 seeded with a hash of (seed, its
  /// source token ids), so its sample does not depend on the batch, the order or a resume.
  uint64_t seed = 0;

  /// New-token limit of a sentence with src_len source tokens (see above).
  int64_t max_new_tokens_per_source(int64_t src_len) const;

  /// Options from a model's config.json and generation_config.json ({} when absent), as
  /// transformers builds its GenerationConfig: generation_config.json when present, else the
  /// generation fields of config.json; token ids missing from generation_config fall back to
  /// config.json; unspecified fields keep the HF defaults above. Throws loom::Error naming the
  /// file and field for a value of the wrong type or range.
  static GenerationOptions from_hf(const nlohmann::json& config, const nlohmann::json& generation_config);

  /// Checks consistency (num_beams >= 1, num_return_sequences <= num_beams, greedy returns 1,
  /// eos ids present, lengths >= 1); throws loom::Error naming the option.
  void validate() const;
};

}  // namespace loom::generate
