// loom::generate::Translator — sentences in, translations out: tokenizes, splits sentences that
// exceed the model's source length at token boundaries, groups sentences of similar length into
// token-budget batches, runs greedy/beam search, detokenizes, and restores the input order.
// This is the engine behind `loom translate` (the job's row loop lives in loom::pipeline).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loom/generate/options.h"
#include "loom/generate/search.h"

namespace loom::models {
class EncoderDecoder;
}
namespace loom::text {
class Seq2SeqTokenizer;
}

namespace loom::generate {

/// How Translator batches and bounds its work.
struct TranslatorOptions {
  /// Upper bound on padded source tokens per batch (B × S_max), the CTranslate2-style budget
  /// (`loom translate --batch-tokens`); packed by data::pack_token_budget like training batches.
  int64_t max_tokens = 4096;
  /// Upper bound on sentences per batch, independent of length (`--max-batch-size`).
  int64_t max_sentences = 64;
  /// Longest source (tokens, specials included) sent to the model; longer sentences are split at
  /// piece boundaries (a piece starting with "▁" preferred) and their translations joined.
  /// 0 = the model's max_source_positions() (HF: max_position_embeddings).
  int64_t max_source_tokens = 0;
};

/// Counters over the Translator's lifetime.
struct TranslatorStats {
  int64_t sentences = 0;        ///< sentences passed to translate()
  int64_t split_sentences = 0;  ///< sentences longer than max_source_tokens, split into parts
  int64_t model_inputs = 0;     ///< sequences actually decoded (parts counted separately)
  int64_t capped = 0;           ///< outputs stopped by the length cap (a·|src|+b), not by </s>
  int64_t source_tokens = 0;    ///< source tokens fed to the encoder (specials included)
  int64_t target_tokens = 0;    ///< generated tokens (decoder start excluded, </s> included)
};

/// One sentence's result with its n-best list and diagnostics.
struct TranslationResult {
  /// Hypotheses, best first (GenerationOptions::num_return_sequences of them). For a sentence
  /// split into parts, hypothesis k joins the k-th hypothesis of every part (a part with fewer
  /// hypotheses contributes its last one).
  std::vector<std::string> hypotheses;
  /// scores[k] of hypotheses[k]: search.h's Hypothesis::score (length-normalised log-probability);
  /// for a split sentence, the mean over its parts.
  std::vector<float> scores;
  bool split = false;         ///< the sentence was longer than max_source_tokens and split into parts
  int64_t parts = 1;          ///< model inputs it became
  bool capped = false;        ///< the best hypothesis of some part was stopped by the length limit
  int64_t source_tokens = 0;  ///< source tokens fed to the encoder over its parts (specials included)
  int64_t target_tokens = 0;  ///< tokens of the best hypothesis over its parts (</s> included)
};

/// Sentences cut into model inputs by Translator::prepare, for a caller that runs the search
/// itself (the server's continuous batching) and hands the outputs to Translator::assemble.
struct PreparedSentences {
  /// Model inputs (source token ids, specials included); a sentence longer than
  /// max_source_tokens gives several (its parts, in order).
  std::vector<std::vector<int64_t>> inputs;
  /// Sentence i's parts are inputs[first_part[i] .. first_part[i + 1]) (size sentences + 1).
  std::vector<size_t> first_part;
};

/// Translates sentences with one model and tokenizer. Not thread-safe; libtorch's intra-op
/// threads parallelise each batch (torch::set_num_threads).
class Translator {
 public:
  /// model and tokenizer must outlive the Translator; the tokenizer's language pair must be set.
  Translator(models::EncoderDecoder& model, const text::Seq2SeqTokenizer& tokenizer,
             GenerationOptions generation, TranslatorOptions options);

  /// result[i] translates sentences[i] (the best hypothesis). Empty input gives an empty output
  /// without running the model. Throws loom::Error on invalid UTF-8 (from the tokenizer).
  std::vector<std::string> translate(const std::vector<std::string>& sentences);

  /// The same with n-best lists, scores and per-sentence diagnostics; result[i] is sentences[i]'s.
  std::vector<TranslationResult> translate_full(const std::vector<std::string>& sentences);

  /// translate_full in two halves around the search: prepare() tokenizes and splits the
  /// sentences (counted in stats() as sentences / split_sentences), assemble() joins and
  /// detokenizes outputs[p], the n-best list of prepared.inputs[p], into the sentences' results.
  /// translate_full(s) == assemble(prepare(s), translate_ids(prepare(s).inputs)). Throws
  /// loom::Error on invalid UTF-8 (prepare) or when outputs has the wrong size (assemble).
  PreparedSentences prepare(const std::vector<std::string>& sentences);
  std::vector<TranslationResult> assemble(const PreparedSentences& prepared,
                                          const std::vector<std::vector<Hypothesis>>& outputs) const;

  /// The batches translate_ids runs: indices into sources, grouped by length under the token
  /// budget (max_tokens, max_sentences), shortest first.
  std::vector<std::vector<int64_t>> batches(const std::vector<std::vector<int64_t>>& sources) const;

  /// The same on token ids (specials included): batching, splitting aside. Exposed for tests
  /// (batch == single invariants) and benchmarks. Returns the n-best lists per source.
  std::vector<std::vector<Hypothesis>> translate_ids(const std::vector<std::vector<int64_t>>& sources);

  const TranslatorStats& stats() const { return stats_; }

 private:
  models::EncoderDecoder& model_;
  const text::Seq2SeqTokenizer& tokenizer_;
  GenerationOptions generation_;
  TranslatorOptions options_;
  TranslatorStats stats_;
};

/// Splits a piece sequence into runs of at most max_pieces pieces, cutting before a piece that
/// starts a word ("▁…") when one lies in the last half of the run, else at max_pieces.
/// Returns the runs' piece index ranges [begin, end). max_pieces must be >= 1.
std::vector<std::pair<size_t, size_t>> split_pieces(const std::vector<std::string>& pieces,
                                                    size_t max_pieces);

}  // namespace loom::generate
