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

}  // namespace loom::core
