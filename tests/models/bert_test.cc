// BertModel + SentenceEmbedder + WordPieceTokenizer against transformers 4.46.3 /
// sentence-transformers on tests/data/hf-tiny/bert-minilm (reference.json).
#include <gtest/gtest.h>
#include <gmock/gmock.h>

#include <nlohmann/json.hpp>

#include "loom/core/files.h"
#include "loom/models/bert.h"
#include "support/support.h"

namespace {

const std::string kDir = std::string(LOOM_TEST_DATA) + "/hf-tiny/bert-minilm";

const nlohmann::json& reference() {
  static const nlohmann::json r = loom::core::read_json(kDir + "/reference.json");
  return r;
}

TEST(BertTokenizer, MatchesHfTokensAndIds) {
  const auto tok = loom::text::WordPieceTokenizer::load(kDir);
  for (const auto& c : reference()["cases"]) {
    const std::string text = c["text"];
    std::vector<std::string> expected_tokens = c["tokens"];
    std::vector<std::string> got{"[CLS]"};
    for (auto& t : tok.tokenize(text)) got.push_back(t);
    got.push_back("[SEP]");
    EXPECT_EQ(got, expected_tokens) << text;
    EXPECT_EQ(tok.encode(text), c["input_ids"].get<std::vector<int64_t>>()) << text;
  }
}

TEST(BertTokenizer, TruncatesKeepingSep) {
  const auto tok = loom::text::WordPieceTokenizer::load(kDir);
  const auto ids = tok.encode("All human beings are born free and equal in dignity and rights.", 5);
  ASSERT_EQ(ids.size(), 5u);
  EXPECT_EQ(ids.front(), tok.cls_id());
  EXPECT_EQ(ids.back(), tok.sep_id());
  // Hand-checked BasicTokenizer behaviour: accents stripped, CJK split, punctuation split.
  EXPECT_EQ(tok.tokenize("Café,人人"), tok.tokenize("cafe , 人 人"));
  EXPECT_EQ(tok.tokenize("Café,人人").size(), tok.tokenize("cafe").size() + 3);
}

TEST(BertModel, HiddenStatesMatchHf) {
  const auto m = loom::models::BertModel::load(kDir);
  const auto& c0 = reference()["cases"][0];
  const auto ids = torch::tensor(c0["input_ids"].get<std::vector<int64_t>>(), torch::kLong).unsqueeze(0);
  const auto states = m.hidden_states(ids, torch::ones_like(ids));
  const auto& ref = reference()["hidden_states_per_layer_case0"];
  ASSERT_EQ(states.size(), ref.size());
  for (size_t i = 0; i < states.size(); ++i) {
    const auto s = states[i][0].to(torch::kDouble);
    EXPECT_NEAR(s.norm().item<double>(), ref[i]["l2"].get<double>(), 1e-4 * ref[i]["l2"].get<double>());
    EXPECT_NEAR(s.sum().item<double>(), ref[i]["sum"].get<double>(), 1e-4 * ref[i]["l2"].get<double>());
    const auto first = ref[i]["pos0_first"].get<std::vector<double>>();
    for (size_t j = 0; j < first.size(); ++j) EXPECT_NEAR(s[0][j].item<double>(), first[j], 1e-4);
  }
}

TEST(SentenceEmbedder, MatchesSentenceTransformers) {
  const auto e = loom::models::SentenceEmbedder::load(kDir);
  EXPECT_EQ(e->dim(), 32);
  EXPECT_TRUE(e->normalize());
  std::vector<std::string> texts;
  for (const auto& c : reference()["cases"]) texts.push_back(c["text"]);
  const torch::Tensor batch = e->embed(texts, 8);  // [5, 32]
  ASSERT_EQ(batch.sizes(), (std::vector<int64_t>{5, 32}));
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto want = reference()["cases"][i]["sentence_embedding"].get<std::vector<double>>();
    const torch::Tensor single = e->embed({texts[i]});
    for (size_t j = 0; j < want.size(); ++j) {
      EXPECT_NEAR(single[0][j].item<float>(), want[j], 1e-5) << texts[i] << " dim " << j;
      EXPECT_NEAR(batch[static_cast<int64_t>(i)][j].item<float>(), want[j], 1e-5) << texts[i] << " dim " << j;
    }
    EXPECT_LT((single[0] - batch[static_cast<int64_t>(i)]).abs().max().item<float>(), 1e-5);
  }
  // Batches of 2 (sorted by length, several batches) give the same rows.
  const torch::Tensor small = e->embed(texts, 2);
  EXPECT_LT((small - batch).abs().max().item<float>(), 1e-5);
  EXPECT_EQ(e->embed({}).size(0), 0);
}

TEST(SentenceEmbedder, BadDirectoriesNameTheFile) {
  loom_test::TempDir tmp;
  EXPECT_THAT(loom_test::error_of([&] { loom::models::SentenceEmbedder::load(tmp / "nope"); }),
              ::testing::HasSubstr("nope"));
  loom_test::write_file(tmp.path() / "modules.json", "{\"x\": 1}");
  EXPECT_THAT(loom_test::error_of([&] { loom::models::SentenceEmbedder::load(tmp.path().string()); }),
              ::testing::HasSubstr("modules.json"));
}

}  // namespace
