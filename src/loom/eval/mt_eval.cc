#include "loom/eval/mt_eval.h"

#include <fstream>
#include <sstream>

#include "loom/core/error.h"
#include "loom/core/utf8.h"

namespace loom::eval {

std::vector<std::string> read_segments(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(Where{path}, "cannot open file");
  std::vector<std::string> out;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    size_t bad = core::utf8_error_offset(line);
    if (bad != std::string::npos)
      fail(Where{path, line_no}, "not valid UTF-8 (bad byte 0x{:02X} at byte offset {} of the line)",
           static_cast<unsigned>(static_cast<unsigned char>(line[bad])), bad);
    out.emplace_back(core::rstrip_unicode_space(line));
  }
  if (in.bad()) fail(Where{path, line_no}, "read error");
  return out;
}

MtEvalResult evaluate_mt(const std::vector<std::string>& hypotheses,
                         const std::vector<std::vector<std::string>>& references, const MtEvalOptions& opts,
                         const std::string& hyp_name, const std::vector<std::string>& ref_names) {
  if (references.empty()) fail("no reference files given");
  auto ref_name = [&](size_t r) {
    return r < ref_names.size() ? ref_names[r] : fmt::format("reference stream {}", r + 1);
  };
  for (size_t r = 0; r < references.size(); ++r)
    if (references[r].size() != hypotheses.size())
      fail(Where{ref_name(r)}, "has {} lines but the hypotheses ({}) have {}: files must be line-aligned",
           references[r].size(), hyp_name, hypotheses.size());
  if (hypotheses.empty()) fail(Where{hyp_name}, "no segments to score (empty file)");

  MtEvalResult res;
  res.segments = static_cast<int64_t>(hypotheses.size());
  res.nrefs = static_cast<int>(references.size());
  BleuStats bleu_sum;
  ChrfStats chrf_sum;
  BleuOptions sent_opts = opts.bleu;
  sent_opts.effective_order = true;
  std::vector<std::string_view> refs(references.size());
  auto score_segment = [&](size_t i, const std::vector<std::string_view>& seg_refs) {
    if (opts.compute_bleu) {
      BleuStats st = bleu_segment_stats(hypotheses[i], seg_refs, opts.bleu);
      if (opts.sentence_level) res.sentence_bleu.push_back(bleu_from_stats(st, sent_opts));
      bleu_sum += st;
    }
    if (opts.compute_chrf) {
      ChrfStats st = chrf_segment_stats(hypotheses[i], seg_refs, opts.chrf);
      if (opts.sentence_level) res.sentence_chrf.push_back(chrf_from_stats(st, opts.chrf));
      chrf_sum += st;
    }
  };
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    for (size_t r = 0; r < references.size(); ++r) refs[r] = references[r][i];
    try {
      score_segment(i, refs);
    } catch (const Error& e) {
      // Only reachable with unchecked input (read_segments validates files line by line).
      fail(Where{hyp_name, static_cast<int64_t>(i + 1)}, "hypothesis or reference: {}", e.message());
    }
  }
  if (opts.compute_bleu) res.bleu = bleu_from_stats(bleu_sum, opts.bleu);
  if (opts.compute_chrf) res.chrf = chrf_from_stats(chrf_sum, opts.chrf);
  return res;
}

std::string format_bleu_line(const BleuScore& s, const std::string& signature, int width) {
  return fmt::format("BLEU|{} = {:.{}f} {}", signature, s.score, width, s.verbose());
}

std::string format_chrf_line(const ChrfScore& s, const std::string& signature, int width) {
  return fmt::format("{}|{} = {:.{}f}", s.name, signature, s.score, width);
}

namespace {

double rounded(double v, int width) { return std::stod(fmt::format("{:.{}f}", v, width)); }

nlohmann::json bleu_json(const BleuScore& s, int width) {
  return {{"name", "BLEU"},
          {"score", rounded(s.score, width)},
          {"score_exact", s.score},
          {"verbose_score", s.verbose()},
          {"counts", s.counts},
          {"totals", s.totals},
          {"precisions", s.precisions},
          {"bp", s.bp},
          {"ratio", s.ratio()},
          {"hyp_len", s.sys_len},
          {"ref_len", s.ref_len}};
}

nlohmann::json chrf_json(const ChrfScore& s, int width) {
  return {{"name", s.name}, {"score", rounded(s.score, width)}, {"score_exact", s.score}};
}

}  // namespace

nlohmann::json mt_eval_json(const MtEvalResult& r, const MtEvalOptions& opts, int width) {
  nlohmann::json j = {{"segments", r.segments}, {"nrefs", r.nrefs}};
  if (opts.compute_bleu) {
    j["bleu"] = bleu_json(r.bleu, width);
    j["bleu"]["signature"] = bleu_signature(opts.bleu, r.nrefs, kSignatureVersion);
    j["bleu"]["tokenize"] = bleu_tokenizer_name(opts.bleu.tokenize);
  }
  if (opts.compute_chrf) {
    j["chrf"] = chrf_json(r.chrf, width);
    j["chrf"]["signature"] = chrf_signature(opts.chrf, r.nrefs, kSignatureVersion);
  }
  if (opts.sentence_level) {
    nlohmann::json rows = nlohmann::json::array();
    for (int64_t i = 0; i < r.segments; ++i) {
      nlohmann::json row = {{"line", i + 1}};
      if (opts.compute_bleu) row["bleu"] = bleu_json(r.sentence_bleu[static_cast<size_t>(i)], width);
      if (opts.compute_chrf) row["chrf"] = chrf_json(r.sentence_chrf[static_cast<size_t>(i)], width);
      rows.push_back(std::move(row));
    }
    j["sentences"] = std::move(rows);
  }
  return j;
}

}  // namespace loom::eval
