// DeLighT building blocks against papers.md §1: block-wise scaling (§1.8), DExTra widths and
// groups (the worked example table of §1.6, every entry), g_max rounding, the GLT with feature
// shuffle and per-group LayerNorm (§1.2–1.3), the input mixer order (§1.4), recurrent dropout;
// the batched GLT against the per-group formulation (forward, gradients, finite differences),
// the DExTra dropout.
#include "loom/nn/delight.h"

#include <gtest/gtest.h>


#include "loom/core/error.h"
#include "support/gradcheck.h"

namespace loom::nn {
namespace {

TEST(DelightBlockScaling, TruncatesDepthsAndRoundsWidths) {
  BlockScaling s = delight_block_scaling(4, 8, 8, 2.0);
  EXPECT_EQ(s.depth, (std::vector<int64_t>{4, 4, 5, 5, 6, 6, 7, 8}));  // not [4,5,5,6,6,7,7,8]
  const std::vector<double> w = {2.0, 2.143, 2.286, 2.429, 2.571, 2.714, 2.857, 3.0};
  ASSERT_EQ(s.width_mult.size(), w.size());
  for (size_t i = 0; i < w.size(); ++i) EXPECT_DOUBLE_EQ(s.width_mult[i], w[i]) << i;
  // en-zh setting: N 3..6 over 6 blocks; w_m goes to 2 + 3/3 = 3
  BlockScaling t = delight_block_scaling(3, 6, 6, 2.0);
  EXPECT_EQ(t.depth, (std::vector<int64_t>{3, 3, 4, 4, 5, 6}));
  EXPECT_DOUBLE_EQ(t.width_mult[1], 2.2);
  EXPECT_DOUBLE_EQ(t.width_mult[5], 3.0);
  // uniform scaling when N_min == N_max (the authors' encoder branch for this case crashes)
  BlockScaling u = delight_block_scaling(4, 4, 3, 2.0);
  EXPECT_EQ(u.depth, (std::vector<int64_t>{4, 4, 4}));
  EXPECT_EQ(u.width_mult, (std::vector<double>{2.0, 2.0, 2.0}));
  BlockScaling one = delight_block_scaling(4, 8, 1, 2.0);
  EXPECT_EQ(one.depth, (std::vector<int64_t>{4}));
  EXPECT_THROW(delight_block_scaling(5, 4, 3, 2.0), Error);
}

TEST(DelightMaxGroups, RoundsUpToAPowerOfTwo) {
  EXPECT_EQ(delight_max_groups(128), 4);
  EXPECT_EQ(delight_max_groups(256), 8);
  EXPECT_EQ(delight_max_groups(384), 16);  // the paper's ceil(384/32) would be 12
  EXPECT_EQ(delight_max_groups(512), 16);
  EXPECT_EQ(delight_max_groups(640), 32);  // paper: 20
  EXPECT_EQ(delight_max_groups(64), 2);
  EXPECT_EQ(delight_max_groups(32), 1);
}

struct TableRow {
  int block;
  std::vector<int64_t> in, out, groups;
};

// papers.md §1.6 worked example: d_m = 512, d_o = 256, g_max = 16, blocks 0, 2, 4, 7 of (4, 8, B = 8).
TEST(DExTraSpec, ReproducesTheWorkedExampleTable) {
  const std::vector<TableRow> table = {
      {0, {256, 512, 1280, 1280}, {256, 1024, 1024, 256}, {2, 4, 4, 2}},
      {2, {256, 512, 976, 1432, 976}, {256, 720, 1176, 720, 256}, {2, 4, 8, 4, 2}},
      {4, {256, 512, 1048, 1576, 1576, 1048}, {256, 792, 1320, 1320, 792, 256}, {2, 4, 8, 8, 4, 2}},
      {7, {256, 512, 944, 1376, 1792, 1792, 1368, 944}, {256, 688, 1120, 1536, 1536, 1112, 688, 256}, {2, 4, 8, 16, 16, 8, 4, 2}},
  };
  const BlockScaling s = delight_block_scaling(4, 8, 8, 2.0);
  const std::vector<int64_t> depth = {4, 5, 6, 8};
  for (size_t r = 0; r < table.size(); ++r) {
    const TableRow& row = table[r];
    EXPECT_EQ(s.depth[row.block], depth[r]);
    DExTraSpec spec = dextra_spec(512, 256, 256, s.width_mult[row.block], s.depth[row.block], delight_max_groups(512));
    std::vector<int64_t> in, out, groups;
    for (const GltSpec& l : spec.glt) {
      in.push_back(l.in);
      out.push_back(l.out);
      groups.push_back(l.groups);
    }
    EXPECT_EQ(in, row.in) << "block " << row.block;
    EXPECT_EQ(out, row.out) << "block " << row.block;
    EXPECT_EQ(groups, row.groups) << "block " << row.block;
    EXPECT_EQ(spec.in_features, 512);
    EXPECT_EQ(spec.in_proj, 256);
    EXPECT_EQ(spec.out_proj_in(), 512);  // dense (256 + 256) -> 256 output layer
  }
  EXPECT_EQ(s.width_mult[2], 2.286);
  EXPECT_EQ(s.width_mult[4], 2.571);
}

TEST(DExTraSpec, ParameterCountMatchesTheModule) {
  DExTraSpec spec = dextra_spec(64, 32, 32, 2.5, 5, delight_max_groups(64));
  DExTraUnit unit(spec, Activation::kSilu, 0.0);
  int64_t n = 0;
  for (const auto& p : unit->parameters()) n += p.numel();
  EXPECT_EQ(n, spec.parameter_count());
  EXPECT_EQ(unit->forward(torch::randn({2, 3, 64})).sizes(), (std::vector<int64_t>{2, 3, 32}));
}

TEST(GroupLinear, PerGroupProductThenShuffleThenGroupNorm) {
  torch::manual_seed(0);
  const int64_t g = 2, in = 4, out = 6;  // chunks of 2 inputs -> 3 outputs
  GroupLinear glt(in, out, g, /*shuffle=*/true, Activation::kRelu, 0.0);
  torch::NoGradGuard no_grad;
  EXPECT_EQ(glt->weight.sizes(), (std::vector<int64_t>{2, 2, 3}));
  EXPECT_EQ(glt->bias.sizes(), (std::vector<int64_t>{2, 1, 3}));
  EXPECT_EQ(glt->layer_norm->weight.size(0), 3);  // one LN over out/g, shared by the groups
  glt->bias.copy_(torch::randn({2, 1, 3}));
  torch::Tensor x = torch::randn({5, in});  // [M, in]
  torch::Tensor y = glt->forward(x);         // [M, out]
  // reference: y_k = x_k W_k + b_k per group, channel j of group k moves to j·g + k, LN per new chunk
  torch::Tensor y0 = torch::matmul(x.narrow(1, 0, 2), glt->weight[0]) + glt->bias[0];  // [M, 3]
  torch::Tensor y1 = torch::matmul(x.narrow(1, 2, 2), glt->weight[1]) + glt->bias[1];  // [M, 3]
  torch::Tensor flat = torch::empty({5, 6});
  for (int64_t j = 0; j < 3; ++j) {
    flat.select(1, j * g + 0).copy_(y0.select(1, j));
    flat.select(1, j * g + 1).copy_(y1.select(1, j));
  }
  torch::Tensor chunks = flat.view({5, 2, 3});                                // [M, g, out/g]
  torch::Tensor mean = chunks.mean(-1, true), var = chunks.var(-1, false, true);
  torch::Tensor want = ((chunks - mean) / torch::sqrt(var + 1e-5)).relu().view({5, 6});
  EXPECT_TRUE(torch::allclose(y, want, 1e-5, 1e-5));
  // without shuffle the groups stay in place
  GroupLinear plain(in, out, g, /*shuffle=*/false, Activation::kRelu, 0.0);
  torch::Tensor p = plain->forward(x);
  torch::Tensor q0 = torch::matmul(x.narrow(1, 0, 2), plain->weight[0]);  // bias is zero
  torch::Tensor ln0 = (q0 - q0.mean(-1, true)) / torch::sqrt(q0.var(-1, false, true) + 1e-5);
  EXPECT_TRUE(torch::allclose(p.narrow(1, 0, 3), ln0.relu(), 1e-5, 1e-5));
  EXPECT_THROW(GroupLinear(5, 6, 2, true, Activation::kRelu, 0.0), Error);
}

TEST(GroupLinear, XavierOnThe3DWeight) {
  torch::manual_seed(1);
  GroupLinear glt(512, 512, 4, true, Activation::kSilu, 0.0);
  // torch's fan rule for [g, in/g, out/g]: fan_in = size(1)·(out/g) = 128·128, fan_out =
  // size(0)·(out/g) = 512; bound sqrt(6 / (fan_in + fan_out)), ~8x below a per-group 2-D Xavier
  const double fan_in = 128.0 * 128.0, fan_out = 4.0 * 128.0;
  const double bound = std::sqrt(6.0 / (fan_in + fan_out));
  EXPECT_LE(glt->weight.abs().max().item<double>(), bound + 1e-7);
  EXPECT_GT(glt->weight.abs().max().item<double>(), 0.9 * bound);
}

TEST(DelightMix, InputSliceFirstPerNextLayerGroup) {
  torch::Tensor x0 = torch::tensor({0.f, 1.f, 2.f, 3.f}).view({1, 1, 4});
  torch::Tensor y = torch::tensor({10.f, 11.f, 12.f, 13.f, 14.f, 15.f}).view({1, 1, 6});
  torch::Tensor two = delight_mix(x0, y, 2).view({-1});
  EXPECT_TRUE(torch::equal(two, torch::tensor({0.f, 1.f, 10.f, 11.f, 12.f, 2.f, 3.f, 13.f, 14.f, 15.f})));
  torch::Tensor one = delight_mix(x0, y, 1).view({-1});
  EXPECT_TRUE(torch::equal(one, torch::tensor({0.f, 1.f, 2.f, 3.f, 10.f, 11.f, 12.f, 13.f, 14.f, 15.f})));
}

TEST(RecurrentDropout, OneMaskPerSequenceAndChannel) {
  torch::manual_seed(2);
  torch::Tensor x = torch::ones({3, 7, 16});
  torch::Tensor y = recurrent_dropout(x, 0.5, true);  // [B, T, C]
  EXPECT_TRUE(torch::equal(y, y.select(1, 0).unsqueeze(1).expand_as(y)));  // same over time
  EXPECT_TRUE(((y == 0) | (y == 2)).all().item<bool>());
  EXPECT_GT((y == 0).sum().item<int64_t>(), 0);
  EXPECT_TRUE(torch::equal(recurrent_dropout(x, 0.5, false), x));
}

// ---- the batched GLT against the per-group formulation ---------------------------------

torch::Tensor reference_act(const torch::Tensor& a, Activation act) {
  switch (act) {
    case Activation::kRelu: return torch::relu(a);
    case Activation::kGelu: return at::gelu(a, "none");
    case Activation::kGeluTanh: return at::gelu(a, "tanh");
    case Activation::kSilu: return at::silu(a);
    case Activation::kTanh: return torch::tanh(a);
    case Activation::kSigmoid: return torch::sigmoid(a);
  }
  return a;
}

// The GLT as nn_functions.py GroupLinear computes it, written with one matmul per group instead
// of loom's single bmm: y_k = x_k·W_k + b_k per group,
// feature shuffle, LayerNorm per chunk of out/g with the shared affine, activation. No dropout.
torch::Tensor reference_glt(GroupLinear& glt, const torch::Tensor& x) {
  const int64_t g = glt->groups, ci = glt->in / g, co = glt->out / g;
  std::vector<int64_t> shape = x.sizes().vec();
  torch::Tensor xm = x.reshape({-1, glt->in});  // [M, in]
  std::vector<torch::Tensor> ys;
  for (int64_t k = 0; k < g; ++k) ys.push_back(torch::matmul(xm.narrow(1, k * ci, ci), glt->weight[k]) + glt->bias[k]);
  torch::Tensor h = torch::stack(ys, 0);  // [g, M, co]
  if (glt->shuffle && g > 1) {
    h = h.permute({1, 2, 0}).reshape({-1, g, co});  // [M, co, g] -> [M, g, co]
  } else {
    h = h.transpose(0, 1);  // [M, g, co]
  }
  h = torch::layer_norm(h, {co}, glt->layer_norm->weight, glt->layer_norm->bias, glt->layer_norm->eps);
  shape.back() = glt->out;
  return reference_act(h, glt->act).reshape(shape);  // [..., out]
}

// Random LayerNorm affine and bias, so that every parameter matters.
void randomize(GroupLinear& glt) {
  torch::NoGradGuard ng;
  glt->bias.copy_(torch::randn_like(glt->bias));
  glt->layer_norm->weight.copy_(torch::randn_like(glt->layer_norm->weight));
  glt->layer_norm->bias.copy_(torch::randn_like(glt->layer_norm->bias));
  for (auto& p : glt->parameters()) p.set_requires_grad(true);
}

TEST(GroupLinearBatched, EqualsThePerGroupFormulationForwardAndBackward) {
  torch::manual_seed(11);
  struct Case {
    int64_t in, out, g;
    bool shuffle;
    Activation act;
  };
  for (const Case& c : {Case{96, 160, 4, true, Activation::kSilu}, Case{64, 64, 2, true, Activation::kGelu},
                        Case{48, 24, 4, false, Activation::kRelu}, Case{40, 56, 1, true, Activation::kGeluTanh},
                        Case{32, 48, 8, true, Activation::kTanh}, Case{16, 32, 2, true, Activation::kSigmoid}}) {
    SCOPED_TRACE(testing::Message() << c.in << " -> " << c.out << " g " << c.g << " shuffle " << c.shuffle);
    GroupLinear glt(c.in, c.out, c.g, c.shuffle, c.act, /*dropout=*/0.2);
    randomize(glt);
    glt->train();  // dropout on: must not change anything when p is 0 below
    glt->dropout = 0.0;
    torch::Tensor x = torch::randn({3, 7, c.in}).requires_grad_(true);  // [B, T, in]
    torch::Tensor w = torch::randn({3, 7, c.out});                     // weights of the scalar loss
    torch::Tensor y = glt->forward(x);
    torch::Tensor want = reference_glt(glt, x);
    ASSERT_EQ(y.sizes(), want.sizes());
    EXPECT_LT((y - want).abs().max().item<double>(), 1e-5);
    std::vector<torch::Tensor> wrt = {x, glt->weight, glt->bias, glt->layer_norm->weight, glt->layer_norm->bias};
    auto got = torch::autograd::grad({(y * w).sum()}, wrt);
    auto ref = torch::autograd::grad({(want * w).sum()}, wrt);
    for (size_t i = 0; i < wrt.size(); ++i) {
      const double scale = std::max(1.0, ref[i].abs().max().item<double>());
      EXPECT_LT((got[i] - ref[i]).abs().max().item<double>(), 1e-5 * scale) << "gradient " << i;
    }
    // inference (no autograd) takes the path without saved tensors: same values
    torch::NoGradGuard ng;
    glt->eval();
    EXPECT_LT((glt->forward(x) - want).abs().max().item<double>(), 1e-5);
  }
}

TEST(GroupLinearBatched, FiniteDifferenceGradientsInDoublePrecision) {
  torch::manual_seed(12);
  for (Activation act : {Activation::kSilu, Activation::kGelu, Activation::kGeluTanh, Activation::kTanh, Activation::kSigmoid}) {
    GroupLinear glt(8, 12, 2, /*shuffle=*/true, act, 0.0);
    glt->to(torch::kFloat64);
    randomize(glt);
    torch::Tensor x = torch::randn({5, 8}, torch::kFloat64).requires_grad_(true);
    torch::Tensor w = torch::randn({5, 12}, torch::kFloat64);
    auto loss = [&]() { return (glt->forward(x) * w).sum(); };
    loom_test::expect_gradients_match(loss, x, 1e-6);
    loom_test::expect_gradients_match(loss, glt->weight, 1e-6);
    loom_test::expect_gradients_match(loss, glt->bias, 1e-6);
    loom_test::expect_gradients_match(loss, glt->layer_norm->weight, 1e-6);
    loom_test::expect_gradients_match(loss, glt->layer_norm->bias, 1e-6);
  }
}

TEST(GroupLinearBatched, DropoutZeroesAndScalesAndItsGradientFollowsTheMask) {
  torch::manual_seed(13);
  GroupLinear glt(64, 128, 4, true, Activation::kSilu, /*dropout=*/0.25);
  randomize(glt);
  glt->train();
  torch::Tensor x = torch::randn({50, 64}).requires_grad_(true);
  torch::Tensor y = glt->forward(x);             // [50, 128]
  torch::Tensor plain = reference_glt(glt, x);   // no dropout
  torch::Tensor kept = y.ne(0);                  // silu output is never exactly 0 here
  const double frac = 1.0 - kept.to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(frac, 0.25, 0.02);  // 6400 draws: 4 standard deviations ~ 0.022
  EXPECT_LT((y - plain * kept / 0.75).abs().max().item<double>(), 1e-5);
  torch::Tensor w = torch::randn_like(y);
  torch::Tensor gx = torch::autograd::grad({(y * w).sum()}, {x})[0];
  torch::Tensor want = torch::autograd::grad({(plain * kept / 0.75 * w).sum()}, {x})[0];
  EXPECT_LT((gx - want).abs().max().item<double>(), 1e-5);
  // the masks follow torch::manual_seed; a fresh draw differs
  torch::manual_seed(5);
  torch::Tensor a = glt->forward(x).ne(0);
  torch::Tensor b = glt->forward(x).ne(0);
  torch::manual_seed(5);
  EXPECT_TRUE(torch::equal(glt->forward(x).ne(0), a));
  EXPECT_FALSE(torch::equal(a, b));
  // eval mode: no dropout
  glt->eval();
  EXPECT_LT((glt->forward(x) - plain).abs().max().item<double>(), 1e-5);
}

TEST(DenseNormActLayer, EqualsLinearLayerNormActivation) {
  torch::manual_seed(14);
  DenseNormAct d(24, 40, Activation::kSilu, 0.0);
  {
    torch::NoGradGuard ng;
    d->linear->bias.copy_(torch::randn({40}));
    d->layer_norm->weight.copy_(torch::randn({40}));
    d->layer_norm->bias.copy_(torch::randn({40}));
  }
  for (auto& p : d->parameters()) p.set_requires_grad(true);
  torch::Tensor x = torch::randn({2, 9, 24}).requires_grad_(true);
  torch::Tensor y = d->forward(x);
  torch::Tensor want = at::silu(torch::layer_norm(torch::matmul(x, d->linear->weight.t()) + d->linear->bias, {40},
                                                  d->layer_norm->weight, d->layer_norm->bias, 1e-5));
  EXPECT_LT((y - want).abs().max().item<double>(), 1e-5);
  torch::Tensor w = torch::randn_like(y);
  std::vector<torch::Tensor> wrt = {x, d->linear->weight, d->linear->bias, d->layer_norm->weight, d->layer_norm->bias};
  auto got = torch::autograd::grad({(y * w).sum()}, wrt);
  auto ref = torch::autograd::grad({(want * w).sum()}, wrt);
  for (size_t i = 0; i < wrt.size(); ++i) {
    const double scale = std::max(1.0, ref[i].abs().max().item<double>());
    EXPECT_LT((got[i] - ref[i]).abs().max().item<double>(), 1e-5 * scale) << "gradient " << i;
  }
}

TEST(DExTraUnit, FiniteDifferenceGradientOfTheWholeUnit) {
  torch::manual_seed(15);
  DExTraUnit unit(dextra_spec(16, 8, 8, 2.0, 3, 2), Activation::kSilu, 0.0);
  unit->to(torch::kFloat64);
  torch::Tensor x = torch::randn({2, 3, 16}, torch::kFloat64).requires_grad_(true);
  torch::Tensor w = torch::randn({2, 3, 8}, torch::kFloat64);
  auto loss = [&]() { return (unit->forward(x) * w).sum(); };
  loom_test::expect_gradients_match(loss, x, 1e-6);
  loom_test::expect_gradients_match(loss, unit->glt[1]->weight, 1e-6);
}

}  // namespace
}  // namespace loom::nn
