// DeLighT model size: analytic counts (models::native_model_info) equal the built model's, and
// the shipped WMT configurations (configs/delight) reproduce the parameter counts of the
// authors' README (papers.md §1.12) within 1%, with the embedding-free part of the count off by
// one constant per task (the vocabulary) for every d_m. `loom model-info` output.
#include "loom/models/model_info.h"
#include "support/paths.h"

#include <gtest/gtest.h>

#include "loom/core/error.h"

namespace loom::models {
namespace {

const std::string kConfigs = std::string(LOOM_SOURCE_DIR) + "/configs";

NativeSeq2SeqConfig small_delight(int64_t d_model, int64_t map_dim, bool pre, bool shared, bool tied) {
  nlohmann::json j = {{"model_type", "loom_seq2seq"}, {"architecture", "delight"}, {"d_model", d_model},
                      {"vocab_size", 50}, {"shared_vocab", shared}, {"tie_word_embeddings", tied},
                      {"normalize_before", pre}, {"delight_emb_map_dim", map_dim}, {"delight_emb_depth", 3},
                      {"delight_enc_min_depth", 3}, {"delight_enc_max_depth", 5}, {"delight_enc_layers", 4},
                      {"delight_dec_min_depth", 2}, {"delight_dec_max_depth", 4}, {"delight_dec_layers", 3}};
  if (!shared) j["target_vocab_size"] = 37;
  return NativeSeq2SeqConfig::from_json(j);
}

void expect_counts_equal(const NativeSeq2Seq::ParameterCounts& a, const NativeSeq2Seq::ParameterCounts& b) {
  EXPECT_EQ(a.total, b.total);
  EXPECT_EQ(a.embeddings, b.embeddings);
  EXPECT_EQ(a.output, b.output);
  EXPECT_EQ(a.other, b.other);
  EXPECT_EQ(a.encoder_blocks, b.encoder_blocks);
  EXPECT_EQ(a.decoder_blocks, b.decoder_blocks);
}

TEST(NativeModelInfo, AnalyticCountsEqualTheBuiltModel) {
  for (int64_t map : {32, 64}) {  // map_dim == d_m: no output map layer (the code's project_out_dim)
    for (bool pre : {false, true}) {
      for (bool shared : {true, false}) {
        SCOPED_TRACE(fmt::format("map {} pre {} shared {}", map, pre, shared));
        NativeSeq2SeqConfig c = small_delight(64, map, pre, shared, shared);
        NativeSeq2Seq model(c);
        int64_t numel = 0;
        for (const auto& p : model.parameters()) numel += p.numel();
        const auto built = model.parameter_counts();
        EXPECT_EQ(built.total, numel);
        expect_counts_equal(native_model_info(c).params, built);
        EXPECT_EQ(model.named_parameters().contains("decoder.output_map.weight"), map != 64);
      }
    }
  }
  NativeSeq2SeqConfig t = read_native_config(kConfigs + "/mt/transformer-d256.json");
  t.vocab_size = t.target_vocab_size = 100;
  expect_counts_equal(native_model_info(t).params, NativeSeq2Seq(t).parameter_counts());
}

struct Task {
  std::string name;
  std::vector<int64_t> d_m;
  std::vector<double> readme_millions;  // readme_files/nmt/*.md of sacmehta/delight
};

TEST(NativeModelInfo, ShippedWmtConfigsReproduceTheReadmeParameterCounts) {
  const std::vector<Task> tasks = {
      {"wmt14-en-de", {128, 256, 384, 512, 640}, {8.09, 13.79, 23.25, 36.76, 54.04}},
      {"wmt14-en-fr", {128, 256, 384, 512, 640}, {8.19, 13.89, 23.35, 36.86, 54.14}},
      {"wmt16-en-ro", {128, 256, 384}, {6.97, 12.67, 22.12}},
  };
  for (const Task& t : tasks) {
    // README value minus loom's embedding-free count = the look-up table (V × 128): the same
    // constant for every d_m up to the README's rounding to 0.01 M (±5000 each)
    double lo = -1e18, hi = 1e18;
    int64_t vocab = 0;
    for (size_t i = 0; i < t.d_m.size(); ++i) {
      const std::string path = fmt::format("{}/delight/{}-dm{}.json", kConfigs, t.name, t.d_m[i]);
      SCOPED_TRACE(path);
      const NativeSeq2SeqConfig c = read_native_config(path);
      EXPECT_EQ(c.d_model, t.d_m[i]);
      const NativeModelInfo info = native_model_info(c);
      const double readme = t.readme_millions[i] * 1e6;
      EXPECT_LT(std::abs(static_cast<double>(info.params.total) - readme), 0.01 * readme) << info.params.total;
      EXPECT_LT(std::abs(static_cast<double>(info.params.total) - readme), 0.001 * readme) << info.params.total;
      const double rest = static_cast<double>(info.params.total - info.params.embeddings);
      lo = std::max(lo, (readme - 5000 - rest) / 128.0);
      hi = std::min(hi, (readme + 5000 - rest) / 128.0);
      vocab = c.vocab_size;
      EXPECT_EQ(info.params.embeddings, c.vocab_size * 128);
    }
    EXPECT_LE(lo, hi) << t.name << ": no single vocabulary size explains every d_m";
    EXPECT_GE(static_cast<double>(vocab), lo) << t.name;
    EXPECT_LE(static_cast<double>(vocab), hi) << t.name;
  }
}

TEST(NativeModelInfo, ReportListsBlocksWidthsGroupsAndCounts) {
  const NativeModelInfo info = native_model_info(read_native_config(kConfigs + "/delight/wmt14-en-de-dm512.json"));
  ASSERT_EQ(info.encoder.size(), 8u);
  ASSERT_EQ(info.decoder.size(), 8u);
  EXPECT_EQ(info.encoder[7].depth, 8);
  EXPECT_DOUBLE_EQ(info.encoder[2].width_mult, 2.286);
  const std::string report = format_model_info(info);
  EXPECT_NE(report.find("encoder block 2: N^b 5 w_m^b 2.286 | dense 512->256 | GLT in [256, 512, 976, 1432, 976] "
                        "out [256, 720, 1176, 720, 256] groups [2, 4, 8, 4, 2] | dense 512->256"),
            std::string::npos)
      << report;
  EXPECT_NE(report.find(fmt::format("total {} (36.76 M)", info.params.total)), std::string::npos) << report;
  // the en-zh experiment configs parse and build
  for (const char* name : {"transformer-d256", "delight-d128", "delight-d192", "delight-d256"}) {
    const NativeSeq2SeqConfig c = read_native_config(kConfigs + "/mt/" + name + ".json");
    EXPECT_GT(native_model_info(c).params.total, 0) << name;
  }
  EXPECT_THROW(read_native_config(kConfigs + "/no-such.json"), Error);
}

TEST(NativeModelInfo, DelightConfigErrorsNameTheField) {
  nlohmann::json j = small_delight(64, 32, false, true, true).to_json();
  j["delight_enc_min_depth"] = 6;
  try {
    NativeSeq2SeqConfig::from_json(j, "m/config.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("m/config.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("delight_enc_min_depth"), std::string::npos) << e.what();
  }
  j = small_delight(64, 32, false, true, true).to_json();
  EXPECT_EQ(NativeSeq2SeqConfig::from_json(j).to_json(), j);
  j["delight_dropout"] = -0.1;
  EXPECT_THROW(NativeSeq2SeqConfig::from_json(j), Error);
}

}  // namespace
}  // namespace loom::models
