// loom::rag document extraction: the text of .txt / .md / .html / .jsonl / .pdf files with its
// block structure (paragraphs, headings), ready for chunking.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom::rag {

/// A structural block of a document's text: a paragraph, a heading line, a code block, a table.
struct Block {
  size_t begin = 0;          ///< byte offset into Document::text
  size_t end = 0;            ///< one past the last byte
  int heading_level = 0;     ///< 1-6 when the block is a heading, else 0
};

/// One document's extracted text. For .txt and .md the text is the file itself, so offsets are
/// byte offsets into the file; for .html / .pdf / .jsonl they index the extracted text.
struct Document {
  std::string source;        ///< file path (".jsonl" records: "path#L<line>")
  std::string title;         ///< <title>, first heading, the JSONL "title" field, or the file name
  std::string text;          ///< valid UTF-8
  std::vector<Block> blocks; ///< in order, non-overlapping, each non-empty
  nlohmann::json meta = nlohmann::json::object();  ///< JSONL fields besides the text; "format"
};

/// Why a file was not ingested (binary, not UTF-8, empty, too large, unknown extension).
struct Skipped {
  std::string path;
  std::string reason;
};

/// Options for extract_file.
struct ExtractOptions {
  std::string text_field = "text";       ///< JSONL field holding the text
  size_t max_file_bytes = 256u << 20;    ///< larger files are skipped
};

/// The documents of one file, chosen by extension: .txt/.text (paragraphs = blank-line separated),
/// .md/.markdown (ATX and setext headings, fenced code kept whole, paragraphs), .html/.htm (Gumbo
/// HTML5 parser; script/style/nav/header/footer/aside/form/noscript/template dropped, block
/// elements become paragraphs, h1-h6 headings, <title> the title), .jsonl (one document per
/// record: `text_field` is the text, other fields are metadata), .pdf (poppler: one block per
/// page paragraph, "page" in meta of each block is not kept — pages are separated by form
/// feeds). Returns an empty vector and fills `skipped` for a file that is empty, binary (a NUL
/// byte in the first 8 KiB), not valid UTF-8 (reason names the byte offset), too large, or of
/// an unknown type. Throws loom::Error naming the file and line for a JSONL record that is not a
/// JSON object or lacks a string `text_field`.
std::vector<Document> extract_file(const std::string& path, const ExtractOptions& options, Skipped* skipped);

/// Blocks of plain text: paragraphs separated by blank lines (whitespace-only lines).
std::vector<Block> paragraph_blocks(const std::string& text, size_t begin = 0, size_t end = std::string::npos);

/// Blocks of Markdown text (headings, fenced code, paragraphs); sets `title` to the first
/// heading's text when `title` is empty.
std::vector<Block> markdown_blocks(const std::string& text, std::string* title);

/// Text and blocks of an HTML document (see extract_file); `title` gets <title>.
Document html_document(const std::string& html);

}  // namespace loom::rag
