// Reduced-precision quality check (`loom translate --check-quality`, and the int8/bf16 quality
// tests): translate a sample with float32 and with int8 / bf16 linear layers, and report how
// often the outputs are identical and the BLEU of each reduced-precision output against the
// float32 output — the acceptance test of CTranslate2-style quantization (outputs "almost always"
// equal, BLEU within a fraction of a point).
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "loom/nn/packed_linear.h"
#include "loom/pipeline/translation_engine.h"

namespace loom::pipeline {

/// One compute type's agreement with float32 on the sample.
struct QualityRow {
  nn::WeightType type = nn::WeightType::kFloat32;
  int64_t texts = 0;         ///< texts compared
  int64_t identical = 0;     ///< texts whose best translation equals float32's byte for byte
  double agreement = 0;      ///< 100 · identical / texts
  double bleu_vs_float32 = 0;  ///< corpus BLEU of this output with float32's output as reference
  double seconds = 0;        ///< wall time of translating the sample (after loading)
};

/// The check's result: float32's translations, and one row per compute type checked.
struct QualityReport {
  std::vector<std::string> float32_output;  ///< [texts]
  std::vector<std::vector<std::string>> outputs;  ///< [types][texts]
  std::vector<QualityRow> rows;             ///< [types]
  std::string bleu_tokenizer;               ///< sacreBLEU tokenizer name used ("zh" or "13a")
};

/// Translates `texts` (each translated as `loom translate` translates a row: sentences,
/// Markdown kept when `markdown`) with `engine` at float32 and then at each of `types`,
/// switching the engine's compute type (the model is re-packed, not reloaded); the engine's
/// own compute type is restored at the end. BLEU uses sacreBLEU's "zh" tokenizer when the target language is Chinese
/// (zh*, cmn*, zho*), else "13a". Throws loom::Error when `texts` is empty.
QualityReport check_quality(TranslationEngine& engine, const std::vector<std::string>& texts,
                            const std::vector<nn::WeightType>& types, bool markdown = true);

/// The first `n` texts of `input` ("-" = stdin) as `loom translate` would read them: TXT lines
/// (blank ones skipped), or the non-empty string values of the `fields_list` fields
/// ("prompt,text") of each JSONL row (`format` "auto" picks JSONL for a .jsonl name). Throws
/// loom::Error naming the file and line for a row that is not JSON, or when the file cannot be read.
std::vector<std::string> sample_input_texts(const std::string& input, const std::string& format,
                                            const std::string& fields_list, int64_t n);

/// What `loom translate --check-quality` compares.
struct QualityCheckOptions {
  std::string input = "-", format = "auto", fields = "prompt,text";  ///< as loom translate's INPUT, --format, --fields
  int64_t texts = 200;                                       ///< first texts of the input compared
  double threshold = 95.0;                                   ///< minimum identical-output percentage
  std::string compute_type = "float32";  ///< float32: check int8 and bf16; else only that type
  bool markdown = true;
};

/// `loom translate --check-quality`: check_quality on the first o.texts texts of the input, a
/// table (compute type, identical outputs, agreement %, BLEU vs float32, seconds) and PASS/FAIL
/// written to `out`. Returns 0 when every agreement >= o.threshold, else 1. Throws like
/// sample_input_texts and check_quality.
int run_quality_check(TranslationEngine& engine, const QualityCheckOptions& o, std::FILE* out);

}  // namespace loom::pipeline
