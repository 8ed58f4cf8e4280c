// End-to-end tests of the `loom translate` executable on the tiny Marian fixture: the main job
// on real data (FLORES-200 devtest, NTREX Markdown documents), kill -9 + resume, shards, and
// bad input. The fixture has random weights, so the assertions are about structure, counts and
// invariants (resume == uninterrupted, shards == unsharded), not translation quality.
#include <gtest/gtest.h>
#include "support/paths.h"
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "support/support.h"

namespace {
namespace fs = std::filesystem;
using namespace loom_test;

const std::string kModel = std::string(LOOM_TEST_DATA) + "/hf-tiny/marian-en-zh";
const std::string kData = std::string(LOOM_SOURCE_DIR) + "/data";

class TranslateCli : public ::testing::Test {
 protected:
  loom_test::TempDir tmp_;
  fs::path dir_ = tmp_.path();
};

TEST_F(TranslateCli, FloresDevtestGivesOneLinePerInputLine) {
  const fs::path out = dir_ / "flores.zh";
  auto r = run_loom({"translate", "--model", kModel, "--beam", "1", "--no-progress",
                     kData + "/flores200/eng_Latn.devtest", out.string()}, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  auto lines = lines_of(slurp(out));
  EXPECT_EQ(lines.size(), 1012u);
  size_t non_empty = 0;
  for (const auto& l : lines) non_empty += !l.empty();
  EXPECT_EQ(non_empty, 1012u);  // every devtest line has text, so every output line has some
  EXPECT_NE(r.err.find("1012 rows"), std::string::npos) << r.err;
}

// Markdown skeleton of a text: each line reduced to its block marker.
std::vector<std::string> skeleton(const std::string& text) {
  std::vector<std::string> out;
  for (const auto& line : lines_of(text)) {
    if (line.empty()) out.push_back("");
    else if (line.rfind("## ", 0) == 0) out.push_back("##");
    else if (line.rfind("# ", 0) == 0) out.push_back("#");
    else if (line.rfind("- ", 0) == 0) out.push_back("-");
    else out.push_back("p");
  }
  return out;
}

TEST_F(TranslateCli, JsonlDocumentsKeepFieldsAndMarkdownStructure) {
  // First 20 NTREX documents, Cosmopedia-style rows (scripts/make-ntrex-jsonl.py).
  const fs::path in = dir_ / "docs.jsonl";
  {
    auto all = lines_of(slurp(kData + "/ntrex/ntrex-docs.jsonl"));
    std::ofstream o(in);
    for (size_t i = 0; i < 20; ++i) o << all[i] << "\n";
  }
  const fs::path out = dir_ / "docs.zh.jsonl";
  auto r = run_loom({"translate", "--model", kModel, "--beam", "1", "--no-progress", in.string(), out.string()}, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  auto src = lines_of(slurp(in));
  auto dst = lines_of(slurp(out));
  ASSERT_EQ(src.size(), dst.size());
  for (size_t i = 0; i < src.size(); ++i) {
    auto a = nlohmann::ordered_json::parse(src[i]);
    auto b = nlohmann::ordered_json::parse(dst[i]);
    for (auto& [k, v] : a.items()) EXPECT_EQ(b.at(k), v) << "row " << i << " field " << k;
    ASSERT_TRUE(b.contains("text_zh") && b.contains("prompt_zh")) << dst[i];
    EXPECT_EQ(skeleton(b["text_zh"].get<std::string>()), skeleton(a["text"].get<std::string>())) << "row " << i;
  }
}

TEST_F(TranslateCli, KilledAtRandomPointsAndResumedEqualsUninterrupted) {
  const fs::path in = dir_ / "docs.jsonl";
  {
    auto all = lines_of(slurp(kData + "/ntrex/ntrex-docs.jsonl"));
    std::ofstream o(in);
    for (size_t i = 0; i < 40; ++i) o << all[i] << "\n";
  }
  auto common = [&](const fs::path& out) {
    return std::vector<std::string>{"translate", "--model", kModel, "--beam", "2", "--no-progress",
                                    "--checkpoint-rows", "3", in.string(), out.string()};
  };
  const fs::path ref = dir_ / "ref.jsonl";
  auto r = run_loom(common(ref), dir_);
  ASSERT_EQ(r.code, 0) << r.err;

  const fs::path out = dir_ / "out.jsonl";
  std::mt19937 rng(20261129);
  std::uniform_int_distribution<int> delay_ms(50, 600);
  int kills = 0;
  for (int attempt = 0; attempt < 12; ++attempt) {
    auto args = common(out);
    args.push_back("--resume");
    const int code = run_loom_killed_after(args, dir_, delay_ms(rng));
    if (code == 128 + SIGKILL) {
      ++kills;
    } else {
      ASSERT_EQ(code, 0) << slurp(dir_ / "killed.stderr");
      break;  // finished before we killed it
    }
  }
  auto args = common(out);
  args.push_back("--resume");
  r = run_loom(args, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_GT(kills, 0);
  EXPECT_EQ(slurp(out), slurp(ref)) << "after " << kills << " kills";
}

TEST_F(TranslateCli, ThreeShardsConcatenatedEqualOneRun) {
  const fs::path in = dir_ / "lines.txt";
  {
    auto all = lines_of(slurp(kData + "/flores200/eng_Latn.devtest"));
    std::ofstream o(in);
    for (size_t i = 0; i < 101; ++i) o << all[i] << "\n";
  }
  const fs::path ref = dir_ / "ref.txt";
  auto r = run_loom({"translate", "--model", kModel, "--beam", "1", "--no-progress", in.string(), ref.string()}, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  std::string joined;
  for (int i = 0; i < 3; ++i) {
    const fs::path out = dir_ / ("shard" + std::to_string(i) + ".txt");
    r = run_loom({"translate", "--model", kModel, "--beam", "1", "--no-progress", "--shard",
                  std::to_string(i) + "/3", in.string(), out.string()}, dir_);
    ASSERT_EQ(r.code, 0) << r.err;
    // The job names shard outputs OUT.0000i-of-00003.txt.
    joined += slurp(dir_ / ("shard" + std::to_string(i) + ".0000" + std::to_string(i) + "-of-00003.txt"));
  }
  EXPECT_EQ(joined, slurp(ref));
}

TEST_F(TranslateCli, BadInputsGiveOneClearErrorAndNonZeroExit) {
  struct Case {
    std::string name, content, expect;
  };
  std::vector<Case> cases = {
      {"badjson.jsonl", "{\"prompt\": \"p\", \"text\": \"ok\"}\n{\"prompt\": \"p\", \"text\": \"unterminated}\n",
       "badjson.jsonl:2"},
      {"notutf8.jsonl", "{\"prompt\": \"p\", \"text\": \"caf\xe9\"}\n", "notutf8.jsonl:1"},
      {"missing.jsonl", "{\"prompt\": \"a\", \"text\": \"b\"}\n{\"prompt\": \"c\"}\n", "missing.jsonl:2"},
      {"nonstring.jsonl", "{\"prompt\": \"a\", \"text\": 5}\n", "'text'"},
  };
  for (const auto& c : cases) {
    const fs::path in = dir_ / c.name;
    std::ofstream(in, std::ios::binary) << c.content;
    auto r = run_loom({"translate", "--model", kModel, "--beam", "1", "--no-progress", in.string(),
                       (dir_ / (c.name + ".out")).string()}, dir_);
    EXPECT_EQ(r.code, 1) << c.name << ": " << r.err;
    EXPECT_NE(r.err.find("loom: error: "), std::string::npos) << c.name << ": " << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.name << ": " << r.err;
  }
  // NUL bytes are a bad row named by file:line:field.
  {
    const fs::path in = dir_ / "nul.jsonl";
    std::ofstream(in, std::ios::binary) << "{\"prompt\": \"p\", \"text\": \"a\\u0000b\"}\n";
    auto r = run_loom({"translate", "--model", kModel, "--no-progress", in.string(), (dir_ / "nul.out").string()}, dir_);
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_NE(r.err.find("nul.jsonl:1: 'text'"), std::string::npos) << r.err;
  }
  // TXT with --on-error skip stays line-aligned: the rejected line becomes an empty line.
  {
    const fs::path in = dir_ / "skip.txt";
    std::ofstream(in, std::ios::binary) << "Hello.\na\xff b\nThe end.\n";
    const fs::path out = dir_ / "skip.out";
    auto r = run_loom({"translate", "--model", kModel, "--beam", "1", "--no-progress", "--on-error", "skip",
                       in.string(), out.string()}, dir_);
    ASSERT_EQ(r.code, 0) << r.err;
    auto lines = lines_of(slurp(out));
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_EQ(lines[1], "");
    EXPECT_FALSE(lines[2].empty());
    EXPECT_NE(slurp(out.string() + ".rejects.jsonl").find("\"line\":2"), std::string::npos);
    // The rejects file may not be the input: refused, and the input is untouched.
    const std::string before = slurp(in);
    r = run_loom({"translate", "--model", kModel, "--no-progress", "--on-error", "skip", "--overwrite",
                  "--rejects", in.string(), in.string(), (dir_ / "skip2.out").string()}, dir_);
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_EQ(slurp(in), before);
  }
  // An empty file is a valid, empty dataset.
  const fs::path empty = dir_ / "empty.txt";
  std::ofstream(empty).close();
  auto r = run_loom({"translate", "--model", kModel, "--no-progress", empty.string(), (dir_ / "empty.out").string()}, dir_);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(slurp(dir_ / "empty.out"), "");
  // Unknown model directory, bad shard spec.
  r = run_loom({"translate", "--model", (dir_ / "nope").string(), empty.string(), (dir_ / "x").string()}, dir_);
  EXPECT_EQ(r.code, 1) << r.err;
  r = run_loom({"translate", "--model", kModel, "--shard", "3/3", empty.string(), (dir_ / "y").string()}, dir_);
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("--shard"), std::string::npos) << r.err;
}

TEST_F(TranslateCli, OneMegabyteLineIsTranslatedNotTruncated) {
  const fs::path in = dir_ / "big.txt";
  {
    std::ofstream o(in);
    std::string sentence = "All human beings are born free and equal in dignity and rights. ";
    std::string line;
    while (line.size() < (1u << 20)) line += sentence;
    o << "short line\n" << line << "\nlast\n";
  }
  const fs::path out = dir_ / "big.out";
  auto r = run_loom({"translate", "--model", kModel, "--beam", "1", "--max-new-tokens", "4", "--no-progress",
                     in.string(), out.string()}, dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  auto lines = lines_of(slurp(out));
  ASSERT_EQ(lines.size(), 3u);
  // ~16k sentences, each translated (up to 4 tokens) and kept: the long line's output is long.
  EXPECT_GT(lines[1].size(), 16000u);
}

}  // namespace
