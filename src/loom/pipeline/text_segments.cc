#include "loom/pipeline/text_segments.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "loom/core/error.h"

namespace loom::pipeline {
namespace {

/// Segments of `--segment line`: each line (without its surrounding spaces/tabs) is one
/// translate segment; line breaks, surrounding whitespace and lines without letters are copied.
std::vector<text::Segment> line_segments(std::string_view text) {
  std::vector<text::Segment> out;
  const auto copy = [&](std::string_view s) {
    if (s.empty()) return;
    if (!out.empty() && !out.back().translate) out.back().text.append(s);
    else out.push_back({std::string(s), false});
  };
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t e = pos;
    while (e < text.size() && text[e] != '\n' && text[e] != '\r') ++e;
    std::size_t b = pos, t = e;
    while (b < t && (text[b] == ' ' || text[b] == '\t')) ++b;
    while (t > b && (text[t - 1] == ' ' || text[t - 1] == '\t')) --t;
    const std::string_view body = text.substr(b, t - b);
    if (text::is_copy_through(body)) {
      copy(text.substr(pos, e - pos));
    } else {
      copy(text.substr(pos, b - pos));
      out.push_back({std::string(body), true});
      copy(text.substr(t, e - t));
    }
    std::size_t next = e;
    if (next < text.size() && text[next] == '\r') ++next;
    if (next < text.size() && text[next] == '\n' && (next == e || text[e] == '\r')) ++next;
    copy(text.substr(e, next - e));
    pos = next;
  }
  return out;
}

bool ends_sentence(std::string_view s) {
  if (s.empty()) return false;
  const char c = s.back();
  if (c == '.' || c == '!' || c == '?') return true;
  static const char* kCjk[] = {"\xE3\x80\x82", "\xEF\xBC\x81", "\xEF\xBC\x9F"};  // 。！？
  for (const char* e : kCjk) {
    const std::size_t n = std::strlen(e);
    if (s.size() >= n && s.substr(s.size() - n) == e) return true;
  }
  return false;
}

/// The inline code span or URL a copy segment holds (between two parts of one sentence), or "".
std::string inline_span(std::string_view c) {
  if (c.find_first_of("\r\n") != std::string_view::npos) return {};
  std::size_t b = 0, e = c.size();
  while (b < e && (c[b] == ' ' || c[b] == '\t')) ++b;
  while (e > b && (c[e - 1] == ' ' || c[e - 1] == '\t')) --e;
  while (b < e && (c[b] == '(' || c[b] == '"' || c[b] == '\'')) ++b;
  while (e > b && std::strchr(".,;:!?)\"'", c[e - 1]) != nullptr) --e;
  const std::string_view core = c.substr(b, e - b);
  if (core.size() >= 3 && core.front() == '`' && core.back() == '`') return std::string(core);
  if (core.find_first_of(" \t[]<>|`") != std::string_view::npos) return {};
  for (const char* p : {"http://", "https://", "ftp://", "www."}) {
    if (core.substr(0, std::strlen(p)) == p && core.size() > std::strlen(p) + 2) return std::string(core);
  }
  return {};
}

/// Joins sentences cut at inline code / URLs (see InlineUnit); returns the units.
std::vector<InlineUnit> join_inline_spans(std::vector<text::Segment>& segs) {
  std::vector<text::Segment> out;
  std::vector<InlineUnit> units;
  std::size_t ordinal = 0;
  for (std::size_t i = 0; i < segs.size();) {
    if (!segs[i].translate) {
      out.push_back(std::move(segs[i++]));
      continue;
    }
    InlineUnit u;
    std::string text = segs[i].text;
    u.parts.push_back(segs[i]);
    std::string rest;
    std::size_t j = i + 1;
    while (j < segs.size() && !segs[j].translate && !ends_sentence(text)) {
      const std::string span = inline_span(segs[j].text);
      if (span.empty()) break;
      const std::string& c = segs[j].text;
      std::size_t keep = c.size();
      while (keep > 0 && (c[keep - 1] == ' ' || c[keep - 1] == '\t')) --keep;
      u.spans.push_back(span);
      if (ends_sentence(std::string_view(c).substr(0, keep)) || j + 1 >= segs.size() || !segs[j + 1].translate) {
        text += c.substr(0, keep);
        u.parts.push_back({c.substr(0, keep), false});
        rest = c.substr(keep);
        ++j;
        break;
      }
      text += c + segs[j + 1].text;
      u.parts.push_back(segs[j]);
      u.parts.push_back(segs[j + 1]);
      j += 2;
    }
    if (u.spans.empty()) {
      out.push_back(std::move(segs[i]));
      ++i;
    } else {
      out.push_back({text, true});
      if (!rest.empty()) out.push_back({rest, false});
      u.ordinal = ordinal;
      units.push_back(std::move(u));
      i = j;
    }
    ++ordinal;
  }
  segs = std::move(out);
  return units;
}

}  // namespace

SegmentMode parse_segment_mode(const std::string& s) {
  std::string l = s;
  for (char& c : l) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (l == "sentence") return SegmentMode::kSentence;
  if (l == "line") return SegmentMode::kLine;
  fail(Where{"", 0, "segment"}, "unknown segment mode '{}' (expected sentence or line)", s);
}

void SegmentedText::append_inputs(std::vector<std::string>& batch) const {
  for (const auto& seg : segments) {
    if (seg.translate) batch.push_back(prefix + seg.text);
  }
}

SegmentedText segment_for_translation(std::string_view text, const SegmentingOptions& o) {
  SegmentedText out;
  // A leading Marian ">>xx<<" language code goes before every segment, not into the output.
  if (!o.language_codes.empty() && text.substr(0, 2) == ">>") {
    const std::size_t close = text.find("<<", 2);
    const std::size_t nl = text.find_first_of("\r\n");
    if (close != std::string_view::npos && close < nl &&
        std::find(o.language_codes.begin(), o.language_codes.end(), text.substr(2, close - 2)) !=
            o.language_codes.end()) {
      out.prefix = std::string(text.substr(0, close + 2)) + " ";
      text.remove_prefix(close + 2);
      while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    }
  }
  if (o.mode == SegmentMode::kLine) {
    out.segments = line_segments(text);
  } else {
    text::SegmentOptions opts;
    opts.markdown = o.markdown;
    opts.language = o.source_lang;
    out.segments = text::segment_text(text, opts);
    if (opts.markdown) out.units = join_inline_spans(out.segments);
  }
  for (const auto& seg : out.segments) out.count += seg.translate ? 1 : 0;
  return out;
}

InlineRejoinStats retranslate_lost_spans(const std::vector<PlacedText>& texts, std::vector<std::string>& translations,
                                         const TranslateFn& translate) {
  InlineRejoinStats st;
  struct Redo {
    const PlacedText* text;
    const InlineUnit* unit;
    std::size_t first;  // of its parts in batch
  };
  std::vector<Redo> redo;
  std::vector<std::string> batch;
  for (const PlacedText& p : texts) {
    for (const InlineUnit& u : p.text->units) {
      const std::string& t = translations.at(p.first + u.ordinal);
      bool kept = true;
      for (const std::string& span : u.spans) kept = kept && t.find(span) != std::string::npos;
      if (kept) {
        ++st.kept;
        continue;
      }
      ++st.split;
      redo.push_back({&p, &u, batch.size()});
      for (const auto& part : u.parts) {
        if (part.translate) batch.push_back(p.text->prefix + part.text);
      }
    }
  }
  if (batch.empty()) return st;
  const std::vector<std::string> again = translate(batch);
  ++st.calls;
  st.segments = static_cast<int64_t>(batch.size());
  if (again.size() != batch.size())
    fail("translator returned {} translations for {} segments", again.size(), batch.size());
  for (const Redo& r : redo) {
    std::size_t k = r.first;
    std::vector<std::string> mine;
    for (const auto& part : r.unit->parts) {
      if (part.translate) mine.push_back(again[k++]);
    }
    translations[r.text->first + r.unit->ordinal] = text::reassemble(r.unit->parts, mine);
  }
  return st;
}

std::string reassemble_text(const SegmentedText& t, const std::vector<std::string>& translations, std::size_t first) {
  const std::vector<std::string> mine(translations.begin() + static_cast<std::ptrdiff_t>(first),
                                      translations.begin() + static_cast<std::ptrdiff_t>(first + t.count));
  return text::reassemble(t.segments, mine);
}

std::vector<std::string> translate_segmented(const std::vector<SegmentedText>& texts, const TranslateFn& translate,
                                             InlineRejoinStats* stats, std::vector<std::string>* per_segment) {
  std::vector<std::string> batch;
  std::vector<PlacedText> placed;
  for (const SegmentedText& t : texts) {
    placed.push_back({&t, batch.size()});
    t.append_inputs(batch);
  }
  std::vector<std::string> translations;
  if (!batch.empty()) {
    translations = translate(batch);
    if (translations.size() != batch.size())
      fail("translator returned {} translations for {} segments", translations.size(), batch.size());
  }
  InlineRejoinStats st = retranslate_lost_spans(placed, translations, translate);
  if (!batch.empty()) ++st.calls;
  if (stats) *stats = st;
  std::vector<std::string> out;
  for (const PlacedText& p : placed) out.push_back(reassemble_text(*p.text, translations, p.first));
  if (per_segment) *per_segment = std::move(translations);
  return out;
}

}  // namespace loom::pipeline
