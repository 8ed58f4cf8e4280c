// nn/positions: fairseq and Marian sinusoidal position tables and position ids, hand-computed.
#include <gtest/gtest.h>

#include <cmath>

#include "loom/nn/positions.h"

namespace loom::nn {
namespace {

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

}  // namespace
}  // namespace loom::nn
