// loom::rag engine: ingestion (files -> chunks -> store + vectors), retrieval (BM25, dense,
// hybrid by reciprocal-rank fusion) and extractive answers with citations. The CLI
// (src/loom/cli/rag.cc) only parses options and prints what these return.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loom/models/bert.h"
#include "loom/rag/chunker.h"
#include "loom/rag/extract.h"
#include "loom/rag/store.h"
#include "loom/rag/vectors.h"

namespace loom::rag {

/// Options of `loom rag ingest`.
struct IngestOptions {
  std::string embed_dir;        ///< sentence-transformers model directory; "" = BM25 only
  ChunkOptions chunk;           ///< budget and overlap (fixed per index; a different value is refused)
  ExtractOptions extract;
  bool prune = false;           ///< remove files of the index not found under the inputs
  int64_t batch_size = 32;      ///< texts per embedding batch
  bool progress = true;         ///< draw a progress line on `log` when it is a terminal
};

/// What an ingest run did.
struct IngestSummary {
  int64_t files_seen = 0, files_ingested = 0, files_unchanged = 0, files_removed = 0;
  int64_t documents = 0, chunks = 0, tokens = 0;  ///< added in this run
  double seconds = 0;
  std::vector<Skipped> skipped;
  nlohmann::json to_json() const;
};

/// The WordPiece tokenizer chunks are counted in when an index has no embedding model: the
/// bert-base-uncased vocabulary shipped in data/tokenizers/bert-base-uncased (the one
/// all-MiniLM-L6-v2 uses).
std::string default_tokenizer_dir();

/// Ingests `inputs` (files and directories, recursively; only .txt .md .html .jsonl .pdf are
/// picked up from directories) into the index at `index_dir` (created when missing). Each file
/// is one transaction, so kill -9 at any point loses at most the file in progress, and a rerun
/// skips files whose content hash is already recorded. Throws loom::Error for an index built
/// with another embedding model or other chunk settings (naming both), a corrupt store, or a
/// malformed JSONL record (file:line, field). Progress goes to `log`.
IngestSummary ingest(const std::string& index_dir, const std::vector<std::string>& inputs,
                     const IngestOptions& options, std::FILE* log);

/// Retrieval mode.
enum class Mode { kBm25, kDense, kHybrid };
/// "bm25" | "dense" | "hybrid"; throws loom::Error (field "--mode") otherwise.
Mode parse_mode(const std::string& s);
const char* mode_name(Mode m);

/// One retrieved chunk with its score breakdown.
struct Hit {
  ChunkRecord chunk;
  double score = 0;          ///< the mode's score (BM25, cosine, or RRF sum)
  int64_t bm25_rank = 0;     ///< 1-based rank in the BM25 list, 0 = not in it
  double bm25_score = 0;
  int64_t dense_rank = 0;    ///< 1-based rank in the dense list, 0 = not in it
  double dense_score = 0;
  nlohmann::json to_json() const;
};

/// Reciprocal-rank fusion constant (Cormack, Clarke & Büttcher 2009: score = sum 1/(k + rank)).
constexpr double kRrfK = 60.0;

/// An opened index for searching.
class Retriever {
 public:
  /// Opens `index_dir`. `embed_dir` "" uses the model recorded in the index (if any); a model
  /// whose fingerprint differs from the index's is refused, naming both.
  Retriever(const std::string& index_dir, const std::string& embed_dir = "");
  /// Top-k chunks for `query`. Throws loom::Error when the query has no searchable words (e.g.
  /// only symbols or a script the analyzer cannot cut), or dense/hybrid is asked of an index
  /// without vectors.
  std::vector<Hit> search(const std::string& query, int64_t k, Mode mode, const Filter& filter = {});
  bool has_vectors() const { return embedder_ != nullptr; }
  Store& store() { return *store_; }
  /// Best available mode: hybrid with vectors, else bm25.
  Mode default_mode() const { return has_vectors() ? Mode::kHybrid : Mode::kBm25; }

 private:
  std::string dir_;
  std::unique_ptr<Store> store_;
  std::shared_ptr<models::SentenceEmbedder> embedder_;
  std::unique_ptr<VectorIndex> vectors_;
};

/// An extractive answer: the best-supported sentences of the retrieved chunks, each followed by
/// the citation [n] of its source (n = 1-based position in `sources`).
struct Answer {
  bool found = false;            ///< false: nothing relevant was retrieved (text says so)
  std::string text;
  std::vector<Hit> sources;      ///< the retrieved chunks, numbered from 1
  std::vector<int64_t> cited;    ///< source numbers cited in `text`, in order of first use
  std::string best_sentence;     ///< the top sentence alone (for EM/F1)
  nlohmann::json to_json() const;
};

/// Extractive answer from the top-k chunks: sentences (ICU) scored by the IDF-weighted query
/// terms they contain (IDF over the retrieved sentences), up to `max_sentences` kept with at
/// least half the best score, in score order.
Answer extractive_answer(Retriever& r, const std::string& query, int64_t k, Mode mode, const Filter& filter = {},
                         int64_t max_sentences = 3);

/// The extractive answer over already retrieved `hits` (what extractive_answer does after search).
Answer answer_from_hits(std::vector<Hit> hits, const std::string& query, int64_t max_sentences = 3);

/// Stable chunk id "<16 hex of FNV-1a(source)>-<seq>".
std::string chunk_id(const std::string& source, int64_t seq);

/// Adds one already-cut document as a single chunk (used by evaluation: one chunk per
/// paragraph) — no chunking, same terms/vectors as ingest. `file` is the store's file key.
void add_single_chunk_documents(Store& store, const std::string& file, const std::vector<DocRecord>& docs,
                                const std::vector<std::string>& texts, const text::WordPieceTokenizer& tok,
                                const models::SentenceEmbedder* embedder);

}  // namespace loom::rag
