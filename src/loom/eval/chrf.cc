#include "loom/eval/chrf.h"

#include <unordered_map>

#include "loom/core/error.h"
#include "loom/core/utf8.h"
#include "loom/eval/mt_tokenize.h"

namespace loom::eval {
namespace {

using Counts = std::unordered_map<std::u32string, int64_t>;

// sacreBLEU's string.punctuation set used by chrF++'s word splitting.
bool is_ascii_punct(char32_t c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
         (c >= 0x7B && c <= 0x7E);
}

// Character n-grams of orders 1..max_order; whitespace removed unless keep_space.
std::vector<Counts> char_ngrams(const std::u32string& line, int max_order, bool keep_space) {
  std::u32string s;
  if (keep_space) {
    s = line;
  } else {
    for (char32_t c : line)
      if (!core::is_unicode_space(c)) s.push_back(c);
  }
  std::vector<Counts> out(static_cast<size_t>(max_order));
  for (int n = 1; n <= max_order; ++n)
    for (size_t i = 0; i + static_cast<size_t>(n) <= s.size(); ++i) ++out[static_cast<size_t>(n - 1)][s.substr(i, static_cast<size_t>(n))];
  return out;
}

// chrF++'s words: whitespace-split; a word longer than one character loses one trailing ASCII
// punctuation mark, or else one leading one, as a separate word ("(hi)" -> "(hi", ")").
std::vector<std::u32string> chrf_words(const std::u32string& line) {
  std::vector<std::u32string> out;
  for (auto& w : split_python_whitespace(line)) {
    if (w.size() == 1) {
      out.push_back(w);
    } else if (is_ascii_punct(w.back())) {
      out.push_back(w.substr(0, w.size() - 1));
      out.push_back(w.substr(w.size() - 1));
    } else if (is_ascii_punct(w.front())) {
      out.push_back(w.substr(0, 1));
      out.push_back(w.substr(1));
    } else {
      out.push_back(w);
    }
  }
  return out;
}

// Word n-grams of orders 1..max_order, keys joined by spaces (words contain no whitespace).
void add_word_ngrams(const std::vector<std::u32string>& words, int max_order, std::vector<Counts>& out) {
  for (int n = 1; n <= max_order; ++n) {
    Counts c;
    for (size_t i = 0; i + static_cast<size_t>(n) <= words.size(); ++i) {
      std::u32string key = words[i];
      for (int k = 1; k < n; ++k) {
        key.push_back(U' ');
        key += words[i + static_cast<size_t>(k)];
      }
      ++c[key];
    }
    out.push_back(std::move(c));
  }
}

std::vector<Counts> all_ngrams(std::string_view text, const ChrfOptions& o) {
  std::u32string cps = core::utf8_to_code_points(text);
  auto grams = char_ngrams(cps, o.char_order, o.whitespace);
  if (o.word_order > 0) add_word_ngrams(chrf_words(cps), o.word_order, grams);
  return grams;
}

void check_options(const ChrfOptions& o) {
  if (o.char_order < 0 || o.word_order < 0 || o.char_order + o.word_order == 0)
    fail("chrF needs at least one n-gram order (char_order {}, word_order {})", o.char_order, o.word_order);
}

}  // namespace

ChrfStats& ChrfStats::operator+=(const ChrfStats& other) {
  if (values.empty()) values.assign(other.values.size(), 0);
  if (values.size() != other.values.size()) fail("chrF statistics of different orders cannot be added");
  for (size_t i = 0; i < values.size(); ++i) values[i] += other.values[i];
  return *this;
}

ChrfStats chrf_segment_stats(std::string_view hypothesis, const std::vector<std::string_view>& references,
                             const ChrfOptions& opts) {
  check_options(opts);
  if (references.empty()) fail("chrF needs at least one reference per segment");
  const auto hyp = all_ngrams(hypothesis, opts);
  ChrfStats best;
  double best_f = -1.0;
  for (auto ref_text : references) {
    const auto ref = all_ngrams(ref_text, opts);
    ChrfStats st;
    for (size_t k = 0; k < hyp.size(); ++k) {
      int64_t hyp_count = 0, ref_count = 0, match = 0;
      for (const auto& [g, c] : hyp[k]) {
        hyp_count += c;
        auto it = ref[k].find(g);
        if (it != ref[k].end()) match += std::min(c, it->second);
      }
      for (const auto& [g, c] : ref[k]) ref_count += c;
      st.values.push_back(ref[k].empty() ? 0 : hyp_count);
      st.values.push_back(ref_count);
      st.values.push_back(match);
    }
    double f = chrf_from_stats(st, opts).score;
    if (f > best_f) {
      best_f = f;
      best = std::move(st);
    }
  }
  return best;
}

ChrfScore chrf_from_stats(const ChrfStats& stats, const ChrfOptions& opts) {
  check_options(opts);
  const size_t orders = static_cast<size_t>(opts.char_order + opts.word_order);
  if (stats.values.size() != 3 * orders)
    fail("chrF statistics have {} values, options need {}", stats.values.size(), 3 * orders);
  ChrfScore out;
  out.name = "chrF" + std::to_string(opts.beta) + std::string(static_cast<size_t>(opts.word_order), '+');
  const double eps = 1e-16;
  const double factor = static_cast<double>(opts.beta) * opts.beta;
  double eps_sum = 0, avg_prec = 0, avg_rec = 0;
  int effective = 0;
  for (size_t i = 0; i < orders; ++i) {
    const auto n_hyp = stats.values[3 * i], n_ref = stats.values[3 * i + 1], n_match = stats.values[3 * i + 2];
    const double prec = n_hyp > 0 ? static_cast<double>(n_match) / static_cast<double>(n_hyp) : eps;
    const double rec = n_ref > 0 ? static_cast<double>(n_match) / static_cast<double>(n_ref) : eps;
    const double denom = factor * prec + rec;
    eps_sum += denom > 0 ? (1 + factor) * prec * rec / denom : eps;
    if (n_hyp > 0 && n_ref > 0) {
      avg_prec += prec;
      avg_rec += rec;
      ++effective;
    }
  }
  if (opts.eps_smoothing) {
    out.score = 100 * eps_sum / static_cast<double>(orders);
    return out;
  }
  if (effective == 0) {
    avg_prec = avg_rec = 0;
  } else {
    avg_prec /= effective;
    avg_rec /= effective;
  }
  if (avg_prec + avg_rec != 0) out.score = 100 * (1 + factor) * avg_prec * avg_rec / (factor * avg_prec + avg_rec);
  return out;
}

ChrfScore corpus_chrf(const std::vector<std::string>& hypotheses,
                      const std::vector<std::vector<std::string>>& references, const ChrfOptions& opts) {
  check_options(opts);
  if (references.empty()) fail("chrF needs at least one reference stream");
  for (size_t r = 0; r < references.size(); ++r)
    if (references[r].size() != hypotheses.size())
      fail("reference stream {} has {} segments but there are {} hypotheses", r + 1, references[r].size(),
           hypotheses.size());
  ChrfStats sum;
  sum.values.assign(3 * static_cast<size_t>(opts.char_order + opts.word_order), 0);
  std::vector<std::string_view> refs(references.size());
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    for (size_t r = 0; r < references.size(); ++r) refs[r] = references[r][i];
    try {
      sum += chrf_segment_stats(hypotheses[i], refs, opts);
    } catch (const Error& e) {
      fail(Where{"", static_cast<int64_t>(i + 1)}, "{}", e.message());
    }
  }
  return chrf_from_stats(sum, opts);
}

ChrfScore sentence_chrf(std::string_view hypothesis, const std::vector<std::string_view>& references,
                        const ChrfOptions& opts) {
  return chrf_from_stats(chrf_segment_stats(hypothesis, references, opts), opts);
}

std::string chrf_signature(const ChrfOptions& opts, int nrefs, std::string_view version) {
  return fmt::format("nrefs:{}|case:mixed|eff:{}|nc:{}|nw:{}|space:{}|version:{}", nrefs,
                     opts.eps_smoothing ? "no" : "yes", opts.char_order, opts.word_order,
                     opts.whitespace ? "yes" : "no", version);
}

}  // namespace loom::eval
