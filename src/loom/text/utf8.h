// UTF-8 helpers for the tokenizers: validation (hostile input must become a loom::Error, never
// undefined behaviour inside sentencepiece) and the Unicode whitespace set Python's str.strip()
// uses, which Hugging Face tokenizers apply when they strip text.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "loom/core/error.h"

namespace loom::text {

/// Byte offset of the first invalid UTF-8 sequence in s (overlong forms, surrogates U+D800..DFFF,
/// code points above U+10FFFF and truncated sequences are invalid), or std::string_view::npos
/// when s is valid UTF-8 (RFC 3629).
size_t find_invalid_utf8(std::string_view s);

/// Throws loom::Error at `where` ("not valid UTF-8 at byte N") unless s is valid UTF-8.
void check_utf8(std::string_view s, const Where& where = {});

/// check_utf8, and also rejects NUL bytes (loom::Error "contains a NUL byte at byte N"): the
/// SentencePiece plugin passes pieces as NUL-terminated strings, so a NUL inside the text
/// would silently corrupt the segmentation.
void check_tokenizer_text(std::string_view s, const Where& where = {});

/// Length in bytes of the Unicode whitespace code point (Python's str.isspace()) starting at
/// s[pos], or 0 when s[pos] does not start one. s must be valid UTF-8.
size_t whitespace_length_at(std::string_view s, size_t pos);

/// s without leading and trailing Unicode whitespace (Python's str.strip()).
std::string_view strip_unicode_space(std::string_view s);
/// s without trailing Unicode whitespace (Python's str.rstrip()).
std::string_view rstrip_unicode_space(std::string_view s);
/// s without leading Unicode whitespace (Python's str.lstrip()).
std::string_view lstrip_unicode_space(std::string_view s);

}  // namespace loom::text
