// Decoder-LM building blocks and Infini-attention (papers.md §2.3, §3.1, §5.3) against
// hand-computed cases and naive reference computations.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "loom/nn/lm_attention.h"
#include "loom/nn/lm_blocks.h"
#include "support/gradcheck.h"

namespace loom::nn {
namespace {

torch::Tensor f64(std::initializer_list<double> v) { return torch::tensor(std::vector<double>(v), torch::kFloat64); }

TEST(LmBlocks, RoPEHandComputedAndOffset) {
  // d = 2, position 1: (1, 0) -> (cos 1, sin 1)
  torch::Tensor x = torch::tensor({1.0, 0.0}, torch::kFloat64).view({1, 1, 1, 2});
  torch::Tensor y = apply_rope(x, 1);
  EXPECT_NEAR(y[0][0][0][0].item<double>(), std::cos(1.0), 1e-12);
  EXPECT_NEAR(y[0][0][0][1].item<double>(), std::sin(1.0), 1e-12);
  // d = 4: dims (0, 2) rotate with angle p, dims (1, 3) with p / 100 (base 10000)
  torch::Tensor x4 = torch::tensor({1.0, 1.0, 0.0, 0.0}, torch::kFloat64).view({1, 1, 1, 4});
  torch::Tensor y4 = apply_rope(x4, 3);
  EXPECT_NEAR(y4[0][0][0][1].item<double>(), std::cos(0.03), 1e-12);
  EXPECT_NEAR(y4[0][0][0][3].item<double>(), std::sin(0.03), 1e-12);
  // an offset equals the same rows of a longer sequence
  torch::manual_seed(0);
  torch::Tensor long_x = torch::randn({2, 3, 10, 8}, torch::kFloat64);
  torch::Tensor full = apply_rope(long_x, 0);
  EXPECT_TRUE(torch::allclose(apply_rope(long_x.narrow(2, 6, 4), 6), full.narrow(2, 6, 4), 1e-12, 1e-12));
  // relative: <rope(q, m), rope(k, n)> depends on m - n only
  torch::Tensor q = torch::randn({1, 1, 1, 8}, torch::kFloat64), k = torch::randn({1, 1, 1, 8}, torch::kFloat64);
  double a = (apply_rope(q, 5) * apply_rope(k, 2)).sum().item<double>();
  double b = (apply_rope(q, 1005) * apply_rope(k, 1002)).sum().item<double>();
  EXPECT_NEAR(a, b, 1e-9);
  EXPECT_THROW(apply_rope(torch::zeros({1, 1, 1, 3}), 0), Error);
}

TEST(LmBlocks, FastBatchedGemmMatchesTorchForwardAndBackward) {
  torch::manual_seed(9);
  torch::Tensor a = torch::randn({3, 5, 7}).requires_grad_(true);
  torch::Tensor b = torch::randn({3, 6, 7}).requires_grad_(true);
  torch::Tensor c = torch::randn({3, 7, 4}).requires_grad_(true);
  torch::Tensor w = torch::randn({3, 5, 6}), w2 = torch::randn({3, 5, 4});
  auto grads = [&](bool fast_path) {
    torch::Tensor nt = fast_path ? bmm_nt(a, b) : torch::matmul(a, b.transpose(1, 2));  // [3,5,6]
    torch::Tensor nn = fast_path ? bmm_nn(a, c) : torch::matmul(a, c);                  // [3,5,4]
    torch::Tensor loss = (nt * w).sum() + (nn * w2).sum();
    auto g = torch::autograd::grad({loss}, {a, b, c});
    return std::make_tuple(nt.detach(), nn.detach(), g[0], g[1], g[2]);
  };
  auto [nt1, nn1, ga1, gb1, gc1] = grads(true);
  auto [nt2, nn2, ga2, gb2, gc2] = grads(false);
  EXPECT_TRUE(torch::allclose(nt1, nt2, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(nn1, nn2, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(ga1, ga2, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(gb1, gb2, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(gc1, gc2, 1e-5, 1e-5));
  // dense: a shared weight (batch 1 broadcast) gets the gradient summed over all positions
  torch::Tensor x = torch::randn({2, 3, 7}).requires_grad_(true);
  torch::Tensor wt = torch::randn({4, 7}).requires_grad_(true);
  torch::Tensor y = dense(x, wt);
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 3, 4}));
  EXPECT_TRUE(torch::allclose(y, torch::matmul(x, wt.t()), 1e-5, 1e-5));
  torch::Tensor gw = torch::autograd::grad({(y * y).sum()}, {wt})[0];
  torch::Tensor yr = torch::matmul(x, wt.t());
  torch::Tensor gw_ref = torch::autograd::grad({(yr * yr).sum()}, {wt})[0];
  EXPECT_TRUE(torch::allclose(gw, gw_ref, 1e-4, 1e-4));
}

TEST(LmBlocks, GatedFeedForwardSwiGLUAndGeGLU) {
  torch::manual_seed(1);
  torch::Tensor x = torch::randn({2, 3, 6});
  for (auto act : {GatedActivation::kSwiGLU, GatedActivation::kGeGLU}) {
    GatedFeedForward ffn(6, 5, act);
    torch::NoGradGuard no_grad;
    torch::Tensor h = torch::matmul(x, ffn->proj_1.t());  // [2,3,10]
    torch::Tensor a = h.narrow(-1, 0, 5), b = h.narrow(-1, 5, 5);
    torch::Tensor g = act == GatedActivation::kSwiGLU ? a * torch::sigmoid(a) : 0.5 * a * (1 + torch::erf(a / std::sqrt(2.0)));
    torch::Tensor ref = torch::matmul(g * b, ffn->proj_2.t());
    EXPECT_TRUE(torch::allclose(ffn->forward(x), ref, 1e-5, 1e-5));
  }
  EXPECT_THROW(parse_gated_activation("relu", {"config.json", 0, "ffn_activation"}), Error);
}

TEST(LmBlocks, GqaAttentionMatchesRepeatInterleaveReference) {
  torch::manual_seed(2);
  torch::Tensor q = torch::randn({2, 6, 5, 4}), k = torch::randn({2, 2, 7, 4}), v = torch::randn({2, 2, 7, 3});
  torch::Tensor mask = position_mask(2, 5, torch::arange(0, 7, torch::kInt64), torch::tensor({0, 3}, torch::kInt64), 0, torch::kFloat32);
  torch::Tensor kr = k.repeat_interleave(3, 1), vr = v.repeat_interleave(3, 1);
  torch::Tensor ref = torch::matmul(torch::softmax(torch::matmul(q * 0.5, kr.transpose(-1, -2)) + mask, -1), vr);
  EXPECT_TRUE(torch::allclose(gqa_attention(q, k, v, mask, 0.5), ref, 1e-5, 1e-5));
  // mask: row 1 starts its document at position 3, query at position 2 + t sees keys 3..2+t
  EXPECT_EQ(mask[1][0][2][2].item<float>(), -1e9f);
  EXPECT_EQ(mask[1][0][2][3].item<float>(), 0.0f);
  EXPECT_EQ(mask[1][0][2][4].item<float>(), 0.0f);
  EXPECT_EQ(mask[1][0][2][5].item<float>(), -1e9f);  // future
  EXPECT_EQ(mask[0][0][0][0].item<float>(), 0.0f);
  // sliding window 2: query at 6 sees 4, 5, 6
  torch::Tensor wm = position_mask(6, 1, torch::arange(0, 7, torch::kInt64), torch::zeros({1}, torch::kInt64), 2, torch::kFloat32);
  EXPECT_TRUE(torch::equal(wm.view({7}) == 0, torch::tensor({0, 0, 0, 0, 1, 1, 1}).to(torch::kBool)));
}

TEST(InfiniMemory, LinearAndDeltaUpdatesHandComputed) {
  torch::Tensor m0 = torch::zeros({1, 1, 2, 2}, torch::kFloat64), z0 = torch::zeros({1, 1, 2}, torch::kFloat64);
  torch::Tensor sk1 = f64({1, 2}).view({1, 1, 1, 2}), v1 = f64({3, 4}).view({1, 1, 1, 2});
  for (auto rule : {InfiniUpdate::kLinear, InfiniUpdate::kDelta}) {
    auto [m1, z1] = infini_update(m0, z0, sk1, v1, rule);  // first segment: delta term 0
    EXPECT_TRUE(torch::equal(m1.view({4}), f64({3, 4, 6, 8})));
    EXPECT_TRUE(torch::equal(z1.view({2}), f64({1, 2})));
    torch::Tensor sk2 = f64({2, 1}).view({1, 1, 1, 2}), v2 = f64({1, 1}).view({1, 1, 1, 2});
    auto [m2, z2] = infini_update(m1, z1, sk2, v2, rule);
    EXPECT_TRUE(torch::equal(z2.view({2}), f64({3, 3})));
    if (rule == InfiniUpdate::kLinear) {
      EXPECT_TRUE(torch::allclose(m2.view({4}), f64({5, 6, 7, 9})));
    } else {
      // retrieved = (2·[3,4] + 1·[6,8]) / (2·1 + 1·2) = [3, 4]; V − retrieved = [−2, −3]
      EXPECT_TRUE(torch::allclose(m2.view({4}), f64({-1, -2, 4, 5})));
    }
  }
  // retrieval: empty memory gives 0, otherwise σQ M / σQ z
  torch::Tensor sq = f64({1, 1}).view({1, 1, 1, 2});
  EXPECT_TRUE(torch::equal(infini_retrieve(sq, m0, z0).view({2}), f64({0, 0})));
  auto [m1, z1] = infini_update(m0, z0, sk1, v1, InfiniUpdate::kLinear);
  EXPECT_TRUE(torch::allclose(infini_retrieve(sq, m1, z1).view({2}), f64({9.0 / 3, 12.0 / 3})));
  EXPECT_NEAR(elu_plus_one(f64({-1.0, 0.5}))[0].item<double>(), std::exp(-1.0), 1e-12);
  EXPECT_NEAR(elu_plus_one(f64({-1.0, 0.5}))[1].item<double>(), 1.5, 1e-12);
}

AttentionOptions small_options(AttentionKind kind, int64_t n_q = 4, int64_t n_kv = 2) {
  AttentionOptions o;
  o.kind = kind;
  o.d_model = 16;
  o.n_q = n_q;
  o.n_kv = n_kv;
  o.d_head = 4;
  o.segment_len = 4;
  o.qk_norm = true;
  return o;
}

void set_gate(LMAttention& a, double value) {
  torch::NoGradGuard g;
  a->gate.fill_(value);
}

TEST(InfiniAttention, GateForcedLocalEqualsSegmentLocalCausalAttention) {
  torch::manual_seed(3);
  AttentionOptions io = small_options(AttentionKind::kInfini);
  io.infini_first_segment = InfiniFirstSegment::kZeroMemory;
  LMAttention infini(io);
  LMAttention standard(small_options(AttentionKind::kStandard));
  {
    torch::NoGradGuard g;
    standard->qkv_proj.copy_(infini->qkv_proj);
    standard->out_proj.copy_(infini->out_proj);
  }
  set_gate(infini, -1e4);  // sigmoid = 0 exactly: local attention only
  torch::Tensor x = torch::randn({2, 12, 16});
  AttentionState st;
  torch::Tensor y = infini->forward(x, 0, torch::zeros({2}, torch::kInt64), st);
  // one segment: plain causal attention
  AttentionState s0;
  torch::Tensor ref0 = standard->forward(x.narrow(1, 0, 4), 0, torch::zeros({2}, torch::kInt64), s0);
  EXPECT_TRUE(torch::allclose(y.narrow(1, 0, 4), ref0, 1e-5, 1e-5));
  // later segments: causal attention within the segment only (a document starting at s·N)
  for (int64_t s = 1; s < 3; ++s) {
    AttentionState ss;
    torch::Tensor ref = standard->forward(x.narrow(1, 4 * s, 4), 4 * s, torch::full({2}, 4 * s, torch::kInt64), ss);
    EXPECT_TRUE(torch::allclose(y.narrow(1, 4 * s, 4), ref, 1e-5, 1e-5)) << "segment " << s;
  }
  // the memory holds all 12 tokens, z = Σ σ(K) > 0
  EXPECT_EQ(st.folded, 3);
  EXPECT_GT(st.z.min().item<double>(), 0.0);
}

// q, k, v [B, H, T, d] as the layer computes them (qk_norm off).
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> naive_qkv(LMAttention& a, const torch::Tensor& x) {
  const auto& o = a->options;
  const int64_t b = x.size(0), t = x.size(1), d = o.d_head;
  torch::Tensor w = a->qkv_proj;
  torch::Tensor q = torch::matmul(x, w.narrow(0, 0, o.n_q * d).t()).view({b, t, o.n_q, d}).transpose(1, 2);
  torch::Tensor k = torch::matmul(x, w.narrow(0, o.n_q * d, o.n_kv * d).t()).view({b, t, o.n_kv, d}).transpose(1, 2);
  torch::Tensor v = torch::matmul(x, w.narrow(0, (o.n_q + o.n_kv) * d, o.n_kv * d).t()).view({b, t, o.n_kv, d}).transpose(1, 2);
  return {q, k, v};
}

TEST(InfiniAttention, MemoryEqualsNaiveLinearAttentionOverEarlierSegments) {
  torch::manual_seed(4);
  AttentionOptions o = small_options(AttentionKind::kInfini);
  o.qk_norm = false;
  LMAttention a(o);
  a->to(torch::kFloat64);
  set_gate(a, 1e4);  // sigmoid = 1: memory only (after the first segment, skip_gate)
  torch::Tensor x = torch::randn({2, 16, 16}, torch::kFloat64);
  AttentionState st;
  torch::Tensor y;
  {
    torch::NoGradGuard g;
    y = a->forward(x, 0, torch::zeros({2}, torch::kInt64), st);
  }
  auto [q, k, v] = naive_qkv(a, x);
  torch::Tensor kr = k.repeat_interleave(2, 1), vr = v.repeat_interleave(2, 1);  // [B,4,T,d]
  torch::Tensor sq = torch::elu(q) + 1, sk = torch::elu(kr) + 1;
  for (int64_t s = 1; s < 4; ++s) {
    const int64_t n_prev = 4 * s;
    // non-causal linear attention of segment s's queries over every earlier token
    torch::Tensor w = torch::matmul(sq.narrow(2, 4 * s, 4), sk.narrow(2, 0, n_prev).transpose(-1, -2));  // [B,H,4,n_prev]
    torch::Tensor a_mem = torch::matmul(w / w.sum(-1, true), vr.narrow(2, 0, n_prev));                  // [B,H,4,d]
    torch::Tensor ref = torch::matmul(a_mem.transpose(1, 2).reshape({2, 4, 16}), a->out_proj.t());
    EXPECT_TRUE(torch::allclose(y.narrow(1, 4 * s, 4), ref, 1e-10, 1e-10)) << "segment " << s;
  }
}

TEST(InfiniAttention, FirstSegmentChoices) {
  torch::manual_seed(5);
  torch::Tensor x = torch::randn({1, 4, 16});
  AttentionOptions o = small_options(AttentionKind::kInfini);
  LMAttention skip(o);
  o.infini_first_segment = InfiniFirstSegment::kZeroMemory;
  LMAttention zero(o);
  LMAttention standard(small_options(AttentionKind::kStandard));
  {
    torch::NoGradGuard g;
    zero->qkv_proj.copy_(skip->qkv_proj);
    zero->out_proj.copy_(skip->out_proj);
    standard->qkv_proj.copy_(skip->qkv_proj);
    standard->out_proj.copy_(skip->out_proj);
  }
  torch::Tensor zs = torch::zeros({1}, torch::kInt64);
  AttentionState s1, s2, s3;
  torch::Tensor ref = standard->forward(x, 0, zs, s3);
  // skip_gate: the first segment is plain causal attention whatever the gate
  set_gate(skip, 2.0);
  EXPECT_TRUE(torch::allclose(skip->forward(x, 0, zs, s1), ref, 1e-5, 1e-5));
  // zero_memory: A_mem = 0, so the output is (1 − sigmoid(β))·A_dot, i.e. scaled by 0.5 at β = 0
  EXPECT_TRUE(torch::allclose(zero->forward(x, 0, zs, s2), 0.5 * ref, 1e-5, 1e-5));
}

using loom_test::expect_gradients_match;

TEST(InfiniAttention, FiniteDifferenceGradientThroughMemoryAcrossSegments) {
  torch::manual_seed(6);
  for (auto rule : {InfiniUpdate::kLinear, InfiniUpdate::kDelta}) {
    AttentionOptions o = small_options(AttentionKind::kInfini, 2, 1);
    o.d_model = 6;
    o.segment_len = 2;
    o.infini_update = rule;
    LMAttention a(o);
    a->to(torch::kFloat64);
    set_gate(a, 0.3);
    torch::Tensor x = torch::randn({1, 6, 6}, torch::kFloat64).requires_grad_(true);  // 3 segments
    torch::Tensor wout = torch::randn({1, 6, 6}, torch::kFloat64);
    auto loss = [&]() {
      AttentionState st;
      return (a->forward(x, 0, torch::zeros({1}, torch::kInt64), st) * wout).sum();
    };
    expect_gradients_match(loss, x, 1e-6);
    expect_gradients_match(loss, a->gate, 1e-6);
    expect_gradients_match(loss, a->qkv_proj, 1e-6);
    // the last segment's output depends on the first segment's input only through (M, z)
    auto last_seg_grad = [&](int64_t detach_every) {
      a->options.infini_detach_every = detach_every;
      AttentionState st;
      torch::Tensor y = a->forward(x, 0, torch::zeros({1}, torch::kInt64), st);
      torch::Tensor g = torch::autograd::grad({y.narrow(1, 4, 2).sum()}, {x})[0];
      a->options.infini_detach_every = 0;
      return g.narrow(1, 0, 2).abs().sum().item<double>();
    };
    EXPECT_GT(last_seg_grad(0), 1e-6);          // full BPTT through the memory
    EXPECT_EQ(last_seg_grad(1), 0.0);           // truncated after every segment
  }
}

TEST(InfiniAttention, StreamingAnyChunkSizeEqualsOneShot) {
  torch::manual_seed(7);
  for (auto rule : {InfiniUpdate::kLinear, InfiniUpdate::kDelta}) {
    AttentionOptions o = small_options(AttentionKind::kInfini);
    o.infini_update = rule;
    LMAttention a(o);
    set_gate(a, 0.4);
    torch::NoGradGuard g;
    torch::Tensor x = torch::randn({2, 23, 16});
    torch::Tensor ds = torch::zeros({2}, torch::kInt64);
    AttentionState one;
    torch::Tensor ref = a->forward(x, 0, ds, one);
    for (int64_t chunk : {1, 3, 4, 7, 23}) {
      AttentionState st;
      std::vector<torch::Tensor> parts;
      for (int64_t t = 0; t < 23; t += chunk) {
        const int64_t len = std::min<int64_t>(chunk, 23 - t);
        parts.push_back(a->forward(x.narrow(1, t, len), t, ds, st));
        // state size is bounded by one segment, whatever has been seen
        EXPECT_LE(st.k.defined() ? st.k.size(2) : 0, 4);
      }
      EXPECT_TRUE(torch::allclose(torch::cat(parts, 1), ref, 1e-5, 1e-5)) << "chunk " << chunk;
      EXPECT_TRUE(torch::allclose(st.mem, one.mem, 1e-5, 1e-5));
    }
  }
}

TEST(InfiniAttention, MemoryStaysFloat32AndFiniteOver1024Segments) {
  torch::manual_seed(8);
  LMAttention a(small_options(AttentionKind::kInfini));
  torch::NoGradGuard g;
  AttentionState st;
  torch::Tensor ds = torch::zeros({1}, torch::kInt64);
  for (int64_t s = 0; s < 1024; ++s) a->forward(torch::randn({1, 4, 16}), 4 * s, ds, st);
  EXPECT_EQ(st.mem.scalar_type(), torch::kFloat32);
  EXPECT_EQ(st.folded, 1024);
  // z = Σ σ(K) over 4096 tokens: each entry > 0 and grows linearly with the tokens seen
  EXPECT_TRUE(torch::isfinite(st.mem).all().item<bool>());
  EXPECT_GT(st.z.min().item<double>(), 4096 * 0.05);
}

}  // namespace
}  // namespace loom::nn
