// Token-budget batching (fairseq-style): examples sorted by length are packed greedily into
// batches whose padded size stays within a token budget; the batch order is shuffled per epoch
// with a seeded RNG, so a data position is just (epoch, batch index) and resumes exactly.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

namespace loom::data {

/// Greedy token-budget packing, the one packer of training (TokenBatcher) and translation
/// (generate::Translator): walks `order` (example indices, ascending by length) and closes the
/// batch when adding the next example would make n × (longest length in the batch) exceed
/// max_tokens, or n exceed max_sentences (0 = no limit). An example longer than max_tokens on
/// its own gets a batch of its own (callers that must reject it check first). length(i) is
/// example i's padded length in tokens. Returns the batches in `order`'s order.
std::vector<std::vector<int64_t>> pack_token_budget(const std::vector<int64_t>& order,
                                                    const std::function<int64_t(int64_t)>& length,
                                                    int64_t max_tokens, int64_t max_sentences);

/// How batches are formed.
struct BatchingOptions {
  int64_t max_tokens = 4096;    ///< budget per batch: n_examples * max(longest src, longest tgt)
  int64_t max_sentences = 0;    ///< at most this many examples per batch; 0 = no limit
  bool shuffle = true;          ///< shuffle the batch order each epoch (false: shortest first)
  uint64_t seed = 1;            ///< seed of the per-epoch shuffle
};

/// A fixed set of batches over examples of known lengths, and their order in each epoch.
class TokenBatcher {
 public:
  /// lengths[i] = (source tokens, target tokens) of example i, special tokens included.
  /// Examples are sorted by (max(src, tgt), src, tgt, index) and packed greedily: a batch is
  /// closed when adding the next example would make n * max_len exceed max_tokens (or exceed
  /// max_sentences). Throws loom::Error when max_tokens < 1, or an example alone exceeds the
  /// budget (naming the example index and its length), or lengths is empty.
  TokenBatcher(const std::vector<std::pair<int64_t, int64_t>>& lengths, BatchingOptions options);

  /// Number of batches per epoch (the same every epoch).
  int64_t num_batches() const { return static_cast<int64_t>(batches_.size()); }

  /// Example indices of the index-th batch (0 <= index < num_batches()) of `epoch` (>= 0), in
  /// ascending length order. Epoch e uses the batch permutation from seed + e, so the result
  /// depends only on (seed, epoch, index). Throws loom::Error for an index out of range.
  const std::vector<int64_t>& batch(int64_t epoch, int64_t index) const;

  /// Padded token count n * max(max src len, max tgt len) of a batch of example indices.
  int64_t padded_tokens(const std::vector<int64_t>& batch) const;

  /// The batches in sorted (unshuffled) order.
  const std::vector<std::vector<int64_t>>& batches() const { return batches_; }

 private:
  std::vector<std::pair<int64_t, int64_t>> lengths_;
  BatchingOptions options_;
  std::vector<std::vector<int64_t>> batches_;
  mutable int64_t cached_epoch_ = -1;
  mutable std::vector<int64_t> order_;
};

/// The part of a global batch that data-parallel rank `rank` of `world` processes: the
/// contiguous slice [rank * n / world, (rank + 1) * n / world) of its n examples (empty when
/// n < world for some ranks). The slices of all ranks partition the batch exactly.
std::vector<int64_t> rank_slice(const std::vector<int64_t>& batch, int rank, int world);

}  // namespace loom::data
