#include "loom/text/segment.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "loom/core/error.h"
#include "loom/text/sentence_break.h"
#include "loom/core/utf8.h"

namespace loom::text {
namespace {

// ---------------------------------------------------------------------------------------------
// UTF-8 helpers (never throw; an invalid byte decodes as U+FFFD of length 1)

using Cp = core::CodePoint;

Cp decode_at(std::string_view s, size_t i) { return core::utf8_decode_at(s, i); }

/// Start of the code point that ends right before position e (e > lo).
size_t prev_start(std::string_view s, size_t lo, size_t e) { return core::utf8_start_before(s, lo, e); }

bool is_space_cp(char32_t c) { return core::is_separator_space(c); }

bool is_ascii_space(char c) { return c == ' ' || c == '\t'; }
bool is_ascii_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
bool is_ascii_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

/// Punctuation, symbols, digits and marks of scripts: code points that carry no translatable
/// word (Unicode categories P*, S*, N*, Z*, Cf for the common blocks).
bool is_non_word_cp(char32_t c) {
  if (c < 0x80) return !is_ascii_alpha(static_cast<char>(c));
  if (is_space_cp(c)) return true;
  if (c <= 0xBF) return c != 0xAA && c != 0xB5 && c != 0xBA;  // Latin-1 punctuation, ª µ º letters
  if (c == 0xD7 || c == 0xF7) return true;                      // × ÷
  if (c >= 0x2000 && c <= 0x2BFF) return true;  // general punct., super/subscripts, currency,
                                                // letterlike/number forms, arrows, math, boxes,
                                                // dingbats, misc symbols
  if (c >= 0x2E00 && c <= 0x2E7F) return true;  // supplemental punctuation
  if (c >= 0x3000 && c <= 0x303F) return c != 0x3005 && c != 0x3006;  // CJK punct. (not 々 〆)
  if (c >= 0xFE10 && c <= 0xFE1F) return true;  // vertical forms
  if (c >= 0xFE30 && c <= 0xFE6F) return true;  // CJK compatibility + small forms
  if (c >= 0xFE00 && c <= 0xFE0F) return true;  // variation selectors
  if (c >= 0xFF00 && c <= 0xFF20) return true;  // full-width punct. and digits
  if (c >= 0xFF3B && c <= 0xFF40) return true;
  if (c >= 0xFF5B && c <= 0xFF65) return true;
  if (c >= 0xFFE0 && c <= 0xFFEE) return true;  // full-width signs
  if (c == 0xFFFD) return true;
  if (c >= 0x1F000 && c <= 0x1FAFF) return true;  // mahjong .. emoji
  if (c >= 0xE0000 && c <= 0xE007F) return true;  // tags (emoji flags)
  if (c >= 0x0300 && c <= 0x036F) return true;    // combining diacritics (alone: nothing to say)
  if (c == 0x200C || c == 0x200D) return true;    // ZWNJ / ZWJ
  return false;
}

// ---------------------------------------------------------------------------------------------

/// Emits segments left to right. Each call covers the bytes from the cursor up to a position,
/// so the concatenation of all segments is the input by construction.
class Builder {
 public:
  /// entities: HTML entities (&nbsp; &amp; &#169;) count as symbols (Markdown mode).
  Builder(std::string_view s, bool entities, SentenceSplitter& splitter)
      : s_(s), entities_(entities), splitter_(splitter) {}

  SentenceSplitter& splitter() { return splitter_; }

  /// Copies [cursor, pos).
  void copy_to(size_t pos) { push(pos, false); }

  /// Emits [cursor, b) as copy, then [b, e) as a sentence: surrounding whitespace copied, the
  /// rest translated unless it has nothing worth translating.
  void text(size_t b, size_t e) {
    copy_to(b);
    b = std::max(b, cur_);
    if (e <= b) return;
    // Leading whitespace and punctuation that cannot start a sentence (", and then" after a
    // URL, ") which" after a link), trailing whitespace and opening brackets ("see (" before a
    // link) are copied.
    size_t tb = b;
    while (tb < e) {
      Cp c = decode_at(s_, tb);
      if (tb + c.len > e) break;
      if (!is_space_cp(c.cp) && !(c.cp < 0x80 && std::strchr(",;:)]}", static_cast<char>(c.cp)) != nullptr))
        break;
      tb += c.len;
    }
    size_t te = e;
    while (te > tb) {
      size_t p = prev_start(s_, tb, te);
      char32_t c = decode_at(s_, p).cp;
      if (!is_space_cp(c) && c != '(' && c != '[' && c != '{') break;
      te = p;
    }
    copy_to(tb);
    if (te > tb) push(te, !nothing_to_translate(tb, te));
    copy_to(e);
  }

  std::vector<Segment> finish() {
    copy_to(s_.size());
    return std::move(out_);
  }

 private:
  void push(size_t pos, bool translate) {
    if (pos <= cur_) return;
    std::string_view piece = s_.substr(cur_, pos - cur_);
    cur_ = pos;
    if (!translate && !out_.empty() && !out_.back().translate) {
      out_.back().text.append(piece);
    } else {
      out_.push_back(Segment{std::string(piece), translate});
    }
  }

  /// is_copy_through, with HTML entities counted as symbols when entities_ is set.
  bool nothing_to_translate(size_t b, size_t e) const {
    if (!entities_) return is_copy_through(s_.substr(b, e - b));
    for (size_t i = b; i < e;) {
      if (s_[i] == '&') {
        size_t j = i + 1;
        if (j < e && s_[j] == '#') {
          ++j;
          bool hex = j < e && (s_[j] == 'x' || s_[j] == 'X');
          if (hex) ++j;
          size_t d = j;
          while (j < e && j - d < 7 && (is_digit(s_[j]) || (hex && std::isxdigit(static_cast<unsigned char>(s_[j]))))) ++j;
          if (j > d && j < e && s_[j] == ';') {
            i = j + 1;
            continue;
          }
        } else {
          // The symbol entities of HTML that are common in text (a made-up "&Foo;" is text).
          static const std::unordered_set<std::string_view> kSymbols = {
              "nbsp", "amp", "lt", "gt", "quot", "apos", "copy", "reg", "trade", "hellip", "mdash",
              "ndash", "laquo", "raquo", "lsquo", "rsquo", "ldquo", "rdquo", "sbquo", "bdquo",
              "middot", "bull", "deg", "times", "divide", "euro", "pound", "yen", "cent", "sect",
              "para", "plusmn", "frac12", "frac14", "frac34", "shy", "ensp", "emsp", "thinsp",
              "zwj", "zwnj", "iexcl", "iquest", "larr", "rarr", "uarr", "darr", "harr", "minus",
              "le", "ge", "ne", "infin", "prime", "Prime", "dagger", "Dagger", "permil"};
          size_t d = j;
          while (j < e && j - d < 8 && is_ascii_alnum(s_[j])) ++j;
          if (j < e && s_[j] == ';' && kSymbols.count(s_.substr(d, j - d)) > 0) {
            i = j + 1;
            continue;
          }
        }
      }
      Cp c = decode_at(s_, i);
      if (!is_non_word_cp(c.cp)) return false;
      i += c.len;
    }
    return true;
  }

  std::string_view s_;
  bool entities_;
  SentenceSplitter& splitter_;
  size_t cur_ = 0;
  std::vector<Segment> out_;
};

/// Splits [b, e) (no line breaks inside) into sentences (text/sentence_break.h) and emits them.
void emit_sentences(std::string_view s, size_t b, size_t e, Builder& out) {
  if (e <= b) return;
  size_t start = b;
  for (size_t p : out.splitter().boundaries(s.substr(b, e - b))) {
    out.text(start, b + p);
    start = b + p;
  }
  out.text(start, e);
}

// ---------------------------------------------------------------------------------------------
// Markdown

/// next[c][i - b] = smallest position >= i in [b, e) holding byte c, or e.
class NextOf {
 public:
  NextOf(std::string_view s, size_t b, size_t e, const char* chars) : b_(b), e_(e) {
    for (const char* p = chars; *p; ++p) {
      auto& v = table_[static_cast<unsigned char>(*p)];
      v.assign(e - b + 1, static_cast<uint32_t>(e - b));
      for (size_t i = e; i-- > b;) v[i - b] = s[i] == *p ? static_cast<uint32_t>(i - b) : v[i + 1 - b];
    }
  }
  /// Smallest position >= i holding c, or e (c must be one of the constructor's chars).
  size_t find(char c, size_t i) const {
    if (i >= e_) return e_;
    return b_ + table_.at(static_cast<unsigned char>(c))[i - b_];
  }

 private:
  size_t b_, e_;
  std::unordered_map<unsigned char, std::vector<uint32_t>> table_;
};

bool starts_with_ci(std::string_view s, size_t i, size_t e, const char* p) {
  size_t n = std::strlen(p);
  if (i + n > e) return false;
  for (size_t k = 0; k < n; ++k) {
    char a = s[i + k];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
    if (a != p[k]) return false;
  }
  return true;
}

class Markdown {
 public:
  Markdown(std::string_view s, Builder& out) : s_(s), out_(out) {}

  /// Segments the inline content [b, e) of one line (or one table cell).
  void inline_content(size_t b, size_t e) {
    InlineCtx ctx{b, e, {}, {}, nullptr, std::string::npos};
    build_backticks(ctx);
    inline_range(ctx, b, e);
  }

 private:
  struct InlineCtx {
    size_t b, e;
    std::vector<std::pair<size_t, size_t>> runs;  // backtick runs (pos, len)
    std::vector<size_t> closer;                   // index of the matching run, or npos
    std::unique_ptr<NextOf> next;                 // built lazily
    size_t no_comment_close_from = std::string::npos;  // no "-->" after this position
  };

  void build_backticks(InlineCtx& ctx) {
    for (size_t i = ctx.b; i < ctx.e;) {
      if (s_[i] == '\\') {  // same escape rule as inline_range: "\`" is a literal backtick
        i += (i + 1 < ctx.e && static_cast<unsigned char>(s_[i + 1]) < 0x80) ? 2 : 1;
      } else if (s_[i] == '`') {
        size_t j = i;
        while (j < ctx.e && s_[j] == '`') ++j;
        ctx.runs.emplace_back(i, j - i);
        i = j;
      } else {
        ++i;
      }
    }
    ctx.closer.assign(ctx.runs.size(), std::string::npos);
    std::unordered_map<size_t, size_t> last;  // run length -> index of the next run seen
    for (size_t k = ctx.runs.size(); k-- > 0;) {
      auto it = last.find(ctx.runs[k].second);
      if (it != last.end()) ctx.closer[k] = it->second;
      last[ctx.runs[k].second] = k;
    }
  }

  const NextOf& next(InlineCtx& ctx) {
    if (!ctx.next) ctx.next = std::make_unique<NextOf>(s_, ctx.b, ctx.e, "[]()>$ ");
    return *ctx.next;
  }

  /// Index of the backtick run starting at i, or npos.
  size_t run_at(const InlineCtx& ctx, size_t i) const {
    auto it = std::lower_bound(ctx.runs.begin(), ctx.runs.end(), std::make_pair(i, size_t{0}));
    if (it != ctx.runs.end() && it->first == i) return static_cast<size_t>(it - ctx.runs.begin());
    return std::string::npos;
  }

  /// End of a link/image destination "(...)" that starts at p (s[p] == '('), or npos.
  size_t paren_end(InlineCtx& ctx, size_t p, size_t e) {
    const NextOf& n = next(ctx);
    size_t rp = n.find(')', p + 1);
    if (rp >= e) return std::string::npos;
    size_t lp = n.find('(', p + 1);
    if (lp < rp) {  // one level of nesting: https://en.wikipedia.org/wiki/Foo_(bar)
      size_t rp2 = n.find(')', rp + 1);
      if (rp2 < e) rp = rp2;
    }
    return rp + 1;
  }

  /// At s[i] == '[': the innermost "[...]" → position of its ']', or npos.
  size_t bracket_end(InlineCtx& ctx, size_t i, size_t e) {
    const NextOf& n = next(ctx);
    size_t rb = n.find(']', i + 1);
    if (rb >= e) return std::string::npos;
    if (n.find('[', i + 1) < rb) return std::string::npos;
    return rb;
  }

  /// Link target after the ']' at rb: "(url)" or "[ref]"; returns its end, or npos.
  size_t link_target_end(InlineCtx& ctx, size_t rb, size_t e) {
    if (rb + 1 >= e) return std::string::npos;
    if (s_[rb + 1] == '(') {
      // A destination has no spaces, except before a title: (url "title").
      size_t end = paren_end(ctx, rb + 1, e);
      if (end == std::string::npos) return end;
      size_t sp = next(ctx).find(' ', rb + 2);
      if (sp < end && !(sp > rb + 2 && sp + 1 < end && std::strchr("\"'(", s_[sp + 1]) != nullptr))
        return std::string::npos;
      return end;
    }
    if (s_[rb + 1] == '[') {
      size_t rb2 = bracket_end(ctx, rb + 1, e);
      if (rb2 != std::string::npos) return rb2 + 1;
    }
    return std::string::npos;
  }

  size_t url_end(size_t i, size_t e) const {
    size_t j = i;
    while (j < e) {
      char c = s_[j];
      if (c == ' ' || c == '\t' || c == '<' || c == '>' || c == '"' || c == '`') break;
      if (static_cast<unsigned char>(c) >= 0x80) {
        Cp d = decode_at(s_, j);
        if (is_space_cp(d.cp) || (d.cp >= 0x3000 && d.cp <= 0x303F) ||
            (d.cp >= 0xFF00 && d.cp <= 0xFF65) || (d.cp >= 0x2018 && d.cp <= 0x201F))
          break;
        j += d.len;
        continue;
      }
      ++j;
    }
    // Trailing punctuation belongs to the sentence; a ')' only if the URL has no '('.
    bool has_open = std::find(s_.begin() + i, s_.begin() + j, '(') != s_.begin() + j;
    while (j > i) {
      char c = s_[j - 1];
      if (std::strchr(".,:;!?'*_~", c) != nullptr || (c == ')' && !has_open) || c == ']') --j;
      else break;
    }
    return j;
  }

  /// End of an e-mail address whose '@' is at i and whose local part starts at ls, or npos.
  size_t email_end(size_t i, size_t e) const {
    size_t j = i + 1;
    while (j < e && (is_ascii_alnum(s_[j]) || s_[j] == '.' || s_[j] == '-')) ++j;
    while (j > i + 1 && (s_[j - 1] == '.' || s_[j - 1] == '-')) --j;
    std::string_view dom = s_.substr(i + 1, j - i - 1);
    size_t dot = dom.rfind('.');
    if (dot == std::string_view::npos || dot == 0 || dom.size() - dot - 1 < 2) return std::string::npos;
    return j;
  }

  static bool local_char(char c) { return is_ascii_alnum(c) || (c != 0 && std::strchr("._%+-", c) != nullptr); }

  void inline_range(InlineCtx& ctx, size_t b, size_t e) {
    size_t run = b;  // start of the pending sentence text
    auto opaque = [&](size_t from, size_t to) {
      emit_sentences(s_, run, from, out_);
      out_.copy_to(to);
      run = to;
    };
    size_t i = b;
    while (i < e) {
      char c = s_[i];
      if (c == '\\') {
        i += (i + 1 < e && static_cast<unsigned char>(s_[i + 1]) < 0x80) ? 2 : 1;
        continue;
      }
      if (c == '`') {
        size_t k = run_at(ctx, i);
        if (k == std::string::npos) {
          ++i;
          continue;
        }
        size_t len = ctx.runs[k].second;
        size_t m = ctx.closer[k];
        if (m != std::string::npos && ctx.runs[m].first + len <= e) {
          opaque(i, ctx.runs[m].first + len);
          i = run;
        } else {
          i += len;
        }
        continue;
      }
      if (c == '$') {
        // TeX math: $$...$$, or $...$ with pandoc's rule (no space inside the dollars, no digit
        // right after the closing one), so "$5 and $10" stays text.
        const NextOf& n = next(ctx);
        if (i + 1 < e && s_[i + 1] == '$') {
          size_t close = n.find('$', i + 2);
          while (close + 1 < e && s_[close + 1] != '$') close = n.find('$', close + 1);
          if (close + 1 < e && close > i + 2) {
            opaque(i, close + 2);
            i = run;
            continue;
          }
          i += 2;
          continue;
        }
        size_t close = n.find('$', i + 1);
        if (i + 1 < e && !is_space_cp(decode_at(s_, i + 1).cp) && close < e && close > i + 1 &&
            !is_ascii_space(s_[close - 1]) && !(close + 1 < e && is_digit(s_[close + 1]))) {
          opaque(i, close + 1);
          i = run;
          continue;
        }
        ++i;
        continue;
      }
      if (c == '!' && i + 1 < e && s_[i + 1] == '[') {
        size_t rb = bracket_end(ctx, i + 1, e);
        if (rb != std::string::npos) {
          size_t end = link_target_end(ctx, rb, e);
          if (end != std::string::npos) {
            opaque(i, end);
            i = run;
            continue;
          }
        }
        ++i;
        continue;
      }
      if (c == '[') {
        // Badge: [![alt](img)](url) → copied whole.
        if (i + 2 < e && s_[i + 1] == '!' && s_[i + 2] == '[') {
          size_t rb = bracket_end(ctx, i + 2, e);
          size_t img = rb == std::string::npos ? rb : link_target_end(ctx, rb, e);
          if (img != std::string::npos && img + 1 < e && s_[img] == ']') {
            size_t end = link_target_end(ctx, img, e);
            if (end != std::string::npos) {
              opaque(i, end);
              i = run;
              continue;
            }
          }
        }
        size_t rb = bracket_end(ctx, i, e);
        if (rb != std::string::npos) {
          size_t end = link_target_end(ctx, rb, e);
          if (end != std::string::npos) {
            opaque(i, i + 1);                 // "["
            inline_range(ctx, i + 1, rb);     // link text
            out_.copy_to(end);                // "](url)" / "][ref]"
            run = i = end;
            continue;
          }
        }
        ++i;
        continue;
      }
      if (c == '<' && starts_with_ci(s_, i, e, "<!--")) {
        // Comment: up to "-->" on this line. A failed search is remembered so that many
        // unclosed "<!--" stay linear.
        size_t close = std::string::npos;
        if (i >= ctx.no_comment_close_from) {
          close = std::string::npos;
        } else {
          close = s_.substr(0, e).find("-->", i + 4);
          if (close == std::string::npos) ctx.no_comment_close_from = i;
        }
        if (close != std::string::npos) {
          opaque(i, close + 3);
          i = run;
          continue;
        }
      }
      if (c == '<' && i + 1 < e &&
          (is_ascii_alpha(s_[i + 1]) || s_[i + 1] == '!' ||
           (s_[i + 1] == '/' && i + 2 < e && is_ascii_alpha(s_[i + 2])))) {
        size_t gt = next(ctx).find('>', i + 1);
        if (gt < e) {
          opaque(i, gt + 1);
          i = run;
          continue;
        }
        ++i;
        continue;
      }
      if ((c == 'h' || c == 'H' || c == 'f' || c == 'F' || c == 'w' || c == 'W') &&
          (i == b || !(is_ascii_alnum(s_[i - 1]) || s_[i - 1] == '.' || s_[i - 1] == '/' ||
                       s_[i - 1] == '@' || s_[i - 1] == '-'))) {
        size_t prefix = starts_with_ci(s_, i, e, "https://") ? 8
                        : starts_with_ci(s_, i, e, "http://") ? 7
                        : starts_with_ci(s_, i, e, "ftp://")  ? 6
                        : starts_with_ci(s_, i, e, "www.")    ? 4
                                                              : 0;
        if (prefix > 0) {
          size_t end = url_end(i, e);
          if (end > i + prefix) {
            opaque(i, end);
            i = run;
            continue;
          }
        }
        ++i;
        continue;
      }
      if (c == '@' && i > run && local_char(s_[i - 1])) {
        size_t ls = i;
        while (ls > run && local_char(s_[ls - 1])) --ls;
        size_t end = email_end(i, e);
        if (end != std::string::npos) {
          opaque(ls, end);
          i = run;
          continue;
        }
        ++i;
        continue;
      }
      ++i;
    }
    emit_sentences(s_, run, e, out_);
  }

  std::string_view s_;
  Builder& out_;
};

// ---------------------------------------------------------------------------------------------
// Block structure (line by line)

struct Line {
  size_t b, e;    // content [b, e), without the line break
  size_t next;    // start of the next line (after \n, \r\n or \r)
};

Line line_at(std::string_view s, size_t b) {
  size_t e = b;
  while (e < s.size() && s[e] != '\n' && s[e] != '\r') ++e;
  size_t next = e;
  if (next < s.size()) {
    if (s[next] == '\r' && next + 1 < s.size() && s[next + 1] == '\n') next += 2;
    else next += 1;
  }
  return {b, e, next};
}

bool is_blank(std::string_view s, size_t b, size_t e) {
  for (size_t i = b; i < e; ++i)
    if (!is_ascii_space(s[i]) && s[i] != '\f' && s[i] != '\v') return false;
  return true;
}

/// Indentation of the line [b, e) in columns (a tab advances to the next multiple of 4).
size_t indent_of(std::string_view s, size_t b, size_t e) {
  size_t col = 0;
  for (size_t i = b; i < e && is_ascii_space(s[i]); ++i) col = s[i] == '\t' ? (col / 4 + 1) * 4 : col + 1;
  return col;
}

/// A line whose content from position p is a thematic break (--- *** ___, spaces allowed).
/// Precomputes the suffix of the line made of one marker char and spaces so each query is O(1).
class ThematicBreak {
 public:
  ThematicBreak(std::string_view s, size_t b, size_t e) {
    size_t i = e;
    char marker = 0;
    while (i > b) {
      char c = s[i - 1];
      if (is_ascii_space(c)) { --i; continue; }
      if ((c == '-' || c == '*' || c == '_') && (marker == 0 || c == marker)) {
        marker = c;
        if (count_ < 3 && ++count_ == 3) third_ = i - 1;
        --i;
        continue;
      }
      break;
    }
    suffix_ = i;
    marker_ = marker;
  }
  bool at(std::string_view s, size_t p) const {
    return marker_ != 0 && count_ >= 3 && p >= suffix_ && p <= third_ && s[p] == marker_;
  }

 private:
  size_t suffix_ = 0, third_ = 0, count_ = 0;
  char marker_ = 0;
};

/// Length of a fence opening ``` / ~~~ (>= 3) at p, or 0. A backtick fence's info string may not
/// contain a backtick.
size_t fence_at(std::string_view s, size_t p, size_t e, char* fence_char) {
  if (p >= e || (s[p] != '`' && s[p] != '~')) return 0;
  char c = s[p];
  size_t j = p;
  while (j < e && s[j] == c) ++j;
  if (j - p < 3) return 0;
  if (c == '`' && std::find(s.begin() + j, s.begin() + e, '`') != s.begin() + e) return 0;
  *fence_char = c;
  return j - p;
}

/// A delimiter row: | --- | :-: | with at least one '-' and one '|' (or "---|---").
bool is_delimiter_row(std::string_view s, size_t b, size_t e) {
  bool dash = false, pipe = false;
  for (size_t i = b; i < e; ++i) {
    char c = s[i];
    if (c == '-') dash = true;
    else if (c == '|') pipe = true;
    else if (c != ':' && !is_ascii_space(c) && c != '>') return false;
  }
  return dash && pipe;
}

bool has_unescaped_pipe(std::string_view s, size_t b, size_t e) {
  for (size_t i = b; i < e; ++i) {
    if (s[i] == '\\') ++i;
    else if (s[i] == '|') return true;
  }
  return false;
}

/// After "[id]:": a destination (one token that looks like a URL or path) and optionally a title.
bool is_link_destination(std::string_view s, size_t b, size_t e) {
  while (b < e && is_ascii_space(s[b])) ++b;
  size_t t = b;
  bool urlish = false;
  while (t < e && !is_ascii_space(s[t])) {
    if (std::strchr("/.:#<", s[t]) != nullptr) urlish = true;
    ++t;
  }
  if (t == b || !urlish) return false;
  while (t < e && is_ascii_space(s[t])) ++t;
  return t == e || s[t] == '"' || s[t] == '\'' || s[t] == '(';
}

/// True if [b, e) contains marker (ASCII, case-insensitive).
bool contains_ci(std::string_view s, size_t b, size_t e, const char* marker) {
  size_t n = std::strlen(marker);
  for (size_t i = b; i + n <= e; ++i)
    if (starts_with_ci(s, i, e, marker)) return true;
  return false;
}

/// End of a paragraph line's text without a trailing hard-break backslash ("text\").
size_t hard_break_end(std::string_view s, size_t b, size_t e) {
  size_t n = 0;
  while (e - n > b && s[e - n - 1] == '\\') ++n;
  return n % 2 == 1 ? e - 1 : e;
}

/// Length of a YAML front-matter block at the very start ("---" line, "key: value" lines, a
/// closing "---" or "..." line), or 0. Every inner line must look like YAML (a key, a list
/// item, indented, a comment or blank), so a document that merely starts with a thematic break
/// is not swallowed.
size_t front_matter_end(std::string_view s) {
  auto is_marker = [&](const Line& ln, const char* m) {
    size_t e = ln.e;
    while (e > ln.b && is_ascii_space(s[e - 1])) --e;
    return std::string_view(s.data() + ln.b, e - ln.b) == m;
  };
  Line first = line_at(s, 0);
  if (first.next == first.e || !is_marker(first, "---")) return 0;
  for (size_t pos = first.next; pos < s.size();) {
    Line ln = line_at(s, pos);
    if (is_marker(ln, "---") || is_marker(ln, "...")) return ln.next;
    bool yaml = is_blank(s, ln.b, ln.e) || is_ascii_space(s[ln.b]) || s[ln.b] == '#' ||
                (s[ln.b] == '-' && ln.b + 1 < ln.e && s[ln.b + 1] == ' ');
    if (!yaml) {
      size_t k = ln.b;
      while (k < ln.e && (is_ascii_alnum(s[k]) || s[k] == '_' || s[k] == '-' || s[k] == '"')) ++k;
      yaml = k > ln.b && k < ln.e && s[k] == ':' && (k + 1 == ln.e || is_ascii_space(s[k + 1]));
    }
    if (!yaml) return 0;
    pos = ln.next;
  }
  return 0;  // never closed: not front matter
}

/// For each line (from a start position): is there a closing-fence candidate (``` / ~~~ of a
/// given length, only whitespace after; blockquote markers and indentation ignored) or a "$$"
/// line after it? Suffix maxima make every query O(1).
class FenceCloserIndex {
 public:
  FenceCloserIndex(std::string_view s, size_t pos) {
    std::vector<uint32_t> bt, tl;
    std::vector<uint8_t> dd;
    while (pos < s.size()) {
      Line ln = line_at(s, pos);
      pos = ln.next;
      size_t p = ln.b;
      while (p < ln.e && (is_ascii_space(s[p]) || s[p] == '>')) ++p;
      size_t j = p;
      if (p < ln.e && (s[p] == '`' || s[p] == '~'))
        while (j < ln.e && s[j] == s[p]) ++j;
      bool closer = j - p >= 3 && is_blank(s, j, ln.e);
      bt.push_back(closer && s[p] == '`' ? static_cast<uint32_t>(j - p) : 0);
      tl.push_back(closer && s[p] == '~' ? static_cast<uint32_t>(j - p) : 0);
      dd.push_back(std::string_view(s.data() + ln.b, ln.e - ln.b).find("$$") != std::string_view::npos);
    }
    bt_.assign(bt.size() + 1, 0);
    tl_.assign(bt.size() + 1, 0);
    dd_.assign(bt.size() + 1, 0);
    for (size_t i = bt.size(); i-- > 0;) {
      bt_[i] = std::max(bt[i], bt_[i + 1]);
      tl_[i] = std::max(tl[i], tl_[i + 1]);
      dd_[i] = dd[i] || dd_[i + 1];
    }
  }
  /// A closing fence of fence_char, at least len long, on a line with index >= line (0-based).
  bool fence_after(size_t line, char fence_char, size_t len) const {
    const auto& v = fence_char == '`' ? bt_ : tl_;
    return line < v.size() && v[line] >= len;
  }
  /// A line holding "$$" with index >= line.
  bool dollars_after(size_t line) const { return line < dd_.size() && dd_[line] != 0; }

 private:
  std::vector<uint32_t> bt_, tl_;
  std::vector<uint8_t> dd_;
};

void segment_markdown(std::string_view s, Builder& out) {
  Markdown md(s, out);
  bool prev_para = false;    // the previous line was paragraph text (indented code cannot interrupt it)
  bool after_blank = false;  // the previous line was blank
  std::vector<size_t> list_cols;  // content columns of the open list items, outermost first
  bool indented_code = false;
  size_t code_col = 0;  // indented code: continuation lines need this many columns
  bool table = false;
  char fence_char = 0;
  size_t fence_len = 0;  // > 0: inside a fenced code block
  bool math = false;     // inside a $$ block
  bool fence_in_quote = false;  // the open fence / $$ block is inside a blockquote
  size_t fence_list_col = 0;    // ... inside a list item with this content column (0: none)
  const char* raw_end = nullptr;  // inside a raw HTML block (<pre>, <script>, <!--): its end marker
  bool raw_to_blank = false;       // ... which is never closed: it ends at a blank line
  bool math_to_blank = false;      // the $$ block is never closed: it ends at a blank line
  std::unordered_map<const char*, size_t> last_marker;  // end marker -> its last position, or npos
  size_t pos = front_matter_end(s);
  out.copy_to(pos);
  const FenceCloserIndex closers(s, pos);
  size_t line_no = 0;  // index of the current line from pos
  while (pos < s.size()) {
    Line ln = line_at(s, pos);
    pos = ln.next;
    ++line_no;
    auto copy_line = [&] { out.copy_to(ln.next); };

    if (raw_end != nullptr && raw_to_blank && is_blank(s, ln.b, ln.e)) raw_end = nullptr;
    if (math && math_to_blank && is_blank(s, ln.b, ln.e)) math = false;
    if (raw_end != nullptr) {
      if (contains_ci(s, ln.b, ln.e, raw_end)) raw_end = nullptr;
      copy_line();
      prev_para = after_blank = false;
      continue;
    }

    if (fence_len > 0 || math) {
      // A fence opened inside a blockquote ends with the quote; one opened inside a list item
      // ends with the item (CommonMark: fences take no lazy continuation lines). The line is
      // then processed normally.
      size_t q = ln.b;
      while (q < ln.e && q - ln.b < 3 && s[q] == ' ') ++q;
      size_t ind = indent_of(s, ln.b, ln.e);
      if ((fence_in_quote && (q >= ln.e || s[q] != '>')) ||
          (fence_list_col > 0 && !is_blank(s, ln.b, ln.e) && ind < fence_list_col)) {
        fence_len = 0;
        math = false;
      }
    }
    if (fence_len > 0 || math) {
      // Closing fence / $$: after blockquote markers and spaces.
      size_t p = ln.b;
      while (p < ln.e && (is_ascii_space(s[p]) || s[p] == '>')) ++p;
      if (fence_len > 0) {
        size_t j = p;
        while (j < ln.e && s[j] == fence_char) ++j;
        if (j - p >= fence_len && is_blank(s, j, ln.e)) fence_len = 0;
      } else if (std::string_view(s.data() + ln.b, ln.e - ln.b).find("$$") != std::string_view::npos) {
        math = false;
      }
      copy_line();
      prev_para = after_blank = false;
      continue;
    }
    bool blank = is_blank(s, ln.b, ln.e);
    size_t indent = indent_of(s, ln.b, ln.e);
    if (indented_code) {
      if (blank || indent >= code_col) {
        copy_line();
        after_blank = blank;
        continue;
      }
      indented_code = false;
    }
    if (blank) {
      copy_line();
      prev_para = false;
      after_blank = true;
      table = false;
      continue;
    }
    // After a blank line a line belongs to the deepest open list item whose content column it
    // reaches; 4 more columns than that make it indented code (CommonMark), unless it
    // continues a paragraph.
    if (after_blank)
      while (!list_cols.empty() && list_cols.back() > indent) list_cols.pop_back();
    after_blank = false;
    size_t base = list_cols.empty() ? 0 : list_cols.back();
    if (!prev_para && indent >= base + 4) {
      indented_code = true;
      code_col = base + 4;
      copy_line();
      continue;
    }

    // Container prefixes: blockquote markers, list markers, task boxes; columns counted with
    // tab stops of 4.
    ThematicBreak hr(s, ln.b, ln.e);
    size_t p = ln.b;
    size_t col = 0;
    auto skip_ws = [&] {
      size_t c0 = col;
      for (; p < ln.e && is_ascii_space(s[p]); ++p) col = s[p] == '\t' ? (col / 4 + 1) * 4 : col + 1;
      return col - c0;
    };
    bool done = false;
    bool quoted = false;
    skip_ws();
    while (p < ln.e) {
      if (hr.at(s, p)) {
        copy_line();
        done = true;
        break;
      }
      if (s[p] == '>') {
        quoted = true;
        ++p;
        ++col;
        size_t w = skip_ws();
        if (p < ln.e && w >= 5 && !prev_para) {  // "> " + 4 columns: indented code in the quote
          copy_line();
          done = true;
          break;
        }
        continue;
      }
      size_t m = p;
      if (s[p] == '-' || s[p] == '*' || s[p] == '+') {
        m = p + 1;
      } else if (is_digit(s[p])) {
        size_t d = p;
        while (d < ln.e && d - p < 10 && is_digit(s[d])) ++d;
        if (d - p <= 9 && d < ln.e && (s[d] == '.' || s[d] == ')')) m = d + 1;
      }
      if (m > p && (m == ln.e || is_ascii_space(s[m]))) {
        size_t marker_col = col, width = m - p;
        while (!list_cols.empty() && list_cols.back() > marker_col) list_cols.pop_back();
        p = m;
        col += width;
        size_t n = skip_ws();
        if (p >= ln.e || n >= 5) {
          // Empty item, or 5+ columns after the marker: content starts one column after it
          // and the rest of the line is indented code.
          list_cols.push_back(marker_col + width + 1);
          if (p < ln.e) {
            indented_code = true;
            code_col = list_cols.back() + 4;
            copy_line();
            done = true;
          }
          break;
        }
        list_cols.push_back(marker_col + width + n);
        // Task box "[ ]" / "[x]" right after a list marker.
        if (p + 2 < ln.e && s[p] == '[' && (s[p + 1] == ' ' || s[p + 1] == 'x' || s[p + 1] == 'X') &&
            s[p + 2] == ']' && (p + 3 == ln.e || is_ascii_space(s[p + 3]))) {
          p += 3;
          col += 3;
          skip_ws();
        }
        continue;
      }
      break;
    }
    prev_para = false;
    if (done) continue;
    if (p >= ln.e) {  // markers only
      copy_line();
      continue;
    }
    out.copy_to(p);

    // Leaf blocks.
    size_t flen = fence_at(s, p, ln.e, &fence_char);
    if (flen > 0 || (ln.e - p >= 2 && s[p] == '$' && s[p + 1] == '$')) {
      if (flen > 0) fence_len = flen;
      else math = std::string_view(s.data() + p + 2, ln.e - p - 2).find("$$") == std::string_view::npos;
      // A block that is closed further down is code up to its closer, whatever the containers
      // (LLM-written Markdown often under-indents code inside list items); only a block never
      // closed ends with its blockquote / list item instead of swallowing the document.
      bool closed_later = flen > 0 ? closers.fence_after(line_no, fence_char, flen)
                                   : closers.dollars_after(line_no);
      math_to_blank = flen == 0 && !closed_later;  // "$$" at a line start that is never closed
      fence_in_quote = quoted && !closed_later;
      fence_list_col = !closed_later && !list_cols.empty() && col >= list_cols.back() ? list_cols.back() : 0;
      copy_line();
      continue;
    }
    if (s[p] == '#') {
      size_t h = p;
      while (h < ln.e && s[h] == '#') ++h;
      if (h - p <= 6 && (h == ln.e || is_ascii_space(s[h]))) {
        // Closing sequence: spaces + #'s at the end.
        size_t ce = ln.e;
        while (ce > h && is_ascii_space(s[ce - 1])) --ce;
        size_t cb = ce;
        while (cb > h && s[cb - 1] == '#') --cb;
        size_t content_end = (cb < ce && (cb == h || is_ascii_space(s[cb - 1]))) ? cb : ce;
        out.copy_to(h);
        md.inline_content(h, content_end);
        copy_line();
        continue;
      }
    }
    if (s[p] == '<') {
      // Raw HTML blocks whose content is not text (CommonMark type 1 and 2): copied up to the
      // line holding the end marker.
      static const std::pair<const char*, const char*> kRaw[] = {
          {"<pre", "</pre>"}, {"<script", "</script>"}, {"<style", "</style>"},
          {"<textarea", "</textarea>"}, {"<!--", "-->"}};
      const char* end_marker = nullptr;
      for (const auto& [open, close] : kRaw) {
        size_t n = std::strlen(open);
        if (starts_with_ci(s, p, ln.e, open) &&
            (open[1] == '!' || p + n == ln.e || is_ascii_space(s[p + n]) || s[p + n] == '>')) {
          end_marker = close;
          break;
        }
      }
      if (end_marker != nullptr && !contains_ci(s, p + 4, ln.e, end_marker)) {
        // CommonMark runs an unclosed <pre>/<script>/... block to the end of the document;
        // text that merely starts with "<pre>" would then never be translated, so an end tag
        // that does not appear further down ends the block at the next blank line instead.
        auto it = last_marker.find(end_marker);
        if (it == last_marker.end()) {
          size_t last = std::string::npos;
          size_t n = std::strlen(end_marker);
          for (size_t i = s.size() >= n ? s.size() - n + 1 : 0; i-- > 0;)
            if (starts_with_ci(s, i, s.size(), end_marker)) {
              last = i;
              break;
            }
          it = last_marker.emplace(end_marker, last).first;
        }
        raw_to_blank = it->second == std::string::npos || it->second < ln.e;
        raw_end = end_marker;
        copy_line();
        continue;
      }
    }
    if (s[p] == '[' && p + 1 < ln.e && s[p + 1] == '^') {  // footnote definition "[^1]: text"
      size_t rb = std::find(s.begin() + p, s.begin() + ln.e, ']') - s.begin();
      if (rb + 1 < ln.e && s[rb + 1] == ':') {
        out.copy_to(rb + 2);
        md.inline_content(rb + 2, hard_break_end(s, rb + 2, ln.e));
        copy_line();
        prev_para = true;
        continue;
      }
    }
    if (s[p] == '[') {  // link reference definition "[id]: url"
      size_t rb = std::find(s.begin() + p, s.begin() + ln.e, ']') - s.begin();
      if (rb + 1 < ln.e && s[rb + 1] == ':' && rb > p + 1 && is_link_destination(s, rb + 2, ln.e)) {
        copy_line();
        continue;
      }
    }
    bool pipe = has_unescaped_pipe(s, p, ln.e);
    if (pipe && !table) {
      if (s[p] == '|') {
        table = true;
      } else if (ln.next < s.size()) {
        Line nx = line_at(s, ln.next);
        if (is_delimiter_row(s, nx.b, nx.e)) table = true;
      }
    }
    if (!pipe) table = false;
    if (table) {
      size_t cell = p;
      for (size_t i = p; i <= ln.e; ++i) {
        if (i + 1 < ln.e && s[i] == '\\') {
          ++i;
          continue;
        }
        if (i == ln.e || s[i] == '|') {
          if (cell <= i) md.inline_content(cell, i);
          out.copy_to(std::min(i + 1, ln.e));
          cell = i + 1;
        }
      }
      copy_line();
      prev_para = true;
      continue;
    }
    md.inline_content(p, hard_break_end(s, p, ln.e));
    copy_line();
    prev_para = true;
  }
}

void segment_plain(std::string_view s, Builder& out) {
  size_t pos = 0;
  while (pos < s.size()) {
    Line ln = line_at(s, pos);
    emit_sentences(s, ln.b, ln.e, out);
    out.copy_to(ln.next);
    pos = ln.next;
  }
}

}  // namespace

std::vector<Segment> segment_text(std::string_view text, const SegmentOptions& options) {
  // One ICU iterator per thread and language (cloning one per call would cost more than the
  // segmentation of a short field).
  thread_local std::map<std::string, SentenceSplitter, std::less<>> splitters;
  auto it = splitters.find(options.language);
  if (it == splitters.end()) it = splitters.emplace(options.language, SentenceSplitter(options.language)).first;
  Builder out(text, options.markdown, it->second);
  if (options.markdown) segment_markdown(text, out);
  else segment_plain(text, out);
  return out.finish();
}

std::string reassemble(const std::vector<Segment>& segments, const std::vector<std::string>& translations) {
  size_t n = 0;
  size_t bytes = 0;
  for (const Segment& seg : segments) {
    if (seg.translate) ++n;
    else bytes += seg.text.size();
  }
  if (n != translations.size())
    fail("reassemble: {} translations given for {} translatable segments", translations.size(), n);
  for (const std::string& t : translations) bytes += t.size();
  std::string out;
  out.reserve(bytes);
  size_t k = 0;
  for (const Segment& seg : segments) out += seg.translate ? translations[k++] : seg.text;
  return out;
}

bool is_copy_through(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    Cp c = decode_at(s, i);
    if (!is_non_word_cp(c.cp)) return false;
    i += c.len;
  }
  return true;
}

}  // namespace loom::text
