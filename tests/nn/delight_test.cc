// DeLighT building blocks against papers.md §1: block-wise scaling (§1.8), DExTra widths and
// groups (the worked example table of §1.6, every entry), g_max rounding, the GLT with feature
// shuffle and per-group LayerNorm (§1.2–1.3), the input mixer order (§1.4), recurrent dropout.
#include "loom/nn/delight.h"

#include <gtest/gtest.h>

#include "loom/core/error.h"

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

}  // namespace
}  // namespace loom::nn
