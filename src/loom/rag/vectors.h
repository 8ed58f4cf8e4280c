// loom::rag vector index: FAISS inner-product search over the chunk vectors a Store holds.
// Exact (IndexFlatIP) up to kHnswThreshold vectors, HNSW (IndexHNSWFlat, M 32, efSearch 128)
// above. The SQLite store is the source of truth; the FAISS file is derived from it:
// `dir`/vectors.faiss is written atomically (core::write_file_atomic) with `dir`/vectors.json
// {checksum (FNV-1a 64 of the file), generation of the store, count, dim, kind}, and rebuilt
// from the store when missing, corrupt (checksum or FAISS read error) or stale.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loom/rag/store.h"

namespace loom::rag {

/// Number of vectors above which the index is HNSW instead of exact.
constexpr int64_t kHnswThreshold = 50000;

/// A loaded vector index.
class VectorIndex {
 public:
  /// Loads `dir`/vectors.faiss if it is valid for `store`'s generation, else rebuilds it from the
  /// store and (when `write`) saves it. `rebuilt_reason` (optional) gets why it was rebuilt
  /// ("" when loaded). Throws loom::Error when the store holds no vectors.
  static std::unique_ptr<VectorIndex> open(const std::string& dir, const Store& store, bool write,
                                           std::string* rebuilt_reason = nullptr);
  ~VectorIndex();
  /// Top-k rows by inner product with `query` [dim] (cosine for normalised vectors), best first.
  std::vector<ScoredRow> search(const std::vector<float>& query, int64_t k) const;
  int64_t size() const;
  int64_t dim() const { return dim_; }
  bool hnsw() const { return hnsw_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int64_t dim_ = 0;
  bool hnsw_ = false;
};

/// Exact inner-product top-k over the store's vectors whose chunk passes `filter` (filtered dense
/// search: the FAISS index is not consulted). meta_of(row) returns a chunk's meta.
std::vector<ScoredRow> exact_filtered_search(const Store& store, const std::vector<float>& query, int64_t k,
                                             const Filter& filter);

}  // namespace loom::rag
