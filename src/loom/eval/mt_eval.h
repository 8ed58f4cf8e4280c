// `loom eval mt`'s work: reads a hypothesis file and one or more reference files (one segment
// per line, UTF-8), checks that they align, and scores them with corpus BLEU and chrF exactly as
// `sacrebleu REF... -i HYP -m bleu chrf` does (sacreBLEU 2.x). Also the text and JSON reports.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loom/eval/bleu.h"
#include "loom/eval/chrf.h"

namespace loom::eval {

/// The version field loom writes into sacreBLEU-style signatures ("version:loom-<v>"): the
/// scores follow sacreBLEU 2.x's definitions, but were not computed by sacreBLEU.
inline constexpr const char* kSignatureVersion = "loom-0.1.0";

/// Reads a text file as segments, one per line, as sacreBLEU's CLI does: the line break ("\n",
/// "\r\n") and trailing whitespace are removed. A final line without "\n" counts; an empty file
/// has no segments. Throws loom::Error naming the file (and line and byte offset) when it cannot
/// be read or a line is not valid UTF-8.
std::vector<std::string> read_segments(const std::string& path);

/// What to compute.
struct MtEvalOptions {
  BleuOptions bleu;               ///< BLEU options (tokenizer, smoothing)
  ChrfOptions chrf;               ///< chrF options (word_order 2 for chrF++)
  bool compute_bleu = true;       ///< compute BLEU
  bool compute_chrf = true;       ///< compute chrF
  bool sentence_level = false;    ///< also score each segment (BLEU with effective order)
};

/// Scores of one evaluation.
struct MtEvalResult {
  int64_t segments = 0;                 ///< number of segments (lines)
  int nrefs = 0;                        ///< references per segment
  BleuScore bleu;                       ///< corpus BLEU (when computed)
  ChrfScore chrf;                       ///< corpus chrF (when computed)
  std::vector<BleuScore> sentence_bleu; ///< [segments] per-segment BLEU (sentence_level only)
  std::vector<ChrfScore> sentence_chrf; ///< [segments] per-segment chrF (sentence_level only)
};

/// Scores hypotheses [L] against reference streams [R][L]. Throws loom::Error when there are no
/// references, no segments, or a stream's length differs (naming the files given in
/// hyp_name / ref_names and their line counts), or a segment is not valid UTF-8 (hyp_name:line).
MtEvalResult evaluate_mt(const std::vector<std::string>& hypotheses,
                         const std::vector<std::vector<std::string>>& references, const MtEvalOptions& opts,
                         const std::string& hyp_name = "hypotheses",
                         const std::vector<std::string>& ref_names = {});

/// sacreBLEU's text line for a BLEU score: "BLEU|<signature> = 48.89 85.7/66.7/40.0/25.0 (BP =
/// 1.000 ratio = 1.000 hyp_len = 7 ref_len = 7)", the score with `width` decimals.
std::string format_bleu_line(const BleuScore& s, const std::string& signature, int width = 2);

/// sacreBLEU's text line for chrF: "chrF2|<signature> = 67.17".
std::string format_chrf_line(const ChrfScore& s, const std::string& signature, int width = 2);

/// The machine-readable report: {"segments": L, "nrefs": R, "bleu": {"name", "score" (rounded
/// to width), "score_exact", "signature", "verbose_score", "counts", "totals", "precisions",
/// "bp", "ratio", "hyp_len", "ref_len", "tokenize"}, "chrf": {"name", "score", "score_exact",
/// "signature"}, "sentences": [{"line", "bleu", "chrf"}...] (sentence_level only)}.
nlohmann::json mt_eval_json(const MtEvalResult& r, const MtEvalOptions& opts, int width = 2);

}  // namespace loom::eval
