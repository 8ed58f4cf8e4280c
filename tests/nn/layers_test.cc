// nn building blocks against libtorch reference computations.
#include <gtest/gtest.h>

#include "loom/nn/attention.h"
#include "loom/nn/layers.h"
#include "loom/nn/linear.h"
#include "loom/nn/positions.h"

namespace loom::nn {
namespace {

TEST(Linear, MatchesTorchLinearAndLeavesBiasAlone) {
  torch::manual_seed(1);
  for (int64_t m : {1, 2, 7}) {
    torch::Tensor x = torch::randn({m, 3, 24});
    torch::Tensor w = torch::randn({40, 24});
    torch::Tensor b = torch::randn({40});
    torch::Tensor b_copy = b.clone();
    torch::Tensor y = linear(x, w, b);  // [m, 3, 40]
    EXPECT_EQ(y.sizes(), (std::vector<int64_t>{m, 3, 40}));
    EXPECT_TRUE(torch::allclose(y, torch::linear(x, w, b), 1e-5, 1e-5));
    EXPECT_TRUE(torch::allclose(linear(x, w, torch::Tensor()), torch::linear(x, w), 1e-5, 1e-5));
    EXPECT_TRUE(torch::equal(b, b_copy));  // the GEMM must not write into the bias (M = 1 case)
    // a single row again with the same bias: same answer
    EXPECT_TRUE(torch::allclose(linear(x[0][0].unsqueeze(0), w, b), torch::linear(x[0][0].unsqueeze(0), w, b), 1e-5, 1e-5));
  }
  // non-contiguous input
  torch::Tensor x = torch::randn({24, 5}).t();
  torch::Tensor w = torch::randn({8, 24});
  EXPECT_TRUE(torch::allclose(linear(x, w, torch::Tensor()), torch::linear(x, w), 1e-5, 1e-5));
}

TEST(Activations, HfNames) {
  torch::Tensor x = torch::linspace(-3, 3, 13);
  EXPECT_TRUE(torch::allclose(activate(x.clone(), parse_activation("swish", {})), x * torch::sigmoid(x)));
  EXPECT_TRUE(torch::allclose(activate(x.clone(), parse_activation("relu", {})), x.clamp_min(0)));
  EXPECT_TRUE(torch::allclose(activate(x.clone(), parse_activation("gelu", {})), 0.5 * x * (1 + torch::erf(x / std::sqrt(2.0))), 1e-5, 1e-6));
  torch::Tensor gelu_new = 0.5 * x * (1 + torch::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x.pow(3))));
  EXPECT_TRUE(torch::allclose(activate(x.clone(), parse_activation("gelu_new", {})), gelu_new, 1e-5, 1e-6));
  EXPECT_THROW(parse_activation("prelu", {"config.json", 0, "activation_function"}), Error);
}

TEST(Positions, FairseqIdsSkipPadding) {
  torch::Tensor ids = torch::tensor(std::vector<int64_t>{5, 6, 1, 1}).unsqueeze(0);  // pad = 1
  torch::Tensor pos = fairseq_position_ids(ids, 1, 0).contiguous();
  EXPECT_EQ(std::vector<int64_t>(pos.data_ptr<int64_t>(), pos.data_ptr<int64_t>() + 4), (std::vector<int64_t>{2, 3, 1, 1}));
  torch::Tensor step = torch::tensor(std::vector<int64_t>{7}).unsqueeze(0);
  EXPECT_EQ(fairseq_position_ids(step, 1, 4).item<int64_t>(), 1 + 1 + 4);  // padding_idx + 1 + past
  torch::Tensor table = fairseq_position_table(10, 8, 1);
  EXPECT_EQ(table[1].abs().sum().item<float>(), 0.0f);
  EXPECT_NEAR(table[3][0].item<float>(), std::sin(3.0), 1e-6);
  EXPECT_NEAR(table[3][4].item<float>(), std::cos(3.0), 1e-6);
  torch::Tensor marian = marian_position_table(10, 8);
  EXPECT_NEAR(marian[3][1].item<float>(), std::sin(3.0 / std::pow(10000.0, 2.0 / 8)), 1e-7);
  EXPECT_NEAR(marian[3][5].item<float>(), std::cos(3.0 / std::pow(10000.0, 2.0 / 8)), 1e-7);
}

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

}  // namespace
}  // namespace loom::nn
