// GenerationOptions (transformers GenerationConfig semantics) and the logits processors, on
// hand-computed cases.
#include <limits>

#include <gtest/gtest.h>

#include "loom/core/error.h"
#include "loom/generate/search.h"

namespace loom::generate {
namespace {

using nlohmann::json;
constexpr float kInf = std::numeric_limits<float>::infinity();

TEST(GenerationOptionsTest, FromHfUsesGenerationConfigThenConfig) {
  json config = {{"pad_token_id", 733}, {"eos_token_id", 0}, {"decoder_start_token_id", 733}, {"max_length", 99}};
  json gen = {{"bad_words_ids", {{733}}}, {"num_beams", 4}, {"max_length", 512}, {"renormalize_logits", true},
              {"forced_eos_token_id", 0}, {"early_stopping", "never"}};
  GenerationOptions o = GenerationOptions::from_hf(config, gen);
  EXPECT_EQ(o.num_beams, 4);
  EXPECT_EQ(o.max_length, 512);
  EXPECT_TRUE(o.renormalize_logits);
  EXPECT_EQ(o.forced_eos_token_id, 0);
  EXPECT_EQ(o.early_stopping, EarlyStopping::kNever);
  EXPECT_EQ(o.bad_words_ids, (std::vector<std::vector<int64_t>>{{733}}));
  EXPECT_EQ(o.pad_token_id, 733);          // from config.json
  EXPECT_EQ(o.decoder_start_token_id, 733);
  EXPECT_EQ(o.eos_token_ids, std::vector<int64_t>{0});
  EXPECT_DOUBLE_EQ(o.length_penalty, 1.0);  // HF default
  EXPECT_FALSE(o.max_new_tokens.has_value());
  // without generation_config.json the generation fields of config.json count
  GenerationOptions c = GenerationOptions::from_hf(config, json::object());
  EXPECT_EQ(c.max_length, 99);
  EXPECT_EQ(c.num_beams, 1);
  // bad types name the file and field
  try {
    GenerationOptions::from_hf(config, json{{"num_beams", "four"}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.where().file, "generation_config.json");
    EXPECT_EQ(e.where().field, "num_beams");
  }
}

TEST(GenerationOptionsTest, PerSourceCapAndValidation) {
  GenerationOptions o;
  o.max_length = 512;
  EXPECT_EQ(o.max_new_tokens_per_source(10), 30);   // 2·10 + 10
  EXPECT_EQ(o.max_new_tokens_per_source(300), 511);  // never past max_length - 1
  o.max_new_tokens_a = 1.5;
  o.max_new_tokens_b = 0;
  EXPECT_EQ(o.max_new_tokens_per_source(5), 7);     // floor(7.5)
  o.max_new_tokens = 20;
  EXPECT_EQ(o.max_new_tokens_per_source(300), 20);  // explicit max_new_tokens wins
  o.eos_token_ids = {0};
  EXPECT_NO_THROW(o.validate());
  o.num_return_sequences = 2;  // greedy returns one
  EXPECT_THROW(o.validate(), Error);
  o.num_beams = 2;
  EXPECT_NO_THROW(o.validate());
  o.eos_token_ids.clear();
  EXPECT_THROW(o.validate(), Error);
}

torch::Tensor run(const std::vector<float>& row, const std::vector<int64_t>& seq, int64_t max_length, const GenerationOptions& o) {
  torch::Tensor scores = torch::tensor(row).unsqueeze(0).contiguous();  // [1, V]
  std::vector<const std::vector<int64_t>*> rows{&seq};
  apply_logits_processors(scores, rows, {max_length}, o);
  return scores[0];
}

std::vector<float> vec(const torch::Tensor& t) { return std::vector<float>(t.data_ptr<float>(), t.data_ptr<float>() + t.numel()); }

TEST(LogitsProcessors, RepetitionPenaltyAndNoRepeatNgram) {
  GenerationOptions o;
  o.eos_token_ids = {0};
  o.repetition_penalty = 2.0;
  // tokens 1 (positive score) and 2 (negative) were generated; 1 appears twice but is penalised once
  EXPECT_EQ(vec(run({0.5f, 4.0f, -1.0f, 3.0f}, {1, 1, 2, 1}, 20, o)), (std::vector<float>{0.5f, 2.0f, -2.0f, 3.0f}));
  o.repetition_penalty = 1.0;
  o.no_repeat_ngram_size = 2;
  // sequence 3 1 2 3 1: the bigram (1, 2) was seen, the last token is 1 -> 2 banned; (3,1) -> nothing after 1 besides 2
  EXPECT_EQ(vec(run({1, 1, 1, 1}, {3, 1, 2, 3, 1}, 20, o)), (std::vector<float>{1, 1, -kInf, 1}));
  o.no_repeat_ngram_size = 3;
  // trigram (3, 1, 2) seen; last two tokens 3 1 -> 2 banned
  EXPECT_EQ(vec(run({1, 1, 1, 1}, {3, 1, 2, 3, 1}, 20, o)), (std::vector<float>{1, 1, -kInf, 1}));
  EXPECT_EQ(vec(run({1, 1, 1, 1}, {3, 1}, 20, o)), (std::vector<float>{1, 1, 1, 1}));  // too short
}

TEST(LogitsProcessors, BadWordsMinLengthForcedTokens) {
  GenerationOptions o;
  o.eos_token_ids = {0};
  o.bad_words_ids = {{3}, {0}, {1, 2}};  // [eos] is ignored as transformers does
  EXPECT_EQ(vec(run({1, 1, 1, 1}, {3, 1}, 20, o)), (std::vector<float>{1, 1, -kInf, -kInf}));  // ends with 1 -> 2 banned
  EXPECT_EQ(vec(run({1, 1, 1, 1}, {3, 2}, 20, o)), (std::vector<float>{1, 1, 1, -kInf}));
  o.bad_words_ids.clear();
  o.min_length = 3;  // decoder length incl. start < 3 -> eos banned
  EXPECT_EQ(vec(run({1, 1, 1, 1}, {3, 1}, 20, o)), (std::vector<float>{-kInf, 1, 1, 1}));
  EXPECT_EQ(vec(run({1, 1, 1, 1}, {3, 1, 2}, 20, o)), (std::vector<float>{1, 1, 1, 1}));
  o.min_length = 0;
  o.min_new_tokens = 2;
  EXPECT_EQ(vec(run({1, 1, 1, 1}, {3, 1}, 20, o)), (std::vector<float>{-kInf, 1, 1, 1}));
  EXPECT_EQ(vec(run({1, 1, 1, 1}, {3, 1, 2}, 20, o)), (std::vector<float>{1, 1, 1, 1}));
  o.min_new_tokens.reset();
  o.forced_bos_token_id = 2;
  EXPECT_EQ(vec(run({1, 5, 1, 1}, {3}, 20, o)), (std::vector<float>{-kInf, -kInf, 0, -kInf}));
  EXPECT_EQ(vec(run({1, 5, 1, 1}, {3, 2}, 20, o)), (std::vector<float>{1, 5, 1, 1}));
  o.forced_eos_token_id = 0;  // at decoder length max_length - 1
  EXPECT_EQ(vec(run({1, 5, 1, 1}, {3, 2, 1}, 4, o)), (std::vector<float>{0, -kInf, -kInf, -kInf}));
  EXPECT_EQ(vec(run({1, 5, 1, 1}, {3, 2}, 4, o)), (std::vector<float>{1, 5, 1, 1}));
}

}  // namespace
}  // namespace loom::generate
