#include "loom/rag/extract.h"

#include <algorithm>
#include <filesystem>
#include <memory>

#include <gumbo.h>
#include <poppler/cpp/poppler-document.h>
#include <poppler/cpp/poppler-page.h>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/core/utf8.h"

namespace loom::rag {
namespace fs = std::filesystem;
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

// Trims [b, e) of ASCII whitespace; returns false when nothing is left.
bool trim(const std::string& t, size_t& b, size_t& e) {
  while (b < e && is_space(t[b])) ++b;
  while (e > b && is_space(t[e - 1])) --e;
  return b < e;
}

std::string lower_ext(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}

// ---- HTML ----
struct HtmlWalker {
  std::string text;
  std::vector<Block> blocks;
  std::string title;
  size_t block_start = 0;
  int pending_heading = 0;

  void end_block() {
    size_t b = block_start, e = text.size();
    if (trim(text, b, e)) blocks.push_back(Block{b, e, pending_heading});
    if (!text.empty() && text.back() != '\n') text += "\n\n";
    block_start = text.size();
    pending_heading = 0;
  }
  void add_text(const char* s) {
    // Collapse whitespace runs to one space (HTML rendering).
    for (const char* p = s; *p; ++p) {
      if (is_space(*p)) {
        if (!text.empty() && !is_space(text.back())) text += ' ';
      } else {
        text += *p;
      }
    }
  }
  static bool dropped(GumboTag tag) {
    switch (tag) {
      case GUMBO_TAG_SCRIPT: case GUMBO_TAG_STYLE: case GUMBO_TAG_NAV: case GUMBO_TAG_HEADER:
      case GUMBO_TAG_FOOTER: case GUMBO_TAG_ASIDE: case GUMBO_TAG_FORM: case GUMBO_TAG_NOSCRIPT:
      case GUMBO_TAG_TEMPLATE: case GUMBO_TAG_HEAD: case GUMBO_TAG_SVG: case GUMBO_TAG_IFRAME:
      case GUMBO_TAG_BUTTON: case GUMBO_TAG_SELECT:
        return true;
      default:
        return false;
    }
  }
  static int heading(GumboTag tag) {
    switch (tag) {
      case GUMBO_TAG_H1: return 1; case GUMBO_TAG_H2: return 2; case GUMBO_TAG_H3: return 3;
      case GUMBO_TAG_H4: return 4; case GUMBO_TAG_H5: return 5; case GUMBO_TAG_H6: return 6;
      default: return 0;
    }
  }
  static bool is_block(GumboTag tag) {
    switch (tag) {
      case GUMBO_TAG_P: case GUMBO_TAG_DIV: case GUMBO_TAG_LI: case GUMBO_TAG_TR: case GUMBO_TAG_BR:
      case GUMBO_TAG_PRE: case GUMBO_TAG_BLOCKQUOTE: case GUMBO_TAG_TABLE: case GUMBO_TAG_UL:
      case GUMBO_TAG_OL: case GUMBO_TAG_SECTION: case GUMBO_TAG_ARTICLE: case GUMBO_TAG_MAIN:
      case GUMBO_TAG_DD: case GUMBO_TAG_DT: case GUMBO_TAG_DL: case GUMBO_TAG_FIGURE:
      case GUMBO_TAG_FIGCAPTION: case GUMBO_TAG_HR: case GUMBO_TAG_BODY: case GUMBO_TAG_CAPTION:
        return true;
      default:
        return false;
    }
  }
  void walk(const GumboNode* node, int depth) {
    if (depth > 400) return;  // hostile nesting: Gumbo caps depth too, stay bounded
    if (node->type == GUMBO_NODE_TEXT || node->type == GUMBO_NODE_CDATA) {
      add_text(node->v.text.text);
      return;
    }
    if (node->type == GUMBO_NODE_WHITESPACE) {
      add_text(" ");
      return;
    }
    if (node->type != GUMBO_NODE_ELEMENT && node->type != GUMBO_NODE_DOCUMENT) return;
    const GumboVector* children = nullptr;
    GumboTag tag = GUMBO_TAG_UNKNOWN;
    if (node->type == GUMBO_NODE_DOCUMENT) {
      children = &node->v.document.children;
    } else {
      tag = node->v.element.tag;
      children = &node->v.element.children;
      if (tag == GUMBO_TAG_TITLE) {
        for (unsigned i = 0; i < children->length; ++i) {
          const auto* c = static_cast<const GumboNode*>(children->data[i]);
          if (c->type == GUMBO_NODE_TEXT) title += c->v.text.text;
        }
        return;
      }
      if (tag == GUMBO_TAG_HEAD) {
        for (unsigned i = 0; i < children->length; ++i) walk(static_cast<const GumboNode*>(children->data[i]), depth + 1);
        text.resize(block_start);  // nothing from <head> is text
        return;
      }
      if (dropped(tag)) return;
    }
    const int h = heading(tag);
    const bool block = h > 0 || is_block(tag);
    if (block) end_block();
    if (h > 0) pending_heading = h;
    for (unsigned i = 0; i < children->length; ++i) walk(static_cast<const GumboNode*>(children->data[i]), depth + 1);
    if (block) end_block();
  }
};

std::string collapse(std::string s) {
  std::string out;
  for (char c : s) {
    if (is_space(c)) {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace

std::vector<Block> paragraph_blocks(const std::string& text, size_t begin, size_t end) {
  std::vector<Block> out;
  end = std::min(end, text.size());
  size_t pos = begin, para = begin;
  while (pos < end) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos || nl >= end) nl = end;
    size_t b = pos, e = nl;
    const bool blank = !trim(text, b, e);
    if (blank) {
      size_t pb = para, pe = pos;
      if (trim(text, pb, pe)) out.push_back(Block{pb, pe, 0});
      para = nl;
    }
    pos = nl + 1;
  }
  size_t pb = para, pe = end;
  if (trim(text, pb, pe)) out.push_back(Block{pb, pe, 0});
  return out;
}

std::vector<Block> markdown_blocks(const std::string& text, std::string* title) {
  std::vector<Block> out;
  size_t pos = 0;
  size_t para = 0;           // start of the current paragraph run
  bool in_fence = false;
  char fence_char = 0;
  size_t fence_len = 0, fence_start = 0;
  auto flush_para = [&](size_t end) {
    for (const auto& b : paragraph_blocks(text, para, end)) out.push_back(b);
  };
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    const size_t line_end = nl == std::string::npos ? text.size() : nl;
    const size_t next = nl == std::string::npos ? text.size() : nl + 1;
    size_t ind = pos;
    while (ind < line_end && ind - pos < 4 && text[ind] == ' ') ++ind;
    const bool indented_ok = ind - pos < 4;
    if (in_fence) {
      size_t k = ind;
      while (k < line_end && text[k] == fence_char) ++k;
      size_t rest_b = k, rest_e = line_end;
      if (k - ind >= fence_len && !trim(text, rest_b, rest_e)) {
        out.push_back(Block{fence_start, line_end, 0});
        in_fence = false;
        para = next;
      }
      pos = next;
      continue;
    }
    if (indented_ok && ind < line_end && (text[ind] == '`' || text[ind] == '~')) {
      size_t k = ind;
      while (k < line_end && text[k] == text[ind]) ++k;
      if (k - ind >= 3) {
        flush_para(pos);
        in_fence = true;
        fence_char = text[ind];
        fence_len = k - ind;
        fence_start = ind;
        pos = next;
        continue;
      }
    }
    if (indented_ok && ind < line_end && text[ind] == '#') {
      size_t k = ind;
      while (k < line_end && text[k] == '#') ++k;
      const int level = static_cast<int>(k - ind);
      if (level <= 6 && (k == line_end || text[k] == ' ' || text[k] == '\t')) {
        flush_para(pos);
        size_t b = ind, e = line_end;
        if (trim(text, b, e)) {
          out.push_back(Block{b, e, level});
          if (title && title->empty()) {
            size_t tb = k, te = e;
            while (te > tb && (text[te - 1] == '#')) --te;
            if (trim(text, tb, te)) *title = text.substr(tb, te - tb);
          }
        }
        para = next;
        pos = next;
        continue;
      }
    }
    // Setext heading underline (=== or ---) right after a one-line paragraph.
    if (indented_ok && ind < line_end && (text[ind] == '=' || text[ind] == '-') && para < pos) {
      size_t k = ind;
      while (k < line_end && text[k] == text[ind]) ++k;
      size_t rb = k, re = line_end;
      size_t pb = para, pe = pos;
      if (!trim(text, rb, re) && trim(text, pb, pe) && text.find('\n', pb) >= pe) {
        out.push_back(Block{pb, line_end, text[ind] == '=' ? 1 : 2});
        if (title && title->empty()) *title = text.substr(pb, pe - pb);
        para = next;
        pos = next;
        continue;
      }
    }
    pos = next;
  }
  if (in_fence) {
    size_t b = fence_start, e = text.size();
    if (trim(text, b, e)) out.push_back(Block{b, e, 0});
  } else {
    flush_para(text.size());
  }
  return out;
}

Document html_document(const std::string& html) {
  Document d;
  GumboOutput* output = gumbo_parse_with_options(&kGumboDefaultOptions, html.data(), html.size());
  HtmlWalker w;
  w.walk(output->document, 0);
  w.end_block();
  gumbo_destroy_output(&kGumboDefaultOptions, output);
  d.text = std::move(w.text);
  d.blocks = std::move(w.blocks);
  d.title = collapse(w.title);
  d.meta["format"] = "html";
  return d;
}

std::vector<Document> extract_file(const std::string& path, const ExtractOptions& options, Skipped* skipped) {
  auto skip = [&](std::string reason) {
    if (skipped) *skipped = Skipped{path, std::move(reason)};
    return std::vector<Document>{};
  };
  const std::string ext = lower_ext(path);
  const bool known = ext == ".txt" || ext == ".text" || ext == ".md" || ext == ".markdown" || ext == ".html" ||
                     ext == ".htm" || ext == ".jsonl" || ext == ".pdf";
  if (!known) return skip("unsupported file type '" + ext + "' (expected .txt .md .html .jsonl .pdf)");
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) fail(Where{path}, "cannot read file: {}", ec.message());
  if (size == 0) return skip("empty file");
  if (size > options.max_file_bytes) return skip(fmt::format("larger than {} bytes", options.max_file_bytes));
  std::string bytes = core::read_file(path);
  const std::string name = fs::path(path).filename().string();

  if (ext == ".pdf") {
    std::unique_ptr<poppler::document> doc(poppler::document::load_from_raw_data(bytes.data(), static_cast<int>(bytes.size())));
    if (!doc) return skip("not a readable PDF");
    if (doc->is_locked()) return skip("encrypted PDF");
    Document d;
    d.source = path;
    d.meta["format"] = "pdf";
    const auto t = doc->get_title().to_utf8();
    d.title = collapse(std::string(t.begin(), t.end()));
    for (int p = 0; p < doc->pages(); ++p) {
      std::unique_ptr<poppler::page> page(doc->create_page(p));
      if (!page) continue;
      const auto u = page->text().to_utf8();
      std::string pt(u.begin(), u.end());
      pt = core::utf8_replace_invalid(pt);
      const size_t base = d.text.size();
      d.text += pt;
      d.text += "\n\f\n";
      for (const auto& b : paragraph_blocks(d.text, base, base + pt.size())) d.blocks.push_back(b);
    }
    if (d.title.empty()) d.title = name;
    if (d.blocks.empty()) return skip("PDF without extractable text");
    return {std::move(d)};
  }

  if (bytes.find('\0') != std::string::npos && bytes.find('\0') < 8192) return skip("binary file (NUL byte)");
  const size_t bad = core::utf8_error_offset(bytes);
  if (bad != std::string::npos) return skip(fmt::format("not valid UTF-8 (byte offset {})", bad));
  if (bytes.size() >= 3 && bytes.compare(0, 3, "\xEF\xBB\xBF") == 0) bytes.replace(0, 3, "   ");  // BOM -> spaces, offsets kept

  std::vector<Document> docs;
  if (ext == ".jsonl") {
    size_t pos = 0;
    int64_t line = 0;
    while (pos < bytes.size()) {
      size_t nl = bytes.find('\n', pos);
      if (nl == std::string::npos) nl = bytes.size();
      ++line;
      size_t b = pos, e = nl;
      pos = nl + 1;
      if (!trim(bytes, b, e)) continue;
      nlohmann::json rec;
      try {
        rec = nlohmann::json::parse(bytes.begin() + static_cast<std::ptrdiff_t>(b), bytes.begin() + static_cast<std::ptrdiff_t>(e));
      } catch (const nlohmann::json::exception& ex) {
        fail(Where{path, line}, "invalid JSON: {}", ex.what());
      }
      if (!rec.is_object()) fail(Where{path, line}, "record is not a JSON object");
      if (!rec.contains(options.text_field)) fail(Where{path, line, options.text_field}, "missing text field (--text-field)");
      if (!rec[options.text_field].is_string()) fail(Where{path, line, options.text_field}, "text field is not a string");
      Document d;
      d.source = fmt::format("{}#L{}", path, line);
      d.text = rec[options.text_field].get<std::string>();
      for (auto it = rec.begin(); it != rec.end(); ++it)
        if (it.key() != options.text_field) d.meta[it.key()] = it.value();
      d.meta["format"] = "jsonl";
      d.meta["line"] = line;
      d.title = rec.contains("title") && rec["title"].is_string() ? rec["title"].get<std::string>() : fmt::format("{} line {}", name, line);
      d.blocks = paragraph_blocks(d.text);
      if (!d.blocks.empty()) docs.push_back(std::move(d));
    }
    if (docs.empty()) return skip("no records with text");
    return docs;
  }
  Document d;
  d.source = path;
  if (ext == ".html" || ext == ".htm") {
    d = html_document(bytes);
    d.source = path;
  } else if (ext == ".md" || ext == ".markdown") {
    d.text = std::move(bytes);
    d.blocks = markdown_blocks(d.text, &d.title);
    d.meta["format"] = "markdown";
  } else {
    d.text = std::move(bytes);
    d.blocks = paragraph_blocks(d.text);
    d.meta["format"] = "text";
  }
  if (d.title.empty()) d.title = name;
  if (d.blocks.empty()) return skip("no text (whitespace only)");
  docs.push_back(std::move(d));
  return docs;
}

}  // namespace loom::rag
