// `loom model-info --gates DIR` through the binary: a tiny decoder LM whose memory gates β are
// set to known values prints sigmoid(β) per layer and head; a standard layer prints "-".
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>

#include "loom/models/memory_gates.h"
#include "support/support.h"

namespace {

using loom_test::run_loom;
using loom_test::TempDir;

TEST(ModelInfoGatesCli, PrintsSigmoidOfTheGatePerLayerAndHead) {
  TempDir tmp;
  nlohmann::json cfg = {{"vocab_size", 40}, {"n_layers", 3}, {"d_model", 32}, {"d_head", 8},
                        {"segment_len", 4}, {"knn_memory_size", 32}, {"knn_top_k", 4},
                        {"layer_attention", {"standard", "infini", "knn"}}};
  loom::models::DecoderLM m(loom::models::DecoderLMConfig::from_json(cfg), 1);
  {
    torch::NoGradGuard ng;
    for (auto& p : m->named_parameters()) {
      if (p.key() != "layers.1.attn.gate" && p.key() != "layers.2.attn.gate") continue;
      const int64_t n = p.value().numel();
      ASSERT_EQ(n, 4);  // d_model 32 / d_head 8 query heads
      // β_h = log((h+1)/1) for layer 1 -> g = (h+1)/(h+2); layer 2: β = -2, 0, 2, 10
      torch::Tensor v = p.key() == "layers.1.attn.gate"
                            ? torch::log(torch::arange(1, n + 1, torch::kFloat32))
                            : torch::tensor({-2.f, 0.f, 2.f, 10.f});
      p.value().copy_(v);
    }
  }
  m->save(tmp / "lm");
  auto r = run_loom({"model-info", "--gates", tmp / "lm"}, tmp.path());
  ASSERT_EQ(r.code, 0) << r.err;
  const double s2 = 1.0 / (1.0 + std::exp(2.0)), s_2 = 1.0 / (1.0 + std::exp(-2.0)), s10 = 1.0 / (1.0 + std::exp(-10.0));
  char want2[128];
  std::snprintf(want2, sizeof want2, "layer 2 knn: %.4f 0.5000 %.4f %.4f\n", s2, s_2, s10);
  EXPECT_NE(r.out.find("layer 0 standard: -\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("layer 1 infini: 0.5000 0.6667 0.7500 0.8000\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(want2), std::string::npos) << r.out;
  // not a decoder LM directory: one error naming the file, exit 1
  auto bad = run_loom({"model-info", "--gates", tmp / "missing"}, tmp.path());
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("missing"), std::string::npos) << bad.err;
}

}  // namespace
