#include "loom/train/lm_data.h"

#include <fstream>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/core/utf8.h"

namespace loom::train {

DocSplit parse_doc_split(const std::string& spec, std::string* marker) {
  if (spec == "file") return DocSplit::kFile;
  if (spec == "blank_lines") return DocSplit::kBlankLines;
  if (spec.rfind("marker:", 0) == 0 && spec.size() > 7) {
    if (marker) *marker = spec.substr(7);
    return DocSplit::kMarker;
  }
  fail(Where{"", 0, "doc_split"}, "must be \"file\", \"blank_lines\" or \"marker:<TEXT>\", got \"{}\"", spec);
}

namespace {

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
    pos = end + 1;
  }
  return lines;
}

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

}  // namespace

std::string strip_gutenberg(const std::string& text) {
  auto lines = split_lines(text);
  int64_t start = -1, end = static_cast<int64_t>(lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    if (start < 0 && (starts_with(lines[i], "*** START OF") || starts_with(lines[i], "***START OF"))) {
      start = static_cast<int64_t>(i);
    } else if (start >= 0 && (starts_with(lines[i], "*** END OF") || starts_with(lines[i], "***END OF"))) {
      end = static_cast<int64_t>(i);
      break;
    }
  }
  if (start < 0) return text;
  std::string out;
  for (int64_t i = start + 1; i < end; ++i) {
    out += lines[static_cast<size_t>(i)];
    out += '\n';
  }
  // Trim leading/trailing blank lines.
  size_t a = out.find_first_not_of("\n \t");
  size_t b = out.find_last_not_of("\n \t");
  if (a == std::string::npos) return "";
  return out.substr(a, b - a + 1) + "\n";
}

std::vector<LmDocument> read_lm_documents(const std::vector<std::string>& files, DocSplit split,
                                          const std::string& marker, int64_t* dropped_empty) {
  std::vector<LmDocument> docs;
  int64_t empty = 0;
  for (const auto& file : files) {
    std::string text = core::read_file(file);
    if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);
    const size_t bad = core::utf8_error_offset(text);
    if (bad != std::string::npos) {
      int64_t line = 1;
      for (size_t i = 0; i < bad; ++i) line += text[i] == '\n';
      fail(Where{file, line, ""}, "invalid UTF-8 at byte {}", bad);
    }
    text = strip_gutenberg(text);
    auto lines = split_lines(text);
    if (split == DocSplit::kFile) {
      std::string t;
      for (auto& l : lines) t += l + "\n";
      if (t.find_first_not_of(" \t\n") == std::string::npos) {
        ++empty;
        continue;
      }
      docs.push_back({file, t});
      continue;
    }
    std::string cur;
    int64_t first = 0;
    auto flush = [&]() {
      if (cur.find_first_not_of(" \t\n") != std::string::npos) {
        docs.push_back({file + ":" + std::to_string(first), cur});
      } else if (!cur.empty()) {
        ++empty;
      }
      cur.clear();
    };
    for (size_t i = 0; i < lines.size(); ++i) {
      const bool sep = split == DocSplit::kBlankLines ? lines[i].find_first_not_of(" \t") == std::string::npos
                                                     : lines[i] == marker;
      if (sep) {
        flush();
        continue;
      }
      if (cur.empty()) first = static_cast<int64_t>(i) + 1;
      cur += lines[i] + "\n";
    }
    flush();
  }
  if (dropped_empty) *dropped_empty = empty;
  return docs;
}

std::vector<LmWindow> make_lm_windows(const std::vector<std::vector<int64_t>>& docs, int64_t window_tokens,
                                      int64_t min_tokens, int64_t* dropped_tokens) {
  if (window_tokens < 1) fail(Where{"", 0, "window_tokens"}, "must be >= 1, got {}", window_tokens);
  min_tokens = std::max<int64_t>(1, std::min(min_tokens, window_tokens));
  std::vector<LmWindow> out;
  int64_t dropped = 0;
  for (size_t d = 0; d < docs.size(); ++d) {
    const int64_t n = static_cast<int64_t>(docs[d].size());
    int64_t begin = 0;
    while (begin + 1 < n) {
      const int64_t len = std::min(window_tokens + 1, n - begin);
      if (len - 1 < min_tokens) {
        dropped += len - 1;
        break;
      }
      out.push_back({static_cast<int64_t>(d), begin, len});
      begin += len - 1;
    }
  }
  if (dropped_tokens) *dropped_tokens = dropped;
  return out;
}

}  // namespace loom::train
