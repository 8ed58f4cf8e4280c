// Sampling filters on hand-made logits (HF RepetitionPenaltyLogitsProcessor, TopK/TopP/
// Temperature warpers) and seeded determinism of the sampler.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "loom/core/error.h"
#include "loom/generate/sampling.h"

namespace loom::generate {
namespace {

const float kInf = std::numeric_limits<float>::infinity();

torch::Tensor logits(std::vector<float> v) { return torch::tensor(v, torch::kFloat); }
std::vector<float> vec(const torch::Tensor& t) {
  auto c = t.contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

TEST(Sampling, RepetitionPenaltyDividesPositiveAndMultipliesNegativeScoresOnce) {
  auto l = logits({2.0f, -1.0f, 0.5f, 3.0f});
  // Token 0 appears twice: penalised once (HF gathers then scatters, no compounding).
  apply_repetition_penalty(l, {0, 1, 0}, 2.0);
  EXPECT_EQ(vec(l), (std::vector<float>{1.0f, -2.0f, 0.5f, 3.0f}));
  auto l2 = logits({2.0f, -1.0f});
  apply_repetition_penalty(l2, {0, 1}, 1.0);
  EXPECT_EQ(vec(l2), (std::vector<float>{2.0f, -1.0f}));
  // A penalty < 1 favours repeats.
  auto l3 = logits({2.0f, -1.0f});
  apply_repetition_penalty(l3, {0, 1}, 0.5);
  EXPECT_EQ(vec(l3), (std::vector<float>{4.0f, -0.5f}));
}

TEST(Sampling, TopKKeepsTheKLargestAndTies) {
  auto l = logits({1.0f, 4.0f, 3.0f, 2.0f, 3.0f});
  apply_top_k(l, 2);  // k-th largest = 3.0; both 3.0s are kept (HF: scores < kth removed)
  EXPECT_EQ(vec(l), (std::vector<float>{-kInf, 4.0f, 3.0f, -kInf, 3.0f}));
  auto l2 = logits({1.0f, 2.0f});
  apply_top_k(l2, 0);
  apply_top_k(l2, 5);
  EXPECT_EQ(vec(l2), (std::vector<float>{1.0f, 2.0f}));
}

TEST(Sampling, TopPKeepsTheSmallestNucleus) {
  // probabilities 0.5, 0.25, 0.125, 0.125 (log-probs as logits)
  auto make = [] { return logits({std::log(0.125f), std::log(0.5f), std::log(0.125f), std::log(0.25f)}); };
  auto l = make();
  apply_top_p(l, 0.7);  // 0.5 + 0.25 = 0.75 >= 0.7; ascending cumsum 0.125, 0.25 <= 0.3 removed
  auto v = vec(l);
  EXPECT_EQ(v[0], -kInf);
  EXPECT_EQ(v[2], -kInf);
  EXPECT_FLOAT_EQ(v[1], std::log(0.5f));
  EXPECT_FLOAT_EQ(v[3], std::log(0.25f));
  auto l2 = make();
  apply_top_p(l2, 0.3);  // only the top token (0.5 >= 0.3)
  auto v2 = vec(l2);
  EXPECT_EQ(std::count(v2.begin(), v2.end(), -kInf), 3);
  EXPECT_FLOAT_EQ(v2[1], std::log(0.5f));
  auto l3 = make();
  apply_top_p(l3, 0.01);  // the most likely token is always kept
  EXPECT_FLOAT_EQ(vec(l3)[1], std::log(0.5f));
  auto l4 = make();
  apply_top_p(l4, 1.0);
  EXPECT_EQ(vec(l4), vec(make()));
}

TEST(Sampling, GreedyTemperatureAndSeededDeterminism) {
  auto l = logits({0.0f, 1.0f, 0.5f, -1.0f});
  std::mt19937_64 rng(1);
  SamplingOptions o;
  o.temperature = 0;
  EXPECT_EQ(sample_next(l, {}, o, rng), 1);
  o.repetition_penalty = 4.0;  // 1.0 -> 0.25 < 0.5
  EXPECT_EQ(sample_next(l, {1}, o, rng), 2);
  // top_k = 1 is greedy for any temperature.
  SamplingOptions k1;
  k1.top_k = 1;
  k1.temperature = 5.0;
  for (int i = 0; i < 20; ++i) EXPECT_EQ(sample_next(l, {}, k1, rng), 1);
  // The same seed gives the same draws; the empirical distribution matches softmax(l / T).
  SamplingOptions s;
  s.temperature = 2.0;
  std::mt19937_64 a(42), b(42);
  std::vector<int64_t> da, db;
  std::vector<int> counts(4, 0);
  for (int i = 0; i < 20000; ++i) {
    da.push_back(sample_next(l, {}, s, a));
    db.push_back(sample_next(l, {}, s, b));
    ++counts[static_cast<size_t>(da.back())];
  }
  EXPECT_EQ(da, db);
  auto p = torch::softmax(l / 2.0, 0);
  for (int v = 0; v < 4; ++v) EXPECT_NEAR(counts[static_cast<size_t>(v)] / 20000.0, p[v].item<double>(), 0.015) << v;
  // The caller's logits are untouched.
  EXPECT_EQ(vec(l), (std::vector<float>{0.0f, 1.0f, 0.5f, -1.0f}));
}

TEST(Sampling, OptionsAreValidated) {
  SamplingOptions o;
  o.top_p = 0;
  EXPECT_THROW(validate(o), loom::Error);
  o = {};
  o.temperature = -1;
  EXPECT_THROW(validate(o), loom::Error);
  o = {};
  o.repetition_penalty = 0;
  EXPECT_THROW(validate(o), loom::Error);
  o = {};
  o.top_k = -2;
  EXPECT_THROW(validate(o), loom::Error);
}

}  // namespace
}  // namespace loom::generate
