// libFuzzer target: the bytes are a JSONL file read through loom's row reader and row
// validation (line splitting with a small line limit, UTF-8 check, JSON parse, object check,
// field type check and segmentation of the string fields), without a translator. Every
// rejection must be a loom::Error; anything else (crash, hang, other exception) is a bug.
// Build: cmake -DCMAKE_CXX_COMPILER=clang++ -DLOOM_FUZZ=ON; run: build/fuzz_jsonl corpus/
#include <cstddef>
#include <cstdint>
#include <string>

#include "loom/core/error.h"
#include "loom/core/utf8.h"
#include "loom/io/jsonl.h"
#include "loom/io/row_io.h"
#include "loom/text/segment.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto reader = loom::io::LineReader::from_memory(std::string(reinterpret_cast<const char*>(data), size),
                                                  "fuzz.jsonl", /*max_line_bytes=*/4096);
  loom::io::RawLine line;
  int64_t expected_offset = 0, expected_line = 1;
  while (reader.next(line)) {
    // Reader invariants: rows are contiguous, numbered, and their bytes are where they say.
    if (line.offset != expected_offset || line.line != expected_line) __builtin_trap();
    if (line.end_offset != line.offset + line.length + static_cast<int64_t>(line.terminator.size()))
      __builtin_trap();
    if (!line.too_long && std::string(reinterpret_cast<const char*>(data) + line.offset,
                                      static_cast<size_t>(line.length)) != line.text)
      __builtin_trap();
    expected_offset = line.end_offset;
    ++expected_line;
    if (line.too_long || loom::io::is_blank_line(line.text)) continue;
    // The splicing scanner `loom translate` writes with: it accepts exactly the objects nlohmann
    // accepts (plus numbers nlohmann cannot hold, minus duplicate keys), and its spans are
    // ordered, inside the line, and hold the values' bytes.
    bool scanned = false;
    try {
      const auto obj = loom::io::scan_jsonl_object(line.text, loom::Where{"fuzz.jsonl", line.line, ""});
      scanned = true;
      std::size_t prev = 0;
      for (const auto& m : obj.members) {
        if (m.value_begin < prev || m.value_end <= m.value_begin || m.value_end > obj.close) __builtin_trap();
        prev = m.value_end;
        if (m.kind == loom::io::JsonKind::kString) {
          try {
            (void)loom::io::decode_json_string(std::string_view(line.text).substr(m.value_begin, m.value_end - m.value_begin),
                                               loom::Where{});
          } catch (const loom::Error&) {
          }
        }
      }
      if (obj.close >= line.text.size() || line.text[obj.close] != '}') __builtin_trap();
    } catch (const loom::Error&) {
    }
    try {
      const auto row = loom::io::JsonRow::parse(line.text);
      if (row.is_object() && !scanned && line.text.find("\\u") == std::string::npos) {
        // nlohmann keeps the last of duplicate keys; only then may the scanner refuse.
        bool dup = false;
        try {
          (void)loom::io::scan_jsonl_object(line.text, loom::Where{});
        } catch (const loom::Error& e) {
          dup = std::string(e.what()).find("duplicate key") != std::string::npos;
        }
        if (!dup) __builtin_trap();
      }
    } catch (const std::exception&) {
    }
    try {
      const auto row = loom::io::parse_jsonl_object(line.text, loom::Where{"fuzz.jsonl", line.line, ""});
      for (const auto& [key, value] : row.items()) {
        if (!value.is_string()) continue;
        const std::string& text = value.get_ref<const std::string&>();
        if (!loom::core::is_valid_utf8(text)) __builtin_trap();  // validated before parsing
        const auto segments = loom::text::segment_text(text);
        std::string joined;
        for (const auto& s : segments) joined += s.text;
        if (joined != text) __builtin_trap();
      }
      (void)loom::io::dump_jsonl(row);
    } catch (const loom::Error&) {
      // a bad row, reported with its location: expected
    }
  }
  if (expected_offset != static_cast<int64_t>(size)) __builtin_trap();
  return 0;
}
