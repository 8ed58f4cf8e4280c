#include "loom/eval/mt_tokenize.h"

#include <algorithm>
#include <cstdint>
#include <iterator>

#include "loom/core/error.h"
#include "loom/core/utf8.h"

namespace loom::eval {
namespace {

struct CodeRange {
  char32_t lo, hi;
};

#include "loom/eval/unicode_classes.inc"

template <size_t N>
bool in_ranges(const CodeRange (&table)[N], char32_t c) {
  // Ranges are sorted and disjoint: binary search for the last range starting at or before c.
  auto it = std::upper_bound(std::begin(table), std::end(table), c,
                             [](char32_t v, const CodeRange& r) { return v < r.lo; });
  if (it == std::begin(table)) return false;
  --it;
  return c <= it->hi;
}

bool is_number(char32_t c) { return in_ranges(kNumberRanges, c); }
bool is_punctuation(char32_t c) { return in_ranges(kPunctuationRanges, c); }
bool is_symbol(char32_t c) { return in_ranges(kSymbolRanges, c); }

bool is_ascii_digit(char32_t c) { return c >= U'0' && c <= U'9'; }

// The first rule of sacreBLEU's TokenizerRegexp: the character class
// [\{-\~\[-\` -\&\(-\+\:-\@\/], i.e. 0x7B-0x7E, 0x5B-0x60, 0x20-0x26, 0x28-0x2B, 0x3A-0x40, '/'.
bool is_13a_split_char(char32_t c) {
  return (c >= 0x7B && c <= 0x7E) || (c >= 0x5B && c <= 0x60) || (c >= 0x20 && c <= 0x26) ||
         (c >= 0x28 && c <= 0x2B) || (c >= 0x3A && c <= 0x40) || c == U'/';
}

bool is_period_or_comma(char32_t c) { return c == U'.' || c == U','; }

// Python's re.sub for a pattern of exactly two single-character classes (first, second) with a
// replacement built from the two matched characters: scans left to right, replacing each match
// and continuing after it (matches never overlap).
template <typename First, typename Second, typename Emit>
std::u32string sub_pairs(const std::u32string& s, First first, Second second, Emit emit) {
  std::u32string out;
  out.reserve(s.size() + s.size() / 2);
  size_t i = 0;
  while (i < s.size()) {
    if (i + 1 < s.size() && first(s[i]) && second(s[i + 1])) {
      emit(out, s[i], s[i + 1]);
      i += 2;
    } else {
      out.push_back(s[i]);
      ++i;
    }
  }
  return out;
}

std::u32string join_tokens(std::u32string_view s) {
  std::u32string out;
  for (const auto& tok : split_python_whitespace(s)) {
    if (!out.empty()) out.push_back(U' ');
    out += tok;
  }
  return out;
}

// sacreBLEU's TokenizerRegexp (shared by 13a and zh).
std::u32string regexp_tokenize(const std::u32string& line) {
  std::u32string s;
  s.reserve(line.size() * 2);
  for (char32_t c : line) {
    if (is_13a_split_char(c)) {
      s.push_back(U' ');
      s.push_back(c);
      s.push_back(U' ');
    } else {
      s.push_back(c);
    }
  }
  // ([^0-9])([\.,]) -> "\1 \2 "
  s = sub_pairs(
      s, [](char32_t c) { return !is_ascii_digit(c); }, is_period_or_comma,
      [](std::u32string& o, char32_t a, char32_t b) { o += {a, U' ', b, U' '}; });
  // ([\.,])([^0-9]) -> " \1 \2"
  s = sub_pairs(
      s, is_period_or_comma, [](char32_t c) { return !is_ascii_digit(c); },
      [](std::u32string& o, char32_t a, char32_t b) { o += {U' ', a, U' ', b}; });
  // ([0-9])(-) -> "\1 \2 "
  s = sub_pairs(
      s, is_ascii_digit, [](char32_t c) { return c == U'-'; },
      [](std::u32string& o, char32_t a, char32_t b) { o += {a, U' ', b, U' '}; });
  return join_tokens(s);
}

// Python's str.replace(from, to) on code-point strings (all non-overlapping occurrences, left
// to right).
void replace_all(std::u32string& s, std::u32string_view from, std::u32string_view to) {
  if (s.find(from) == std::u32string::npos) return;
  std::u32string out;
  size_t pos = 0;
  while (true) {
    size_t hit = s.find(from, pos);
    if (hit == std::u32string::npos) break;
    out.append(s, pos, hit - pos);
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s, pos, std::u32string::npos);
  s = std::move(out);
}

std::u32string tokenize_13a(std::u32string line) {
  replace_all(line, U"<skipped>", U"");
  replace_all(line, U"-\n", U"");
  replace_all(line, U"\n", U" ");
  if (line.find(U'&') != std::u32string::npos) {
    replace_all(line, U"&quot;", U"\"");
    replace_all(line, U"&amp;", U"&");
    replace_all(line, U"&lt;", U"<");
    replace_all(line, U"&gt;", U">");
  }
  return regexp_tokenize(U" " + line + U" ");
}

std::u32string strip_python(std::u32string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && core::is_unicode_space(s[b])) ++b;
  while (e > b && core::is_unicode_space(s[e - 1])) --e;
  return std::u32string(s.substr(b, e - b));
}

std::u32string tokenize_zh(std::u32string_view line) {
  std::u32string s;
  for (char32_t c : strip_python(line)) {
    if (is_sacrebleu_chinese_char(c)) {
      s += {U' ', c, U' '};
    } else {
      s.push_back(c);
    }
  }
  return regexp_tokenize(s);
}

std::u32string tokenize_intl(const std::u32string& line) {
  // (\P{N})(\p{P}) -> "\1 \2 "
  std::u32string s = sub_pairs(
      line, [](char32_t c) { return !is_number(c); }, is_punctuation,
      [](std::u32string& o, char32_t a, char32_t b) { o += {a, U' ', b, U' '}; });
  // (\p{P})(\P{N}) -> " \1 \2"
  s = sub_pairs(
      s, is_punctuation, [](char32_t c) { return !is_number(c); },
      [](std::u32string& o, char32_t a, char32_t b) { o += {U' ', a, U' ', b}; });
  // (\p{S}) -> " \1 "
  std::u32string out;
  for (char32_t c : s) {
    if (is_symbol(c)) {
      out += {U' ', c, U' '};
    } else {
      out.push_back(c);
    }
  }
  return join_tokens(out);
}

}  // namespace

BleuTokenizer parse_bleu_tokenizer(std::string_view name) {
  if (name == "13a") return BleuTokenizer::k13a;
  if (name == "zh") return BleuTokenizer::kZh;
  if (name == "intl") return BleuTokenizer::kIntl;
  if (name == "none") return BleuTokenizer::kNone;
  fail(Where{"", 0, "tokenize"}, "unknown BLEU tokenizer '{}' (expected 13a, zh, intl or none)", name);
}

const char* bleu_tokenizer_name(BleuTokenizer tok) {
  switch (tok) {
    case BleuTokenizer::k13a: return "13a";
    case BleuTokenizer::kZh: return "zh";
    case BleuTokenizer::kIntl: return "intl";
    case BleuTokenizer::kNone: return "none";
  }
  return "?";
}

std::string bleu_tokenize(std::string_view line, BleuTokenizer tok) {
  if (tok == BleuTokenizer::kNone) {
    core::check_utf8(line);
    return std::string(line);
  }
  std::u32string cps = core::utf8_to_code_points(line);
  switch (tok) {
    case BleuTokenizer::k13a: return core::code_points_to_utf8(tokenize_13a(std::move(cps)));
    case BleuTokenizer::kZh: return core::code_points_to_utf8(tokenize_zh(cps));
    case BleuTokenizer::kIntl: return core::code_points_to_utf8(tokenize_intl(cps));
    case BleuTokenizer::kNone: break;
  }
  return std::string(line);
}

bool is_sacrebleu_chinese_char(char32_t c) {
  static constexpr CodeRange kRanges[] = {
      {0x3400, 0x4DB5}, {0x4E00, 0x9FA5}, {0x9FA6, 0x9FBB}, {0xF900, 0xFA2D}, {0xFA30, 0xFA6A},
      {0xFA70, 0xFAD9},
      // u'\u20000'..u'\u2a6d6' and u'\u2f800'..u'\u2fa1d' as Python compares a one-character
      // string with these two-character strings (see the header).
      {0x2001, 0x2A6D}, {0x2F81, 0x2FA1},
      {0xFF00, 0xFFEF}, {0x2E80, 0x2EFF}, {0x3000, 0x303F}, {0x31C0, 0x31EF}, {0x2F00, 0x2FDF},
      {0x2FF0, 0x2FFF}, {0x3100, 0x312F}, {0x31A0, 0x31BF}, {0xFE10, 0xFE1F}, {0xFE30, 0xFE4F},
      {0x2600, 0x26FF}, {0x2700, 0x27BF}, {0x3200, 0x32FF}, {0x3300, 0x33FF},
  };
  for (const auto& r : kRanges)
    if (c >= r.lo && c <= r.hi) return true;
  return false;
}

std::vector<std::u32string> split_python_whitespace(std::u32string_view s) {
  std::vector<std::u32string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && core::is_unicode_space(s[i])) ++i;
    if (i >= s.size()) break;
    size_t j = i;
    while (j < s.size() && !core::is_unicode_space(s[j])) ++j;
    out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

}  // namespace loom::eval
