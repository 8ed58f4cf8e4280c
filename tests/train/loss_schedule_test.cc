// Label-smoothed cross-entropy (fairseq definition) on hand-computed values, and the
// learning-rate schedules.
#include <gtest/gtest.h>

#include <cmath>

#include "loom/core/error.h"
#include "loom/train/loss.h"
#include "loom/train/schedule.h"

namespace {

TEST(LabelSmoothedLoss, HandComputedValues) {
  // logits [0, 0, ln 2] -> probs [1/4, 1/4, 1/2]; target 2: nll = ln 2,
  // smooth = -(sum lprobs) = 2 ln 4 + ln 2 = 5 ln 2; eps = 0.1, eps_i = 0.1 / 2 = 0.05:
  // loss = (1 - 0.1 - 0.05) ln 2 + 0.05 * 5 ln 2 = 1.1 ln 2.
  const double ln2 = std::log(2.0);
  auto logits = torch::tensor({0.0, 0.0, ln2}, torch::kFloat32).view({1, 1, 3}).repeat({1, 2, 1});
  auto target = torch::tensor({2, 0}, torch::kLong).view({1, 2});  // second position is pad
  auto r = loom::train::label_smoothed_nll_loss(logits, target, 0.1, /*ignore_index=*/0);
  EXPECT_EQ(r.n_tokens, 1);
  EXPECT_NEAR(r.loss.item<double>(), 1.1 * ln2, 1e-6);
  EXPECT_NEAR(r.nll.item<double>(), ln2, 1e-6);
  // Target 1 (prob 1/4): nll = 2 ln 2, loss = 0.85 * 2 ln 2 + 0.25 ln 2 = 1.95 ln 2.
  auto r1 = loom::train::label_smoothed_nll_loss(logits.view({2, 3}), torch::tensor({1, 1}), 0.1, -100);
  EXPECT_EQ(r1.n_tokens, 2);
  EXPECT_NEAR(r1.loss.item<double>(), 2 * 1.95 * ln2, 1e-5);
}

TEST(LabelSmoothedLoss, ZeroEpsilonIsSummedCrossEntropy) {
  torch::manual_seed(0);
  auto logits = torch::randn({3, 4, 7});
  auto target = torch::randint(0, 7, {3, 4}, torch::kLong);
  target[0][1] = 0;
  auto r = loom::train::label_smoothed_nll_loss(logits, target, 0.0, 0);
  auto ref = torch::nn::functional::cross_entropy(
      logits.view({-1, 7}), target.view({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(0).reduction(torch::kSum));
  EXPECT_NEAR(r.loss.item<double>(), ref.item<double>(), 1e-4);
  EXPECT_EQ(r.n_tokens, target.ne(0).sum().item<int64_t>());
  EXPECT_THROW(loom::train::label_smoothed_nll_loss(logits, target.view({4, 3}), 0.1), loom::Error);
  EXPECT_THROW(loom::train::label_smoothed_nll_loss(logits, target, 1.0), loom::Error);
}

TEST(Schedule, InverseSqrtWithWarmup) {
  loom::train::ScheduleOptions o;
  o.kind = "inverse_sqrt";
  o.lr = 1e-3;
  o.warmup_steps = 100;
  EXPECT_NEAR(loom::train::learning_rate(o, 1), 1e-5, 1e-12);
  EXPECT_NEAR(loom::train::learning_rate(o, 50), 5e-4, 1e-12);
  EXPECT_NEAR(loom::train::learning_rate(o, 100), 1e-3, 1e-12);
  EXPECT_NEAR(loom::train::learning_rate(o, 400), 5e-4, 1e-12);  // 1e-3 * sqrt(100 / 400)
  for (int64_t s = 1; s < 1000; ++s) {
    double a = loom::train::learning_rate(o, s), b = loom::train::learning_rate(o, s + 1);
    if (s < 100) EXPECT_LT(a, b);
    else EXPECT_GT(a, b);
  }
}

TEST(Schedule, CosineWithWarmupAndErrors) {
  loom::train::ScheduleOptions o;
  o.kind = "cosine";
  o.lr = 2e-3;
  o.min_lr = 2e-4;
  o.warmup_steps = 10;
  o.total_steps = 110;
  EXPECT_NEAR(loom::train::learning_rate(o, 5), 1e-3, 1e-12);
  EXPECT_NEAR(loom::train::learning_rate(o, 10), 2e-3, 1e-12);
  EXPECT_NEAR(loom::train::learning_rate(o, 60), 1.1e-3, 1e-12);  // halfway: (2e-3 + 2e-4) / 2
  EXPECT_NEAR(loom::train::learning_rate(o, 110), 2e-4, 1e-12);
  EXPECT_NEAR(loom::train::learning_rate(o, 500), 2e-4, 1e-12);
  o.total_steps = 5;
  try {
    loom::train::learning_rate(o, 1);
    FAIL();
  } catch (const loom::Error& e) {
    EXPECT_EQ(e.where().field, "total_steps");
  }
  o.kind = "linear-ish";
  EXPECT_THROW(loom::train::validate(o), loom::Error);
}

}  // namespace
