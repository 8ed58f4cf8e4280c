#include "loom/pipeline/quality_check.h"

#include <chrono>
#include <iostream>
#include <iterator>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/eval/bleu.h"
#include "loom/pipeline/translate_job.h"

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

std::vector<std::string> sample_input_texts(const std::string& input, const std::string& format,
                                            const std::string& fields_list, int64_t n) {
  std::string data;
  if (input == "-") {
    data.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    data = core::read_file(input);
  }
  const auto fmt = parse_row_format(format);
  const bool jsonl = fmt == RowFormat::kJsonl ||
                     (fmt == RowFormat::kAuto && input.size() > 6 &&
                      input.compare(input.size() - 6, 6, ".jsonl") == 0);
  const auto fields = parse_field_list(fields_list);
  std::vector<std::string> texts;
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < data.size() && static_cast<int64_t>(texts.size()) < n) {
    size_t end = data.find('\n', pos);
    if (end == std::string::npos) end = data.size();
    std::string line = data.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (!jsonl) {
      texts.push_back(line);
      continue;
    }
    nlohmann::json row;
    try {
      row = nlohmann::json::parse(line);
    } catch (const std::exception& e) {
      fail(Where{input, line_no, ""}, "invalid JSON: {}", e.what());
    }
    for (const auto& f : fields) {
      auto it = row.find(f);
      if (it != row.end() && it->is_string() && !it->get<std::string>().empty() &&
          static_cast<int64_t>(texts.size()) < n)
        texts.push_back(it->get<std::string>());
    }
  }
  return texts;
}

int run_quality_check(TranslationEngine& engine, const QualityCheckOptions& o, std::FILE* out) {
  const auto texts = sample_input_texts(o.input, o.format, o.fields, o.texts);
  std::vector<nn::WeightType> types;
  const nn::WeightType chosen = nn::parse_compute_type(o.compute_type, "--compute-type");
  if (chosen == nn::WeightType::kFloat32) types = {nn::WeightType::kInt8, nn::WeightType::kBFloat16};
  else types = {chosen};
  const auto rep = check_quality(engine, texts, types, o.markdown);
  std::fprintf(out, "quality check: %zu texts of %s, greedy/beam as configured, BLEU tokenizer %s, threshold %.1f%%\n",
               texts.size(), o.input.c_str(), rep.bleu_tokenizer.c_str(), o.threshold);
  std::fprintf(out, "%-10s %12s %10s %16s %10s\n", "compute", "identical", "agree %", "BLEU vs float32", "seconds");
  bool ok = true;
  for (const auto& r : rep.rows) {
    std::fprintf(out, "%-10s %5lld/%-6lld %10.1f %16.2f %10.2f\n", nn::weight_type_name(r.type),
                 static_cast<long long>(r.identical), static_cast<long long>(r.texts), r.agreement, r.bleu_vs_float32,
                 r.seconds);
    if (r.agreement < o.threshold) ok = false;
  }
  std::fprintf(out, "%s\n", ok ? "PASS" : "FAIL: agreement below the threshold; translate with --compute-type float32");
  std::fflush(out);
  return ok ? 0 : 1;
}

}  // namespace loom::pipeline
