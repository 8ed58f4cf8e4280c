// `loom eval lm --memory-stats` plumbing: section starts from line prefixes, the JSON report of
// the kNN-layer statistics of a tiny Memorizing-Transformer DecoderLM, and its errors.
#include <gtest/gtest.h>

#include "loom/core/error.h"
#include "loom/pipeline/knn_stats.h"
#include "loom/pipeline/lm_eval.h"

namespace loom::pipeline {
namespace {

models::DecoderLM tiny_knn(int64_t memory) {
  auto cfg = models::DecoderLMConfig::from_json(
      {{"vocab_size", 256}, {"n_layers", 2}, {"d_model", 32}, {"d_head", 8}, {"ffn_divisor", 16},
       {"ffn_multipliers", 2.0}, {"attention", "standard"}, {"knn_layers", {-1}}, {"segment_len", 8},
       {"local_window", 8}, {"knn_memory_size", memory}, {"knn_top_k", 4}});
  return models::DecoderLM(cfg, 3);
}

TEST(KnnStatsReport, SectionStartsAtLinePrefixes) {
  const std::string text = "Letter 1\nfoo\nChapter 1\nbar\n  Chapter x\nChapter 2";
  auto tok = text::LmTokenizer::bytes();
  EXPECT_EQ(section_starts(text, {"Chapter ", "Letter "}, tok), (std::vector<int64_t>{0, 13, 39}));
  EXPECT_EQ(section_starts(text, {"Chapter "}, tok), (std::vector<int64_t>{13, 39}));
  EXPECT_TRUE(section_starts(text, {}, tok).empty());
}

TEST(KnnStatsReport, JsonOfAStreamedDocument) {
  auto model = tiny_knn(64);
  EXPECT_EQ(attach_knn_stats(*model, {8, 32, 71}), 1);
  set_knn_stat_sections(*model, {0, 40});
  std::vector<int64_t> doc;
  for (int i = 0; i < 81; ++i) doc.push_back((i * 37 + 11) % 256);
  document_perplexity(*model, doc, 8);  // 80 queries in 10 subsequences of 8
  nlohmann::json j = knn_stats_json(*model);
  EXPECT_EQ(j["distance_edges"], (std::vector<int64_t>{8, 32, 71}));
  ASSERT_EQ(j["layers"].size(), 1u);
  EXPECT_EQ(j["layers"][0]["layer"], 1);
  const auto& heads = j["layers"][0]["heads"];
  ASSERT_EQ(heads.size(), 4u);  // d_model 32 / d_head 8
  for (const auto& h : heads) {
    EXPECT_DOUBLE_EQ(h["gate"].get<double>(), 0.5);  // untrained gate b = 0
    EXPECT_EQ(h["queries"].get<double>(), 80);
    EXPECT_DOUBLE_EQ(h["with_memory"].get<double>(), 72.0 / 80);  // all but the first subsequence
    EXPECT_DOUBLE_EQ(h["memory_mass"].get<double>(), 0.5 * 72 / 80);
    double total = 0;
    for (const auto& b : h["distance_buckets"]) total += b["share"].get<double>();
    EXPECT_NEAR(total, 1.0, 1e-6);  // float32 softmax weights
    // memory holds finished subsequences only: every key is at least 1 token back; 64 slots
    // reach at most 64 + 7 tokens back, so nothing lies beyond 71
    EXPECT_EQ(h["distance_buckets"][3]["share"].get<double>(), 0.0);
    EXPECT_NEAR(h["share_within"]["71"].get<double>(), 1.0, 1e-6);
    EXPECT_GE(h["mean_distance"].get<double>(), 1.0);
    EXPECT_LE(h["mean_distance"].get<double>(), 71.0);
    EXPECT_GE(h["same_section_share"].get<double>(), 0.0);
    EXPECT_LE(h["same_section_share"].get<double>(), 1.0);
    const double js = h["joint_softmax_memory_share"].get<double>();
    EXPECT_GT(js, 0.0);
    EXPECT_LT(js, 1.0);
  }
  EXPECT_NEAR(j["layers"][0]["mean"]["with_memory"].get<double>(), 0.9, 1e-12);
  EXPECT_NE(format_knn_stats(j).find("mean"), std::string::npos);
  detach_knn_stats(*model);
  EXPECT_THROW(knn_stats_json(*model), Error);
}

TEST(KnnStatsReport, MemoryOffAndModelsWithoutKnnLayers) {
  auto off = tiny_knn(0);
  attach_knn_stats(*off, {8});
  std::vector<int64_t> doc(33, 7);
  document_perplexity(*off, doc, 8);
  const nlohmann::json j = knn_stats_json(*off);
  const auto& h = j["layers"][0]["heads"][0];
  EXPECT_EQ(h["with_memory"].get<double>(), 0.0);
  EXPECT_EQ(h["memory_mass"].get<double>(), 0.0);
  EXPECT_TRUE(h["mean_distance"].is_null());  // no memory mass to describe
  auto plain = models::DecoderLM(models::DecoderLMConfig::from_json({{"vocab_size", 256}, {"n_layers", 1},
                                                                     {"d_model", 16}, {"d_head", 8}}), 1);
  EXPECT_THROW(attach_knn_stats(*plain, {8}), Error);
  EXPECT_THROW(attach_knn_stats(*off, {8, 8}), Error);
}

}  // namespace
}  // namespace loom::pipeline
