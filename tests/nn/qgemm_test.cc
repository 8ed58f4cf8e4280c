// nn::Int8PanelWeight: group-scaled int8 weights × int16 activations (AVX2). The kernel must give
// exactly a_m · Σ_g s[g, n] · C[m, g, n] (up to float32 rounding of the group sums' scaling), where
// the int16 activations and the int32 group sums C are recomputed here in int64 from the same
// quantization rule; rows must not depend on the batch; groups must not overflow.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "loom/core/error.h"
#include "loom/nn/packed_linear.h"
#include "loom/nn/qgemm.h"

namespace {

using loom::nn::Int8PanelWeight;

// x [M, K] -> (xq [M, K] int64 values, a [M]) by the documented rule.
std::pair<torch::Tensor, torch::Tensor> quantize_activations(const torch::Tensor& x) {
  auto amax = std::get<0>(x.abs().max(1));                               // [M]
  auto a = torch::where(amax > 0, amax / 32767.0f, torch::ones_like(amax));  // float32, as the kernel
  auto inv = torch::where(amax > 0, 32767.0f / amax, torch::zeros_like(amax));
  auto xq = torch::round(x * inv.unsqueeze(1)).clamp(-32767, 32767).to(torch::kLong);
  return {xq, a};
}

// Reference y [M, N] in float64 from the dequantized weight split into groups: exact integer group
// sums (the weight's q = round(deq / s)), scaled by s and a.
torch::Tensor reference(const Int8PanelWeight& w, const torch::Tensor& x, const torch::Tensor& bias) {
  const int64_t N = w.out_features(), K = w.in_features(), G = w.group();
  auto [xq, a] = quantize_activations(x);
  auto deq = w.dequantized().to(torch::kDouble);  // [N, K]
  auto s = w.scale().narrow(1, 0, N).to(torch::kDouble);  // [groups, N]
  auto y = torch::zeros({x.size(0), N}, torch::kDouble);
  for (int64_t g = 0, k0 = 0; k0 < K; ++g, k0 += G) {
    const int64_t kb = std::min(G, K - k0);
    auto sg = s[g];  // [N]
    auto q = torch::where((sg > 0).unsqueeze(1), deq.narrow(1, k0, kb) / sg.unsqueeze(1), torch::zeros_like(deq.narrow(1, k0, kb)))
                 .round()
                 .to(torch::kLong);                                      // [N, kb]
    auto c = torch::matmul(xq.narrow(1, k0, kb), q.t()).to(torch::kDouble);  // exact int64 sums [M, N]
    y += c * sg.unsqueeze(0);
  }
  y *= a.to(torch::kDouble).unsqueeze(1);
  return bias.defined() ? y + bias.to(torch::kDouble) : y;
}

bool kernel_available() { return Int8PanelWeight::supported(); }

TEST(Int8PanelWeight, EqualsTheExactGroupSums) {
  if (!kernel_available()) GTEST_SKIP() << "no AVX2";
  torch::manual_seed(11);
  // N, K not multiples of 16 / 2 / G: panel, pair and group tails run.
  for (auto [N, K, G] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{37, 83, 32}, {16, 64, 64}, {5, 7, 2},
                                                                           {70, 300, 512}, {33, 129, 64}}) {
    auto w = torch::randn({N, K});
    auto b = torch::randn({N});
    Int8PanelWeight p(w, G);
    ASSERT_EQ(p.scale().sizes(), (std::vector<int64_t>{(K + G - 1) / G, (N + 15) / 16 * 16}));
    for (int64_t M : {1, 2, 5, 6, 7, 13, 40}) {
      auto x = torch::randn({M, K});
      torch::Tensor y = torch::empty({M, N});
      p.forward(x.data_ptr<float>(), M, y.data_ptr<float>(), N, b.data_ptr<float>());
      auto want = reference(p, x, b);
      const double err = (y.to(torch::kDouble) - want).abs().max().item<double>();
      EXPECT_LT(err, 2e-5 * (1.0 + want.abs().max().item<double>())) << "N=" << N << " K=" << K << " G=" << G << " M=" << M;
      // and close to the float32 product: int8 weights (rel. error ~1/254 of a group's max)
      auto exact = torch::matmul(x.to(torch::kDouble), w.to(torch::kDouble).t()) + b.to(torch::kDouble);
      EXPECT_LT((y.to(torch::kDouble) - exact).abs().max().item<double>(), 0.05 * std::sqrt(double(K)))
          << "N=" << N << " K=" << K;
    }
  }
}

TEST(Int8PanelWeight, GroupScalesAndRounding) {
  torch::manual_seed(12);
  const int64_t N = 20, K = 96, G = 32;
  auto w = torch::randn({N, K}) * torch::linspace(0.01, 10, N).unsqueeze(1);
  w[3].zero_();                        // an all-zero channel
  w[7].narrow(0, 32, 32).zero_();      // an all-zero group
  Int8PanelWeight p(w, G);
  auto s = p.scale();
  auto deq = p.dequantized();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < 3; ++g) {
      auto blk = w[n].narrow(0, g * G, G);
      const double amax = blk.abs().max().item<double>();
      EXPECT_NEAR(s[g][n].item<double>(), amax / 127, 1e-6 * amax / 127 + 1e-30) << n << " " << g;
      auto err = (deq[n].narrow(0, g * G, G) - blk).abs().max().item<double>();
      EXPECT_LE(err, 0.5 * amax / 127 + 1e-7) << n << " " << g;
      if (amax > 0) EXPECT_NEAR(deq[n].narrow(0, g * G, G).abs().max().item<double>(), amax, 1e-5 * amax);
    }
  EXPECT_EQ(deq[3].abs().max().item<double>(), 0.0);
  EXPECT_EQ(s.narrow(1, N, 32 - N).abs().max().item<double>(), 0.0);  // padding channels
  EXPECT_EQ(p.bytes(), 2 * 48 * 32 + 3 * 32 * 4);  // 2 panels × 48 pairs × 32 bytes + scales
}

// The largest group (512) at full scale: every product 32767 · 127, the int32 group sums at their
// largest; the result is exact (K · amax · wmax) only if nothing overflowed.
TEST(Int8PanelWeight, LargestGroupsDoNotOverflow) {
  if (!kernel_available()) GTEST_SKIP() << "no AVX2";
  const int64_t N = 16, K = 2048, G = Int8PanelWeight::kMaxGroup;
  auto w = torch::full({N, K}, 0.5f);
  w[1].fill_(-0.5f);
  Int8PanelWeight p(w, G);
  auto x = torch::full({2, K}, 3.0f);
  x[1].fill_(-3.0f);
  torch::Tensor y = torch::empty({2, N});
  p.forward(x.data_ptr<float>(), 2, y.data_ptr<float>(), N, nullptr);
  EXPECT_NEAR(y[0][0].item<double>(), K * 1.5, 1e-3);
  EXPECT_NEAR(y[0][1].item<double>(), -K * 1.5, 1e-3);
  EXPECT_NEAR(y[1][0].item<double>(), -K * 1.5, 1e-3);
  EXPECT_NEAR(y[1][1].item<double>(), K * 1.5, 1e-3);
}

// A row's result is the same bits whatever else is in the batch and however many threads run.
TEST(Int8PanelWeight, RowsDoNotDependOnTheBatchOrThreads) {
  if (!kernel_available()) GTEST_SKIP() << "no AVX2";
  torch::manual_seed(13);
  const int64_t N = 100, K = 130;
  auto w = torch::randn({N, K});
  Int8PanelWeight p(w, 64);
  auto x = torch::randn({23, K});
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  torch::Tensor all = torch::empty({23, N});
  p.forward(x.data_ptr<float>(), 23, all.data_ptr<float>(), N, nullptr);
  at::set_num_threads(1);
  for (int64_t m : {0, 5, 6, 22}) {
    auto row = x[m].contiguous();
    torch::Tensor one = torch::empty({1, N});
    p.forward(row.data_ptr<float>(), 1, one.data_ptr<float>(), N, nullptr);
    EXPECT_TRUE(torch::equal(one[0], all[m])) << "row " << m;
  }
  at::set_num_threads(threads);
  // ldy > N writes only the first N columns of each row.
  torch::Tensor wide = torch::full({23, N + 7}, -1.0f);
  p.forward(x.data_ptr<float>(), 23, wide.data_ptr<float>(), N + 7, nullptr);
  EXPECT_TRUE(torch::equal(wide.narrow(1, 0, N), all));
  EXPECT_TRUE((wide.narrow(1, N, 7) == -1.0f).all().item<bool>());
}

// Enough rows for several row chunks (256 KB of int16 activations: 84 rows at K = 1500) and
// enough panels for several panel blocks (64 KB: 2 panels at K = 1500), a partial last block and
// panel, on 2 threads.
TEST(Int8PanelWeight, RowChunksAndPanelBlocksCoverEveryOutput) {
  if (!kernel_available()) GTEST_SKIP() << "no AVX2";
  torch::manual_seed(15);
  const int64_t N = 100, K = 1500, G = 32, M = 90;
  auto w = torch::randn({N, K});
  auto b = torch::randn({N});
  Int8PanelWeight p(w, G);
  auto x = torch::randn({M, K});
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  torch::Tensor y = torch::full({M, N}, std::numeric_limits<float>::quiet_NaN());
  p.forward(x.data_ptr<float>(), M, y.data_ptr<float>(), N, b.data_ptr<float>());
  at::set_num_threads(threads);
  auto want = reference(p, x, b);
  EXPECT_LT((y.to(torch::kDouble) - want).abs().max().item<double>(), 2e-5 * (1.0 + want.abs().max().item<double>()));
}

// Empty inputs: M = 0 writes nothing; K = 0 gives the bias (empty sums).
TEST(Int8PanelWeight, EmptyRowsAndFeatures) {
  if (!kernel_available()) GTEST_SKIP() << "no AVX2";
  Int8PanelWeight p(torch::randn({5, 8}), 8);
  float untouched = -3.0f;
  p.forward(nullptr, 0, &untouched, 5, nullptr);
  EXPECT_EQ(untouched, -3.0f);
  Int8PanelWeight empty(torch::zeros({3, 0}), 32);
  auto b = torch::tensor({1.0f, 2.0f, 3.0f});
  torch::Tensor y = torch::zeros({2, 3});
  float x_dummy = 0.0f;
  empty.forward(&x_dummy, 2, y.data_ptr<float>(), 3, b.data_ptr<float>());
  EXPECT_TRUE(torch::equal(y, b.expand({2, 3})));
}

// A row holding NaN or ±inf gives a NaN output row (not large finite numbers); the other rows are
// unaffected; a row too small for 32767 / amax to be finite gives zeros.
TEST(Int8PanelWeight, NonFiniteInputRowsGiveNaNRows) {
  if (!kernel_available()) GTEST_SKIP() << "no AVX2";
  torch::manual_seed(16);
  const int64_t N = 20, K = 37;
  Int8PanelWeight p(torch::randn({N, K}), 32);
  auto x = torch::randn({5, K});
  x[0][3] = std::numeric_limits<float>::quiet_NaN();
  x[1][36] = std::numeric_limits<float>::infinity();  // in the scalar tail
  x[2][8] = -std::numeric_limits<float>::infinity();  // in the vector part
  x[4].fill_(1e-37f);
  torch::Tensor y = torch::empty({5, N});
  p.forward(x.data_ptr<float>(), 5, y.data_ptr<float>(), N, nullptr);
  for (int r = 0; r < 3; ++r) EXPECT_TRUE(torch::isnan(y[r]).all().item<bool>()) << "row " << r;
  EXPECT_TRUE(torch::isfinite(y[3]).all().item<bool>());
  EXPECT_EQ(y[4].abs().max().item<float>(), 0.0f);
  torch::Tensor one = torch::empty({1, N});
  auto row3 = x[3].contiguous();
  p.forward(row3.data_ptr<float>(), 1, one.data_ptr<float>(), N, nullptr);
  EXPECT_TRUE(torch::equal(one[0], y[3]));
}

TEST(Int8PanelWeight, NonFiniteWeightsAreAnError) {
  auto w = torch::randn({40, 8});
  w[33][2] = std::numeric_limits<float>::quiet_NaN();
  try {
    Int8PanelWeight p(w, 8);
    FAIL() << "no error";
  } catch (const loom::Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 33"), std::string::npos) << e.what();
  }
}

// rows_read reports every row exactly once, in order, after it has been read (the caller may
// then release the rows' memory-mapped pages).
TEST(Int8PanelWeight, ReportsTheRowsItHasRead) {
  const int64_t N = 700, K = 4096;  // several row blocks of ~1 M elements
  auto w = torch::randn({N, K});
  std::vector<std::pair<int64_t, int64_t>> calls;
  Int8PanelWeight p(w, 32, [&](int64_t n0, int64_t nb) { calls.emplace_back(n0, nb); });
  ASSERT_GT(calls.size(), 1u);
  int64_t next = 0;
  for (auto [n0, nb] : calls) {
    EXPECT_EQ(n0, next);
    EXPECT_GT(nb, 0);
    next = n0 + nb;
  }
  EXPECT_EQ(next, N);
  Int8PanelWeight same(w, 32);
  EXPECT_TRUE(torch::equal(p.dequantized(), same.dequantized()));
}

TEST(Int8PanelWeight, RejectsBadGroupsAndShapes) {
  auto w = torch::randn({4, 8});
  EXPECT_THROW(Int8PanelWeight(w, 3), loom::Error);
  EXPECT_THROW(Int8PanelWeight(w, 0), loom::Error);
  EXPECT_THROW(Int8PanelWeight(w, 1024), loom::Error);
  EXPECT_THROW(Int8PanelWeight(torch::randn({8}), 32), loom::Error);
}

// PackedLinear with Activations::kInt16 runs this kernel: forward equals the panel weight's own,
// for every M and leading dims.
TEST(Int8PanelWeight, PackedLinearInt16PathUsesIt) {
  if (!kernel_available()) GTEST_SKIP() << "no AVX2";
  torch::manual_seed(14);
  auto w = torch::randn({50, 70});
  auto b = torch::randn({50});
  loom::nn::PackedLinear p(w, b, loom::nn::WeightType::kInt8, loom::nn::Activations::kInt16);
  ASSERT_EQ(p.activations(), loom::nn::Activations::kInt16);
  ASSERT_TRUE(p.panels().defined());
  EXPECT_EQ(p.out_features(), 50);
  EXPECT_EQ(p.in_features(), 70);
  EXPECT_EQ(p.panels().group(), loom::nn::kInt16PathGroup);
  for (int64_t M : {1, 9, 31}) {
    auto x = torch::randn({M, 70});
    auto got = p.forward(x).to(torch::kDouble);
    EXPECT_LT((got - reference(p.panels(), x, b)).abs().max().item<double>(), 1e-4) << M;
  }
  EXPECT_EQ(p.forward(torch::randn({2, 3, 70})).sizes(), (std::vector<int64_t>{2, 3, 50}));
  EXPECT_THROW(p.forward(torch::randn({2, 69})), loom::Error);
}

}  // namespace
