// The fused DExTra layer (nn::dextra_layer: GLT or dense product, bias, feature shuffle,
// per-group LayerNorm, activation, dropout in one autograd node) against a straightforward
// float64 reference written op by op with one product per group (papers.md §1.2–1.3,
// nn_functions.py GroupLinear): forward values and all five gradients, with the AVX2 row
// kernels and the portable ones, odd widths (vector tails), the two-input form that replaces the
// input mixer (nn::delight_mix), a whole DExTra unit against its float64 per-op form, the dropout
// mask of nn::delight_dropout, the no-autograd path, and bad shapes.
#include "loom/nn/dextra_layer.h"

#include <gtest/gtest.h>

#include "loom/core/error.h"
#include "loom/core/random.h"
#include "loom/nn/delight.h"

namespace loom::nn {
namespace {

struct Case {
  int64_t in, out, g;
  bool shuffle, dense;
  Activation act;
};

struct Params {
  torch::Tensor w, b, lnw, lnb;  // float32 leaves with requires_grad
};

Params make_params(const Case& c) {
  Params p;
  const int64_t co = c.out / c.g;
  p.w = (c.dense ? torch::randn({c.out, c.in}) : torch::randn({c.g, c.in / c.g, co})) * 0.3;
  p.b = c.dense ? torch::randn({c.out}) : torch::randn({c.g, 1, co});
  p.lnw = torch::randn({co});
  p.lnb = torch::randn({co});
  for (torch::Tensor* t : {&p.w, &p.b, &p.lnw, &p.lnb}) t->set_requires_grad(true);
  return p;
}

// The layer op by op in float64: y_k = x_k·W_k + b_k for each group k (dense: y = x·Wᵀ + b), output
// channel j of group k moved to position j·g + k, LayerNorm over each chunk of out/g with the
// shared affine, activation. All arguments float64; x [M, in] -> [M, out].
torch::Tensor reference(const Case& c, const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                        const torch::Tensor& lnw, const torch::Tensor& lnb) {
  const int64_t m = x.size(0), co = c.out / c.g, ci = c.in / c.g;
  torch::Tensor y;  // [M, out], group-major
  if (c.dense) {
    y = torch::matmul(x, w.t()) + b;
  } else {
    std::vector<torch::Tensor> ys;
    for (int64_t k = 0; k < c.g; ++k) ys.push_back(torch::matmul(x.narrow(1, k * ci, ci), w[k]) + b[k]);
    y = torch::cat(ys, 1);
  }
  if (c.shuffle && c.g > 1) {
    std::vector<torch::Tensor> cols(c.out);
    for (int64_t k = 0; k < c.g; ++k) {
      for (int64_t j = 0; j < co; ++j) cols[j * c.g + k] = y.select(1, k * co + j);
    }
    y = torch::stack(cols, 1);  // [M, out]
  }
  torch::Tensor h = torch::layer_norm(y.view({m, c.g, co}), {co}, lnw, lnb, 1e-5).view({m, c.out});
  return c.act == Activation::kSilu ? h * torch::sigmoid(h) : torch::relu(h);
}

torch::Tensor to64(const torch::Tensor& t) { return t.detach().to(torch::kFloat64).requires_grad_(true); }

// Largest |a - b| over max(1, |b|_max).
double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>() /
         std::max(1.0, b.abs().max().item<double>());
}

const std::vector<Case>& cases() {
  static const std::vector<Case> cs = {
      {64, 128, 4, true, false, Activation::kSilu},   // the DeLighT d128 GLT shapes
      {376, 312, 4, true, false, Activation::kSilu},  // co = 78: vector tails in every chunk
      {24, 36, 4, true, false, Activation::kSilu},    // co = 9, ci = 6
      {48, 24, 4, false, false, Activation::kRelu},   // no shuffle
      {32, 64, 8, true, false, Activation::kRelu},
      {40, 56, 1, true, false, Activation::kSilu},    // one group: shuffle is the identity
      {128, 64, 1, false, true, Activation::kSilu},   // dense input/output layer
      {20, 13, 1, false, true, Activation::kRelu},
  };
  return cs;
}

void check_against_reference(bool avx2) {
  dextra_layer_allow_avx2(avx2);
  torch::manual_seed(21);
  for (const Case& c : cases()) {
    SCOPED_TRACE(testing::Message() << c.in << " -> " << c.out << " g " << c.g << " shuffle " << c.shuffle
                                    << " dense " << c.dense << " avx2 " << avx2);
    ASSERT_TRUE(dextra_layer_supported(torch::zeros({1}), torch::zeros({1}), c.act, 0.0));
    Params p = make_params(c);
    torch::Tensor x = torch::randn({3, 37, c.in}).requires_grad_(true);  // [B, T, in], 111 rows
    torch::Tensor y = dextra_layer(x, p.w, p.b, p.lnw, p.lnb, c.g, c.shuffle, c.act, 1e-5, 0.0);
    ASSERT_EQ(y.sizes(), (std::vector<int64_t>{3, 37, c.out}));
    std::vector<torch::Tensor> ref_in = {to64(x), to64(p.w), to64(p.b), to64(p.lnw), to64(p.lnb)};
    torch::Tensor want = reference(c, ref_in[0].view({-1, c.in}), ref_in[1], ref_in[2], ref_in[3], ref_in[4]);
    EXPECT_LT(rel_err(y.view({-1, c.out}), want), 2e-6);
    // gradients of a random linear functional of the output
    torch::Tensor v = torch::randn({3 * 37, c.out}, torch::kFloat64);
    auto got = torch::autograd::grad({(y.view({-1, c.out}).to(torch::kFloat64) * v).sum()}, {x, p.w, p.b, p.lnw, p.lnb});
    auto ref = torch::autograd::grad({(want * v).sum()}, ref_in);
    const char* names[] = {"x", "weight", "bias", "ln weight", "ln bias"};
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(got[i].sizes(), ref[i].sizes()) << names[i];
      EXPECT_LT(rel_err(got[i], ref[i]), 2e-6) << "gradient of " << names[i];
    }
    // without autograd: the same values, nothing saved
    torch::NoGradGuard ng;
    EXPECT_LT(rel_err(dextra_layer(x, p.w, p.b, p.lnw, p.lnb, c.g, c.shuffle, c.act, 1e-5, 0.0).view({-1, c.out}), want),
              2e-6);
  }
  dextra_layer_allow_avx2(true);
}

TEST(DExTraLayer, EqualsThePerGroupReferenceForwardAndGradientsAvx2) { check_against_reference(true); }

TEST(DExTraLayer, EqualsThePerGroupReferenceForwardAndGradientsPortable) { check_against_reference(false); }

TEST(DExTraLayer, MixedInputsEqualTheLayerOnTheMixerOutput) {
  torch::manual_seed(23);
  struct Mixed {
    int64_t c0, o, out, g;
    bool dense;
  };
  for (const Mixed& mc : {Mixed{64, 64, 256, 4, false}, Mixed{64, 312, 312, 4, false}, Mixed{64, 216, 64, 2, false},
                          Mixed{8, 12, 20, 2, false}, Mixed{64, 224, 64, 1, true}, Mixed{6, 10, 7, 1, true}}) {
    SCOPED_TRACE(testing::Message() << mc.c0 << " + " << mc.o << " -> " << mc.out << " g " << mc.g);
    const Case c{mc.c0 + mc.o, mc.out, mc.g, true, mc.dense, Activation::kSilu};
    Params p = make_params(c);
    torch::Tensor x0 = torch::randn({2, 29, mc.c0}).requires_grad_(true);
    torch::Tensor y = torch::randn({2, 29, mc.o}).requires_grad_(true);
    torch::Tensor got = dextra_layer_mixed(x0, y, p.w, p.b, p.lnw, p.lnb, c.g, c.shuffle, c.act, 1e-5, 0.0);
    ASSERT_EQ(got.sizes(), (std::vector<int64_t>{2, 29, mc.out}));
    std::vector<torch::Tensor> ref_in = {to64(x0), to64(y), to64(p.w), to64(p.b), to64(p.lnw), to64(p.lnb)};
    torch::Tensor z = delight_mix(ref_in[0].view({-1, mc.c0}), ref_in[1].view({-1, mc.o}), mc.g);  // [M, c0 + o]
    torch::Tensor want = reference(c, z, ref_in[2], ref_in[3], ref_in[4], ref_in[5]);
    EXPECT_LT(rel_err(got.view({-1, mc.out}), want), 2e-6);
    torch::Tensor v = torch::randn({2 * 29, mc.out}, torch::kFloat64);
    auto g = torch::autograd::grad({(got.view({-1, mc.out}).to(torch::kFloat64) * v).sum()}, {x0, y, p.w, p.b, p.lnw, p.lnb});
    auto r = torch::autograd::grad({(want * v).sum()}, ref_in);
    const char* names[] = {"x0", "y", "weight", "bias", "ln weight", "ln bias"};
    for (size_t i = 0; i < g.size(); ++i) {
      ASSERT_EQ(g[i].sizes(), r[i].sizes()) << names[i];
      EXPECT_LT(rel_err(g[i], r[i]), 2e-6) << "gradient of " << names[i];
    }
  }
  Params p = make_params({16, 8, 2, true, false, Activation::kSilu});
  EXPECT_THROW(dextra_layer_mixed(torch::randn({3, 6}), torch::randn({3, 9}), p.w, p.b, p.lnw, p.lnb, 2, true,
                                  Activation::kSilu, 1e-5, 0.0), Error);  // 6 + 9 = 15 != 16
  EXPECT_THROW(dextra_layer_mixed(torch::randn({3, 7}), torch::randn({3, 9}), p.w, p.b, p.lnw, p.lnb, 2, true,
                                  Activation::kSilu, 1e-5, 0.0), Error);  // 7 does not split into 2 groups
  EXPECT_THROW(dextra_layer_mixed(torch::randn({3, 8}), torch::randn({4, 8}), p.w, p.b, p.lnw, p.lnb, 2, true,
                                  Activation::kSilu, 1e-5, 0.0), Error);  // 3 vs 4 rows
}

// The whole DExTra unit in float32 (fused layers reading x0 and y without the mixer) against the
// same unit in float64 (the per-op path with delight_mix): values and input gradient.
TEST(DExTraLayer, FusedUnitEqualsThePerOpUnitInDoublePrecision) {
  torch::manual_seed(24);
  DExTraUnit unit(dextra_spec(128, 64, 64, 2.4, 4, 4), Activation::kSilu, 0.0);
  {
    torch::NoGradGuard ng;
    for (auto& t : unit->parameters()) {
      if (t.dim() < 3 && t.numel() < 400) t.copy_(torch::randn_like(t));  // biases and LayerNorm affines matter too
    }
  }
  torch::Tensor x = torch::randn({3, 11, 128}).requires_grad_(true);
  torch::Tensor y = unit->forward(x);  // [3, 11, 64]
  torch::Tensor v = torch::randn_like(y);
  torch::Tensor gx = torch::autograd::grad({(y * v).sum()}, {x})[0];
  unit->to(torch::kFloat64);
  torch::Tensor x64 = to64(x);
  torch::Tensor want = unit->forward(x64);
  torch::Tensor gwant = torch::autograd::grad({(want * v.to(torch::kFloat64)).sum()}, {x64})[0];
  EXPECT_LT(rel_err(y, want), 1e-5);
  EXPECT_LT(rel_err(gx, gwant), 1e-5);
}

TEST(DExTraLayer, DropoutIsDelightDropoutsMaskAndScale) {
  const Case c{64, 128, 4, true, false, Activation::kSilu};
  torch::manual_seed(22);
  Params p = make_params(c);
  torch::Tensor x = torch::randn({50, c.in}).requires_grad_(true);
  torch::Tensor plain = dextra_layer(x, p.w, p.b, p.lnw, p.lnb, c.g, true, c.act, 1e-5, 0.0);  // [50, 128]
  for (bool avx2 : {true, false}) {
    dextra_layer_allow_avx2(avx2);
    torch::manual_seed(5);
    torch::Tensor y = dextra_layer(x, p.w, p.b, p.lnw, p.lnb, c.g, true, c.act, 1e-5, 0.3);
    torch::manual_seed(5);
    torch::Tensor want = delight_dropout(plain.detach(), 0.3);  // the same seed draw, the same mask
    EXPECT_LT(rel_err(y, want), 2e-6) << "avx2 " << avx2;
    const double dropped = want.eq(0).to(torch::kFloat64).mean().item<double>();
    EXPECT_NEAR(dropped, 0.3, 0.03);  // 6400 draws
    // the gradient flows through the kept elements only, scaled by 1/(1-p)
    torch::Tensor v = torch::randn_like(y);
    torch::Tensor gx = torch::autograd::grad({(y * v).sum()}, {x})[0];
    torch::Tensor gw = torch::autograd::grad({(plain * (want.ne(0).to(torch::kFloat32) / 0.7) * v).sum()}, {x},
                                             {}, /*retain_graph=*/true)[0];
    EXPECT_LT(rel_err(gx, gw), 2e-6) << "avx2 " << avx2;
  }
  dextra_layer_allow_avx2(true);
  // a fresh draw differs
  torch::Tensor a = dextra_layer(x, p.w, p.b, p.lnw, p.lnb, c.g, true, c.act, 1e-5, 0.3).eq(0);
  torch::Tensor b = dextra_layer(x, p.w, p.b, p.lnw, p.lnb, c.g, true, c.act, 1e-5, 0.3).eq(0);
  EXPECT_FALSE(torch::equal(a, b));
}

TEST(DExTraLayer, KeepFlagsFromAnyOffsetMatchTheWholeMask) {
  const uint32_t threshold = delight_drop_threshold(0.5);
  std::vector<uint8_t> scalar(1001);  // element e: half (e % 2) of splitmix64(seed + e/2) >= threshold
  for (int64_t e = 0; e < 1001; ++e) {
    const uint64_t r = core::splitmix64(1234 + static_cast<uint64_t>(e / 2));
    scalar[e] = static_cast<uint32_t>(e % 2 == 0 ? r : r >> 32) >= threshold;
  }
  for (bool avx2 : {true, false}) {
    dextra_layer_allow_avx2(avx2);
    std::vector<uint8_t> part(600);
    for (int64_t e0 : {0, 1, 2, 17, 41, 400}) {
      for (int64_t n : {1, 7, 8, 9, 64, 600}) {
        delight_keep_flags(1234, threshold, e0, n, part.data());
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(part[i], scalar[e0 + i]) << "avx2 " << avx2 << " offset " << e0 << " n " << n << " element " << i;
        }
      }
    }
  }
  dextra_layer_allow_avx2(true);
  int64_t kept = 0;
  for (uint8_t k : scalar) kept += k;
  EXPECT_GT(kept, 440);  // 1001 draws of p = 0.5: 4 standard deviations ~ 63
  EXPECT_LT(kept, 561);
}

TEST(DExTraLayer, RejectsMismatchedShapesAndUnsupportedOperands) {
  const Case c{64, 128, 4, true, false, Activation::kSilu};
  Params p = make_params(c);
  EXPECT_THROW(dextra_layer(torch::randn({5, 60}), p.w, p.b, p.lnw, p.lnb, 4, true, c.act, 1e-5, 0.0), Error);
  EXPECT_THROW(dextra_layer(torch::randn({5, 64}), p.w, p.b, p.lnw, p.lnb, 2, true, c.act, 1e-5, 0.0), Error);
  EXPECT_THROW(dextra_layer(torch::randn({5, 64}), p.w, p.b, torch::randn({8}), p.lnb, 4, true, c.act, 1e-5, 0.0), Error);
  EXPECT_THROW(dextra_layer(torch::randn({5, 64}), p.w, p.b, p.lnw, p.lnb, 4, true, Activation::kGelu, 1e-5, 0.0), Error);
  EXPECT_THROW(dextra_layer(torch::randn({5, 64}, torch::kFloat64), p.w, p.b, p.lnw, p.lnb, 4, true, c.act, 1e-5, 0.0),
               Error);
  EXPECT_FALSE(dextra_layer_supported(torch::zeros({1}), torch::zeros({1}), Activation::kSilu, 1.0));
  torch::Tensor empty = dextra_layer(torch::randn({0, 64}), p.w, p.b, p.lnw, p.lnb, 4, true, c.act, 1e-5, 0.0);
  EXPECT_EQ(empty.sizes(), (std::vector<int64_t>{0, 128}));
}

}  // namespace
}  // namespace loom::nn
