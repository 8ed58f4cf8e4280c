// UTF-8 validation and repair for text that crosses loom's boundaries (dataset rows, model
// output). Validation follows RFC 3629 / Unicode 15 §3.9 table 3-7 (well-formed byte
// sequences): no overlong forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF.
// This is the same set nlohmann::json and Python's "strict" codec accept.
// It is loom's one UTF-8 decoder and its one whitespace set (Python's str.isspace()); each
// function states its invalid-byte policy: reject (throw loom::Error), replace (U+FFFD), or
// report an offset.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "loom/core/error.h"

namespace loom::core {

/// Byte offset (0-based) of the first byte that does not start a well-formed UTF-8 sequence,
/// or std::string_view::npos when all of s is valid UTF-8. A sequence cut off by the end of
/// s is invalid at its first byte.
std::size_t utf8_error_offset(std::string_view s);

/// True when s is well-formed UTF-8 (utf8_error_offset(s) == npos).
inline bool is_valid_utf8(std::string_view s) { return utf8_error_offset(s) == std::string_view::npos; }

/// Copy of s with each maximal ill-formed subsequence replaced by U+FFFD (the W3C/WHATWG
/// "replacement" practice, as Python's errors="replace"); valid input is returned unchanged.
std::string utf8_replace_invalid(std::string_view s);

/// One decoded code point and the number of bytes it took.
struct CodePoint {
  char32_t cp;
  std::size_t len;
};

/// Decodes the code point starting at s[i] (i < s.size()). Invalid-byte policy: replace — a byte
/// that does not start a well-formed sequence decodes as U+FFFD of length 1, so a scan over
/// unvalidated text never throws and always advances.
CodePoint utf8_decode_at(std::string_view s, std::size_t i);

/// Start of the code point that ends right before byte e, not before lo (lo < e <= s.size()):
/// the lead byte when utf8_decode_at there covers exactly [start, e), else e - 1 (the same
/// replace policy: a stray byte is a code point of its own). Lets a scan step backwards.
std::size_t utf8_start_before(std::string_view s, std::size_t lo, std::size_t e);

/// Code points of s. Invalid-byte policy: reject — throws loom::Error ("text is not valid UTF-8
/// (bad byte 0xNN at byte offset N)") at `where` unless s is well-formed.
std::u32string utf8_to_code_points(std::string_view s, const Where& where = {});

/// UTF-8 encoding of code points (each must be a Unicode scalar value).
std::string code_points_to_utf8(std::u32string_view cps);

/// Throws loom::Error at `where` ("text is not valid UTF-8 (bad byte 0xNN at byte offset N)")
/// unless s is well-formed UTF-8.
void check_utf8(std::string_view s, const Where& where = {});

/// check_utf8, and also rejects NUL bytes ("text contains a NUL byte at byte offset N"): the
/// SentencePiece plugin passes text as NUL-terminated strings, so a NUL would silently cut it.
void check_tokenizer_text(std::string_view s, const Where& where = {});

/// loom's whitespace set: Python's str.isspace() (Unicode White_Space plus the ASCII separators
/// 0x1C..0x1F), which Hugging Face tokenizers and sacreBLEU apply when they strip or split text.
bool is_unicode_space(char32_t cp);

/// Space for the sentence segmenters (text/segment, text/sentence_break): is_unicode_space plus
/// the invisible separators U+200B ZERO WIDTH SPACE, U+2060 WORD JOINER and U+FEFF (BOM), which
/// may sit between sentences but never start or end one.
inline bool is_separator_space(char32_t cp) {
  return is_unicode_space(cp) || cp == 0x200B || cp == 0x2060 || cp == 0xFEFF;
}

/// Length in bytes of the whitespace code point (is_unicode_space) starting at s[pos], or 0 when
/// s[pos] does not start one (or pos >= s.size()). Invalid bytes count as non-space.
std::size_t whitespace_length_at(std::string_view s, std::size_t pos);

/// s without leading and trailing whitespace (Python's str.strip()).
std::string_view strip_unicode_space(std::string_view s);
/// s without trailing whitespace (Python's str.rstrip()).
std::string_view rstrip_unicode_space(std::string_view s);
/// s without leading whitespace (Python's str.lstrip()).
std::string_view lstrip_unicode_space(std::string_view s);

}  // namespace loom::core
