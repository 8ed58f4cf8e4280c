#include "loom/text/utf8.h"

#include "loom/core/utf8.h"

#include <cstdint>

namespace loom::text {
namespace {

// Decodes the code point at s[pos] (s valid UTF-8); sets len to its byte length.
uint32_t decode_at(std::string_view s, size_t pos, size_t& len) {
  auto b = static_cast<unsigned char>(s[pos]);
  if (b < 0x80) { len = 1; return b; }
  int n = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
  uint32_t cp = b & (0x7F >> n);
  for (int i = 1; i < n && pos + i < s.size(); ++i) cp = (cp << 6) | (static_cast<unsigned char>(s[pos + i]) & 0x3F);
  len = static_cast<size_t>(n);
  return cp;
}

// Python's str.isspace(): Unicode White_Space plus the ASCII separators 0x1C..0x1F.
bool is_python_space(uint32_t cp) {
  if ((cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20)) return true;
  if (cp < 0x85) return false;
  if (cp == 0x85 || cp == 0xA0 || cp == 0x1680) return true;
  if (cp >= 0x2000 && cp <= 0x200A) return true;
  return cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

}  // namespace

size_t find_invalid_utf8(std::string_view s) { return core::utf8_error_offset(s); }

void check_utf8(std::string_view s, const Where& where) {
  size_t bad = find_invalid_utf8(s);
  if (bad != std::string_view::npos)
    fail(where, "text is not valid UTF-8 (bad byte 0x{:02X} at byte offset {})",
         static_cast<unsigned>(static_cast<unsigned char>(s[bad])), bad);
}

void check_tokenizer_text(std::string_view s, const Where& where) {
  check_utf8(s, where);
  size_t nul = s.find('\0');
  if (nul != std::string_view::npos) fail(where, "text contains a NUL byte at byte offset {} (not supported)", nul);
}

size_t whitespace_length_at(std::string_view s, size_t pos) {
  if (pos >= s.size()) return 0;
  size_t len;
  uint32_t cp = decode_at(s, pos, len);
  return is_python_space(cp) ? len : 0;
}

std::string_view lstrip_unicode_space(std::string_view s) {
  size_t pos = 0;
  while (size_t len = whitespace_length_at(s, pos)) pos += len;
  return s.substr(pos);
}

std::string_view rstrip_unicode_space(std::string_view s) {
  // Walk forward, remembering where the last run of whitespace began.
  size_t pos = 0, end = 0;
  while (pos < s.size()) {
    size_t len = whitespace_length_at(s, pos);
    if (len) { pos += len; continue; }
    size_t cl;
    decode_at(s, pos, cl);
    pos += cl;
    end = pos;
  }
  return s.substr(0, end);
}

std::string_view strip_unicode_space(std::string_view s) { return rstrip_unicode_space(lstrip_unicode_space(s)); }

}  // namespace loom::text
