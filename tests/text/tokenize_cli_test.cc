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

#include "loom/text/tokenizer_files.h"

namespace loom::text {
namespace {

namespace fs = std::filesystem;

const std::string kData = LOOM_TEST_DATA;
const std::string kOpus = std::string(LOOM_SOURCE_DIR) + "/data/tokenizers/opus-mt-en-zh";  // shipped tokenizer (data/)

struct Result {
  int rc = -1;
  std::string out, err;
};

// Runs `loom <args>` through the shell; stdout and stderr captured separately.
Result run_loom(const std::string& args) {
  static int n = 0;
  const std::string err_path =
      (fs::temp_directory_path() / ("loom_cli_err_" + std::to_string(::getpid()) + "_" + std::to_string(n++))).string();
  const std::string cmd = std::string("'") + LOOM_BINARY + "' " + args + " 2>'" + err_path + "'";
  Result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[65536];
  size_t k;
  while ((k = std::fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, k);
  int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream e(err_path);
  std::stringstream ss;
  ss << e.rdbuf();
  r.err = ss.str();
  fs::remove(err_path);
  return r;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> lines;
  std::stringstream ss(s);
  std::string line;
  while (std::getline(ss, line)) lines.push_back(line);
  return lines;
}

std::string join_ids(const nlohmann::json& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? " " : "") + std::to_string(ids[i].get<int64_t>());
  return s;
}

class TokenizeCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("loom_tokenize_cli_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    ref_ = read_json_file(kData + "/tokenizers/opus-mt-en-zh-tokenizer-reference.json");
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& content) {
    std::ofstream(dir_ / name, std::ios::binary) << content;
    return (dir_ / name).string();
  }
  fs::path dir_;
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
  Result r = run_loom("tokenize --model '" + kOpus + "' '" + write("src.txt", input) + "'");
  ASSERT_EQ(r.rc, 0) << r.err;
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
  Result r = run_loom("tokenize --model '" + kOpus + "' --target < '" + write("tgt.txt", input) + "'");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(lines_of(r.out), expected);
  Result d = run_loom("tokenize --model '" + kOpus + "' --decode '" + write("ids.txt", ids_input) + "'");
  ASSERT_EQ(d.rc, 0) << d.err;
  EXPECT_EQ(lines_of(d.out), decoded);
}

TEST_F(TokenizeCli, NllbPiecesWithLanguages) {
  const std::string nllb = kData + "/hf-tiny/nllb-m2m100";
  nlohmann::json ref = read_json_file(nllb + "/reference.json");
  const auto& c = ref["cases"][0];
  std::string want;
  for (size_t i = 0; i < c["source_tokens"].size(); ++i) want += (i ? " " : "") + c["source_tokens"][i].get<std::string>();
  Result r = run_loom("tokenize --model '" + nllb + "' --src eng_Latn --tgt zho_Hans --pieces '" +
                      write("n.txt", c["source"].get<std::string>() + "\n") + "'");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, want + "\n");
  Result t = run_loom("tokenize --model '" + nllb + "' --src eng_Latn --tgt zho_Hans --target '" +
                      write("t.txt", c["target"].get<std::string>() + "\n") + "'");
  ASSERT_EQ(t.rc, 0) << t.err;
  EXPECT_EQ(t.out, join_ids(c["labels"]) + "\n");
}

TEST_F(TokenizeCli, ErrorsExitOneWithAMessage) {
  Result bad_lang = run_loom("tokenize --model '" + kOpus + "' --tgt fra '" + write("a.txt", "Hi\n") + "'");
  EXPECT_EQ(bad_lang.rc, 1);
  EXPECT_NE(bad_lang.err.find("loom: error:"), std::string::npos) << bad_lang.err;
  EXPECT_NE(bad_lang.err.find("cmn_Hans"), std::string::npos) << bad_lang.err;

  Result bad_utf8 = run_loom("tokenize --model '" + kOpus + "' '" + write("b.txt", "fine\nbad \xFF byte\n") + "'");
  EXPECT_EQ(bad_utf8.rc, 1);
  EXPECT_NE(bad_utf8.err.find("b.txt:2"), std::string::npos) << bad_utf8.err;
  EXPECT_NE(bad_utf8.err.find("UTF-8"), std::string::npos) << bad_utf8.err;

  Result bad_id = run_loom("tokenize --model '" + kOpus + "' --decode '" + write("c.txt", "5 x7\n") + "'");
  EXPECT_EQ(bad_id.rc, 1);
  EXPECT_NE(bad_id.err.find("c.txt:1"), std::string::npos) << bad_id.err;

  Result no_model = run_loom("tokenize --model '" + (dir_ / "none").string() + "' '" + write("d.txt", "x\n") + "'");
  EXPECT_EQ(no_model.rc, 1) << no_model.err;
}

}  // namespace
}  // namespace loom::text
