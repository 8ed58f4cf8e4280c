#include "loom/io/jsonl.h"

#include "loom/core/utf8.h"

namespace loom::io {

bool is_blank_line(std::string_view line) {
  for (const char c : line) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return false;
  }
  return true;
}

JsonRow parse_jsonl_object(std::string_view line, const Where& where) {
  const std::size_t bad = core::utf8_error_offset(line);
  if (bad != std::string_view::npos) {
    fail(where, "not valid UTF-8 at byte {} of the line (byte 0x{:02X})", bad,
         static_cast<unsigned>(static_cast<unsigned char>(line[bad])));
  }
  JsonRow row;
  try {
    row = JsonRow::parse(line.begin(), line.end());
  } catch (const nlohmann::json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 5: <detail>".
    std::string detail = e.what();
    const auto colon = detail.find(": ");
    if (colon != std::string::npos) detail = detail.substr(colon + 2);
    fail(where, "invalid JSON at byte {}: {}", e.byte > 0 ? e.byte - 1 : 0, detail);
  } catch (const nlohmann::json::exception& e) {  // e.g. out_of_range.406: a number like 1e999
    std::string detail = e.what();
    const auto bracket = detail.find("] ");
    if (bracket != std::string::npos) detail = detail.substr(bracket + 2);
    fail(where, "invalid JSON: {}", detail);
  }
  if (!row.is_object()) fail(where, "row is a JSON {}, expected an object", row.type_name());
  return row;
}

std::string dump_jsonl(const JsonRow& row) {
  return row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string base64_encode(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (static_cast<uint8_t>(bytes[i]) << 16) |
                       (static_cast<uint8_t>(bytes[i + 1]) << 8) | static_cast<uint8_t>(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += (i + 1 < bytes.size()) ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

}  // namespace loom::io
