// Language-model training data: text documents (one file = one document, or a file split into
// documents at blank lines or at a marker line), Project Gutenberg header/footer stripping, and
// fixed training windows of W consecutive segments of one document (papers.md §5.4: memories
// are reset at each window start, so windows are independent batch items and a data position
// (epoch, batch index) fully determines a batch — exact resume).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loom::train {

/// One document of LM text.
struct LmDocument {
  std::string name;  ///< "file" or "file:line" of its first line (for messages)
  std::string text;  ///< UTF-8 text
};

/// How read_lm_documents splits a file into documents.
enum class DocSplit {
  kFile,        ///< the whole file is one document
  kBlankLines,  ///< documents are separated by one or more blank lines
  kMarker,      ///< documents are separated by lines equal to a marker (e.g. "<|endoftext|>")
};

/// Parses "file", "blank_lines" or "marker:<TEXT>" (marker = TEXT); throws loom::Error otherwise.
DocSplit parse_doc_split(const std::string& spec, std::string* marker);

/// Removes a Project Gutenberg licence header and footer: keeps the lines strictly between the
/// line starting "*** START OF" and the line starting "*** END OF" (older books: "***START OF",
/// "*END*THE SMALL PRINT" is not handled). Text without a START line is returned unchanged; a
/// START without END keeps everything after START.
std::string strip_gutenberg(const std::string& text);

/// Reads files as documents (UTF-8 checked; a UTF-8 BOM and CRLF line ends are normalised;
/// Gutenberg header/footer stripped when present). Empty documents are dropped and counted in
/// *dropped_empty (when given). Throws loom::Error naming the file (and line) for a missing
/// file or invalid UTF-8.
std::vector<LmDocument> read_lm_documents(const std::vector<std::string>& files, DocSplit split,
                                          const std::string& marker = "", int64_t* dropped_empty = nullptr);

/// A training window: tokens [begin, begin + length) of document doc (length = W·L + 1 or the
/// document's tail: inputs are the first length − 1 tokens, labels the last length − 1).
struct LmWindow {
  int64_t doc = 0;
  int64_t begin = 0;
  int64_t length = 0;
};

/// Cuts each tokenized document into consecutive windows of window_tokens + 1 tokens (the windows
/// share one boundary token, so every token after a document's first is a label exactly once).
/// A tail shorter than min_tokens + 1 is dropped (counted in *dropped_tokens); documents
/// shorter than that give no window. Deterministic.
std::vector<LmWindow> make_lm_windows(const std::vector<std::vector<int64_t>>& docs, int64_t window_tokens,
                                      int64_t min_tokens, int64_t* dropped_tokens = nullptr);

}  // namespace loom::train
