#include "loom/eval/bleu.h"

#include <cmath>
#include <unordered_map>

#include "loom/core/error.h"
#include "loom/core/utf8.h"

namespace loom::eval {
namespace {

using NgramCounts = std::vector<std::unordered_map<std::string, int64_t>>;  // [order-1][ngram]

// Tokens of a BLEU-tokenized line: Python's str.split().
std::vector<std::string> split_tokens(const std::string& line) {
  std::vector<std::string> out;
  for (const auto& t : split_python_whitespace(core::utf8_to_code_points(line))) out.push_back(core::code_points_to_utf8(t));
  return out;
}

// All n-grams of orders 1..max_order (keys: tokens joined by one space; tokens never contain
// whitespace, so the keys are unambiguous).
NgramCounts count_ngrams(const std::vector<std::string>& tokens, int max_order) {
  NgramCounts counts(static_cast<size_t>(max_order));
  for (int n = 1; n <= max_order; ++n) {
    for (size_t i = 0; i + static_cast<size_t>(n) <= tokens.size(); ++i) {
      std::string key = tokens[i];
      for (int k = 1; k < n; ++k) {
        key.push_back(' ');
        key += tokens[i + static_cast<size_t>(k)];
      }
      ++counts[static_cast<size_t>(n - 1)][key];
    }
  }
  return counts;
}

std::string preprocess(std::string_view text, BleuTokenizer tok) {
  core::check_utf8(text);
  return bleu_tokenize(core::rstrip_unicode_space(text), tok);
}

double default_smooth_value(BleuSmooth s) {
  switch (s) {
    case BleuSmooth::kFloor: return 0.1;
    case BleuSmooth::kAddK: return 1.0;
    default: return 0.0;
  }
}

double floored_log(double x) { return x == 0.0 ? -9999999999.0 : std::log(x); }

}  // namespace

BleuStats& BleuStats::operator+=(const BleuStats& other) {
  if (correct.empty()) {
    correct.assign(other.correct.size(), 0);
    total.assign(other.total.size(), 0);
  }
  if (other.correct.size() != correct.size()) fail("BLEU statistics of different n-gram orders cannot be added");
  hyp_len += other.hyp_len;
  ref_len += other.ref_len;
  for (size_t i = 0; i < correct.size(); ++i) {
    correct[i] += other.correct[i];
    total[i] += other.total[i];
  }
  return *this;
}

std::string BleuScore::verbose() const {
  std::string prec;
  for (size_t i = 0; i < precisions.size(); ++i) {
    if (i) prec += '/';
    prec += fmt::format("{:.1f}", precisions[i]);
  }
  return fmt::format("{} (BP = {:.3f} ratio = {:.3f} hyp_len = {} ref_len = {})", prec, bp, ratio(), sys_len,
                     ref_len);
}

BleuStats bleu_segment_stats(std::string_view hypothesis, const std::vector<std::string_view>& references,
                             const BleuOptions& opts) {
  if (references.empty()) fail("BLEU needs at least one reference per segment");
  if (opts.max_ngram_order < 1) fail("BLEU max n-gram order must be >= 1, got {}", opts.max_ngram_order);
  const int N = opts.max_ngram_order;
  // Reference n-grams: per n-gram the maximum count over the references.
  NgramCounts ref_max(static_cast<size_t>(N));
  std::vector<int64_t> ref_lens;
  for (auto ref : references) {
    auto tokens = split_tokens(preprocess(ref, opts.tokenize));
    ref_lens.push_back(static_cast<int64_t>(tokens.size()));
    NgramCounts c = count_ngrams(tokens, N);
    for (size_t n = 0; n < c.size(); ++n)
      for (const auto& [ngram, count] : c[n]) {
        int64_t& m = ref_max[n][ngram];
        m = std::max(m, count);
      }
  }
  auto hyp_tokens = split_tokens(preprocess(hypothesis, opts.tokenize));
  BleuStats st;
  st.hyp_len = static_cast<int64_t>(hyp_tokens.size());
  // Closest reference length; on a tie the shorter one.
  int64_t best_diff = -1;
  for (int64_t len : ref_lens) {
    int64_t diff = std::llabs(st.hyp_len - len);
    if (best_diff < 0 || diff < best_diff || (diff == best_diff && len < st.ref_len)) {
      best_diff = diff;
      st.ref_len = len;
    }
  }
  st.correct.assign(static_cast<size_t>(N), 0);
  st.total.assign(static_cast<size_t>(N), 0);
  NgramCounts hyp = count_ngrams(hyp_tokens, N);
  for (size_t n = 0; n < hyp.size(); ++n) {
    for (const auto& [ngram, count] : hyp[n]) {
      st.total[n] += count;
      auto it = ref_max[n].find(ngram);
      if (it != ref_max[n].end()) st.correct[n] += std::min(count, it->second);
    }
  }
  return st;
}

BleuScore bleu_from_stats(const BleuStats& stats, const BleuOptions& opts) {
  const size_t N = static_cast<size_t>(opts.max_ngram_order);
  if (stats.correct.size() != N || stats.total.size() != N)
    fail("BLEU statistics have {} orders, options ask for {}", stats.correct.size(), N);
  BleuScore s;
  s.counts = stats.correct;
  s.totals = stats.total;
  s.sys_len = stats.hyp_len;
  s.ref_len = stats.ref_len;
  s.precisions.assign(N, 0.0);
  if (s.sys_len < s.ref_len)
    s.bp = s.sys_len > 0 ? std::exp(1.0 - static_cast<double>(s.ref_len) / static_cast<double>(s.sys_len)) : 0.0;
  bool any_match = false;
  for (int64_t c : stats.correct) any_match |= c != 0;
  if (!any_match) return s;  // score 0

  const double value = opts.smooth_value < 0 ? default_smooth_value(opts.smooth) : opts.smooth_value;
  double exp_factor = 1.0;
  size_t eff_order = N;
  for (size_t n = 1; n <= N; ++n) {
    double correct = static_cast<double>(stats.correct[n - 1]);
    double total = static_cast<double>(stats.total[n - 1]);
    if (opts.smooth == BleuSmooth::kAddK && n > 1) {
      correct += value;
      total += value;
    }
    if (total == 0) break;
    if (opts.effective_order) eff_order = n;
    if (correct == 0) {
      if (opts.smooth == BleuSmooth::kExp) {
        exp_factor *= 2;
        s.precisions[n - 1] = 100.0 / (exp_factor * total);
      } else if (opts.smooth == BleuSmooth::kFloor) {
        s.precisions[n - 1] = 100.0 * value / total;
      }
    } else {
      s.precisions[n - 1] = 100.0 * correct / total;
    }
  }
  double sum = 0;
  for (size_t n = 0; n < eff_order; ++n) sum += floored_log(s.precisions[n]);
  s.score = s.bp * std::exp(sum / static_cast<double>(eff_order));
  return s;
}

BleuScore corpus_bleu(const std::vector<std::string>& hypotheses,
                      const std::vector<std::vector<std::string>>& references, const BleuOptions& opts) {
  if (references.empty()) fail("BLEU needs at least one reference stream");
  for (size_t r = 0; r < references.size(); ++r)
    if (references[r].size() != hypotheses.size())
      fail("reference stream {} has {} segments but there are {} hypotheses", r + 1, references[r].size(),
           hypotheses.size());
  BleuStats sum;
  sum.correct.assign(static_cast<size_t>(std::max(opts.max_ngram_order, 0)), 0);
  sum.total = sum.correct;
  std::vector<std::string_view> refs(references.size());
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    for (size_t r = 0; r < references.size(); ++r) refs[r] = references[r][i];
    try {
      sum += bleu_segment_stats(hypotheses[i], refs, opts);
    } catch (const Error& e) {
      fail(Where{"", static_cast<int64_t>(i + 1)}, "{}", e.message());
    }
  }
  return bleu_from_stats(sum, opts);
}

BleuOptions sentence_bleu_defaults() {
  BleuOptions o;
  o.effective_order = true;
  return o;
}

BleuScore sentence_bleu(std::string_view hypothesis, const std::vector<std::string_view>& references,
                        const BleuOptions& opts) {
  return bleu_from_stats(bleu_segment_stats(hypothesis, references, opts), opts);
}

std::string bleu_signature(const BleuOptions& opts, int nrefs, std::string_view version) {
  std::string smooth;
  switch (opts.smooth) {
    case BleuSmooth::kNone: smooth = "none"; break;
    case BleuSmooth::kExp: smooth = "exp"; break;
    case BleuSmooth::kFloor:
    case BleuSmooth::kAddK: {
      const double v = opts.smooth_value < 0 ? default_smooth_value(opts.smooth) : opts.smooth_value;
      smooth = fmt::format("{}[{:.2f}]", opts.smooth == BleuSmooth::kFloor ? "floor" : "add-k", v);
      break;
    }
  }
  return fmt::format("nrefs:{}|case:mixed|eff:{}|tok:{}|smooth:{}|version:{}", nrefs,
                     opts.effective_order ? "yes" : "no", bleu_tokenizer_name(opts.tokenize), smooth, version);
}

}  // namespace loom::eval
