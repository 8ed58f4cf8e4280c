// chrF (Popović, 2015) and chrF++ (Popović, 2017) with sacreBLEU 2.x's exact definitions
// (github mjpost/sacrebleu, sacrebleu/metrics/chrf.py): character n-grams of orders 1..6 over
// the text with all whitespace removed, optional word n-grams (chrF++: orders 1..2 over words
// with one leading or trailing ASCII punctuation mark split off), β = 2, statistics summed over
// the corpus, and sacreBLEU's default "effective order" averaging (eps_smoothing off).
// Characters are Unicode code points; no tokenization or lowercasing.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace loom::eval {

/// Options of chrF; the defaults are sacreBLEU's CHRF() (chrF2). word_order = 2 is chrF++.
struct ChrfOptions {
  int char_order = 6;         ///< character n-gram orders 1..char_order
  int word_order = 0;         ///< word n-gram orders 1..word_order (0: chrF, 2: chrF++)
  int beta = 2;               ///< recall weight β of the F-score
  bool whitespace = false;    ///< keep whitespace in character n-grams
  /// chrF++.py / NLTK / Moses epsilon smoothing: the F-score is averaged per order, zero-count
  /// orders contributing ~0 (instead of averaging precision and recall over the orders that
  /// have n-grams on both sides, sacreBLEU's default).
  bool eps_smoothing = false;
};

/// chrF statistics: for each order (character orders first, then word orders) the hypothesis
/// n-gram count, reference n-gram count and clipped matches; summed over a corpus.
struct ChrfStats {
  std::vector<int64_t> values;  ///< [3 * (char_order + word_order)]: hyp, ref, match per order
  /// Adds other's counts (same layout) to these.
  ChrfStats& operator+=(const ChrfStats& other);
};

/// A chrF score and the name sacreBLEU gives it ("chrF2", "chrF2++").
struct ChrfScore {
  double score = 0;  ///< chrF in [0, 100]
  std::string name;  ///< "chrF" + beta + one "+" per word order
};

/// Statistics of one hypothesis against its references (at least one): per reference the
/// n-gram statistics (an order with no reference n-grams counts no hypothesis n-grams either),
/// keeping the reference with the highest F-score (the first on ties). Throws loom::Error on
/// invalid UTF-8 or no references.
ChrfStats chrf_segment_stats(std::string_view hypothesis, const std::vector<std::string_view>& references,
                             const ChrfOptions& opts = {});

/// The score from (summed) statistics (sacreBLEU's CHRF._compute_f_score): precision and
/// recall per order, averaged over the orders where both the hypothesis and reference have
/// n-grams, then 100 * (1 + β²) P R / (β² P + R) (0 when P + R = 0).
ChrfScore chrf_from_stats(const ChrfStats& stats, const ChrfOptions& opts = {});

/// Corpus chrF of hypotheses [L] against reference streams [R][L]; throws loom::Error when a
/// stream's length differs from the hypotheses'.
ChrfScore corpus_chrf(const std::vector<std::string>& hypotheses,
                      const std::vector<std::vector<std::string>>& references, const ChrfOptions& opts = {});

/// chrF of one hypothesis against its references (sacreBLEU's CHRF.sentence_score).
ChrfScore sentence_chrf(std::string_view hypothesis, const std::vector<std::string_view>& references,
                        const ChrfOptions& opts = {});

/// sacreBLEU's chrF signature: "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:<v>".
std::string chrf_signature(const ChrfOptions& opts, int nrefs, std::string_view version);

}  // namespace loom::eval
