// JSONL rows: one JSON object per line (https://jsonlines.org). Parsing validates UTF-8 first
// (so the error can name the byte) and keeps the keys in file order (nlohmann::ordered_json),
// so a row written back differs from the input only where loom changed it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "loom/core/error.h"

namespace loom::io {

/// A JSONL row with its keys in file order.
using JsonRow = nlohmann::ordered_json;

/// True if line holds only JSON whitespace (space, tab, CR, LF) or nothing: a blank line,
/// which JSONL readers conventionally skip (loom keeps it as a blank line in output).
bool is_blank_line(std::string_view line);

/// Parses one JSONL line into an object. Throws loom::Error at `where` (file and line; the
/// field is left as given) when the line is not valid UTF-8 ("not valid UTF-8 at byte N of
/// the line"), not valid JSON ("invalid JSON at byte N: <parser message>"), or not an object.
JsonRow parse_jsonl_object(std::string_view line, const Where& where);

/// JSON value types, as found by scan_jsonl_object.
enum class JsonKind { kString, kNumber, kObject, kArray, kTrue, kFalse, kNull };

/// One top-level member of a JSONL object, located in the line's bytes.
struct RawMember {
  std::string key;               ///< the decoded key (an unpaired \u surrogate decodes to U+FFFD)
  std::size_t value_begin = 0;   ///< byte offset of the value's first byte in the line
  std::size_t value_end = 0;     ///< byte offset just past the value
  JsonKind kind = JsonKind::kNull;
};

/// A JSONL object as spans of its line, so a writer can splice new values into the original
/// bytes and keep everything else byte-identical (numbers keep their source text: 2^70,
/// 1e-400, 1.0e400 and 3.141592653589793238 are never rounded or rejected).
struct RawObject {
  std::vector<RawMember> members;  ///< top-level members in line order
  std::size_t close = 0;           ///< byte offset of the object's closing '}'
  /// The member with this key, or nullptr.
  const RawMember* find(std::string_view key) const;
};

/// Validates one JSONL line against RFC 8259 and locates its top-level members, without
/// converting any value. Nesting depth is unbounded (an explicit stack, no recursion).
/// Throws loom::Error at `where` when the line is not valid UTF-8 ("not valid UTF-8 at byte N
/// of the line"), not valid JSON ("invalid JSON at byte N: what"), not an object, or has a
/// duplicate top-level key ("duplicate key 'k' (bytes A and B)"; JSON parsers would silently
/// keep only one of them).
RawObject scan_jsonl_object(std::string_view line, const Where& where);

/// The decoded value of a JSON string literal (with its quotes) that scan_jsonl_object
/// accepted. Throws loom::Error at `where` for an unpaired \u surrogate (no UTF-8 form).
std::string decode_json_string(std::string_view literal, const Where& where);

/// s as a JSON string literal (with quotes), UTF-8 kept (not \u-escaped) and invalid UTF-8
/// replaced by U+FFFD, as nlohmann::json's dump does.
std::string encode_json_string(std::string_view s);

/// Compact one-line serialization of row (no trailing newline), UTF-8 kept as is (not
/// \u-escaped). Invalid UTF-8 inside strings (e.g. broken model output) is replaced by U+FFFD
/// rather than throwing.
std::string dump_jsonl(const JsonRow& row);

/// Standard base64 (RFC 4648, with '=' padding) of bytes: lossless carrier for raw bytes that
/// are not valid UTF-8 and so cannot go into a JSON string.
std::string base64_encode(std::string_view bytes);

}  // namespace loom::io
