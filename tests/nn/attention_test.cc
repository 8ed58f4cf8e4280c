// nn/attention: scaled dot-product attention with masks and the KV cache, against a matmul reference.
#include <algorithm>

#include <gtest/gtest.h>

#include "loom/nn/attention.h"

namespace loom::nn {
namespace {

// softmax(q·kᵀ + mask)·v written out with matmul
torch::Tensor reference_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& mask) {
  torch::Tensor s = torch::matmul(q, k.transpose(-2, -1).contiguous());
  if (mask.defined()) s = s + mask;
  return torch::matmul(torch::softmax(s, -1), v);
}

TEST(Attention, SingleAndMultiQueryPathsMatchReference) {
  torch::manual_seed(2);
  torch::Tensor k = torch::randn({3, 2, 6, 4}), v = torch::randn({3, 2, 6, 4});
  torch::Tensor keep = torch::ones({3, 6}, torch::kBool);
  keep[1].narrow(0, 4, 2).fill_(false);
  torch::Tensor mask = additive_key_mask(keep);  // [3, 1, 1, 6]
  for (int64_t t : {1, 5}) {
    torch::Tensor q = torch::randn({3, 2, t, 4});
    torch::Tensor out = attention(q, k, v, mask);
    EXPECT_TRUE(torch::allclose(out, reference_attention(q, k, v, mask), 1e-5, 1e-6)) << "T = " << t;
    // masked keys do not matter
    torch::Tensor v2 = v.clone();
    v2[1].narrow(1, 4, 2).fill_(100.0f);
    EXPECT_TRUE(torch::allclose(attention(q, k, v2, mask), out, 1e-5, 1e-6));
  }
  torch::Tensor causal = additive_causal_mask(2, 3);  // [2, 5]
  EXPECT_EQ(causal[0][3].item<float>(), 0.0f);
  EXPECT_EQ(causal[0][4].item<float>(), masked_score());
  EXPECT_EQ(causal[1][4].item<float>(), 0.0f);
}

// One query per row with kv_rows: row b reads source entry kv_rows[b] (keys, values, mask row),
// exactly as attention() on the gathered tensors; the fused one-query kernel also reads the
// strided KV-cache layout and a per-row self-attention mask.
TEST(Attention, SharedKeyValueRowsMatchGatheredRows) {
  torch::manual_seed(3);
  torch::Tensor k = torch::randn({3, 2, 6, 8}), v = torch::randn({3, 2, 6, 8});
  torch::Tensor keep = torch::ones({3, 6}, torch::kBool);
  keep[2].narrow(0, 3, 3).fill_(false);
  torch::Tensor mask = additive_key_mask(keep);  // [3, 1, 1, 6], per source entry
  torch::Tensor rows = torch::tensor(std::vector<int64_t>{0, 0, 2, 2, 1, 2});
  for (int64_t t : {1, 4}) {
    torch::Tensor q = torch::randn({6, 2, t, 8});
    torch::Tensor shared = attention(q, k, v, mask, rows);
    torch::Tensor want = reference_attention(q, k.index_select(0, rows), v.index_select(0, rows), mask.index_select(0, rows));
    EXPECT_TRUE(torch::allclose(shared, want, 1e-5, 1e-6)) << "T = " << t;
  }
  // strided keys (a cache buffer narrowed to its length) and a per-row mask, T = 1
  torch::Tensor buf_k = torch::randn({3, 2, 10, 8}), buf_v = torch::randn({3, 2, 10, 8});
  torch::Tensor ks = buf_k.narrow(2, 0, 6), vs = buf_v.narrow(2, 0, 6);
  torch::Tensor q = torch::randn({3, 2, 1, 8});
  EXPECT_TRUE(torch::allclose(attention(q, ks, vs, mask), reference_attention(q, ks, vs, mask), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(attention(q, ks, vs, torch::Tensor()), reference_attention(q, ks, vs, torch::Tensor()), 1e-5, 1e-6));
  EXPECT_ANY_THROW(attention(q, k, v, mask, torch::tensor(std::vector<int64_t>{0, 3, 1})));  // kv row 3 of 3
}

// A row whose keys sit after masked leading positions (a row that joined a running batch) gets
// bit-for-bit the result of the same keys without them: batching never changes a translation.
TEST(Attention, OneQueryIgnoresLeadingMaskedPositionsExactly) {
  torch::manual_seed(8);
  for (int64_t s : {3, 8, 13, 21}) {
    for (int64_t lead : {1, 5, 8}) {
      torch::Tensor k = torch::randn({1, 2, s, 16}) * 3.0f, v = torch::randn({1, 2, s, 16});
      torch::Tensor q = torch::randn({1, 2, 1, 16});
      torch::Tensor kp = torch::cat({torch::randn({1, 2, lead, 16}), k}, 2), vp = torch::cat({torch::randn({1, 2, lead, 16}), v}, 2);
      torch::Tensor keep = torch::ones({1, lead + s}, torch::kBool);
      keep.narrow(1, 0, lead).fill_(false);
      EXPECT_TRUE(torch::equal(attention(q, kp, vp, additive_key_mask(keep)), attention(q, k, v, torch::Tensor())))
          << "S = " << s << ", leading = " << lead;
    }
  }
}

TEST(KVCacheTest, GrowsAndReorders) {
  KVCache cache;
  torch::Tensor all_k = torch::randn({3, 2, 7, 4}), all_v = torch::randn({3, 2, 7, 4});
  cache.append(all_k.narrow(2, 0, 2), all_v.narrow(2, 0, 2), /*capacity_hint=*/3);
  for (int64_t t = 2; t < 7; ++t) cache.append(all_k.narrow(2, t, 1), all_v.narrow(2, t, 1), 3);  // grows past 3
  EXPECT_EQ(cache.length(), 7);
  EXPECT_TRUE(torch::equal(cache.keys(), all_k));
  EXPECT_TRUE(torch::equal(cache.values(), all_v));
  torch::Tensor index = torch::tensor(std::vector<int64_t>{2, 2, 0, 1});
  cache.reorder(index);
  EXPECT_TRUE(torch::equal(cache.keys(), all_k.index_select(0, index)));
  EXPECT_TRUE(torch::equal(cache.values(), all_v.index_select(0, index)));
  torch::Tensor extra = torch::randn({4, 2, 1, 4});
  cache.append(extra, extra, 0);
  EXPECT_TRUE(torch::equal(cache.keys().narrow(2, 7, 1), extra));
}

// Caches of equal shape reordered in turn (decoder layers of a beam search) pass one spare pair of
// buffers along: after a reorder the previous cache's freed buffers are reused, not allocated,
// and every cache still holds exactly its own gathered rows.
TEST(KVCacheTest, CachesReorderedInTurnShareOneSpare) {
  std::vector<KVCache> caches(3);
  std::vector<torch::Tensor> ks, vs;
  for (auto& c : caches) {
    ks.push_back(torch::randn({4, 2, 5, 3}));
    vs.push_back(torch::randn({4, 2, 5, 3}));
    c.append(ks.back(), vs.back(), 8);
  }
  std::vector<const void*> seen;  // data pointers of every buffer in use over the steps
  for (const auto& index : {torch::tensor(std::vector<int64_t>{1, 1, 3, 0}), torch::tensor(std::vector<int64_t>{2, 0, 0, 3})}) {
    for (size_t i = 0; i < caches.size(); ++i) {
      caches[i].take_spare(caches[(i + caches.size() - 1) % caches.size()]);
      caches[i].reorder(index);
      ks[i] = ks[i].index_select(0, index);
      vs[i] = vs[i].index_select(0, index);
      EXPECT_TRUE(torch::equal(caches[i].keys(), ks[i])) << i;
      EXPECT_TRUE(torch::equal(caches[i].values(), vs[i])) << i;
      const void* p = caches[i].keys().data_ptr();
      if (std::find(seen.begin(), seen.end(), p) == seen.end()) seen.push_back(p);
    }
  }
  // 3 caches + 1 spare key buffer in all (without sharing: 2 per cache)
  EXPECT_EQ(seen.size(), 4u);
  caches[0].take_spare(caches[0]);  // no-op on itself
  EXPECT_TRUE(torch::equal(caches[0].keys(), ks[0]));
}

}  // namespace
}  // namespace loom::nn
