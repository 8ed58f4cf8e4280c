// Corpus and sentence BLEU (Papineni et al., 2002) with sacreBLEU 2.x's exact definitions
// (github mjpost/sacrebleu, sacrebleu/metrics/bleu.py): n-grams of orders 1..4 over the
// whitespace-split output of a BLEU tokenizer (mt_tokenize.h), clipped counts against the
// per-n-gram maximum over the references, the closest reference length (ties: the shorter),
// brevity penalty exp(1 - r/c) when c < r, and smoothing (default 'exp', mteval-v13a's).
// Statistics are summed over the corpus before the score is computed ("corpus BLEU").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "loom/eval/mt_tokenize.h"

namespace loom::eval {

/// How zero n-gram matches are smoothed (sacreBLEU's smooth_method; Chen & Cherry, WMT 2014).
enum class BleuSmooth {
  kNone,   ///< "none": a zero precision makes the score 0
  kFloor,  ///< "floor": a zero match count becomes smooth_value (default 0.1)
  kAddK,   ///< "add-k": orders >= 2 add smooth_value (default 1) to matches and totals
  kExp,    ///< "exp": the k-th zero precision becomes 1 / (2^k * total) (NIST/mteval; default)
};

/// Options of a BLEU computation; the defaults are sacreBLEU's corpus BLEU defaults.
struct BleuOptions {
  BleuTokenizer tokenize = BleuTokenizer::k13a;  ///< tokenizer applied to hypotheses and references
  BleuSmooth smooth = BleuSmooth::kExp;          ///< smoothing method
  double smooth_value = -1;   ///< floor / add-k value; negative = sacreBLEU's default (0.1 / 1)
  int max_ngram_order = 4;    ///< highest n-gram order N (>= 1)
  /// Average only over the orders with a non-zero n-gram total (sacreBLEU's effective_order;
  /// off for corpus BLEU, on for sentence BLEU as sacrebleu.sentence_bleu()).
  bool effective_order = false;
};

/// Sufficient statistics of BLEU for one segment or a whole corpus (sums over segments).
struct BleuStats {
  int64_t hyp_len = 0;            ///< hypothesis tokens
  int64_t ref_len = 0;            ///< closest reference lengths, summed
  std::vector<int64_t> correct;   ///< [N] clipped n-gram matches per order 1..N
  std::vector<int64_t> total;     ///< [N] hypothesis n-grams per order 1..N
  /// Adds other's counts (same N) to these.
  BleuStats& operator+=(const BleuStats& other);
};

/// A BLEU score with the numbers sacreBLEU reports next to it.
struct BleuScore {
  double score = 0;                 ///< BLEU in [0, 100]
  std::vector<int64_t> counts;      ///< [N] matched n-grams per order
  std::vector<int64_t> totals;      ///< [N] hypothesis n-grams per order
  std::vector<double> precisions;   ///< [N] (smoothed) precisions in percent
  double bp = 1;                    ///< brevity penalty
  int64_t sys_len = 0;              ///< hypothesis length in tokens
  int64_t ref_len = 0;              ///< effective reference length in tokens
  /// sys_len / ref_len (0 when ref_len is 0).
  double ratio() const { return ref_len ? static_cast<double>(sys_len) / static_cast<double>(ref_len) : 0.0; }
  /// sacreBLEU's verbose part: "85.7/66.7/40.0/25.0 (BP = 1.000 ratio = 1.000 hyp_len = 7
  /// ref_len = 7)".
  std::string verbose() const;
};

/// Statistics of one hypothesis against its references (at least one), both as raw text:
/// each is right-stripped of whitespace and tokenized with opts.tokenize first, exactly as
/// sacreBLEU's BLEU._preprocess_segment. Throws loom::Error on invalid UTF-8 or no references.
BleuStats bleu_segment_stats(std::string_view hypothesis, const std::vector<std::string_view>& references,
                             const BleuOptions& opts = {});

/// The score from (summed) statistics: sacreBLEU's BLEU.compute_bleu. Precisions are
/// 100 * correct / total; with no match of any order the score is 0; a zero precision is
/// smoothed per opts.smooth; score = BP * exp(mean over orders of log precision), where
/// log 0 counts as -9999999999 (sacreBLEU's my_log) and, without effective order, an order
/// with no hypothesis n-grams leaves its precision at 0 (score 0).
BleuScore bleu_from_stats(const BleuStats& stats, const BleuOptions& opts = {});

/// Corpus BLEU of hypotheses [L] against reference streams [R][L] (R >= 1 references per
/// segment, each stream aligned with the hypotheses): segment statistics summed, then
/// bleu_from_stats. Throws loom::Error when a stream's length differs from the hypotheses'.
BleuScore corpus_bleu(const std::vector<std::string>& hypotheses,
                      const std::vector<std::vector<std::string>>& references, const BleuOptions& opts = {});

/// Options for sentence_bleu(): the BleuOptions defaults with effective_order = true.
BleuOptions sentence_bleu_defaults();

/// Sentence BLEU of one hypothesis against its references, as sacrebleu.sentence_bleu():
/// the same as corpus BLEU of one segment, with effective order on by default.
BleuScore sentence_bleu(std::string_view hypothesis, const std::vector<std::string_view>& references,
                        const BleuOptions& opts = sentence_bleu_defaults());

/// sacreBLEU's signature for these options and reference count:
/// "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:<version>" (floor / add-k show their
/// value: "smooth:floor[0.10]").
std::string bleu_signature(const BleuOptions& opts, int nrefs, std::string_view version);

}  // namespace loom::eval
