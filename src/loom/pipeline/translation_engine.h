// loom::pipeline::TranslationEngine — one place that turns a model directory and decoding
// options into a ready generate::Translator (checkpoint, tokenizer, model, GenerationOptions from
// the model's generation_config.json overridden by the user's options), and adapts it to the
// dataset job's SegmentTranslator. Used by `loom translate` and by the Python module, so both
// translate with the same objects and options.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "loom/generate/translator.h"
#include "loom/pipeline/translate_job.h"

namespace loom::io {
class HfCheckpoint;
}
namespace loom::models {
class EncoderDecoder;
}
namespace loom::text {
class Seq2SeqTokenizer;
}

namespace loom::pipeline {

/// Decoding and batching options a user can set (CLI flags, Python keyword arguments). Unset
/// optionals keep the model's generation_config.json value (transformers' defaults otherwise).
struct EngineOptions {
  std::string src, tgt;            ///< language codes ("" = the tokenizer's default)
  int64_t beam = 0;                ///< beam size; 0 = generation_config's num_beams
  int64_t n_best = 1;              ///< hypotheses returned per sentence (raises beam to n_best if lower)
  int64_t max_new_tokens = 0;      ///< fixed cap on new tokens; 0 = length_cap
  std::string length_cap = "2,10"; ///< "A,B": at most A·|source|+B new tokens per sentence
  std::optional<double> length_penalty;         ///< beam score = log-prob / new_tokens^length_penalty
  std::optional<double> repetition_penalty;     ///< CTRL penalty (> 0; 1 = off)
  std::optional<int64_t> no_repeat_ngram_size;  ///< ban repeated n-grams (0 = off)
  bool sample = false;             ///< sampling instead of search (beam and n_best must be 1)
  double temperature = 1.0, top_p = 1.0;
  int64_t top_k = 0;
  uint64_t seed = 0;
  int64_t max_tokens = 4096;     ///< padded source tokens per batch (--batch-tokens)
  int64_t max_sentences = 64;    ///< sentences per batch (--max-batch-size)
  /// Precision of the model's linear layers: "float32", "int8", "bf16" ("bfloat16") or "auto"
  /// (nn::auto_weight_type: int8 on CPUs with VNNI, else bf16 with AVX512-BF16, else float32).
  /// See models::EncoderDecoder::set_compute_type.
  std::string compute_type = "float32";
};

/// The source language for sentence boundaries: src when given, else the tokenizer's, else
/// model_dir/tokenizer_config.json's "source_lang" (Marian single-pair models); "" when unknown.
/// Throws loom::Error for an unreadable tokenizer_config.json.
std::string resolve_source_lang(const text::Seq2SeqTokenizer& tokenizer, const std::string& model_dir,
                                const std::string& src);

/// The Marian ">>xx<<" target codes a text may start with (SegmentingOptions::language_codes):
/// the tokenizer's languages() for a MarianTokenizer, {} for every other tokenizer.
std::vector<std::string> leading_language_codes(const text::Seq2SeqTokenizer& tokenizer);

/// A loaded model + tokenizer + Translator. Not thread-safe (one translation at a time).
class TranslationEngine : public SegmentTranslator {
 public:
  /// Loads model_dir (an HF or loom model directory, already resolved). Throws loom::Error
  /// naming the file or option at fault (bad checkpoint, unknown language, bad option values).
  TranslationEngine(const std::string& model_dir, const EngineOptions& options);
  ~TranslationEngine() override;

  /// Applies new options to the loaded model (languages, decoding, batching): rebuilds the
  /// generate::Translator only, not the model. Throws loom::Error for bad values.
  void configure(const EngineOptions& options);
  const EngineOptions& options() const { return options_; }

  /// Translates whole texts the way a TXT row of `loom translate` is translated: segmented into
  /// sentences (Markdown structure kept when markdown), segments translated in one call, and
  /// reassembled; hypothesis k joins the k-th hypothesis of every segment (see reassemble_kth).
  /// result[i] has options().n_best hypotheses and scores (score NaN for a text with nothing to
  /// translate).
  std::vector<SegmentResult> translate_texts(const std::vector<std::string>& texts, bool markdown = true);

  std::vector<std::string> translate(const std::vector<std::string>& segments) override;
  std::vector<SegmentResult> translate_detailed(const std::vector<std::string>& segments) override;
  int64_t target_tokens() const override;
  std::string summary() const override;

  generate::Translator& translator() { return *translator_; }
  const text::Seq2SeqTokenizer& tokenizer() const { return *tokenizer_; }
  /// Target language for the job's default suffix: --tgt, the tokenizer's, or
  /// tokenizer_config.json's "target_lang" (Marian single-pair models).
  std::string target_lang() const;
  /// Source language for sentence boundaries: --src, the tokenizer's, or tokenizer_config.json's
  /// "source_lang" (Marian single-pair models); "" when unknown.
  std::string source_lang() const;
  /// Everything that fixes the output besides the input (model path and options), for resume checks.
  std::string engine_id() const { return engine_id_; }

 private:
  std::string model_dir_;
  EngineOptions options_;
  std::unique_ptr<io::HfCheckpoint> checkpoint_;
  std::unique_ptr<text::Seq2SeqTokenizer> tokenizer_;
  std::shared_ptr<models::EncoderDecoder> model_;
  std::unique_ptr<generate::Translator> translator_;
  std::string engine_id_;
};

}  // namespace loom::pipeline
