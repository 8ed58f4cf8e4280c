// External key/value memory of Memorizing Transformers (Wu et al., ICLR 2022; papers.md §4.2–4.5):
// one FIFO store per (batch row, head), exact top-k search with torch::topk or approximate
// search with a FAISS inverted-file index (IVF-Flat, inner product).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "loom/core/error.h"

namespace loom::nn {

/// How KnnMemory::search finds the top-k keys.
enum class KnnSearch {
  kExact,     ///< "exact": torch::topk over q·K_memᵀ of every valid slot (the paper's CPU choice)
  kFaissIvf,  ///< "faiss_ivf": per (row, head) faiss::IndexIVFFlat, inner product; exact search
              ///< until a row holds faiss_train_size keys (the IVF quantiser is trained on them)
};

/// Parses "exact" / "faiss_ivf"; throws loom::Error at `where` otherwise.
KnnSearch parse_knn_search(const std::string& name, const Where& where);

/// Sizes and search settings of a KnnMemory.
struct KnnMemoryOptions {
  int64_t capacity = 65536;        ///< M: slots per (row, head); the oldest are evicted first
  KnnSearch search = KnnSearch::kExact;
  int64_t faiss_nlist = 64;        ///< IVF lists (k-means centroids) per (row, head)
  int64_t faiss_nprobe = 8;        ///< lists visited per query; = faiss_nlist makes it exact
  int64_t faiss_train_size = 0;    ///< keys needed to train the quantiser; 0 = 39·faiss_nlist
};

/// The neighbours of each query (see KnnMemory::search). k' = min(k, capacity).
struct KnnResult {
  torch::Tensor keys;       ///< [B, H, Q, k', d_key] stored keys (no grad)
  torch::Tensor values;     ///< [B, H, Q, k', d_value] stored values (no grad)
  torch::Tensor slots;      ///< [B, H, Q, k'] int64 slot index in the ring buffer (0 where invalid)
  torch::Tensor positions;  ///< [B, H, Q, k'] int64 absolute token position of each neighbour (-1 where invalid)
  torch::Tensor valid;      ///< [B, H, Q, k'] bool: false where the row holds fewer than k' keys
};

/// A FIFO key/value store per (batch row b, head h) holding at most `capacity` entries, each
/// with the absolute position of its token. Entries are constants (no autograd: they are
/// detached on append), as in the paper ("no gradient flows into the memory"). Rows are
/// independent: clearing one row (document boundary) leaves the others untouched.
/// Memory: B·H·capacity·(d_key + d_value) elements of `dtype`, allocated on first append.
class KnnMemory {
 public:
  /// Throws loom::Error when a size is not positive.
  KnnMemory(int64_t batch, int64_t heads, int64_t d_key, int64_t d_value, KnnMemoryOptions options,
            torch::ScalarType dtype = torch::kFloat32);
  ~KnnMemory();
  /// Movable (the FAISS indexes move with it), not copyable.
  KnnMemory(KnnMemory&&) noexcept;
  KnnMemory& operator=(KnnMemory&&) noexcept;

  /// Appends the tokens of k [B, H, T, d_key] and v [B, H, T, d_value] at absolute positions
  /// positions [T] (int64) to every row, skipping entries where keep [B, T] (bool, or undefined =
  /// keep all) is false. When a row is full its oldest entries are evicted (FIFO); if more than
  /// `capacity` tokens arrive at once, only the newest `capacity` stay.
  void append(const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& positions,
              const torch::Tensor& keep = {});

  /// Empties the rows where rows [B] (bool) is true (their FAISS indexes too).
  void clear_rows(const torch::Tensor& rows);

  /// The k' = min(k, capacity) stored keys with the largest inner product q·key for every query
  /// q [B, H, Q, d_key] (each query gets its own set), best first; ties in exact mode resolve as
  /// torch::topk does. Throws loom::Error when k < 1.
  KnnResult search(const torch::Tensor& q, int64_t k) const;

  /// Number of valid entries in row b (the same for every head).
  int64_t size(int64_t row) const { return count_[row]; }
  /// Slots per (row, head).
  int64_t capacity() const { return options_.capacity; }
  /// Batch rows B.
  int64_t batch() const { return batch_; }
  /// The options in use (faiss_train_size resolved).
  const KnnMemoryOptions& options() const { return options_; }
  /// True when row b's FAISS index is trained (FAISS mode only) and so serves its searches.
  bool faiss_ready(int64_t row) const;
  /// Bytes held by the stored keys, values and positions (0 before the first append).
  int64_t nbytes() const;

 private:
  struct Faiss;
  void ensure_storage();
  torch::Tensor valid_slots() const;  // [B, C] bool
  KnnResult exact(const torch::Tensor& q, int64_t k, const torch::Tensor& valid) const;
  void faiss_rebuild_row(int64_t b);

  int64_t batch_, heads_, d_key_, d_value_;
  KnnMemoryOptions options_;
  torch::ScalarType dtype_;
  torch::Tensor keys_;    // [B, H, C, d_key]
  torch::Tensor values_;  // [B, H, C, d_value]
  torch::Tensor pos_;     // [B, C] int64
  std::vector<int64_t> head_;   // oldest slot per row
  std::vector<int64_t> count_;  // valid entries per row
  std::unique_ptr<Faiss> faiss_;
};

}  // namespace loom::nn
