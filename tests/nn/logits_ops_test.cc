// nn/logits_ops: the row log-softmax normaliser and top-k against torch's own ops.
#include <cmath>
#include <limits>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "loom/nn/logits_ops.h"

namespace loom::nn {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// log_softmax(x) = (x - max) - row_logsum_exp(x, max) matches torch.log_softmax, for lengths
// around the 16-float vector blocks and with masked (-inf) entries.
TEST(LogitsOps, LogSumExpMatchesTorchLogSoftmax) {
  torch::manual_seed(4);
  for (int64_t n : {1, 7, 16, 17, 33, 1000, 65001}) {
    torch::Tensor x = torch::randn({n}) * 6.0f;
    if (n > 3) {
      x[1] = -kInf;
      x[n - 1] = -kInf;
    }
    const float* p = x.data_ptr<float>();
    const float mx = row_max(p, n);
    EXPECT_EQ(mx, x.max().item<float>()) << "n = " << n;
    const float logsum = row_logsum_exp(p, n, mx);
    torch::Tensor ref = torch::log_softmax(x.to(torch::kFloat64), 0);
    for (int64_t i = 0; i < n; i += std::max<int64_t>(1, n / 50)) {
      const float mine = (p[i] - mx) - logsum;
      const double want = ref[i].item<double>();
      if (std::isinf(want)) {
        EXPECT_TRUE(std::isinf(mine) && mine < 0) << "n = " << n << " i = " << i;
      } else {
        EXPECT_NEAR(mine, want, 2e-6 * std::max(1.0, std::abs(want))) << "n = " << n << " i = " << i;
      }
    }
  }
}

TEST(LogitsOps, FullyMaskedRowAndForcedToken) {
  std::vector<float> row(40, -kInf);
  EXPECT_EQ(row_max(row.data(), 40), -kInf);
  EXPECT_EQ(row_logsum_exp(row.data(), 40, -kInf), -kInf);
  row[21] = 0.0f;  // a forced token: its log-probability is exactly 0
  const float mx = row_max(row.data(), 40);
  EXPECT_EQ(mx, 0.0f);
  EXPECT_EQ((row[21] - mx) - row_logsum_exp(row.data(), 40, mx), 0.0f);
}

TEST(LogitsOps, MaxSkipsNaN) {
  std::vector<float> row = {1.0f, NAN, 3.0f, 2.0f, NAN, NAN, NAN, NAN, NAN, -1.0f};
  EXPECT_EQ(row_max(row.data(), static_cast<int64_t>(row.size())), 3.0f);
}

// Top-k equals torch::topk(sorted) on rows without ties, and ranks equal values by lower index.
TEST(LogitsOps, TopKMatchesTorchTopKAndBreaksTiesByIndex) {
  torch::manual_seed(5);
  torch::Tensor x = torch::randn({1000});
  std::vector<float> v(8);
  std::vector<int64_t> idx(8);
  row_top_k(x.data_ptr<float>(), 1000, 8, v.data(), idx.data());
  auto ref = torch::topk(x, 8);
  for (int64_t j = 0; j < 8; ++j) {
    EXPECT_EQ(v[j], std::get<0>(ref)[j].item<float>());
    EXPECT_EQ(idx[j], std::get<1>(ref)[j].item<int64_t>());
  }
  std::vector<float> ties = {0.5f, 2.0f, 1.0f, 2.0f, 1.0f, 2.0f};
  row_top_k(ties.data(), 6, 4, v.data(), idx.data());
  EXPECT_EQ(std::vector<int64_t>(idx.begin(), idx.begin() + 4), (std::vector<int64_t>{1, 3, 5, 2}));
  EXPECT_EQ(std::vector<float>(v.begin(), v.begin() + 4), (std::vector<float>{2.0f, 2.0f, 2.0f, 1.0f}));
}

}  // namespace
}  // namespace loom::nn
