// UTF-8 validation and repair for text that crosses loom's boundaries (dataset rows, model
// output). Validation follows RFC 3629 / Unicode 15 §3.9 table 3-7 (well-formed byte
// sequences): no overlong forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF.
// This is the same set nlohmann::json and Python's "strict" codec accept.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

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

}  // namespace loom::core
