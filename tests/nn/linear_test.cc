// nn/linear (oneDNN sgemm) and the activations by their Hugging Face names, against libtorch.
#include <gtest/gtest.h>

#include <cmath>

#include "loom/core/error.h"
#include "loom/nn/layers.h"
#include "loom/nn/linear.h"

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

// linear_kn(x, Wᵀ, b) is linear(x, W, b) with the weight stored [in, out]; with a buffer the
// result lives in it (grown when too small, reused when large enough).
TEST(Linear, TransposedWeightMatchesLinearAndReusesItsBuffer) {
  torch::manual_seed(6);
  torch::Tensor w = torch::randn({37, 16}), b = torch::randn({37});  // [out, in]
  torch::Tensor wkn = w.t().contiguous();                            // [in, out]
  torch::Tensor x = torch::randn({2, 5, 16});
  torch::Tensor want = torch::matmul(x.to(torch::kFloat64), w.t().to(torch::kFloat64)) + b.to(torch::kFloat64);
  EXPECT_TRUE(torch::allclose(linear_kn(x, wkn, b).to(torch::kFloat64), want, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(linear_kn(x, wkn, torch::Tensor()), linear(x, w, torch::Tensor()), 1e-5, 1e-5));
  torch::Tensor buffer;
  torch::Tensor y = linear_kn(x, wkn, b, &buffer);  // [2, 5, 37]
  ASSERT_TRUE(buffer.defined());
  EXPECT_EQ(y.data_ptr(), buffer.data_ptr());
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 5, 37}));
  EXPECT_TRUE(torch::allclose(y.to(torch::kFloat64), want, 1e-5, 1e-5));
  torch::Tensor small = linear_kn(x.narrow(1, 0, 2), wkn, b, &buffer);  // fits: same storage
  EXPECT_EQ(small.data_ptr(), buffer.data_ptr());
  EXPECT_TRUE(torch::allclose(small.to(torch::kFloat64), want.narrow(1, 0, 2), 1e-5, 1e-5));
  torch::Tensor big = linear_kn(torch::randn({4, 5, 16}), wkn, b, &buffer);  // grows
  EXPECT_EQ(big.data_ptr(), buffer.data_ptr());
  EXPECT_GE(buffer.numel(), 4 * 5 * 37);
  EXPECT_ANY_THROW(linear_kn(torch::randn({3, 15}), wkn, b));  // 15 features for 16
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

}  // namespace
}  // namespace loom::nn
