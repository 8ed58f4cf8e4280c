// loom::rag chunking: a document's blocks cut into retrieval chunks under a token budget counted
// in the embedding model's own WordPiece tokenizer, following structure (headings start a new
// chunk; paragraphs, then sentences, then words, then characters are the units packed), with an
// overlap of trailing sentences carried into the next chunk.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "loom/rag/extract.h"
#include "loom/text/wordpiece.h"

namespace loom::rag {

/// Chunking parameters.
struct ChunkOptions {
  int64_t max_tokens = 200;     ///< budget per chunk in WordPiece tokens (without [CLS]/[SEP])
  int64_t overlap_tokens = 32;  ///< at most this many tokens of the previous chunk's last units repeat
};

/// One chunk of a document: Document::text[begin, end) (trimmed of surrounding whitespace).
struct Chunk {
  size_t begin = 0;
  size_t end = 0;
  std::string text;           ///< = document text [begin, end)
  std::string heading_path;   ///< enclosing headings joined by " > " ("" at top level)
  int64_t n_tokens = 0;       ///< WordPiece tokens of text (<= max_tokens)
};

/// Chunks of `doc` in document order. Invariants (tests/rag/chunker_test.cc): every chunk's
/// n_tokens = tokenizer.count_tokens(text) <= max_tokens; chunk begins increase; every
/// non-whitespace byte of every block lies in some chunk; consecutive chunks overlap by at most
/// the carried units. Units that cannot be cut below the budget at character level (a single
/// code point counting as more than max_tokens tokens cannot occur: one code point is at most
/// one WordPiece word) are split per code point. Throws loom::Error when max_tokens < 1 or
/// overlap_tokens >= max_tokens.
std::vector<Chunk> chunk_document(const Document& doc, const text::WordPieceTokenizer& tokenizer,
                                  const ChunkOptions& options);

}  // namespace loom::rag
