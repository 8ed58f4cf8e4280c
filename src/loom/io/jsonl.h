// JSONL rows: one JSON object per line (https://jsonlines.org). Parsing validates UTF-8 first
// (so the error can name the byte) and keeps the keys in file order (nlohmann::ordered_json),
// so a row written back differs from the input only where loom changed it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

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

/// Compact one-line serialization of row (no trailing newline), UTF-8 kept as is (not
/// \u-escaped). Invalid UTF-8 inside strings (e.g. broken model output) is replaced by U+FFFD
/// rather than throwing.
std::string dump_jsonl(const JsonRow& row);

/// Standard base64 (RFC 4648, with '=' padding) of bytes: lossless carrier for raw bytes that
/// are not valid UTF-8 and so cannot go into a JSON string.
std::string base64_encode(std::string_view bytes);

}  // namespace loom::io
