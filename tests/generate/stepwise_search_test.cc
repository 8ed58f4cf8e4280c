// StepwiseSearch, the continuous-batching core of translation: sentences that join a running
// decoder batch mid-way (greedy and beam search, different options in one step) give the tokens
// they get alone from generate(); a short sentence admitted during a long one's decoding
// finishes first; a cancelled sentence's rows leave the batch. On the HF tiny Marian and NLLB
// fixtures and loom's own en-zh model (the two EncoderDecoder implementations).
#include <gtest/gtest.h>

#include <map>

#include "loom/core/error.h"
#include "loom/generate/search.h"
#include "loom/io/checkpoint.h"
#include "loom/models/encoder_decoder.h"
#include "loom/text/seq2seq_tokenizer.h"
#include "support/paths.h"

namespace loom::generate {
namespace {

struct ModelCase {
  std::string name, dir, src, tgt;
};

std::vector<ModelCase> cases() {
  const std::string tiny = std::string(LOOM_TEST_DATA) + "/hf-tiny/";
  return {{"marian", tiny + "marian-en-zh", "", ""},
          {"nllb", tiny + "nllb-m2m100", "eng_Latn", "zho_Hans"},
          {"native_en_zh", std::string(LOOM_SOURCE_DIR) + "/models/en-zh", "", ""}};
}

class StepwiseSearchTest : public ::testing::TestWithParam<ModelCase> {
 protected:
  void SetUp() override {
    const ModelCase& c = GetParam();
    io::HfCheckpoint checkpoint(c.dir);
    model_ = models::load_encoder_decoder(checkpoint);
    tokenizer_ = text::load_seq2seq_tokenizer(c.dir);
    tokenizer_->set_languages(c.src, c.tgt);
    base_ = GenerationOptions::from_hf(checkpoint.config(), checkpoint.generation_config());
    base_.num_return_sequences = 1;
    if (auto bos = tokenizer_->forced_bos_token_id()) base_.forced_bos_token_id = *bos;
  }
  std::shared_ptr<const GenerationOptions> options(int64_t beams) const {
    GenerationOptions o = base_;
    o.num_beams = beams;
    return std::make_shared<const GenerationOptions>(o);
  }
  std::vector<int64_t> ids(const std::string& text) const { return tokenizer_->encode_source(text); }
  // Steps `search` until every sentence finished; collects the results by id.
  static void drain(StepwiseSearch& search, std::map<int64_t, std::vector<Hypothesis>>& out) {
    for (int guard = 0; !search.empty() && guard < 10000; ++guard) {
      for (FinishedSentence& f : search.step()) out[f.id] = std::move(f.hypotheses);
    }
  }

  std::shared_ptr<models::EncoderDecoder> model_;
  std::unique_ptr<text::Seq2SeqTokenizer> tokenizer_;
  GenerationOptions base_;
};

const std::string kLong =
    "All human beings are born free and equal in dignity and rights, and they should act towards one another in a "
    "spirit of brotherhood.";
const std::string kMid = "Everyone has the right to life, liberty and security of person.";
const std::string kShort = "Hello.";

// generate() is a loop over StepwiseSearch; these are the one-shot answers every schedule must
// reproduce.
TEST_P(StepwiseSearchTest, JoiningMidwayEqualsAlone) {
  torch::InferenceMode guard;
  for (int64_t beams : {int64_t{1}, int64_t{4}}) {
    SCOPED_TRACE("beams " + std::to_string(beams));
    auto o = options(beams);
    auto other = options(beams == 1 ? 4 : 1);  // a sentence with other options in the same steps
    const auto alone_long = generate(*model_, {ids(kLong)}, *o);
    const auto alone_mid = generate(*model_, {ids(kMid)}, *o);
    const auto alone_short = generate(*model_, {ids(kShort)}, *other);

    StepwiseSearch search(*model_);
    std::map<int64_t, std::vector<Hypothesis>> out;
    const int64_t a = search.add({ids(kLong)}, o).at(0);
    for (int i = 0; i < 2; ++i) {
      for (FinishedSentence& f : search.step()) out[f.id] = std::move(f.hypotheses);
    }
    ASSERT_EQ(search.sentences(), 1) << "the long sentence finished before anything joined it";
    const int64_t b = search.add({ids(kMid)}, o).at(0);         // joins at decoder position 2
    for (FinishedSentence& f : search.step()) out[f.id] = std::move(f.hypotheses);
    const int64_t c = search.add({ids(kShort)}, other).at(0);  // and one more, other options
    EXPECT_EQ(search.rows(), (search.sentences() - 1) * beams + other->num_beams);
    drain(search, out);
    ASSERT_EQ(out.size(), 3u);
    ASSERT_EQ(out[a].size(), 1u);
    EXPECT_EQ(out[a][0].tokens, alone_long[0][0].tokens);
    EXPECT_NEAR(out[a][0].score, alone_long[0][0].score, 1e-4);
    EXPECT_EQ(out[b][0].tokens, alone_mid[0][0].tokens);
    EXPECT_NEAR(out[b][0].score, alone_mid[0][0].score, 1e-4);
    EXPECT_EQ(out[c][0].tokens, alone_short[0][0].tokens);
    EXPECT_EQ(out[c][0].capped, alone_short[0][0].capped);
    EXPECT_TRUE(search.empty());
    EXPECT_EQ(search.rows(), 0);
  }
}

// A short sentence admitted while a long one decodes finishes first, counted in steps: the long
// one has 30 tokens to go (eos banned before them), the short one at most 3.
TEST_P(StepwiseSearchTest, ShortSentenceJoiningLateFinishesFirst) {
  torch::InferenceMode guard;
  GenerationOptions lo = base_;
  lo.num_beams = 4;
  lo.min_new_tokens = 30;
  lo.max_new_tokens = 30;
  GenerationOptions so = base_;
  so.num_beams = 4;
  so.max_new_tokens = 3;
  auto long_options = std::make_shared<const GenerationOptions>(lo);
  auto short_options = std::make_shared<const GenerationOptions>(so);
  StepwiseSearch search(*model_);
  const int64_t a = search.add({ids(kLong)}, long_options).at(0);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(search.step().empty());
  const int64_t b = search.add({ids(kMid)}, short_options).at(0);
  const int64_t joined_at = search.steps();
  std::vector<Hypothesis> short_result;
  while (short_result.empty()) {
    for (FinishedSentence& f : search.step()) {
      EXPECT_EQ(f.id, b) << "the long sentence finished first";
      if (f.id == b) short_result = std::move(f.hypotheses);
    }
    ASSERT_LE(search.steps() - joined_at, 3) << "the short sentence took more steps than its 3 tokens";
  }
  EXPECT_EQ(search.sentences(), 1);  // the long one is still decoding
  EXPECT_EQ(short_result[0].tokens, generate(*model_, {ids(kMid)}, so)[0][0].tokens);
  std::map<int64_t, std::vector<Hypothesis>> out;
  drain(search, out);
  EXPECT_EQ(search.steps(), 30);  // the long sentence's 30 tokens; the short one rode along
  EXPECT_EQ(out.at(a)[0].tokens, generate(*model_, {ids(kLong)}, lo)[0][0].tokens);
}

// cancel() drops a sentence's rows at once; the others go on as if it had never been there
// (here the cancelled sentence is the oldest, so the decoder state also drops the positions
// decoded before the other one joined).
TEST_P(StepwiseSearchTest, CancelledSentenceLeavesTheBatch) {
  torch::InferenceMode guard;
  auto o = options(4);
  StepwiseSearch search(*model_);
  std::vector<int64_t> added = search.add({ids(kLong)}, o);
  EXPECT_EQ(search.rows(), 4);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(search.step().empty());
  added.push_back(search.add({ids(kMid)}, o).at(0));  // joins at decoder position 3
  EXPECT_EQ(search.rows(), 8);
  EXPECT_TRUE(search.step().empty());
  ASSERT_EQ(search.sentences(), 2);
  EXPECT_TRUE(search.cancel(added[0]));
  EXPECT_EQ(search.rows(), 4);
  EXPECT_EQ(search.sentences(), 1);
  EXPECT_FALSE(search.cancel(added[0]));  // gone
  EXPECT_FALSE(search.cancel(12345));     // never there
  std::map<int64_t, std::vector<Hypothesis>> out;
  drain(search, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out.at(added[1])[0].tokens, generate(*model_, {ids(kMid)}, *o)[0][0].tokens);
  // The emptied search starts afresh.
  const int64_t again = search.add({ids(kShort)}, o).at(0);
  EXPECT_GT(again, added[1]);
  drain(search, out);
  EXPECT_EQ(out.at(again)[0].tokens, generate(*model_, {ids(kShort)}, *o)[0][0].tokens);
}

// Bad input: one clear error, nothing added.
TEST_P(StepwiseSearchTest, BadInputIsRefusedWithoutChangingTheBatch) {
  torch::InferenceMode guard;
  StepwiseSearch search(*model_);
  EXPECT_THROW(search.add({ids(kShort), {}}, options(1)), Error);  // empty source
  GenerationOptions bad = base_;
  bad.num_beams = 2;
  bad.num_return_sequences = 3;
  EXPECT_THROW(search.add({ids(kShort)}, std::make_shared<const GenerationOptions>(bad)), Error);
  EXPECT_THROW(search.add({ids(kShort)}, nullptr), Error);
  EXPECT_TRUE(search.empty());
  EXPECT_TRUE(search.add({}, options(1)).empty());
  EXPECT_TRUE(search.step().empty());
  EXPECT_EQ(search.steps(), 0);
}

INSTANTIATE_TEST_SUITE_P(Models, StepwiseSearchTest, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace loom::generate
