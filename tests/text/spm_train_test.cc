// SentencePiece training through the plugin (text::train_sentencepiece) on the Tatoeba en-zh
// sample (tests/data/mt/tatoeba-400.tsv, 416 pairs): determinism, vocabulary size, the fixed
// special ids, encode -> decode round trips, and errors.
#include <gtest/gtest.h>
#include "support/paths.h"
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "loom/core/error.h"
#include "loom/text/sentencepiece.h"

namespace loom::text {
namespace {
namespace fs = std::filesystem;

class SpmTrain : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("loom-spmtrain-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    std::ifstream in(std::string(LOOM_TEST_DATA) + "/mt/tatoeba-400.tsv");
    std::string line;
    std::ofstream en(dir_ / "en.txt"), zh(dir_ / "zh.txt");
    while (std::getline(in, line)) {
      const size_t tab = line.find('\t');
      en_.push_back(line.substr(0, tab));
      zh_.push_back(line.substr(tab + 1));
      en << en_.back() << "\n";
      zh << zh_.back() << "\n";
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(dir_ / name, std::ios::binary) << text;
    return path(name);
  }

  fs::path dir_;
  std::vector<std::string> en_, zh_;
};

void expect_fixed_specials(const SentencePiece& sp) {
  EXPECT_EQ(sp.id_to_piece(0), "<pad>");
  EXPECT_EQ(sp.id_to_piece(1), "<unk>");
  EXPECT_EQ(sp.id_to_piece(2), "<s>");
  EXPECT_EQ(sp.id_to_piece(3), "</s>");
  EXPECT_TRUE(sp.is_control(0));
  EXPECT_TRUE(sp.is_unknown(1));
  EXPECT_TRUE(sp.is_control(2));
  EXPECT_TRUE(sp.is_control(3));
  EXPECT_EQ(sp.piece_to_id("</s>"), 3);
  EXPECT_EQ(sp.piece_to_id("no-such-piece-here"), 1);  // unk
}

TEST_F(SpmTrain, UnigramChineseIsDeterministicWithFixedIds) {
  SpmTrainOptions o;
  o.input_files = {path("zh.txt")};
  o.vocab_size = 1000;  // 416 sentences need ~809 character pieces at coverage 0.9995
  const std::string a = train_sentencepiece(o);
  const std::string b = train_sentencepiece(o);
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a, b);  // same bytes twice
  train_sentencepiece(o, path("zh.spm"));
  std::ifstream in(path("zh.spm"), std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), a);
  EXPECT_FALSE(fs::exists(path("zh.spm.tmp")));

  SentencePiece sp(path("zh.spm"));
  EXPECT_EQ(sp.size(), 1000);
  expect_fixed_specials(sp);
  // Round trip on the training sentences. nmt_nfkc normalisation rewrites full-width ASCII
  // (e.g. "？" -> "?"), so compare with the normalised text: decode(encode(x)) is a fixed point,
  // and sentences made only of ordinary Hanzi come back byte for byte.
  int exact = 0;
  for (const auto& s : zh_) {
    const std::string once = sp.decode_pieces(sp.encode_pieces(s));
    EXPECT_EQ(sp.decode_pieces(sp.encode_pieces(once)), once) << s;
    exact += once == s;
  }
  EXPECT_GT(exact, 200) << "most Tatoeba sentences use only ordinary characters";
  EXPECT_EQ(sp.decode_pieces(sp.encode_pieces("他们赢了。")), "他们赢了。");
  // Another vocabulary size gives another model (the bytes depend on the options).
  o.vocab_size = 1100;
  EXPECT_NE(train_sentencepiece(o), a);
}

TEST_F(SpmTrain, BpeEnglishRoundTripsExactly) {
  SpmTrainOptions o;
  o.input_files = {path("en.txt")};
  o.model_type = "bpe";
  o.vocab_size = 400;
  o.character_coverage = 1.0;
  train_sentencepiece(o, path("en.spm"));
  EXPECT_EQ(train_sentencepiece(o), train_sentencepiece(o));
  SentencePiece sp(path("en.spm"));
  EXPECT_EQ(sp.size(), 400);
  expect_fixed_specials(sp);
  for (const auto& s : en_) {
    auto ids = sp.encode_ids(s);
    for (int id : ids) EXPECT_GE(id, 4) << s;  // no <unk> at full coverage, no specials
    EXPECT_EQ(sp.decode_pieces(sp.encode_pieces(s)), s);
  }
}

TEST_F(SpmTrain, JointVocabularyFromTwoFiles) {
  SpmTrainOptions o;
  o.input_files = {path("en.txt"), path("zh.txt")};
  o.vocab_size = 1500;
  const std::string model = train_sentencepiece(o);
  std::ofstream(dir_ / "joint.spm", std::ios::binary) << model;
  SentencePiece sp(path("joint.spm"));
  EXPECT_EQ(sp.size(), 1500);
  EXPECT_EQ(sp.decode_pieces(sp.encode_pieces("They won.")), "They won.");
  EXPECT_EQ(sp.decode_pieces(sp.encode_pieces("他们赢了。")), "他们赢了。");
}

TEST_F(SpmTrain, ErrorsNameTheInput) {
  SpmTrainOptions o;
  o.input_files = {write("empty.txt", "\n\n")};
  o.vocab_size = 100;
  try {
    train_sentencepiece(o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("empty.txt"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("no non-empty line"), std::string::npos) << e.what();
  }
  o.input_files = {path("zh.txt")};
  o.vocab_size = 50000;  // far more pieces than 416 sentences allow
  try {
    train_sentencepiece(o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Vocabulary size too high"), std::string::npos) << e.what();
  }
  o.vocab_size = 100;  // fewer than the characters to cover
  EXPECT_THROW(train_sentencepiece(o), Error);
  o.input_files = {write("bad.txt", "fine\nbad \xFF line\n")};
  try {
    train_sentencepiece(o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.txt:2"), std::string::npos) << e.what();
  }
  o.input_files = {path("en.txt")};
  o.max_sentence_length = 3;  // every Tatoeba line is longer: nothing left to train on
  try {
    train_sentencepiece(o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max_sentence_length"), std::string::npos) << e.what();
  }
  o.max_sentence_length = 4192;
  o.input_files = {path("missing.txt")};
  EXPECT_THROW(train_sentencepiece(o), Error);
  o.input_files = {path("en.txt")};
  o.model_type = "word";
  EXPECT_THROW(train_sentencepiece(o), Error);
  o.model_type = "bpe";
  o.vocab_size = 4;
  EXPECT_THROW(train_sentencepiece(o), Error);
  o.input_files = {};
  EXPECT_THROW(train_sentencepiece(o), Error);
}

}  // namespace
}  // namespace loom::text
