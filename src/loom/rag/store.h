// loom::rag store: documents, chunks, metadata, BM25 and vectors of one index, behind a small
// interface (Store) so that another backend (a server-side database) can replace the embedded
// one without touching ingestion or retrieval. The embedded backend (open_sqlite_store) is one
// directory: store.sqlite (SQLite, WAL, FTS5) + vectors.faiss / vectors.json (rag/vectors.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom::rag {

/// A document as stored: one ingested file (or JSONL record).
struct DocRecord {
  std::string source;   ///< unique key: absolute path, or "path#L<line>" for a JSONL record
  std::string file;     ///< the file it came from (absolute path)
  std::string title;
  std::string hash;     ///< content hash of the file (FNV-1a 64, hex): unchanged -> not re-chunked
  nlohmann::json meta = nlohmann::json::object();
};

/// A chunk as stored.
struct ChunkRecord {
  int64_t row = 0;            ///< store-assigned key (filled by the store)
  std::string id;             ///< stable id "<16 hex of the source>-<seq>" (same after re-ingest)
  std::string source;         ///< DocRecord::source
  std::string title;
  int64_t seq = 0;            ///< position in the document, from 0
  std::string text;
  int64_t begin = 0, end = 0; ///< byte offsets into the document's (extracted) text
  std::string heading_path;
  int64_t n_tokens = 0;
  std::string terms;          ///< space-separated search terms BM25 indexes (rag::search_terms)
  nlohmann::json meta = nlohmann::json::object();  ///< the document's meta
};

/// A metadata filter: a conjunction of `meta.KEY OP VALUE` comparisons (OP one of = != < <= > >=;
/// VALUE a JSON string or number), e.g. `meta.lang = "en" AND meta.year >= 2020`. Evaluated on
/// each chunk's meta object; a missing key compares false.
struct Filter {
  struct Clause {
    std::string key;
    std::string op;
    nlohmann::json value;
  };
  std::vector<Clause> clauses;
  /// Parses the text form. Throws loom::Error (field "--where") naming the offending part.
  static Filter parse(const std::string& text);
  /// True when `meta` satisfies every clause.
  bool matches(const nlohmann::json& meta) const;
  bool empty() const { return clauses.empty(); }
};

/// One BM25 hit.
struct ScoredRow {
  int64_t row = 0;
  double score = 0;  ///< higher is better
};

/// The storage interface retrieval and ingestion use.
class Store {
 public:
  virtual ~Store() = default;
  /// Index-wide settings (embedding model fingerprint, chunk budget, ...), "" when unset.
  virtual std::string setting(const std::string& key) const = 0;
  virtual void set_setting(const std::string& key, const std::string& value) = 0;
  /// Content hash recorded for `file`, or nullopt if the file was never ingested completely.
  virtual std::optional<std::string> file_hash(const std::string& file) const = 0;
  /// Replaces everything stored for `file` (its documents, chunks, terms, vectors) by `docs` /
  /// `chunks` (chunk i's vector is vectors[i] when vectors is non-empty) and records `hash`, in
  /// one transaction: after a crash either the old or the new state of the file is visible.
  virtual void replace_file(const std::string& file, const std::string& hash, const std::vector<DocRecord>& docs,
                            const std::vector<ChunkRecord>& chunks, const std::vector<std::vector<float>>& vectors) = 0;
  /// Removes a file and everything stored for it (one transaction).
  virtual void remove_file(const std::string& file) = 0;
  /// Every ingested file.
  virtual std::vector<std::string> files() const = 0;
  /// Top `k` chunks for the OR of `terms` by FTS5 BM25 (k1 1.2, b 0.75), filtered.
  virtual std::vector<ScoredRow> bm25(const std::vector<std::string>& terms, int64_t k, const Filter& filter) const = 0;
  /// Chunks by row key (missing rows are left out), in the order asked.
  virtual std::vector<ChunkRecord> chunks(const std::vector<int64_t>& rows) const = 0;
  /// Every (row, vector) pair, in row order (vector rebuilds, filtered dense search).
  virtual void for_each_vector(const std::function<void(int64_t row, const float* v, int64_t dim)>& f) const = 0;
  /// Counts: documents, chunks, tokens (sum of n_tokens), files.
  virtual nlohmann::json stats() const = 0;
  /// A number that changes with every modification (the vector file records the one it was
  /// built at, so a stale file is rebuilt).
  virtual int64_t generation() const = 0;
};

/// Opens (or, when `create`, creates) the SQLite store `dir`/store.sqlite. Throws loom::Error
/// naming the file when it is not a SQLite database, is corrupt, or is a SQLite file that is not
/// a loom rag index (no matching "format" setting) — nothing in it is changed then.
std::unique_ptr<Store> open_sqlite_store(const std::string& dir, bool create);

}  // namespace loom::rag
