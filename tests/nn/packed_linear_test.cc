// nn::PackedLinear: float32 / bfloat16 / int8 weight storage. The kernels must compute exactly
// x·deq(W)ᵀ + b (up to float32 summation order), for the gemv path (M <= kGemvMaxRows), the
// tile + sgemm path (M > kGemvMaxRows), AVX-512 and portable; int8 rounding must stay within
// half a quantization step per weight.
#include <gtest/gtest.h>

#include "loom/nn/packed_linear.h"
#include "support/support.h"

namespace {

using loom::nn::PackedLinear;
using loom::nn::WeightType;

// Reference in float64 from the dequantized weight.
torch::Tensor reference(const PackedLinear& p, const torch::Tensor& x, const torch::Tensor& b) {
  auto y = torch::matmul(x.to(torch::kDouble), p.dequantized().to(torch::kDouble).t());
  return b.defined() ? y + b.to(torch::kDouble) : y;
}

TEST(PackedLinear, EveryPathEqualsTheDequantizedProduct) {
  torch::manual_seed(3);
  const int64_t N = 37, K = 83;  // not multiples of 16: kernel tails run
  auto w = torch::randn({N, K});
  auto b = torch::randn({N});
  for (WeightType type : {WeightType::kFloat32, WeightType::kBFloat16, WeightType::kInt8}) {
    PackedLinear p(w, b, type);
    for (int64_t M : {1, 2, 3, 5, 8, 9, 40}) {
      auto x = torch::randn({M, K});
      auto want = reference(p, x, b);
      for (bool portable : {false, true}) {
        loom::nn::set_portable_kernels(portable);
        auto got = p.forward(x).to(torch::kDouble);
        EXPECT_LT((got - want).abs().max().item<double>(), 1e-4)
            << loom::nn::weight_type_name(type) << " M=" << M << " portable=" << portable;
      }
      loom::nn::set_portable_kernels(false);
    }
    // Leading dims are kept: [2, 3, K] -> [2, 3, N].
    EXPECT_EQ(p.forward(torch::randn({2, 3, K})).sizes(), (std::vector<int64_t>{2, 3, N}));
  }
}

// int8 activations only where int8 dot products are fast (VNNI); elsewhere int16 activations ×
// group-scaled int8 panels on AVX2 (nn/qgemm.h), or weight-only int8 without AVX2. bf16 always
// converts activations.
TEST(PackedLinear, TranslationActivationsFollowTheCpu) {
  __builtin_cpu_init();
  const bool vnni = __builtin_cpu_supports("avx512vnni") || __builtin_cpu_supports("avxvnni");
  const auto want = vnni ? loom::nn::Activations::kLowPrecision
                         : loom::nn::Int8PanelWeight::supported() ? loom::nn::Activations::kInt16
                                                                  : loom::nn::Activations::kFloat32;
  EXPECT_EQ(loom::nn::translation_activations(WeightType::kInt8), want);
  EXPECT_EQ(loom::nn::translation_activations(WeightType::kBFloat16), loom::nn::Activations::kLowPrecision);
  torch::Tensor b = torch::randn({300});
  PackedLinear p(torch::randn({300, 64}), b, WeightType::kInt8, loom::nn::translation_activations(WeightType::kInt8));
  // block scales [K/32, N], group scales [K/32, N rounded up to 16] or per-row scales [N]
  EXPECT_EQ(p.scale().dim(), want == loom::nn::Activations::kFloat32 ? 1 : 2);
  // weight-only (also what a CPU without AVX2 runs): the many-rows path (tiles spread over the
  // threads) equals the dequantized product
  PackedLinear weight_only(torch::randn({300, 64}), b, WeightType::kInt8, loom::nn::Activations::kFloat32);
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  auto x = torch::randn({33, 64});
  EXPECT_LT((weight_only.forward(x).to(torch::kDouble) - reference(weight_only, x, b)).abs().max().item<double>(), 1e-4);
  at::set_num_threads(threads);
  // a bf16 weight asked for int16 activations gets bf16 ones
  EXPECT_EQ(PackedLinear(torch::randn({4, 8}), {}, WeightType::kBFloat16, loom::nn::Activations::kInt16).activations(),
            loom::nn::Activations::kLowPrecision);
}

TEST(PackedLinear, Int8IsPerRowSymmetricWithinHalfAStep) {
  torch::manual_seed(4);
  auto w = torch::randn({16, 64}) * torch::linspace(0.01, 10, 16).unsqueeze(1);  // rows of very different scale
  w[5].zero_();                                                                  // an all-zero row
  PackedLinear p(w, {}, WeightType::kInt8);
  ASSERT_EQ(p.weight().scalar_type(), torch::kInt8);
  auto scale = p.scale();
  auto want_scale = std::get<0>(w.abs().max(1)) / 127.0;
  for (int64_t n = 0; n < 16; ++n) {
    if (n == 5) continue;
    EXPECT_NEAR(scale[n].item<double>(), want_scale[n].item<double>(), 1e-6 * want_scale[n].item<double>());
    // The largest weight of a row maps to ±127 exactly.
    EXPECT_EQ(p.weight()[n].abs().max().item<int>(), 127);
  }
  auto err = (p.dequantized() - w).abs();
  EXPECT_TRUE((err <= scale.unsqueeze(1) * 0.5 + 1e-7).all().item<bool>());
  EXPECT_EQ(p.dequantized()[5].abs().max().item<double>(), 0.0);
  EXPECT_EQ(p.bytes(), 16 * 64 + 16 * 4);
}

// With loom::nn::Activations::kLowPrecision the int8 weight has one scale per row and block of 32 input
// features: each block's largest weight maps to ±127 and every weight is within half a step of
// its block. A block of small weights next to a large one keeps its precision, where one scale
// per row would round it to a few levels.
TEST(PackedLinear, Int8LowPrecisionWeightsHaveBlockScales) {
  using loom::nn::Activations;
  torch::manual_seed(6);
  const int64_t N = 8, K = 70;  // blocks [0, 32), [32, 64), [64, 70)
  auto w = torch::randn({N, K}) * 0.01;
  w.narrow(1, 32, 32).mul_(1000);  // block 1: 1000× larger
  w[2].narrow(0, 64, 6).zero_();   // an all-zero block
  PackedLinear p(w, {}, WeightType::kInt8, loom::nn::Activations::kLowPrecision);
  ASSERT_EQ(p.scale().sizes(), (std::vector<int64_t>{3, N}));
  for (int64_t j = 0; j < 3; ++j) {
    const int64_t k0 = j * 32, kb = std::min<int64_t>(32, K - k0);
    for (int64_t n = 0; n < N; ++n) {
      auto blk = w[n].narrow(0, k0, kb);
      const double amax = blk.abs().max().item<double>();
      if (amax == 0) {
        EXPECT_EQ(p.weight()[n].narrow(0, k0, kb).abs().max().item<int>(), 0);
        continue;
      }
      EXPECT_NEAR(p.scale()[j][n].item<double>(), amax / 127, 1e-6 * amax / 127) << "block " << j << " row " << n;
      EXPECT_EQ(p.weight()[n].narrow(0, k0, kb).abs().max().item<int>(), 127) << "block " << j << " row " << n;
      auto err = (p.dequantized()[n].narrow(0, k0, kb) - blk).abs().max().item<double>();
      EXPECT_LE(err, 0.5 * p.scale()[j][n].item<double>() + 1e-7) << "block " << j << " row " << n;
    }
  }
  // The small block 0 is kept to 1/254 of its own range, not of block 1's (1000× coarser).
  auto e0 = (p.dequantized().narrow(1, 0, 32) - w.narrow(1, 0, 32)).abs().max().item<double>();
  EXPECT_LT(e0, w.narrow(1, 0, 32).abs().max().item<double>() / 200);
  EXPECT_EQ(p.bytes(), N * K + 3 * N * 4);
}

TEST(PackedLinear, MatchingDtypeIsKeptWithoutCopyAndBadShapesAreErrors) {
  auto w16 = torch::randn({8, 32}).to(torch::kBFloat16);
  PackedLinear p(w16, {}, WeightType::kBFloat16);
  EXPECT_EQ(p.weight().data_ptr(), w16.data_ptr());
  auto w32 = torch::randn({8, 32});
  PackedLinear q(w32, {}, WeightType::kFloat32);
  EXPECT_EQ(q.weight().data_ptr(), w32.data_ptr());
  EXPECT_NE(loom_test::error_of([] { PackedLinear(torch::randn({8}), {}, WeightType::kInt8); }).find("2-D"),
            std::string::npos);
  EXPECT_NE(loom_test::error_of([] { PackedLinear(torch::randn({8, 4}), torch::randn({7}), WeightType::kInt8); })
                .find("bias"),
            std::string::npos);
  EXPECT_NE(loom_test::error_of([&] { q.forward(torch::randn({2, 31})); }).find("31"), std::string::npos);
  EXPECT_EQ(loom::nn::parse_weight_type("bf16", "--compute-type"), WeightType::kBFloat16);
  EXPECT_NE(loom_test::error_of([] { loom::nn::parse_weight_type("int4", "--compute-type"); }).find("--compute-type"),
            std::string::npos);
}

// loom::nn::Activations::kLowPrecision (translation models' --compute-type). int8: weights and activations
// in blocks of kInt8BlockSize = 32 input features (K = 83: blocks of 32, 32 and 19). Block j of row
// m of x is quantized with s_mj = max|x[m, block j]| / 127, q = round(x / s_mj), and
// y = Σ_j (q_j·Wq_jᵀ)·s_mj·scale[j, n] + b with exact integer sums — so a row's output is
// bit-identical whatever the other rows of the batch are. bf16: bf16(x)·bf16(W)ᵀ with float32 sums.
TEST(PackedLinear, LowPrecisionActivationsMatchTheirDefinition) {
  using loom::nn::Activations;
  using loom::nn::kInt8BlockSize;
  torch::manual_seed(5);
  const int64_t N = 37, K = 83;
  auto w = torch::randn({N, K});
  auto b = torch::randn({N});
  PackedLinear p8(w, b, WeightType::kInt8, loom::nn::Activations::kLowPrecision);
  PackedLinear p16(w, b, WeightType::kBFloat16, loom::nn::Activations::kLowPrecision);
  EXPECT_EQ(p8.activations(), loom::nn::Activations::kLowPrecision);
  EXPECT_EQ(PackedLinear(w, b, WeightType::kFloat32, loom::nn::Activations::kLowPrecision).activations(), loom::nn::Activations::kFloat32);
  ASSERT_EQ(p8.scale().sizes(), (std::vector<int64_t>{3, N}));
  for (int64_t M : {1, 3, 8, 9, 40}) {
    auto x = torch::randn({M, K}) * torch::linspace(0.1, 5, M).unsqueeze(1);  // rows of different scale
    x[0][3] = 0;                                                              // exact zeros stay zero
    // int8 reference, the quantization done in float32 as the kernel does, the rest in float64.
    auto want8 = b.to(torch::kDouble).unsqueeze(0).repeat({M, 1});  // [M, N]
    for (int64_t j = 0; j < 3; ++j) {
      const int64_t k0 = j * kInt8BlockSize, kb = std::min(kInt8BlockSize, K - k0);
      auto xj = x.narrow(1, k0, kb);
      auto s = std::get<0>(xj.abs().max(1)) / 127.0f;                                  // [M]
      auto q = torch::round(xj * (1.0f / s).unsqueeze(1)).clamp(-127, 127);            // [M, kb]
      want8 += torch::matmul(q.to(torch::kDouble), p8.weight().narrow(1, k0, kb).to(torch::kDouble).t()) *
               s.to(torch::kDouble).unsqueeze(1) * p8.scale()[j].to(torch::kDouble).unsqueeze(0);
    }
    auto got8 = p8.forward(x);
    EXPECT_LT((got8.to(torch::kDouble) - want8).abs().max().item<double>(), 1e-5 * want8.abs().max().item<double>())
        << "M=" << M;
    for (int64_t m = 0; m < M; ++m)
      EXPECT_TRUE(torch::equal(p8.forward(x.narrow(0, m, 1)), got8.narrow(0, m, 1))) << "row " << m << " of " << M;
    // Close to the float32 product (a few quantization steps).
    auto exact = torch::matmul(x.to(torch::kDouble), w.to(torch::kDouble).t()) + b.to(torch::kDouble);
    EXPECT_LT((got8.to(torch::kDouble) - exact).abs().max().item<double>(), 0.05 * exact.abs().max().item<double>());
    // bf16 reference.
    auto want16 = torch::matmul(x.to(torch::kBFloat16).to(torch::kDouble), w.to(torch::kBFloat16).to(torch::kDouble).t()) +
                  b.to(torch::kDouble);
    EXPECT_LT((p16.forward(x).to(torch::kDouble) - want16).abs().max().item<double>(), 1e-4 * want16.abs().max().item<double>())
        << "M=" << M;
  }
  EXPECT_EQ(p8.forward(torch::randn({2, 3, K})).sizes(), (std::vector<int64_t>{2, 3, N}));
  EXPECT_EQ(loom::nn::parse_compute_type("auto", "--compute-type"), loom::nn::auto_weight_type());
  EXPECT_EQ(loom::nn::parse_compute_type("bf16", "--compute-type"), WeightType::kBFloat16);
  EXPECT_NE(loom_test::error_of([] { loom::nn::parse_compute_type("int4", "--compute-type"); }).find("auto"),
            std::string::npos);
}

}  // namespace
