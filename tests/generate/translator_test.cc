// Translator: batching by length and token budget restores input order and does not change a
// sentence's output; over-long sentences are split at piece boundaries, never truncated.
#include "loom/generate/translator.h"
#include "support/paths.h"

#include <gtest/gtest.h>

#include "loom/io/checkpoint.h"
#include "loom/models/seq2seq.h"
#include "loom/text/seq2seq_tokenizer.h"

namespace loom::generate {
namespace {

const std::string kMarian = std::string(LOOM_TEST_DATA) + "/hf-tiny/marian-en-zh";
const std::string kWord = "\xE2\x96\x81";  // ▁

TEST(SplitPieces, CutsBeforeWordStartsInTheSecondHalf) {
  // Max 4 pieces: the run [0, 4) would end inside the word "▁d e", so it is cut before "▁d".
  std::vector<std::string> p = {kWord + "a", "b", kWord + "c", kWord + "d", "e", kWord + "f", "g"};
  auto runs = split_pieces(p, 4);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0], (std::pair<size_t, size_t>{0, 3}));
  EXPECT_EQ(runs[1], (std::pair<size_t, size_t>{3, 7}));
  // A word start only in the first half of the run is not used: cut at max_pieces.
  std::vector<std::string> r = {kWord + "a", "b", kWord + "c", "d", "e", "f"};
  auto late = split_pieces(r, 4);
  ASSERT_EQ(late.size(), 2u);
  EXPECT_EQ(late[0], (std::pair<size_t, size_t>{0, 4}));
  // No word start at all: hard cuts at max_pieces.
  std::vector<std::string> q(10, "x");
  auto hard = split_pieces(q, 4);
  ASSERT_EQ(hard.size(), 3u);
  EXPECT_EQ(hard[2], (std::pair<size_t, size_t>{8, 10}));
  EXPECT_THROW(split_pieces(q, 0), Error);
}

class TranslatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    checkpoint_ = std::make_unique<io::HfCheckpoint>(kMarian);
    model_ = models::Seq2SeqModel::load(*checkpoint_);
    tokenizer_ = text::load_seq2seq_tokenizer(kMarian);
    tokenizer_->set_languages("", "");
    options_ = GenerationOptions::from_hf(checkpoint_->config(), checkpoint_->generation_config());
    options_.num_beams = 1;
    options_.num_return_sequences = 1;
    options_.max_new_tokens = 12;
  }
  std::unique_ptr<io::HfCheckpoint> checkpoint_;
  std::shared_ptr<models::Seq2SeqModel> model_;
  std::unique_ptr<text::Seq2SeqTokenizer> tokenizer_;
  GenerationOptions options_;
};

TEST_F(TranslatorTest, BatchedEqualsOneByOneAndKeepsOrder) {
  torch::InferenceMode guard;
  std::vector<std::string> sentences = {
      "All human beings are born free and equal in dignity and rights.",
      "Everyone has the right to life.",
      "No one shall be held in slavery or servitude; slavery and the slave trade shall be prohibited in all their forms.",
      "Hello.",
      "Everyone has the right to freedom of thought, conscience and religion."};
  TranslatorOptions batched;
  batched.max_tokens = 64;  // forces several length-sorted batches
  batched.max_sentences = 3;
  Translator many(*model_, *tokenizer_, options_, batched);
  auto together = many.translate(sentences);
  ASSERT_EQ(together.size(), sentences.size());
  Translator single(*model_, *tokenizer_, options_, TranslatorOptions{});
  for (size_t i = 0; i < sentences.size(); ++i) {
    EXPECT_EQ(together[i], single.translate({sentences[i]})[0]) << "sentence " << i;
  }
  EXPECT_EQ(many.stats().sentences, 5);
  EXPECT_EQ(many.stats().split_sentences, 0);
  EXPECT_GT(many.stats().target_tokens, 0);
}

TEST_F(TranslatorTest, LongSentenceIsSplitAtPieceBoundariesNotTruncated) {
  torch::InferenceMode guard;
  TranslatorOptions small;
  small.max_source_tokens = 16;
  Translator translator(*model_, *tokenizer_, options_, small);
  const std::string sentence =
      "All human beings are born free and equal in dignity and rights and should act towards one "
      "another in a spirit of brotherhood.";
  const size_t pieces = tokenizer_->source_pieces(sentence).size();
  ASSERT_GT(pieces, 30u);
  auto out = translator.translate({sentence, "Hello."});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(translator.stats().split_sentences, 1);
  // Every part became a model input of at most 16 tokens, covering all pieces.
  EXPECT_GE(translator.stats().model_inputs, static_cast<int64_t>((pieces + 14) / 15) + 1);
  EXPECT_FALSE(out[0].empty());
  EXPECT_TRUE(translator.translate({}).empty());
}

}  // namespace
}  // namespace loom::generate
