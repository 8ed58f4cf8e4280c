// nn LayerNorm (nn/layers) and RMSNorm (nn/lm_blocks), hand-computed.
#include <gtest/gtest.h>

#include <cmath>

#include "loom/nn/layers.h"
#include "loom/nn/lm_blocks.h"

namespace loom::nn {
namespace {

TEST(Norms, LayerNormHandComputed) {
  LayerNorm norm(4, 1e-5);
  {
    torch::NoGradGuard g;
    norm->weight.copy_(torch::tensor({1.0f, 2.0f, 0.5f, 1.0f}));
    norm->bias.copy_(torch::tensor({0.0f, 0.0f, 0.0f, 1.0f}));
  }
  // x = (1, 2, 3, 4): mean 2.5, biased variance 1.25
  torch::Tensor y = norm->forward(torch::tensor({{1.0f, 2.0f, 3.0f, 4.0f}}));
  const double sd = std::sqrt(1.25 + 1e-5);
  EXPECT_NEAR(y[0][0].item<double>(), 1.0 * (1 - 2.5) / sd, 1e-6);
  EXPECT_NEAR(y[0][1].item<double>(), 2.0 * (2 - 2.5) / sd, 1e-6);
  EXPECT_NEAR(y[0][2].item<double>(), 0.5 * (3 - 2.5) / sd, 1e-6);
  EXPECT_NEAR(y[0][3].item<double>(), 1.0 * (4 - 2.5) / sd + 1.0, 1e-6);
  // rows are normalised independently: a shifted, scaled row gives the same output
  torch::Tensor y2 = norm->forward(torch::tensor({{1.0f, 2.0f, 3.0f, 4.0f}, {12.0f, 14.0f, 16.0f, 18.0f}}));
  EXPECT_TRUE(torch::allclose(y2[0], y2[1], 1e-5, 1e-5));
}

TEST(Norms, RMSNormHandComputed) {
  RMSNorm norm(2, 1e-6);
  {
    torch::NoGradGuard g;
    norm->weight.copy_(torch::tensor({2.0f, 0.5f}));
  }
  torch::Tensor y = norm->forward(torch::tensor({{3.0f, 4.0f}}));  // rms = sqrt(12.5)
  const double r = std::sqrt(12.5 + 1e-6);
  EXPECT_NEAR(y[0][0].item<double>(), 2.0 * 3.0 / r, 1e-6);
  EXPECT_NEAR(y[0][1].item<double>(), 0.5 * 4.0 / r, 1e-6);
  // half-precision input: statistics in float32, output back in half
  torch::Tensor yh = norm->forward(torch::tensor({{3.0f, 4.0f}}).to(torch::kHalf));
  EXPECT_EQ(yh.scalar_type(), torch::kHalf);
  EXPECT_NEAR(yh[0][0].item<double>(), 2.0 * 3.0 / r, 2e-3);
}

}  // namespace
}  // namespace loom::nn
