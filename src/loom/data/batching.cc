#include "loom/data/batching.h"

#include <algorithm>
#include <numeric>

#include "loom/core/error.h"
#include "loom/data/shuffle.h"

namespace loom::data {

TokenBatcher::TokenBatcher(const std::vector<std::pair<int64_t, int64_t>>& lengths,
                           BatchingOptions options)
    : lengths_(lengths), options_(options) {
  if (options_.max_tokens < 1) fail(Where{"", 0, "max_tokens"}, "must be >= 1, got {}", options_.max_tokens);
  if (options_.max_sentences < 0)
    fail(Where{"", 0, "max_sentences"}, "must be >= 0, got {}", options_.max_sentences);
  if (lengths_.empty()) fail("no examples to batch");
  std::vector<int64_t> idx(lengths_.size());
  std::iota(idx.begin(), idx.end(), 0);
  auto key = [&](int64_t i) {
    const auto& l = lengths_[i];
    return std::make_tuple(std::max(l.first, l.second), l.first, l.second, i);
  };
  std::sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return key(a) < key(b); });
  auto len = [&](int64_t i) { return std::max(lengths_[i].first, lengths_[i].second); };
  for (int64_t i : idx)
    if (len(i) > options_.max_tokens)
      fail(Where{"", 0, "max_tokens"}, "example {} has {} tokens, more than the batch budget of {} tokens", i, len(i),
           options_.max_tokens);
  batches_ = pack_token_budget(idx, len, options_.max_tokens, options_.max_sentences);
}

std::vector<std::vector<int64_t>> pack_token_budget(const std::vector<int64_t>& order,
                                                    const std::function<int64_t(int64_t)>& length,
                                                    int64_t max_tokens, int64_t max_sentences) {
  std::vector<std::vector<int64_t>> batches;
  std::vector<int64_t> cur;
  int64_t cur_max = 0;
  for (int64_t i : order) {
    const int64_t new_max = std::max(cur_max, length(i));
    const auto n = static_cast<int64_t>(cur.size()) + 1;
    const bool full = n * new_max > max_tokens || (max_sentences > 0 && n > max_sentences);
    if (!cur.empty() && full) {
      batches.push_back(std::move(cur));
      cur.clear();
      cur_max = 0;
    }
    cur.push_back(i);
    cur_max = std::max(cur_max, length(i));
  }
  if (!cur.empty()) batches.push_back(std::move(cur));
  return batches;
}

const std::vector<int64_t>& TokenBatcher::batch(int64_t epoch, int64_t index) const {
  if (index < 0 || index >= num_batches())
    fail("batch index {} out of range [0, {})", index, num_batches());
  if (epoch < 0) fail("epoch {} < 0", epoch);
  if (cached_epoch_ != epoch) {
    order_.resize(batches_.size());
    std::iota(order_.begin(), order_.end(), 0);
    if (options_.shuffle)
      shuffle_indices(order_, options_.seed + static_cast<uint64_t>(epoch) * 0x9E3779B97F4A7C15ULL);
    cached_epoch_ = epoch;
  }
  return batches_[order_[index]];
}

int64_t TokenBatcher::padded_tokens(const std::vector<int64_t>& batch) const {
  int64_t m = 0;
  for (int64_t i : batch) m = std::max({m, lengths_[i].first, lengths_[i].second});
  return m * static_cast<int64_t>(batch.size());
}

std::vector<int64_t> rank_slice(const std::vector<int64_t>& batch, int rank, int world) {
  if (world < 1 || rank < 0 || rank >= world) fail("bad rank {} of world size {}", rank, world);
  const int64_t n = static_cast<int64_t>(batch.size());
  int64_t b = rank * n / world, e = (rank + 1) * n / world;
  return std::vector<int64_t>(batch.begin() + b, batch.begin() + e);
}

}  // namespace loom::data
