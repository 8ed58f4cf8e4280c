// loom::text UTF-8 stepping for the segmenters (segment.cc, sentence_break.cc): decode the code
// point at a byte offset or find the one before it, never throwing on invalid bytes (each reads
// as U+FFFD of length 1), so byte offsets stay exact for any input.
#pragma once

#include <cstddef>
#include <string_view>

namespace loom::text {

/// A decoded code point and its length in bytes (1-4).
struct Utf8Cp {
  char32_t cp;
  std::size_t len;
};

/// Code point starting at byte i of s (i < s.size()); an invalid or truncated sequence gives
/// {U+FFFD, 1}.
inline Utf8Cp utf8_at(std::string_view s, std::size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) return {b, 1};
  const std::size_t len = b >= 0xF8 ? 0 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 0;
  if (len == 0 || i + len > s.size()) return {0xFFFD, 1};
  char32_t cp = b & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
  for (std::size_t k = 1; k < len; ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80) return {0xFFFD, 1};
    cp = (cp << 6) | (c & 0x3F);
  }
  return {cp, len};
}

/// Start of the code point that ends right before byte e, not before lo (lo < e): the lead
/// byte when it really covers e, else e - 1.
inline std::size_t utf8_prev(std::string_view s, std::size_t lo, std::size_t e) {
  std::size_t i = e - 1;
  for (int steps = 0; i > lo && steps < 3 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80; ++steps) --i;
  return utf8_at(s, i).len == e - i ? i : e - 1;
}

}  // namespace loom::text
