// `loom tokenize` end to end: runs the built binary (LOOM_BINARY) and compares its output with
// the Hugging Face reference ids.
#include <gtest/gtest.h>
#include "support/paths.h"
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "loom/core/files.h"
#include "loom/text/tokenizer_files.h"
#include "support/support.h"

namespace loom::text {
namespace {

namespace fs = std::filesystem;

const std::string kData = LOOM_TEST_DATA;
const std::string kOpus = std::string(LOOM_SOURCE_DIR) + "/data/tokenizers/opus-mt-en-zh";  // shipped tokenizer (data/)

using loom_test::lines_of;

std::string join_ids(const nlohmann::json& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? " " : "") + std::to_string(ids[i].get<int64_t>());
  return s;
}

class TokenizeCli : public ::testing::Test {
 protected:
  void SetUp() override {
    ref_ = core::read_json(kData + "/tokenizers/opus-mt-en-zh-tokenizer-reference.json");
  }
  // Runs `loom tokenize args...` (stdin from `stdin_text`); exit code, stdout and stderr.
  loom_test::RunResult tokenize(std::vector<std::string> args, const std::string& stdin_text = {}) {
    args.insert(args.begin(), "tokenize");
    return loom_test::run_loom(args, dir_, stdin_text);
  }
  std::string write(const std::string& name, const std::string& content) {
    std::ofstream(dir_ / name, std::ios::binary) << content;
    return (dir_ / name).string();
  }
  loom_test::TempDir tmp_;
  fs::path dir_ = tmp_.path();
  nlohmann::json ref_;
};

TEST_F(TokenizeCli, SourceIdsOfEveryReferenceLineFromAFile) {
  std::string input;
  std::vector<std::string> expected;
  for (const auto& row : ref_["source"]) {
    const std::string text = row["text"];
    if (text.find_first_of("\r\n") != std::string::npos) continue;
    input += text + "\n";
    expected.push_back(join_ids(row["ids"]));
  }
  ASSERT_GE(expected.size(), 200u);
  auto r = tokenize({"--model", kOpus, write("src.txt", input)});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines_of(r.out), expected);
}

TEST_F(TokenizeCli, TargetIdsFromStdinAndDecodeRoundTrip) {
  std::string input, ids_input;
  std::vector<std::string> expected, decoded;
  for (size_t i = 0; i < 50; ++i) {
    const auto& row = ref_["target"][i];
    input += row["text"].get<std::string>() + "\r\n";  // CRLF input is accepted
    expected.push_back(join_ids(row["ids"]));
    ids_input += join_ids(row["ids"]) + "\n";
    decoded.push_back(row["decoded"]);
  }
  auto r = tokenize({"--model", kOpus, "--target"}, input);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines_of(r.out), expected);
  auto d = tokenize({"--model", kOpus, "--decode", write("ids.txt", ids_input)});
  ASSERT_EQ(d.code, 0) << d.err;
  EXPECT_EQ(lines_of(d.out), decoded);
}

TEST_F(TokenizeCli, NllbPiecesWithLanguages) {
  const std::string nllb = kData + "/hf-tiny/nllb-m2m100";
  nlohmann::json ref = core::read_json(nllb + "/reference.json");
  const auto& c = ref["cases"][0];
  std::string want;
  for (size_t i = 0; i < c["source_tokens"].size(); ++i) want += (i ? " " : "") + c["source_tokens"][i].get<std::string>();
  auto r = tokenize({"--model", nllb, "--src", "eng_Latn", "--tgt", "zho_Hans", "--pieces",
                     write("n.txt", c["source"].get<std::string>() + "\n")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, want + "\n");
  auto t = tokenize({"--model", nllb, "--src", "eng_Latn", "--tgt", "zho_Hans", "--target",
                     write("t.txt", c["target"].get<std::string>() + "\n")});
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_EQ(t.out, join_ids(c["labels"]) + "\n");
}

TEST_F(TokenizeCli, ErrorsExitOneWithAMessage) {
  auto bad_lang = tokenize({"--model", kOpus, "--tgt", "fra", write("a.txt", "Hi\n")});
  EXPECT_EQ(bad_lang.code, 1);
  EXPECT_NE(bad_lang.err.find("loom: error:"), std::string::npos) << bad_lang.err;
  EXPECT_NE(bad_lang.err.find("cmn_Hans"), std::string::npos) << bad_lang.err;

  auto bad_utf8 = tokenize({"--model", kOpus, write("b.txt", "fine\nbad \xFF byte\n")});
  EXPECT_EQ(bad_utf8.code, 1);
  EXPECT_NE(bad_utf8.err.find("b.txt:2"), std::string::npos) << bad_utf8.err;
  EXPECT_NE(bad_utf8.err.find("UTF-8"), std::string::npos) << bad_utf8.err;

  auto bad_id = tokenize({"--model", kOpus, "--decode", write("c.txt", "5 x7\n")});
  EXPECT_EQ(bad_id.code, 1);
  EXPECT_NE(bad_id.err.find("c.txt:1"), std::string::npos) << bad_id.err;

  auto no_model = tokenize({"--model", (dir_ / "none").string(), write("d.txt", "x\n")});
  EXPECT_EQ(no_model.code, 1) << no_model.err;
}

}  // namespace
}  // namespace loom::text
