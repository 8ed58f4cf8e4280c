// Evaluations of decoder-only language models (models::DecoderLM):
//   - streaming perplexity of whole documents: each document is fed chunk by chunk with the
//     recurrent state carried (memory reset only at the document's start);
//   - the passkey-retrieval grid (data::make_passkey_sample; papers.md §5.3): accuracy per
//     (context length, needle depth) by greedy decoding after a chunked prompt.
// A job over models and generation, so it lives in pipeline/ (eval/ holds metrics over text).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loom/models/decoder_lm.h"
#include "loom/text/lm_tokenizer.h"

namespace loom::pipeline {

/// Negative log-likelihood of one or more documents.
struct PerplexityResult {
  double nll = 0;          ///< summed nats over predicted tokens
  int64_t tokens = 0;      ///< predicted tokens (each document's tokens after its first)
  double seconds = 0;      ///< wall time of the forward passes
  /// nats per token.
  double loss() const { return tokens ? nll / static_cast<double>(tokens) : 0.0; }
  /// exp(loss()).
  double ppl() const;
  /// tokens / seconds.
  double tokens_per_s() const { return seconds > 0 ? static_cast<double>(tokens) / seconds : 0.0; }
};

/// Streams `doc` (ids, >= 2 tokens for any prediction) through the model from a fresh state in
/// chunks of `chunk` tokens (0 = the model's segment_len), in eval mode without gradients, and
/// sums −log p(doc[t+1] | doc[..t]). max_tokens > 0 evaluates only the first max_tokens + 1
/// tokens. Chunking does not change the result (up to float rounding).
PerplexityResult document_perplexity(models::DecoderLMImpl& model, const std::vector<int64_t>& doc, int64_t chunk = 0,
                                     int64_t max_tokens = 0);

/// Settings of the passkey grid.
struct PasskeyEvalOptions {
  std::vector<int64_t> lengths;   ///< prompt lengths in tokens (rows)
  std::vector<double> depths;     ///< needle depths in percent, 0..100 (columns)
  int64_t trials = 5;             ///< random keys per cell
  uint64_t seed = 1;              ///< key seed (each (length, depth, trial) uses a derived seed)
  int64_t chunk = 0;              ///< prompt tokens per forward call (0 = segment_len)
};

/// Accuracy grid of the passkey task.
struct PasskeyGrid {
  std::vector<int64_t> lengths;                  ///< rows
  std::vector<double> depths;                    ///< columns (percent)
  std::vector<std::vector<double>> exact;        ///< [rows][cols] share of trials with all 5 digits right
  std::vector<std::vector<double>> digit;        ///< [rows][cols] share of digits right (position-wise)
  std::vector<std::vector<int64_t>> prompt_tokens;  ///< [rows][cols] actual prompt length of trial 0
  int64_t trials = 0;
  double seconds = 0;                            ///< total wall time
  /// {"lengths", "depths", "trials", "exact", "digit", "prompt_tokens", "seconds"}.
  nlohmann::json to_json() const;
};

/// The digits the model answered: the first 5 characters of `text` after leading spaces
/// (non-digits are kept, so they count as wrong digits).
std::string passkey_answer(const std::string& text);

/// Runs the grid: for each cell and trial, builds a prompt, feeds it in chunks, greedily
/// generates up to |answer| + 3 tokens and compares passkey_answer(decoded) with the key.
/// Throws loom::Error for empty lengths/depths, trials < 1 or a depth outside [0, 100].
PasskeyGrid passkey_grid(models::DecoderLMImpl& model, const text::LmTokenizer& tokenizer,
                         const PasskeyEvalOptions& options, bool progress = false);

}  // namespace loom::pipeline
