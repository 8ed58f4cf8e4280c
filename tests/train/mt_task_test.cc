// MtTask: teacher-forcing tensors (decoder input = bos + target shifted right, labels = target
// + eos, masks), rank slices, and validation metrics through the callables.
#include <gtest/gtest.h>

#include "loom/core/error.h"
#include "loom/train/mt_task.h"

namespace {
using loom::train::EncodedPair;

struct Tiny : torch::nn::Module {
  Tiny() : emb(register_module("emb", torch::nn::Embedding(10, 4))), out(register_module("out", torch::nn::Linear(4, 10))) {}
  torch::nn::Embedding emb;
  torch::nn::Linear out;
};

TEST(MtTask, BatchTensorsAreShiftedAndPadded) {
  Tiny m;
  std::vector<EncodedPair> train = {{{5, 6, 3}, {7, 3}}, {{4, 3}, {8, 9, 7, 3}}};
  loom::train::MtTaskOptions o;
  o.max_tokens = 100;
  loom::train::MtTask task(m, nullptr, train, {}, {}, {}, nullptr, nullptr, o);
  auto t = task.make_batch(train, {0, 1});
  EXPECT_TRUE(torch::equal(t.src, torch::tensor({5, 6, 3, 4, 3, 0}, torch::kLong).view({2, 3})));
  EXPECT_TRUE(torch::equal(t.src_mask, torch::tensor({true, true, true, true, true, false}).view({2, 3})));
  EXPECT_TRUE(torch::equal(t.tgt_in, torch::tensor({2, 7, 0, 0, 2, 8, 9, 7}, torch::kLong).view({2, 4})));
  EXPECT_TRUE(torch::equal(t.labels, torch::tensor({7, 3, 0, 0, 8, 9, 7, 3}, torch::kLong).view({2, 4})));
  EXPECT_THROW(loom::train::MtTask(m, nullptr, {{{3}, {}}}, {}, {}, {}, nullptr, nullptr, o), loom::Error);
  EXPECT_THROW(loom::train::MtTask(m, nullptr, train, train, {"a"}, {"b"}, nullptr, nullptr, o), loom::Error);
}

TEST(MtTask, LossSlicesAndValidation) {
  Tiny m;
  std::vector<EncodedPair> pairs;
  for (int i = 0; i < 12; ++i) pairs.push_back({{4 + i % 5, 3}, {4 + (i + 1) % 5, 3}});
  int calls = 0;
  auto fwd = [&](const torch::Tensor& src, const torch::Tensor& mask, const torch::Tensor& tgt_in) {
    ++calls;
    EXPECT_EQ(src.size(0), tgt_in.size(0));
    auto ctx = (m.emb(src) * mask.unsqueeze(-1)).sum(1, true);  // [B, 1, 4]
    return m.out(m.emb(tgt_in) + ctx);                          // [B, T, V]
  };
  std::vector<std::string> srcs(12, "s"), refs(12, "r");
  std::vector<std::string> seen_src;
  auto translate = [&](const std::vector<std::string>& s) { seen_src = s; return s; };
  auto score = [](const std::vector<std::string>& h, const std::vector<std::string>& r) {
    return std::map<std::string, double>{{"bleu", h.size() == r.size() ? 42.0 : -1.0}};
  };
  loom::train::MtTaskOptions o;
  o.max_tokens = 8;  // 4 pairs of length 2 per batch
  o.bleu_sentences = 5;
  o.label_smoothing = 0.0;
  loom::train::MtTask task(m, fwd, pairs, pairs, srcs, refs, translate, score, o);
  ASSERT_EQ(task.num_batches(), 3);
  auto whole = task.batch_loss(0, 1, 0, 1);
  auto r0 = task.batch_loss(0, 1, 0, 2), r1 = task.batch_loss(0, 1, 1, 2);
  EXPECT_EQ(whole.n_tokens, 8);
  EXPECT_EQ(r0.n_tokens + r1.n_tokens, 8);
  EXPECT_NEAR(whole.loss.item<double>(), r0.loss.item<double>() + r1.loss.item<double>(), 1e-4);
  auto v = task.validate();
  EXPECT_NEAR(v["valid_loss"], v["valid_nll"], 1e-6);  // no smoothing
  EXPECT_NEAR(v["valid_ppl"], std::exp(v["valid_nll"]), 1e-6);
  EXPECT_EQ(v["bleu"], 42.0);
  EXPECT_EQ(seen_src.size(), 5u);
}

}  // namespace
