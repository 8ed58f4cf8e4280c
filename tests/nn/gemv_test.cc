// nn::gemv_rows, the few-row kernels behind PackedLinear (token-by-token decoding). Every kernel
// this CPU can run (portable always; avx2, avx512 when present) is compared with a float64
// reference on sizes that exercise the vector tails: K not a multiple of 8, 16 or 32, odd N (the
// 4- and 2-row blocks leave single rows), every M from 1 to kGemvMaxRows, sub-ranges [n0, n1).
//
// Tolerances are derived, not tuned: float32 sums of K products in any order are within
// γ = (K + 2)·2⁻²⁴ of Σ|w·x| (Higham, "Accuracy and Stability of Numerical Algorithms", §3.1:
// γ_K for the K additions, one more rounding for the per-row scale);
// against the float32 weights a bfloat16 weight (round to nearest, 8-bit significand) adds at
// most 2⁻⁸·Σ|w·x|.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "loom/nn/gemv.h"
#include "support/support.h"

namespace {

using loom::nn::GemvIsa;
using loom::nn::WeightType;

std::vector<GemvIsa> supported_isas() {
  std::vector<GemvIsa> out;
  for (GemvIsa isa : {GemvIsa::kPortable, GemvIsa::kAvx2, GemvIsa::kAvx512})
    if (loom::nn::gemv_isa_supported(isa)) out.push_back(isa);
    else std::printf("[ note ] this CPU cannot run the %s gemv kernels: not tested here\n", loom::nn::gemv_isa_name(isa));
  return out;
}

double summation_bound(int64_t K) { return (K + 2) * std::ldexp(1.0, -24); }

// A weight [N, K] stored as `type` (int8: per-row scale as PackedLinear packs it) and its exact
// float64 value.
struct Stored {
  torch::Tensor w;      // [N, K] float32 / bfloat16 / int8
  torch::Tensor scale;  // [N] float32 (int8), undefined otherwise
  torch::Tensor exact;  // [N, K] float64: what the stored weight means, without scale
};

Stored store(const torch::Tensor& w32, WeightType type) {
  Stored s;
  if (type == WeightType::kFloat32) s.w = w32.contiguous();
  if (type == WeightType::kBFloat16) s.w = w32.to(torch::kBFloat16).contiguous();
  if (type == WeightType::kInt8) {
    s.scale = (std::get<0>(w32.abs().max(1)) / 127.0f).contiguous();
    s.w = torch::round(w32 / s.scale.unsqueeze(1)).clamp(-127, 127).to(torch::kInt8).contiguous();
  }
  s.exact = s.w.to(torch::kDouble);
  return s;
}

TEST(PackedGemv, EveryKernelEqualsTheFloat64ProductOfTheStoredWeight) {
  torch::manual_seed(11);
  const auto isas = supported_isas();
  for (WeightType type : {WeightType::kFloat32, WeightType::kBFloat16, WeightType::kInt8}) {
    for (int64_t K : {1, 7, 15, 17, 83, 200, 517}) {
      for (int64_t N : {1, 3, 5, 37}) {
        auto w32 = torch::randn({N, K});
        const Stored s = store(w32, type);
        // float32 with a scale too, so every type runs both the scaled and the unscaled store.
        const bool scaled = type != WeightType::kBFloat16;
        torch::Tensor scale = s.scale.defined() ? s.scale : torch::rand({N}) + 0.5f;  // [N]
        for (int64_t M = 1; M <= loom::nn::kGemvMaxRows; ++M) {
          auto x = torch::randn({M, K});  // [M, K]
          auto prod = torch::matmul(x.to(torch::kDouble), s.exact.t());                        // [M, N]
          auto abs_prod = torch::matmul(x.abs().to(torch::kDouble), s.exact.abs().t());        // [M, N]
          auto sd = scale.to(torch::kDouble).unsqueeze(0);
          auto want = scaled ? prod * sd : prod;
          auto tol = (scaled ? abs_prod * sd : abs_prod) * summation_bound(K) + 1e-30;
          // Whole range and a sub-range that starts and ends off the 4-row blocks.
          const int64_t n0 = N > 2 ? 1 : 0, n1 = N > 2 ? N - 1 : N;
          for (auto [a, b] : {std::pair<int64_t, int64_t>{0, N}, {n0, n1}}) {
            for (GemvIsa isa : isas) {
              auto y = torch::full({M, N}, std::numeric_limits<float>::quiet_NaN());  // [M, N]
              loom::nn::gemv_rows(isa, type, M, K, N, s.w.data_ptr(), x.data_ptr<float>(), y.data_ptr<float>(), a, b,
                                  scaled ? scale.data_ptr<float>() : nullptr);
              const std::string what = std::string(loom::nn::gemv_isa_name(isa)) + " " +
                                       loom::nn::weight_type_name(type) + " M=" + std::to_string(M) +
                                       " K=" + std::to_string(K) + " N=" + std::to_string(N) + " [" +
                                       std::to_string(a) + "," + std::to_string(b) + ")";
              auto inside = y.narrow(1, a, b - a).to(torch::kDouble);
              auto err = (inside - want.narrow(1, a, b - a)).abs();
              EXPECT_TRUE((err <= tol.narrow(1, a, b - a)).all().item<bool>())
                  << what << ": max error " << err.max().item<double>() << " (bound "
                  << tol.narrow(1, a, b - a).max().item<double>() << ")";
              // Columns outside [a, b) are not written.
              EXPECT_EQ(torch::isnan(y).sum().item<int64_t>(), M * (N - (b - a))) << what;
            }
          }
        }
      }
    }
  }
}

// Against the float32 weights: the bfloat16 kernels are within the bf16 rounding of each weight
// (2⁻⁸ relative) plus float32 summation; int8 within half a quantization step per weight.
TEST(PackedGemv, LowPrecisionWeightsStayWithinTheirRoundingOfTheFloat32Product) {
  torch::manual_seed(12);
  for (int64_t K : {33, 95, 1003}) {
    for (int64_t N : {7, 129}) {
      auto w32 = torch::randn({N, K});                                       // [N, K]
      const Stored b16 = store(w32, WeightType::kBFloat16), i8 = store(w32, WeightType::kInt8);
      for (int64_t M : {1, 2, 3}) {
        auto x = torch::randn({M, K});                                       // [M, K]
        auto want = torch::matmul(x.to(torch::kDouble), w32.to(torch::kDouble).t());          // [M, N]
        auto abs_prod = torch::matmul(x.abs().to(torch::kDouble), w32.abs().to(torch::kDouble).t());
        auto tol16 = abs_prod * (std::ldexp(1.0, -8) + summation_bound(K) * (1 + std::ldexp(1.0, -8)));
        // int8: |w - q·s| <= s/2 per weight, so rounding moves y by at most half = (s_n / 2)·Σ|x|;
        // the float32 sums of q·x, scaled by s_n, add γ·Σ|x|·|q·s| <= γ·(Σ|x|·|w| + half).
        auto half = torch::matmul(x.abs().to(torch::kDouble).sum(1, true), i8.scale.to(torch::kDouble).unsqueeze(0)) * 0.5;
        auto tol8 = half + (abs_prod + half) * summation_bound(K);
        for (GemvIsa isa : supported_isas()) {
          auto y16 = torch::empty({M, N});
          loom::nn::gemv_rows(isa, WeightType::kBFloat16, M, K, N, b16.w.data_ptr(), x.data_ptr<float>(),
                              y16.data_ptr<float>(), 0, N, nullptr);
          auto e16 = (y16.to(torch::kDouble) - want).abs();
          EXPECT_TRUE((e16 <= tol16).all().item<bool>())
              << loom::nn::gemv_isa_name(isa) << " bf16 M=" << M << " K=" << K << " N=" << N << ": max error "
              << e16.max().item<double>();
          // Not trivially loose: some output is off by more than the float32 summation bound
          // alone, i.e. the bf16 rounding is really there and the bound is what covers it.
          EXPECT_TRUE((e16 > abs_prod * summation_bound(K)).any().item<bool>()) << "bf16 K=" << K;
          auto y8 = torch::empty({M, N});
          loom::nn::gemv_rows(isa, WeightType::kInt8, M, K, N, i8.w.data_ptr(), x.data_ptr<float>(),
                              y8.data_ptr<float>(), 0, N, i8.scale.data_ptr<float>());
          auto e8 = (y8.to(torch::kDouble) - want).abs();
          EXPECT_TRUE((e8 <= tol8).all().item<bool>())
              << loom::nn::gemv_isa_name(isa) << " int8 M=" << M << " K=" << K << " N=" << N << ": max error "
              << e8.max().item<double>();
        }
      }
    }
  }
}

TEST(PackedGemv, BadArgumentsAreErrorsAndTheActiveKernelFollowsTheSwitch) {
  std::vector<float> w(4 * 8, 1.0f), x(9 * 8, 1.0f), y(9 * 4, 0.0f);
  auto call = [&](int64_t M, int64_t n0, int64_t n1, GemvIsa isa) {
    return loom_test::error_of([&] {
      loom::nn::gemv_rows(isa, WeightType::kFloat32, M, 8, 4, w.data(), x.data(), y.data(), n0, n1, nullptr);
    });
  };
  EXPECT_NE(call(0, 0, 4, GemvIsa::kPortable).find("0 rows"), std::string::npos);
  EXPECT_NE(call(9, 0, 4, GemvIsa::kPortable).find("9 rows"), std::string::npos);
  EXPECT_NE(call(1, 0, 5, GemvIsa::kPortable).find("[0, 5)"), std::string::npos);
  EXPECT_NE(call(1, 3, 2, GemvIsa::kPortable).find("[3, 2)"), std::string::npos);
  EXPECT_EQ(call(1, 0, 4, GemvIsa::kPortable), "");
  EXPECT_EQ(y[0], 8.0f);
  for (GemvIsa isa : {GemvIsa::kAvx2, GemvIsa::kAvx512})
    if (!loom::nn::gemv_isa_supported(isa))
      EXPECT_NE(call(1, 0, 4, isa).find(loom::nn::gemv_isa_name(isa)), std::string::npos);
  EXPECT_TRUE(loom::nn::gemv_isa_supported(loom::nn::gemv_default_isa()));
  loom::nn::set_portable_kernels(true);
  EXPECT_EQ(loom::nn::gemv_active_isa(), GemvIsa::kPortable);
  EXPECT_FALSE(loom::nn::packed_avx512_enabled());
  loom::nn::set_portable_kernels(false);
  EXPECT_EQ(loom::nn::gemv_active_isa(), loom::nn::gemv_default_isa());
}

}  // namespace
