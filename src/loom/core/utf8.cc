#include "loom/core/utf8.h"

#include <cstdint>

namespace loom::core {
namespace {

/// Length of the well-formed sequence starting at s[i], or 0 if s[i] starts none.
/// Table 3-7 of the Unicode standard: the allowed range of the second byte depends on the lead.
std::size_t sequence_length(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t c = b(i);
  if (c < 0x80) return 1;
  std::size_t n;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // > U+10FFFF
  } else {
    return 0;  // 0x80..0xC1 (continuation, overlong 2-byte lead) or 0xF5..0xFF
  }
  if (i + 1 >= s.size() || b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k) {
    if (i + k >= s.size() || b(i + k) < 0x80 || b(i + k) > 0xBF) return 0;
  }
  return n;
}

/// Length of the maximal ill-formed subsequence at s[i] (>= 1): the lead byte plus the
/// continuation bytes that were still acceptable before the sequence broke off.
std::size_t ill_formed_length(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t c = b(i);
  std::size_t n = 0;
  uint8_t lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 1;
  }
  std::size_t k = 1;
  if (i + 1 < s.size() && b(i + 1) >= lo && b(i + 1) <= hi) {
    k = 2;
    while (k < n && i + k < s.size() && b(i + k) >= 0x80 && b(i + k) <= 0xBF) ++k;
  }
  return k;
}

}  // namespace

std::size_t utf8_error_offset(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    // Fast path over ASCII.
    while (i < s.size() && static_cast<uint8_t>(s[i]) < 0x80) ++i;
    if (i >= s.size()) break;
    const std::size_t n = sequence_length(s, i);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

std::string utf8_replace_invalid(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const std::size_t n = sequence_length(s, i);
    if (n > 0) {
      out.append(s.data() + i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += ill_formed_length(s, i);
    }
  }
  return out;
}

CodePoint utf8_decode_at(std::string_view s, std::size_t i) {
  const std::size_t n = sequence_length(s, i);
  const auto b = [&](std::size_t k) { return static_cast<uint8_t>(s[k]); };
  if (n == 0) return {U'\uFFFD', 1};
  if (n == 1) return {b(i), 1};
  char32_t cp = b(i) & (0x7F >> n);
  for (std::size_t k = 1; k < n; ++k) cp = (cp << 6) | (b(i + k) & 0x3F);
  return {cp, n};
}

std::size_t utf8_start_before(std::string_view s, std::size_t lo, std::size_t e) {
  std::size_t i = e - 1;
  for (int steps = 0; i > lo && steps < 3 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80; ++steps) --i;
  return utf8_decode_at(s, i).len == e - i ? i : e - 1;
}

void check_utf8(std::string_view s, const Where& where) {
  const std::size_t bad = utf8_error_offset(s);
  if (bad != std::string_view::npos)
    fail(where, "text is not valid UTF-8 (bad byte 0x{:02X} at byte offset {})",
         static_cast<unsigned>(static_cast<uint8_t>(s[bad])), bad);
}

void check_tokenizer_text(std::string_view s, const Where& where) {
  check_utf8(s, where);
  const std::size_t nul = s.find('\0');
  if (nul != std::string_view::npos) fail(where, "text contains a NUL byte at byte offset {} (not supported)", nul);
}

std::u32string utf8_to_code_points(std::string_view s, const Where& where) {
  check_utf8(s, where);
  std::u32string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const CodePoint c = utf8_decode_at(s, i);
    out.push_back(c.cp);
    i += c.len;
  }
  return out;
}

std::string code_points_to_utf8(std::u32string_view cps) {
  std::string out;
  out.reserve(cps.size());
  for (char32_t c : cps) {
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (c >> 12)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (c >> 18)));
      out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

bool is_unicode_space(char32_t cp) {
  if ((cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20)) return true;
  if (cp < 0x85) return false;
  if (cp == 0x85 || cp == 0xA0 || cp == 0x1680) return true;
  if (cp >= 0x2000 && cp <= 0x200A) return true;
  return cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

std::size_t whitespace_length_at(std::string_view s, std::size_t pos) {
  if (pos >= s.size()) return 0;
  const CodePoint c = utf8_decode_at(s, pos);
  return c.cp != U'\uFFFD' && is_unicode_space(c.cp) ? c.len : 0;
}

std::string_view lstrip_unicode_space(std::string_view s) {
  std::size_t pos = 0;
  while (const std::size_t len = whitespace_length_at(s, pos)) pos += len;
  return s.substr(pos);
}

std::string_view rstrip_unicode_space(std::string_view s) {
  // Walk forward, remembering where the last run of whitespace began.
  std::size_t pos = 0, end = 0;
  while (pos < s.size()) {
    if (const std::size_t len = whitespace_length_at(s, pos)) {
      pos += len;
      continue;
    }
    pos += utf8_decode_at(s, pos).len;
    end = pos;
  }
  return s.substr(0, end);
}

std::string_view strip_unicode_space(std::string_view s) { return rstrip_unicode_space(lstrip_unicode_space(s)); }

}  // namespace loom::core
