// kNN-layer diagnostics (nn::KnnAttentionStats) and the memory-off capacity 0, on hand-made
// streams whose retrievals are known exactly.
#include <gtest/gtest.h>

#include <cmath>

#include "loom/nn/lm_attention.h"

namespace loom::nn {
namespace {

// One "knn" head of width 4 with identity q/k/v projections: the token at position p is the
// one-hot e_{p mod 4}, so q = k = v = e_{p mod 4} (unit norm) and a query matches exactly the
// keys 4, 8, ... tokens back (cosine 1) and no other (cosine 0).
AttentionOptions identity_options(int64_t capacity, int64_t top_k) {
  AttentionOptions o;
  o.kind = AttentionKind::kKnn;
  o.d_model = 4;
  o.n_q = 1;
  o.n_kv = 1;
  o.d_head = 4;
  o.window = 4;
  o.segment_len = 4;
  o.knn_memory.capacity = capacity;
  o.knn_top_k = top_k;
  o.knn_temperature_init = 1.0;
  return o;
}

LMAttention identity_layer(int64_t capacity, int64_t top_k) {
  LMAttention a(identity_options(capacity, top_k));
  torch::NoGradGuard g;
  a->qkv_proj.copy_(torch::cat({torch::eye(4), torch::eye(4), torch::eye(4)}, 0));
  a->out_proj.copy_(torch::eye(4));
  return a;
}

// x [1, T, 4]: e_{p mod 4} for p = pos0 .. pos0 + T − 1.
torch::Tensor periodic(int64_t pos0, int64_t t) {
  return torch::one_hot(torch::remainder(torch::arange(pos0, pos0 + t), 4), 4).to(torch::kFloat32).unsqueeze(0);
}

TEST(KnnStats, PeriodicStreamRetrievesKnownDistances) {
  LMAttention a = identity_layer(/*capacity=*/8, /*top_k=*/2);
  torch::NoGradGuard g;
  AttentionState st;
  torch::Tensor ds = torch::zeros({1}, torch::kInt64);
  a->forward(periodic(0, 8), 0, ds, st);  // memory now holds positions 0..7
  a->knn_stats = std::make_shared<KnnAttentionStats>();
  a->knn_stats->distance_edges = {4, 8};
  a->knn_stats->section_starts = {0, 6};
  a->forward(periodic(8, 4), 8, ds, st);  // queries 8..11
  const KnnAttentionStats& s = *a->knn_stats;
  EXPECT_DOUBLE_EQ(s.queries[0].item<double>(), 4);
  EXPECT_DOUBLE_EQ(s.with_memory[0].item<double>(), 4);
  // top-2 = the keys 4 and 8 back (cosine 1), equal weights 1/2 each
  EXPECT_NEAR(s.distance_mass[0][0].item<double>(), 2.0, 1e-6);  // d <= 4
  EXPECT_NEAR(s.distance_mass[0][1].item<double>(), 2.0, 1e-6);  // 4 < d <= 8
  EXPECT_NEAR(s.distance_mass[0][2].item<double>(), 0.0, 1e-6);  // d > 8
  EXPECT_NEAR(s.distance_sum[0].item<double>(), 4 * 6.0, 1e-5);
  // sections [0, 6) and [6, ...): only queries 10 and 11 have a same-section key (6, 7), weight 1/2
  EXPECT_NEAR(s.same_section_mass[0].item<double>(), 1.0, 1e-6);
  // joint softmax (τ = 1): memory logits {1, 1}; local keys p−4 .. p: {1 (p−4), 0, 0, 0, 1 (p)}
  const double e = std::exp(1.0);
  EXPECT_NEAR(s.joint_memory_mass[0].item<double>(), 4 * (2 * e) / (2 * e + 2 * e + 3), 1e-5);
}

TEST(KnnStats, AddHandComputedWithInvalidNeighboursAndBadShapes) {
  KnnAttentionStats s;
  s.distance_edges = {2, 10};
  // B = 1, H = 2, Q = 2 (positions 20, 21), K = 2
  torch::Tensor w = torch::tensor({0.75, 0.25, 1.0, 0.0, 0.0, 0.0, 0.6, 0.4}).view({1, 2, 2, 2});
  torch::Tensor kp = torch::tensor({19L, 5L, 20L, -1L, -1L, -1L, 11L, 0L}).view({1, 2, 2, 2});
  torch::Tensor qp = torch::tensor({20L, 21L});
  torch::Tensor lse_m = torch::zeros({1, 2, 2}), lse_l = torch::zeros({1, 2, 2});
  s.add(w, kp, qp, lse_m, lse_l);
  EXPECT_EQ(s.queries[0].item<double>(), 2);
  EXPECT_EQ(s.with_memory[0].item<double>(), 2);
  EXPECT_EQ(s.with_memory[1].item<double>(), 1);  // head 1, query 20: nothing valid
  // head 0: distances 1 (0.75), 15 (0.25), 1 (1.0); head 1: 10 (0.6), 21 (0.4)
  EXPECT_NEAR(s.distance_mass[0][0].item<double>(), 1.75, 1e-6);
  EXPECT_NEAR(s.distance_mass[0][2].item<double>(), 0.25, 1e-6);
  EXPECT_NEAR(s.distance_mass[1][1].item<double>(), 0.6, 1e-6);
  EXPECT_NEAR(s.distance_mass[1][2].item<double>(), 0.4, 1e-6);
  EXPECT_NEAR(s.distance_sum[1].item<double>(), 0.6 * 10 + 0.4 * 21, 1e-5);
  // equal logsumexps: each query with memory counts 1/2
  EXPECT_NEAR(s.joint_memory_mass[0].item<double>(), 1.0, 1e-9);
  EXPECT_NEAR(s.joint_memory_mass[1].item<double>(), 0.5, 1e-9);
  EXPECT_THROW(s.add(w, kp, torch::tensor({20L}), lse_m, lse_l), Error);
  EXPECT_THROW(s.add(w.narrow(1, 0, 1), kp.narrow(1, 0, 1), qp, lse_m.narrow(1, 0, 1), lse_l.narrow(1, 0, 1)),
               Error);  // a different head count than before
  KnnAttentionStats bad;
  bad.distance_edges = {8, 4};
  EXPECT_THROW(bad.add(w, kp, qp, lse_m, lse_l), Error);
}

TEST(KnnStats, CapacityZeroTurnsTheMemoryOff) {
  // memory off = (1 − g)·local: with g = 1/2 the output is half the gate-closed layer's
  LMAttention off = identity_layer(0, 2), closed = identity_layer(8, 2);
  torch::NoGradGuard g;
  {
    closed->gate.fill_(-40.0);  // sigmoid(−40) ≈ 4e-18
  }
  off->knn_stats = std::make_shared<KnnAttentionStats>();
  AttentionState s_off, s_closed;
  torch::Tensor ds = torch::zeros({1}, torch::kInt64);
  torch::Tensor x = periodic(0, 12) + 0.1 * torch::randn({1, 12, 4});
  torch::Tensor y_off = off->forward(x, 0, ds, s_off);
  torch::Tensor y_closed = closed->forward(x, 0, ds, s_closed);
  EXPECT_TRUE(torch::allclose(y_off, 0.5 * y_closed, 1e-5, 1e-6));
  EXPECT_FALSE(s_off.knn);  // nothing allocated
  EXPECT_EQ(off->knn_stats->queries[0].item<double>(), 12);
  EXPECT_EQ(off->knn_stats->with_memory[0].item<double>(), 0);
  EXPECT_EQ(off->knn_stats->joint_memory_mass[0].item<double>(), 0);
}

}  // namespace
}  // namespace loom::nn
