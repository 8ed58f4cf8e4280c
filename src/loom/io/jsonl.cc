#include "loom/io/jsonl.h"

#include "loom/core/utf8.h"

namespace loom::io {
namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// Recursive-descent-free JSON validator over one line (UTF-8 already checked).
class Scanner {
 public:
  Scanner(std::string_view s, const Where& where) : s_(s), where_(where) {}

  [[noreturn]] void bad(std::size_t at, const std::string& what) const {
    fail(where_, "invalid JSON at byte {}: {}", at, what);
  }
  std::string found(std::size_t at) const {
    if (at >= s_.size()) return "the end of the line";
    const unsigned char c = static_cast<unsigned char>(s_[at]);
    if (c >= 0x20 && c < 0x7F) return fmt::format("'{}'", static_cast<char>(c));
    return fmt::format("byte 0x{:02X}", static_cast<unsigned>(c));
  }
  std::size_t skip_ws(std::size_t i) const {
    while (i < s_.size() && is_ws(s_[i])) ++i;
    return i;
  }
  void expect(std::size_t i, char c) const {
    if (i >= s_.size() || s_[i] != c) bad(i, fmt::format("expected '{}', found {}", c, found(i)));
  }

  /// End of the string literal starting at s_[i] == '"'.
  std::size_t string_end(std::size_t i) const {
    expect(i, '"');
    ++i;
    while (true) {
      if (i >= s_.size()) bad(i, "unterminated string");
      const unsigned char c = static_cast<unsigned char>(s_[i]);
      if (c == '"') return i + 1;
      if (c < 0x20) bad(i, fmt::format("control character 0x{:02X} in a string (must be escaped)", c));
      if (c == '\\') {
        if (i + 1 >= s_.size()) bad(i, "unterminated string");
        const char e = s_[i + 1];
        if (e == 'u') {
          for (std::size_t k = 2; k < 6; ++k) {
            if (i + k >= s_.size() || hex_value(s_[i + k]) < 0) bad(i, "\\u needs 4 hex digits");
          }
          i += 6;
          continue;
        }
        if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' && e != 'r' && e != 't')
          bad(i, fmt::format("invalid escape \\{}", e));
        i += 2;
        continue;
      }
      ++i;
    }
  }

  /// End of the number starting at s_[i] (RFC 8259 grammar; any magnitude or precision).
  std::size_t number_end(std::size_t i) const {
    const std::size_t start = i;
    if (i < s_.size() && s_[i] == '-') ++i;
    if (i >= s_.size() || !is_digit(s_[i])) bad(i, fmt::format("invalid number: expected a digit, found {}", found(i)));
    if (s_[i] == '0') {
      ++i;
      if (i < s_.size() && is_digit(s_[i])) bad(start, "invalid number: leading zero");
    } else {
      while (i < s_.size() && is_digit(s_[i])) ++i;
    }
    if (i < s_.size() && s_[i] == '.') {
      ++i;
      if (i >= s_.size() || !is_digit(s_[i])) bad(i, "invalid number: expected a digit after '.'");
      while (i < s_.size() && is_digit(s_[i])) ++i;
    }
    if (i < s_.size() && (s_[i] == 'e' || s_[i] == 'E')) {
      ++i;
      if (i < s_.size() && (s_[i] == '+' || s_[i] == '-')) ++i;
      if (i >= s_.size() || !is_digit(s_[i])) bad(i, "invalid number: expected a digit in the exponent");
      while (i < s_.size() && is_digit(s_[i])) ++i;
    }
    return i;
  }

  std::size_t literal_end(std::size_t i, std::string_view word) const {
    if (s_.substr(i, word.size()) != word) bad(i, fmt::format("unexpected {}", found(i)));
    return i + word.size();
  }

  /// End of the scalar at i (string, number, true, false, null); kind set.
  std::size_t scalar_end(std::size_t i, JsonKind& kind) const {
    if (i >= s_.size()) bad(i, "expected a value, found the end of the line");
    const char c = s_[i];
    if (c == '"') { kind = JsonKind::kString; return string_end(i); }
    if (c == '-' || is_digit(c)) { kind = JsonKind::kNumber; return number_end(i); }
    if (c == 't') { kind = JsonKind::kTrue; return literal_end(i, "true"); }
    if (c == 'f') { kind = JsonKind::kFalse; return literal_end(i, "false"); }
    if (c == 'n') { kind = JsonKind::kNull; return literal_end(i, "null"); }
    bad(i, fmt::format("expected a value, found {}", found(i)));
  }

  /// End of the value at i, any nesting depth (explicit stack of open containers).
  std::size_t value_end(std::size_t i, JsonKind& kind) {
    i = skip_ws(i);
    if (i < s_.size() && (s_[i] == '{' || s_[i] == '[')) {
      kind = s_[i] == '{' ? JsonKind::kObject : JsonKind::kArray;
    } else {
      return scalar_end(i, kind);
    }
    std::vector<char> stack;  // closing brackets expected
    bool need_value = true;   // at a value position (after '[' / ':' / ',')
    while (true) {
      i = skip_ws(i);
      if (need_value) {
        if (i < s_.size() && (s_[i] == '{' || s_[i] == '[')) {
          const bool obj = s_[i] == '{';
          stack.push_back(obj ? '}' : ']');
          i = skip_ws(i + 1);
          if (i < s_.size() && s_[i] == stack.back()) {  // empty container
            stack.pop_back();
            ++i;
            if (stack.empty()) return i;
            need_value = false;
            continue;
          }
          if (obj) {
            i = skip_ws(string_end(i));
            expect(i, ':');
            ++i;
          }
          continue;
        }
        JsonKind k;
        i = scalar_end(i, k);
        need_value = false;
        continue;
      }
      // After a value inside a container: ',' or the closing bracket.
      if (i < s_.size() && s_[i] == ',') {
        i = skip_ws(i + 1);
        if (stack.back() == '}') {
          i = skip_ws(string_end(i));
          expect(i, ':');
          ++i;
        }
        need_value = true;
        continue;
      }
      if (i < s_.size() && s_[i] == stack.back()) {
        stack.pop_back();
        ++i;
        if (stack.empty()) return i;
        continue;
      }
      bad(i, fmt::format("expected ',' or '{}', found {}", stack.back(), found(i)));
    }
  }

 private:
  std::string_view s_;
  const Where& where_;
};

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

/// Decodes a validated string literal; an unpaired surrogate throws at where (strict) or
/// becomes U+FFFD.
std::string decode_string(std::string_view lit, const Where* strict) {
  std::string out;
  out.reserve(lit.size());
  const auto hex4 = [&](std::size_t i) {
    uint32_t v = 0;
    for (std::size_t k = 0; k < 4; ++k) v = v * 16 + static_cast<uint32_t>(hex_value(lit[i + k]));
    return v;
  };
  for (std::size_t i = 1; i + 1 < lit.size();) {
    const char c = lit[i];
    if (c != '\\') {
      out += c;
      ++i;
      continue;
    }
    const char e = lit[i + 1];
    i += 2;
    switch (e) {
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'u': {
        uint32_t cp = hex4(i);
        i += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 <= lit.size() && lit[i] == '\\' && lit[i + 1] == 'u') {
          const uint32_t lo = hex4(i + 2);
          if (lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
          }
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) {
          if (strict) fail(*strict, "string has an unpaired surrogate \\u{:04X} (no UTF-8 form)", cp);
          cp = 0xFFFD;
        }
        append_utf8(out, cp);
        break;
      }
      default: out += e; break;  // " \\ /
    }
  }
  return out;
}

}  // namespace

const RawMember* RawObject::find(std::string_view key) const {
  for (const RawMember& m : members) {
    if (m.key == key) return &m;
  }
  return nullptr;
}

RawObject scan_jsonl_object(std::string_view line, const Where& where) {
  const std::size_t bad_byte = core::utf8_error_offset(line);
  if (bad_byte != std::string_view::npos) {
    fail(where, "not valid UTF-8 at byte {} of the line (byte 0x{:02X})", bad_byte,
         static_cast<unsigned>(static_cast<unsigned char>(line[bad_byte])));
  }
  Scanner sc(line, where);
  RawObject obj;
  std::size_t i = sc.skip_ws(0);
  if (i >= line.size() || line[i] != '{') {
    JsonKind kind;
    sc.value_end(i, kind);  // reports invalid JSON first
    static const char* names[] = {"string", "number", "object", "array", "boolean", "boolean", "null"};
    fail(where, "row is a JSON {}, expected an object", names[static_cast<int>(kind)]);
  }
  i = sc.skip_ws(i + 1);
  if (i < line.size() && line[i] == '}') {
    obj.close = i;
  } else {
    while (true) {
      const std::size_t key_begin = i;
      const std::size_t key_end = sc.string_end(i);
      RawMember m;
      m.key = decode_string(line.substr(key_begin, key_end - key_begin), nullptr);
      i = sc.skip_ws(key_end);
      sc.expect(i, ':');
      i = sc.skip_ws(i + 1);
      m.value_begin = i;
      m.value_end = sc.value_end(i, m.kind);
      if (const RawMember* dup = obj.find(m.key)) {
        (void)dup;
        fail(Where{where.file, where.line, m.key},
             "duplicate key '{}' (at byte {} and earlier; a JSON reader would keep only one of them)", m.key,
             key_begin);
      }
      obj.members.push_back(std::move(m));
      i = sc.skip_ws(obj.members.back().value_end);
      if (i < line.size() && line[i] == ',') {
        i = sc.skip_ws(i + 1);
        continue;
      }
      if (i < line.size() && line[i] == '}') {
        obj.close = i;
        break;
      }
      sc.bad(i, fmt::format("expected ',' or '}}', found {}", sc.found(i)));
    }
  }
  const std::size_t rest = sc.skip_ws(obj.close + 1);
  if (rest < line.size()) sc.bad(rest, fmt::format("unexpected {} after the object", sc.found(rest)));
  return obj;
}

std::string decode_json_string(std::string_view literal, const Where& where) {
  return decode_string(literal, &where);
}

std::string encode_json_string(std::string_view s) {
  return nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

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
