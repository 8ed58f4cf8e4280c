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
