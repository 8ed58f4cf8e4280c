#include "loom/pipeline/quality_check.h"

#include <chrono>

#include "loom/core/error.h"
#include "loom/eval/bleu.h"

namespace loom::pipeline {
namespace {

std::vector<std::string> best_of(const std::vector<SegmentResult>& results) {
  std::vector<std::string> out;
  out.reserve(results.size());
  for (const auto& r : results) out.push_back(r.hypotheses.empty() ? std::string() : r.hypotheses.front());
  return out;
}

bool chinese(const std::string& lang) {
  for (const char* p : {"zh", "cmn", "zho", ">>zh", ">>cmn", ">>zho"})
    if (lang.rfind(p, 0) == 0) return true;
  return false;
}

}  // namespace

QualityReport check_quality(TranslationEngine& engine, const std::vector<std::string>& texts,
                            const std::vector<nn::WeightType>& types, bool markdown) {
  if (texts.empty()) fail(Where{"", 0, "--check-quality"}, "no input texts to compare");
  EngineOptions opts = engine.options();
  const std::string original = opts.compute_type;
  QualityReport rep;
  eval::BleuOptions bleu;
  bleu.tokenize = chinese(engine.target_lang()) ? eval::BleuTokenizer::kZh : eval::BleuTokenizer::k13a;
  rep.bleu_tokenizer = eval::bleu_tokenizer_name(bleu.tokenize);
  opts.compute_type = "float32";
  engine.configure(opts);
  rep.float32_output = best_of(engine.translate_texts(texts, markdown));
  for (nn::WeightType t : types) {
    opts.compute_type = nn::weight_type_name(t);
    engine.configure(opts);
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::string> out = best_of(engine.translate_texts(texts, markdown));
    QualityRow row;
    row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    row.type = t;
    row.texts = static_cast<int64_t>(texts.size());
    for (size_t i = 0; i < out.size(); ++i) row.identical += out[i] == rep.float32_output[i] ? 1 : 0;
    row.agreement = 100.0 * static_cast<double>(row.identical) / static_cast<double>(row.texts);
    row.bleu_vs_float32 = eval::corpus_bleu(out, {rep.float32_output}, bleu).score;
    rep.rows.push_back(row);
    rep.outputs.push_back(std::move(out));
  }
  opts.compute_type = original;
  engine.configure(opts);
  return rep;
}

}  // namespace loom::pipeline
