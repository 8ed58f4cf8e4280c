// LoomSpmTokenizer on a loom model directory built in the test: a joint unigram SentencePiece
// model trained on the Tatoeba en-zh sample (tests/data/mt/tatoeba-400.tsv) saved as
// source.spm and target.spm, and a config.json with model_type "loom_seq2seq".
#include "loom/text/loom_spm_tokenizer.h"
#include "support/paths.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "loom/core/error.h"

namespace loom::text {
namespace {
namespace fs = std::filesystem;

class LoomSpm : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("loom-loomspm-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_ / "model");
    std::ifstream in(std::string(LOOM_TEST_DATA) + "/mt/tatoeba-400.tsv");
    std::ofstream both(dir_ / "both.txt");
    std::string line;
    while (std::getline(in, line)) {
      const size_t tab = line.find('\t');
      both << line.substr(0, tab) << "\n" << line.substr(tab + 1) << "\n";
    }
    both.close();
    SpmTrainOptions o;
    o.input_files = {(dir_ / "both.txt").string()};
    o.vocab_size = 1500;
    model_ = (dir_ / "model").string();
    train_sentencepiece(o, model_ + "/source.spm");
    fs::copy_file(model_ + "/source.spm", model_ + "/target.spm");
    write_config({{"model_type", "loom_seq2seq"}, {"pad_token_id", 0}, {"unk_token_id", 1}, {"bos_token_id", 2},
                  {"eos_token_id", 3}, {"source_lang", "en"}, {"target_lang", "zh"}});
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write_config(const nlohmann::json& j) { std::ofstream(model_ + "/config.json") << j.dump(1); }

  fs::path dir_;
  std::string model_;
};

TEST_F(LoomSpm, EncodesWithEosAndDecodesWithoutSpecials) {
  auto tok = load_seq2seq_tokenizer(model_);  // dispatches on model_type loom_seq2seq
  ASSERT_EQ(tok->name(), "LoomSpmTokenizer");
  SentencePiece sp(model_ + "/source.spm");
  EXPECT_EQ(tok->vocab_size(), 1500);
  EXPECT_EQ(tok->pad_id(), 0);
  EXPECT_EQ(tok->unk_id(), 1);
  EXPECT_EQ(tok->eos_id(), 3);
  EXPECT_FALSE(tok->forced_bos_token_id().has_value());

  // Source ids = the SentencePiece ids of the text, then </s> (3).
  const std::string en = "They won.";
  auto ids = tok->encode_source(en);
  auto expected = sp.encode_ids(en);
  ASSERT_EQ(ids.size(), expected.size() + 1);
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(ids[i], expected[i]);
  EXPECT_EQ(ids.back(), 3);
  EXPECT_EQ(tok->source_pieces(en), sp.encode_pieces(en));
  EXPECT_EQ(tok->source_text(tok->source_pieces(en)), en);
  EXPECT_EQ(tok->id_to_token(ids.back()), "</s>");

  // Labels: same rule on the target side; decode drops pad/bos/eos/unk.
  const std::string zh = "他们赢了。";
  auto labels = tok->encode_target(zh);
  EXPECT_EQ(labels.back(), 3);
  EXPECT_EQ(tok->decode_target(labels), zh);
  std::vector<int64_t> generated = {2};  // decoder start <s>
  generated.insert(generated.end(), labels.begin(), labels.end());
  generated.push_back(0);
  generated.push_back(0);  // padding after </s>
  generated.insert(generated.begin() + 2, 1);  // an <unk> inside
  EXPECT_EQ(tok->decode_target(generated), zh);
  EXPECT_EQ(tok->encode_source(""), std::vector<int64_t>{3});
  EXPECT_EQ(tok->decode_target({}), "");

  EXPECT_THROW(tok->decode_target({1500}), Error);
  EXPECT_THROW(tok->decode_target({-1}), Error);
  EXPECT_THROW(tok->id_to_token(1500, true), Error);
  EXPECT_THROW(tok->encode_source("bad \xFF"), Error);

  auto* loom_tok = dynamic_cast<LoomSpmTokenizer*>(tok.get());
  ASSERT_NE(loom_tok, nullptr);
  EXPECT_TRUE(loom_tok->joint_vocabulary());
  EXPECT_EQ(loom_tok->bos_id(), 2);
}

TEST_F(LoomSpm, LanguagesAreTheModelsSinglePair) {
  LoomSpmTokenizer tok(model_);
  EXPECT_EQ(tok.languages(), std::vector<std::string>{"zh"});
  EXPECT_EQ(tok.source_language(), "en");
  EXPECT_EQ(tok.target_language(), "zh");
  tok.set_languages("en", "zh");
  tok.set_languages("", "");
  try {
    tok.set_languages("en", "de");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("en->zh"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'de'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(tok.set_languages("fr", "zh"), Error);
  // Without source_lang/target_lang in config.json any pair is accepted and recorded.
  write_config({{"model_type", "loom_seq2seq"}, {"pad_token_id", 0}, {"bos_token_id", 2}, {"eos_token_id", 3}});
  LoomSpmTokenizer open(model_);
  EXPECT_TRUE(open.languages().empty());
  open.set_languages("de", "fr");
  EXPECT_EQ(open.target_language(), "fr");
}

TEST_F(LoomSpm, BadDirectoriesAreErrorsNamingTheFile) {
  write_config({{"model_type", "loom_seq2seq"}, {"pad_token_id", 1}, {"bos_token_id", 2}, {"eos_token_id", 3}});
  try {
    LoomSpmTokenizer tok(model_);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pad_token_id"), std::string::npos) << e.what();
  }
  write_config({{"model_type", "loom_seq2seq"}, {"pad_token_id", 0}, {"eos_token_id", 3}});
  EXPECT_THROW(LoomSpmTokenizer{model_}, Error);  // bos_token_id missing
  write_config({{"model_type", "loom_seq2seq"}, {"pad_token_id", 0}, {"bos_token_id", 2}, {"eos_token_id", 3}});
  fs::remove(model_ + "/target.spm");
  try {
    LoomSpmTokenizer tok(model_);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("target.spm"), std::string::npos) << e.what();
  }
  // A SentencePiece model with other special ids (the Marian fixture's: </s> 0, <unk> 1).
  fs::copy_file(std::string(LOOM_TEST_DATA) + "/hf-tiny/marian-en-zh/target.spm", model_ + "/target.spm");
  try {
    LoomSpmTokenizer tok(model_);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("target.spm"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace loom::text
