// Token-budget batching invariants: every example in exactly one batch per epoch, the budget
// holds, per-epoch order is a seeded permutation, rank slices partition a batch.
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "loom/core/error.h"
#include "loom/data/batching.h"

namespace {

std::vector<std::pair<int64_t, int64_t>> random_lengths(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::pair<int64_t, int64_t>> l;
  for (int i = 0; i < n; ++i) l.emplace_back(1 + rng() % 40, 1 + rng() % 50);
  return l;
}

TEST(TokenBatcher, EveryExampleOncePerEpochWithinBudget) {
  auto lengths = random_lengths(1000, 3);
  loom::data::BatchingOptions o;
  o.max_tokens = 300;
  o.seed = 11;
  loom::data::TokenBatcher b(lengths, o);
  ASSERT_GT(b.num_batches(), 10);
  std::vector<std::vector<int64_t>> first_order;
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::vector<int> seen(lengths.size(), 0);
    std::vector<std::vector<int64_t>> order;
    for (int64_t i = 0; i < b.num_batches(); ++i) {
      const auto& batch = b.batch(epoch, i);
      ASSERT_FALSE(batch.empty());
      int64_t mx = 0;
      for (int64_t e : batch) {
        ++seen[e];
        mx = std::max({mx, lengths[e].first, lengths[e].second});
      }
      EXPECT_LE(mx * static_cast<int64_t>(batch.size()), o.max_tokens);
      EXPECT_EQ(b.padded_tokens(batch), mx * static_cast<int64_t>(batch.size()));
      order.push_back(batch);
    }
    for (int s : seen) ASSERT_EQ(s, 1);
    if (epoch == 0) first_order = order;
    else EXPECT_NE(order, first_order);  // reshuffled each epoch
  }
  // Same (seed, epoch, index) -> same batch, also from a fresh batcher (exact resume).
  loom::data::TokenBatcher b2(lengths, o);
  for (int64_t i = 0; i < b.num_batches(); ++i) EXPECT_EQ(b2.batch(1, i), b.batch(1, i));
  EXPECT_EQ(b2.batch(0, 5), first_order[5]);
}

TEST(TokenBatcher, MaxSentencesAndUnshuffledOrder) {
  std::vector<std::pair<int64_t, int64_t>> lengths = {{5, 5}, {1, 1}, {3, 2}, {2, 3}, {4, 1}};
  loom::data::BatchingOptions o;
  o.max_tokens = 100;
  o.max_sentences = 2;
  o.shuffle = false;
  loom::data::TokenBatcher b(lengths, o);
  ASSERT_EQ(b.num_batches(), 3);
  // Sorted by (max(src, tgt), src, tgt): 1 (1,1), 3 (2,3), 2 (3,2), 4 (4,1), 0 (5,5).
  EXPECT_EQ(b.batch(0, 0), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(b.batch(0, 1), (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(b.batch(4, 2), (std::vector<int64_t>{0}));
}

TEST(TokenBatcher, ExampleOverBudgetIsAnError) {
  loom::data::BatchingOptions o;
  o.max_tokens = 10;
  try {
    loom::data::TokenBatcher b({{3, 4}, {2, 11}}, o);
    FAIL() << "no error";
  } catch (const loom::Error& e) {
    EXPECT_NE(std::string(e.what()).find("example 1 has 11 tokens"), std::string::npos) << e.what();
    EXPECT_EQ(e.where().field, "max_tokens");
  }
  EXPECT_THROW(loom::data::TokenBatcher({}, o), loom::Error);
}

TEST(TokenBatcher, RankSlicesPartitionABatch) {
  std::vector<int64_t> batch = {4, 8, 15, 16, 23};
  for (int world : {1, 2, 3, 7}) {
    std::vector<int64_t> joined;
    for (int r = 0; r < world; ++r) {
      auto s = loom::data::rank_slice(batch, r, world);
      joined.insert(joined.end(), s.begin(), s.end());
    }
    EXPECT_EQ(joined, batch) << world;
  }
  EXPECT_EQ(loom::data::rank_slice(batch, 1, 2), (std::vector<int64_t>{15, 16, 23}));
  EXPECT_THROW(loom::data::rank_slice(batch, 2, 2), loom::Error);
}

}  // namespace
