#include "loom/rag/chunker.h"

#include <algorithm>

#include "loom/core/error.h"
#include "loom/rag/analyzer.h"

namespace loom::rag {
namespace {

struct Unit {
  size_t begin, end;
  int64_t tokens;
  size_t section;
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

bool trim(const std::string& t, size_t& b, size_t& e) {
  while (b < e && is_space(t[b])) ++b;
  while (e > b && is_space(t[e - 1])) --e;
  return b < e;
}

class Splitter {
 public:
  Splitter(const std::string& text, const text::WordPieceTokenizer& tok, int64_t max)
      : text_(text), tok_(tok), max_(max) {}

  int64_t count(size_t b, size_t e) const { return tok_.count_tokens(std::string_view(text_).substr(b, e - b)); }

  // Appends units covering [b, e), each <= max tokens, at the coarsest level that fits.
  void split(size_t b, size_t e, size_t section, std::vector<Unit>& out, int level) const {
    if (!trim(text_, b, e)) return;
    const int64_t n = count(b, e);
    if (n <= max_) {
      out.push_back(Unit{b, e, n, section});
      return;
    }
    if (level == 0) {
      // Sentences.
      const auto spans = sentence_spans(std::string_view(text_).substr(b, e - b));
      if (spans.size() > 1) {
        for (const auto& s : spans) split(b + s.first, b + s.second, section, out, 1);
        return;
      }
      level = 1;
    }
    if (level == 1) {
      pack(b, e, section, out, word_spans(std::string_view(text_).substr(b, e - b)), 2);
      return;
    }
    // Code points.
    const auto cps = code_point_starts(std::string_view(text_).substr(b, e - b));
    std::vector<std::pair<size_t, size_t>> spans;
    for (size_t i = 0; i + 1 < cps.size(); ++i) spans.emplace_back(cps[i], cps[i + 1]);
    pack(b, e, section, out, spans, 3);
  }

 private:
  // Greedy packing of sub-spans (relative to b) into pieces <= max tokens, by estimated
  // (additive) counts, verified with an exact count; a span that alone is too large goes one
  // level down.
  void pack(size_t b, size_t e, size_t section, std::vector<Unit>& out,
            const std::vector<std::pair<size_t, size_t>>& spans, int next_level) const {
    size_t i = 0;
    while (i < spans.size()) {
      size_t pb = b + spans[i].first, pe = b + spans[i].second;
      if (!trim(text_, pb, pe)) {
        ++i;
        continue;
      }
      const int64_t first = count(pb, pe);
      if (first > max_) {
        if (next_level <= 3) split(pb, pe, section, out, next_level);
        ++i;
        continue;
      }
      int64_t est = first;
      size_t j = i + 1;
      size_t end = pe;
      while (j < spans.size()) {
        size_t sb = b + spans[j].first, se = b + spans[j].second;
        if (!trim(text_, sb, se)) {
          ++j;
          continue;
        }
        const int64_t c = count(sb, se);
        if (est + c > max_) break;
        est += c;
        end = se;
        ++j;
      }
      // Verify; back off one span at a time (the first span alone fits).
      while (count(pb, end) > max_ && j > i + 1) {
        --j;
        size_t k = j;
        end = pe;
        for (size_t m = i + 1; m < k; ++m) {
          size_t sb = b + spans[m].first, se = b + spans[m].second;
          if (trim(text_, sb, se)) end = se;
        }
      }
      out.push_back(Unit{pb, end, count(pb, end), section});
      i = j;
    }
  }

  const std::string& text_;
  const text::WordPieceTokenizer& tok_;
  int64_t max_;
};

}  // namespace

std::vector<Chunk> chunk_document(const Document& doc, const text::WordPieceTokenizer& tokenizer,
                                  const ChunkOptions& options) {
  if (options.max_tokens < 1) fail(Where{"", 0, "max_tokens"}, "chunk budget must be >= 1 token, got {}", options.max_tokens);
  if (options.overlap_tokens < 0 || options.overlap_tokens >= options.max_tokens)
    fail(Where{"", 0, "overlap_tokens"}, "overlap must be in [0, {}), got {}", options.max_tokens, options.overlap_tokens);
  const std::string& text = doc.text;
  Splitter splitter(text, tokenizer, options.max_tokens);
  std::vector<Unit> units;
  std::vector<std::string> section_paths{""};
  std::vector<std::pair<int, std::string>> stack;
  for (const Block& blk : doc.blocks) {
    if (blk.heading_level > 0) {
      while (!stack.empty() && stack.back().first >= blk.heading_level) stack.pop_back();
      std::string h = text.substr(blk.begin, blk.end - blk.begin);
      // Strip Markdown markers and setext underlines for the path.
      const size_t nl = h.find('\n');
      if (nl != std::string::npos) h = h.substr(0, nl);
      size_t hb = h.find_first_not_of("# \t");
      size_t he = h.find_last_not_of("# \t");
      h = hb == std::string::npos ? std::string() : h.substr(hb, he - hb + 1);
      stack.emplace_back(blk.heading_level, h);
      std::string path;
      for (const auto& s : stack) path += (path.empty() ? "" : " > ") + s.second;
      section_paths.push_back(path);
    }
    splitter.split(blk.begin, blk.end, section_paths.size() - 1, units, 0);
  }
  std::vector<Chunk> chunks;
  size_t i = 0;
  while (i < units.size()) {
    size_t j = i + 1;
    int64_t est = units[i].tokens;
    while (j < units.size() && units[j].section == units[i].section && est + units[j].tokens <= options.max_tokens) {
      est += units[j].tokens;
      ++j;
    }
    int64_t n = splitter.count(units[i].begin, units[j - 1].end);
    while (n > options.max_tokens && j > i + 1) {
      --j;
      n = splitter.count(units[i].begin, units[j - 1].end);
    }
    Chunk c;
    c.begin = units[i].begin;
    c.end = units[j - 1].end;
    c.text = text.substr(c.begin, c.end - c.begin);
    c.heading_path = section_paths[units[i].section];
    c.n_tokens = n;
    chunks.push_back(std::move(c));
    if (j >= units.size()) break;
    // Overlap: trailing units of this chunk (same section as the next unit) worth <= overlap tokens.
    size_t s = j;
    int64_t carried = 0;
    while (s > i + 1 && units[s - 1].section == units[j].section &&
           carried + units[s - 1].tokens <= options.overlap_tokens &&
           carried + units[s - 1].tokens + units[j].tokens <= options.max_tokens) {
      carried += units[s - 1].tokens;
      --s;
    }
    i = s;
  }
  return chunks;
}

}  // namespace loom::rag
