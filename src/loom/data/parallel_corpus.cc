#include "loom/data/parallel_corpus.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <unordered_set>

#include <fmt/format.h>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/core/utf8.h"
#include "loom/data/shuffle.h"

namespace loom::data {
namespace {

std::ifstream open_in(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(Where{path, 0, ""}, "cannot open file");
  return in;
}

// Reads one line without its '\n' and optional '\r'; strips a UTF-8 BOM on line 1.
bool next_line(std::istream& in, std::string& line, int64_t line_no) {
  if (!std::getline(in, line)) return false;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line_no == 1 && line.size() >= 3 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) line.erase(0, 3);
  return true;
}

void check_nul(const std::string& line, const std::string& path, int64_t line_no) {
  if (line.find('\0') != std::string::npos) fail(Where{path, line_no, ""}, "line contains a NUL byte");
}

bool is_blank(std::string_view s) {
  return s.find_first_not_of(" \t") == std::string_view::npos;
}

std::string trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(" \t");
  return std::string(s.substr(b, e - b + 1));
}

std::string loc(const SentencePair& p) { return fmt::format("{}:{}", p.file, p.line); }

}  // namespace

std::vector<SentencePair> read_parallel_tsv(const std::string& path) {
  std::ifstream in = open_in(path);
  std::vector<SentencePair> out;
  std::string line;
  for (int64_t n = 1; next_line(in, line, n); ++n) {
    check_nul(line, path, n);
    if (is_blank(line)) continue;
    size_t tab = line.find('\t');
    if (tab == std::string::npos)
      fail(Where{path, n, "tgt"}, "no TAB: expected 'source<TAB>target' (field 'tgt' missing)");
    size_t tab2 = line.find('\t', tab + 1);
    SentencePair p;
    p.src = line.substr(0, tab);
    p.tgt = line.substr(tab + 1, tab2 == std::string::npos ? std::string::npos : tab2 - tab - 1);
    p.file = path;
    p.line = n;
    out.push_back(std::move(p));
  }
  if (in.bad()) fail(Where{path, 0, ""}, "read error");
  return out;
}

std::vector<SentencePair> read_parallel_files(const std::string& src_path,
                                              const std::string& tgt_path) {
  std::ifstream s = open_in(src_path), t = open_in(tgt_path);
  std::vector<SentencePair> out;
  std::string a, b;
  int64_t n = 1;
  for (;; ++n) {
    bool has_a = next_line(s, a, n), has_b = next_line(t, b, n);
    if (!has_a || !has_b) {
      if (has_a || has_b) {
        // Count the rest of the longer file for the message.
        int64_t na = n - 1 + (has_a ? 1 : 0), nb = n - 1 + (has_b ? 1 : 0);
        std::string rest;
        while (has_a && std::getline(s, rest)) ++na;
        while (has_b && std::getline(t, rest)) ++nb;
        fail("line counts differ: {} has {} lines, {} has {} lines", src_path, na, tgt_path, nb);
      }
      break;
    }
    check_nul(a, src_path, n);
    check_nul(b, tgt_path, n);
    if (is_blank(a) && is_blank(b)) continue;
    out.push_back(SentencePair{a, b, src_path, n});
  }
  return out;
}

void write_parallel_tsv(const std::string& path, const std::vector<SentencePair>& pairs) {
  auto clean = [](std::string s) {
    for (char& c : s)
      if (c == '\t' || c == '\n' || c == '\r') c = ' ';
    return s;
  };
  std::string text;
  for (const SentencePair& p : pairs) text += clean(p.src) + '\t' + clean(p.tgt) + '\n';
  core::write_file_atomic(path, text);
}

int64_t count_code_points(std::string_view s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string CleanReport::summary() const {
  std::vector<std::string> parts;
  auto add = [&](int64_t n, const char* what) {
    if (n > 0) parts.push_back(fmt::format("{} {}", n, what));
  };
  add(invalid_utf8, "invalid UTF-8");
  add(empty, "empty side");
  add(too_long, "too long");
  add(bad_ratio, "length ratio");
  add(duplicate, "duplicate");
  std::string s = fmt::format("kept {} of {} pairs", kept, input);
  if (!parts.empty()) s += fmt::format(" (dropped: {})", fmt::join(parts, ", "));
  return s;
}

std::vector<SentencePair> clean_pairs(const std::vector<SentencePair>& pairs,
                                      const CleanOptions& options, CleanReport* report,
                                      const LengthFn& src_len, const LengthFn& tgt_len) {
  CleanReport r;
  r.input = static_cast<int64_t>(pairs.size());
  std::vector<SentencePair> out;
  std::unordered_set<std::string> seen;
  int per_rule[5] = {0, 0, 0, 0, 0};
  auto drop = [&](int rule, int64_t& counter, const SentencePair& p, const std::string& why) {
    ++counter;
    if (per_rule[rule]++ < 5) r.examples.push_back(fmt::format("{}: {}", loc(p), why));
  };
  for (const SentencePair& in : pairs) {
    if (options.drop_invalid_utf8) {
      bool bad_src = !core::is_valid_utf8(in.src);
      if (bad_src || !core::is_valid_utf8(in.tgt)) {
        drop(0, r.invalid_utf8, in, fmt::format("field '{}' is not valid UTF-8", bad_src ? "src" : "tgt"));
        continue;
      }
    }
    SentencePair p{trim(in.src), trim(in.tgt), in.file, in.line};
    if (options.drop_empty && (p.src.empty() || p.tgt.empty())) {
      drop(1, r.empty, p, fmt::format("field '{}' is empty", p.src.empty() ? "src" : "tgt"));
      continue;
    }
    int64_t ls = src_len ? src_len(p.src) : count_code_points(p.src);
    int64_t lt = tgt_len ? tgt_len(p.tgt) : count_code_points(p.tgt);
    if (options.max_len > 0 && (ls > options.max_len || lt > options.max_len)) {
      drop(2, r.too_long, p, fmt::format("length {}/{} > max_len {}", ls, lt, options.max_len));
      continue;
    }
    if (options.max_ratio > 0) {
      double lo = static_cast<double>(std::max<int64_t>(1, std::min(ls, lt)));
      double ratio = static_cast<double>(std::max(ls, lt)) / lo;
      if (ratio > options.max_ratio) {
        drop(3, r.bad_ratio, p, fmt::format("length ratio {:.2f} > {}", ratio, options.max_ratio));
        continue;
      }
    }
    if (options.dedupe && !seen.insert(p.src + '\t' + p.tgt).second) {
      drop(4, r.duplicate, p, "duplicate pair");
      continue;
    }
    out.push_back(std::move(p));
  }
  r.kept = static_cast<int64_t>(out.size());
  if (report) *report = std::move(r);
  return out;
}

void check_no_overlap(const std::vector<SentencePair>& train,
                      const std::vector<SentencePair>& held_out, const std::string& name) {
  std::unordered_set<std::string> sources;
  for (const SentencePair& p : train) sources.insert(p.src);
  for (const SentencePair& p : held_out)
    if (sources.count(p.src))
      fail(Where{p.file, p.line, "src"}, "{} pair's source sentence is also in train", name);
}

Split split_pairs(const std::vector<SentencePair>& pairs, const SplitOptions& options) {
  const int64_t n = static_cast<int64_t>(pairs.size());
  if (options.valid < 0 || options.test < 0) fail("split sizes must be >= 0 (valid {}, test {})", options.valid, options.test);
  if (options.valid + options.test >= n)
    fail("cannot split {} pairs into valid {} + test {} and leave pairs for train", n,
         options.valid, options.test);
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  shuffle_indices(order, options.seed);
  std::vector<int> part(n, 0);  // 0 train, 1 valid, 2 test
  for (int64_t k = 0; k < options.valid; ++k) part[order[k]] = 1;
  for (int64_t k = options.valid; k < options.valid + options.test; ++k) part[order[k]] = 2;
  Split s;
  std::unordered_set<std::string> held_src;
  for (int64_t i = 0; i < n; ++i) {
    if (part[i] == 1) s.valid.push_back(pairs[i]);
    if (part[i] == 2) s.test.push_back(pairs[i]);
    if (part[i] != 0) held_src.insert(pairs[i].src);
  }
  for (int64_t i = 0; i < n; ++i) {
    if (part[i] != 0) continue;
    if (held_src.count(pairs[i].src)) {
      ++s.removed_overlap;
      continue;
    }
    s.train.push_back(pairs[i]);
  }
  if (s.train.empty()) fail("split left no training pairs ({} pairs in)", n);
  check_no_overlap(s.train, s.valid, "valid");
  check_no_overlap(s.train, s.test, "test");
  return s;
}

}  // namespace loom::data
